// Test helper (host only): writes the model array to stdout, byte for byte.
#include <cstdio>

#include "model_data.h"

int main() {
  size_t n = std::fwrite(g_embbert_model_data, 1,
                         static_cast<size_t>(g_embbert_model_data_len), stdout);
  return n == static_cast<size_t>(g_embbert_model_data_len) ? 0 : 1;
}
