/* libFuzzer harness for the on-device tokenizer (host only).
 * Build: clang -fsanitize=fuzzer,address,undefined -I../src -I<generated> ... */
#include <stddef.h>
#include <stdint.h>

#include "embbert_tokenizer.h"

#define FUZZ_L 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int32_t ids[FUZZ_L], seg[FUZZ_L], raw[512];
  size_t n, i, half = size / 2;
  n = embbert_tokenize(data, size, raw, sizeof(raw) / sizeof(raw[0]));
  for (i = 0; i < n; ++i) {
    if (raw[i] < 0 || raw[i] >= 65535) __builtin_trap();
  }
  n = embbert_encode_single(data, size, ids, seg, FUZZ_L);
  if (n < 1 || n > FUZZ_L || ids[0] != EMBBERT_CLS_ID) __builtin_trap();
  n = embbert_encode_pair(data, half, data + half, size - half, ids, seg, FUZZ_L);
  if (n < 3 || n > FUZZ_L || ids[n - 1] != EMBBERT_SEP_ID) __builtin_trap();
  return 0;
}
