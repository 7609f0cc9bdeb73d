/* The project's int8 LOGISTIC, SOFTMAX, MEAN and ADD kernels for TFLM: TFLM's reference results bit
 * for bit, with fewer instructions (docs/latency.md: -31 % Cortex-M4 instructions on the main job's model).
 *
 * The exported packages register them by default (embbert_tflm.cc, embbert_tflm_add_<op>_int8(); the
 * generated embbert_ops.c calls those only for operators whose tensors are all int8). Compile
 * embbert_tflm.cc with -DEMBBERT_STOCK_KERNELS to register TFLM's stock kernels instead. The profiling
 * driver (micro_app/profile, `embbert bench latency --table-kernels`) compiles this same file.
 *
 * Why they are faster: TFLM's int8 LOGISTIC costs ~357 instructions per element and int8 SOFTMAX ~520
 * (CMSIS-NN) / ~450 (reference) on a Cortex-M4: both evaluate gemmlowp's fixed-point exp/logistic for
 * every element (SOFTMAX twice). Both results are functions of one int8 value: LOGISTIC of the input
 * byte, SOFTMAX's exp term of the difference to the row maximum (-255..0). These registrations evaluate
 * TFLM's own reference arithmetic once for each of the 256 possible values into a table on the stack at
 * every Invoke (256 B / 1 KB of stack, no arena, no persistent memory) and then look the elements up;
 * everything else (row maximum, sum, TFLM's GetReciprocal, rounding, clamping) is the reference kernel's
 * arithmetic, in its order. So the outputs are the reference outputs bit for bit, for any quantisation
 * parameters.
 *
 * Use: the same builtin operators, another implementation, registered through TFLM's public API:
 *   resolver.AddLogistic(embbert::Register_LOGISTIC_INT8_TABLE());
 *   resolver.AddSoftmax(embbert::Register_SOFTMAX_INT8_TABLE());
 *   resolver.AddMean(embbert::Register_MEAN_INT8_LAST_AXIS());
 *   resolver.AddAdd(embbert::Register_ADD_INT8_TABLE());
 * Init and Prepare are TFLM's (LogisticPrepare, SoftmaxInit/SoftmaxPrepare, PrepareMeanOrSumHelper,
 * AddPrepare). LOGISTIC and SOFTMAX handle int8 -> int8 only and ADD int8 only (what EmbBERT graphs
 * use): other types fail with a message. Only TFLM's public headers are used; C++17, compiled with
 * TFLM (for Arduino: in the precompiled EmbBERT_TFLM library). */
#ifndef EMBBERT_KERNELS_H_
#define EMBBERT_KERNELS_H_

#include <stdint.h>

#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/kernels/add.h"
#include "tensorflow/lite/micro/kernels/logistic.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/micro_common.h"

namespace embbert {

TFLMRegistration Register_LOGISTIC_INT8_TABLE();
TFLMRegistration Register_SOFTMAX_INT8_TABLE();
// MEAN over the last axis (RMSNorm's mean of squares), int8: a plain row sum instead of TFLM's generic
// index-iterating reduction (~95 instructions per element), then the reference's requantisation, in
// its order (integer sums are exact, so the result is bit-identical). Any other MEAN is handed to
// TFLM's EvalMeanHelper.
TFLMRegistration Register_MEAN_INT8_LAST_AXIS();
// ADD (int8): each input's rescaled value (offset, left shift, MultiplyByQuantizedMultiplierSmallerThanOneExp)
// depends on its byte alone: two 256-entry int32 tables (2 KB of stack), then the reference's output
// rescaling and clamp per element. Same shapes or one input repeated along the rows of the other; any
// other broadcast, and tensors under 512 elements, take TFLM's reference functions.
TFLMRegistration Register_ADD_INT8_TABLE();

// The cores, exposed for the checks against TFLM's reference functions.
void LogisticInt8Table(const tflite::OpDataLogistic& op, int8_t table[256]);
void SoftmaxInt8Rows(const tflite::SoftmaxParams& params, int rows, int depth, const int8_t* input,
                     int8_t* output);

// Elements checked against the reference and mismatches found (EMBBERT_TABLE_KERNELS_VERIFY builds).
struct TableKernelCheck {
  uint32_t logistic_checked, logistic_mismatches;
  uint32_t softmax_checked, softmax_mismatches;
  uint32_t mean_checked, mean_mismatches;
  uint32_t add_checked, add_mismatches;
};
const TableKernelCheck& TableKernelCheckCounts();

}  // namespace embbert

#endif  // EMBBERT_KERNELS_H_
