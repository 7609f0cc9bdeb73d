/* Post-processing of the int8 logits (see embbert_postprocess.h). */
#include "embbert_postprocess.h"

int embbert_argmax_int8(const int8_t *logits, size_t n) {
  size_t i, best = 0;
  if (logits == NULL || n == 0) return -1;
  for (i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return (int)best;
}

float embbert_dequantize_int8(int8_t q, float scale, int zero_point) {
  return scale * (float)((int)q - zero_point);
}
