// EmbBERT on the host against a TFLM tree (CMake package): one text per line
// on stdin -> "label=... score=... tokens=... arena_used=..." on stdout.
#include <cstdio>
#include <cstring>

#include "embbert_classifier.h"
#include "model_settings.h"

int main() {
  if (EmbBertInit() != kEmbBertOk) {
    std::fprintf(stderr, "EmbBERT: set-up failed\n");
    return 1;
  }
  std::fprintf(stderr, "EmbBERT ready: arena %d bytes, arena_used_bytes() = %zu\n",
               static_cast<int>(kEmbBertTensorArenaSize), EmbBertArenaUsedBytes());
  static char line[4096];
  while (std::fgets(line, sizeof(line), stdin) != nullptr) {
    size_t len = std::strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) --len;
    EmbBertResult result;
    if (EmbBertClassify(line, len, &result) != kEmbBertOk) {
      std::fprintf(stderr, "error: classification failed\n");
      return 1;
    }
    std::printf("label=%s score=%.4f tokens=%zu arena_used=%zu\n",
                EmbBertLabelName(result.label), static_cast<double>(result.score),
                result.num_tokens, EmbBertArenaUsedBytes());
  }
  return 0;
}
