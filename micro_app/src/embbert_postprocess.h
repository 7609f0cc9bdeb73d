/* Post-processing of the int8 logits (C99, no TFLM): argmax and dequantisation.
 * Kept apart from the TFLM glue so that it is compiled and tested on the host. */
#ifndef EMBBERT_POSTPROCESS_H_
#define EMBBERT_POSTPROCESS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Index of the largest of `n` logits (the first one on a tie); -1 when
 * `logits` is NULL or `n` is 0. */
int embbert_argmax_int8(const int8_t *logits, size_t n);

/* real = scale * (q - zero_point) */
float embbert_dequantize_int8(int8_t q, float scale, int zero_point);

#ifdef __cplusplus
}
#endif

#endif /* EMBBERT_POSTPROCESS_H_ */
