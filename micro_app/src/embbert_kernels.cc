// The project's int8 LOGISTIC, SOFTMAX, MEAN and ADD kernels, bit-identical to TFLM's reference
// kernels (embbert_kernels.h says why and how). Compiled with TFLM (C++17).
#include "embbert_kernels.h"

#include <algorithm>
#include <limits>

#include "fixedpoint/fixedpoint.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/add.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/logistic.h"
#include "tensorflow/lite/kernels/internal/reference/process_broadcast_shapes.h"
#include "tensorflow/lite/kernels/internal/reference/softmax.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace embbert {
namespace {

TableKernelCheck g_check = {0, 0, 0, 0, 0, 0, 0, 0};

// Fewer elements than table entries: the reference loop is cheaper than building the table.
constexpr int kTableEntries = 256;

// SOFTMAX's fixed-point formats, as in TFLM's reference kernel (reference/softmax.h).
constexpr int kScaledDiffIntegerBits = 5;
constexpr int kAccumulationIntegerBits = 12;
using FixedPointScaledDiff = gemmlowp::FixedPoint<int32_t, kScaledDiffIntegerBits>;
using FixedPointAccum = gemmlowp::FixedPoint<int32_t, kAccumulationIntegerBits>;
using FixedPoint0 = gemmlowp::FixedPoint<int32_t, 0>;

// exp(diff) in Q0.31 for diff = -(kTableEntries-1) .. 0 (index -diff), the reference's expression;
// entries below diff_min are never read.
void SoftmaxExpTable(const tflite::SoftmaxParams& params, int32_t table[kTableEntries]) {
  for (int k = 0; k < kTableEntries; ++k) {
    const int32_t input_diff = -k;
    if (input_diff < params.diff_min) {
      table[k] = 0;
      continue;
    }
    const int32_t rescaled = tflite::MultiplyByQuantizedMultiplierGreaterThanOne(
        input_diff, params.input_multiplier, params.input_left_shift);
    table[k] = gemmlowp::exp_on_negative_values(FixedPointScaledDiff::FromRaw(rescaled)).raw();
  }
}

void SoftmaxRowsWithTable(const tflite::SoftmaxParams& params, const int32_t exp_table[kTableEntries],
                          int rows, int depth, const int8_t* input, int8_t* output) {
  for (int i = 0; i < rows; ++i) {
    const int8_t* in = input + i * depth;
    int8_t* out = output + i * depth;
    int8_t max_in_row = std::numeric_limits<int8_t>::min();
    for (int c = 0; c < depth; ++c) max_in_row = std::max(max_in_row, in[c]);

    FixedPointAccum sum_of_exps = FixedPointAccum::Zero();
    for (int c = 0; c < depth; ++c) {
      const int32_t input_diff = static_cast<int32_t>(in[c]) - max_in_row;
      if (input_diff >= params.diff_min) {
        sum_of_exps = sum_of_exps + gemmlowp::Rescale<kAccumulationIntegerBits>(
                                        FixedPoint0::FromRaw(exp_table[-input_diff]));
      }
    }
    int num_bits_over_unit;
    const FixedPoint0 shifted_scale = FixedPoint0::FromRaw(
        tflite::GetReciprocal(sum_of_exps.raw(), kAccumulationIntegerBits, &num_bits_over_unit));
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int c = 0; c < depth; ++c) {
      const int32_t input_diff = static_cast<int32_t>(in[c]) - max_in_row;
      if (input_diff >= params.diff_min) {
        const FixedPoint0 exp_in_0 = FixedPoint0::FromRaw(exp_table[-input_diff]);
        const int32_t unsat = gemmlowp::RoundingDivideByPOT((shifted_scale * exp_in_0).raw(), exponent);
        const int32_t shifted = unsat + static_cast<int32_t>(std::numeric_limits<int8_t>::min());
        out[c] = static_cast<int8_t>(std::max(std::min(shifted, static_cast<int32_t>(127)),
                                              static_cast<int32_t>(-128)));
      } else {
        out[c] = std::numeric_limits<int8_t>::min();
      }
    }
  }
}

// After TFLM's own Prepare: the table kernels take int8 input and output only (`what` names the kernel and
// the TFLM registration to use instead in the one-line error).
TfLiteStatus RequireInt8(TfLiteContext* context, TfLiteNode* node, int input_index, int output_index,
                         const char* what) {
  tflite::MicroContext* micro_context = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro_context->AllocateTempInputTensor(node, input_index);
  TfLiteTensor* output = micro_context->AllocateTempOutputTensor(node, output_index);
  const bool int8 = input->type == kTfLiteInt8 && output->type == kTfLiteInt8;
  micro_context->DeallocateTempTfLiteTensor(input);
  micro_context->DeallocateTempTfLiteTensor(output);
  if (!int8) {
    MicroPrintf("%s", what);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

TfLiteStatus LogisticTablePrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_OK(context, tflite::LogisticPrepare(context, node));
  return RequireInt8(context, node, tflite::kLogisticInputTensor, tflite::kLogisticOutputTensor,
                     "embbert LOGISTIC table kernel: int8 only; register TFLM's Register_LOGISTIC() instead");
}

void* LogisticTableInit(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(tflite::OpDataLogistic));
}

TfLiteStatus LogisticTableEval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kLogisticInputTensor);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kLogisticOutputTensor);
  const auto& op = *static_cast<const tflite::OpDataLogistic*>(node->user_data);
  const int n = tflite::micro::GetTensorShape(input).FlatSize();
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  if (n < kTableEntries) {
    tflite::reference_integer_ops::Logistic(op.input_zero_point, op.input_range_radius, op.input_multiplier,
                                            op.input_left_shift, n, in, out);
    return kTfLiteOk;
  }
  int8_t table[kTableEntries];
  LogisticInt8Table(op, table);
  for (int i = 0; i < n; ++i) out[i] = table[static_cast<int>(in[i]) + 128];
#if defined(EMBBERT_TABLE_KERNELS_VERIFY)
  for (int i = 0; i < n; ++i) {
    int8_t ref;
    tflite::reference_integer_ops::Logistic(op.input_zero_point, op.input_range_radius, op.input_multiplier,
                                            op.input_left_shift, 1, &in[i], &ref);
    g_check.logistic_checked++;
    if (ref != out[i]) g_check.logistic_mismatches++;
  }
#endif
  return kTfLiteOk;
}

TfLiteStatus SoftmaxTablePrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE_OK(context, tflite::SoftmaxPrepare(context, node));
  return RequireInt8(context, node, 0, 0,
                     "embbert SOFTMAX table kernel: int8 -> int8 only; register TFLM's Register_SOFTMAX() instead");
}

TfLiteStatus SoftmaxTableEval(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const auto& params = *static_cast<const tflite::SoftmaxParams*>(node->user_data);
  const tflite::RuntimeShape shape = tflite::micro::GetTensorShape(input);
  const int depth = shape.Dims(shape.DimensionsCount() - 1);
  const int rows = shape.FlatSize() / depth;
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  if (rows * depth < kTableEntries) {
    tflite::reference_ops::Softmax(params, shape, in, tflite::micro::GetTensorShape(output), out);
    return kTfLiteOk;
  }
  SoftmaxInt8Rows(params, rows, depth, in, out);
#if defined(EMBBERT_TABLE_KERNELS_VERIFY)
  int8_t ref[1024];
  if (depth <= 1024) {
    const tflite::RuntimeShape row_shape({1, depth});
    for (int i = 0; i < rows; ++i) {
      tflite::reference_ops::Softmax(params, row_shape, in + i * depth, row_shape, ref);
      for (int c = 0; c < depth; ++c) {
        g_check.softmax_checked++;
        if (ref[c] != out[i * depth + c]) g_check.softmax_mismatches++;
      }
    }
  }
#endif
  return kTfLiteOk;
}

void* MeanInit(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(tflite::OpDataReduce));
}

TfLiteStatus MeanPrepare(TfLiteContext* context, TfLiteNode* node) {
  return tflite::PrepareMeanOrSumHelper(context, node, static_cast<tflite::OpDataReduce*>(node->user_data));
}

// True when the axis tensor names exactly the last dimension (as -1 or as rank-1).
bool ReducesLastAxisOnly(const TfLiteEvalTensor* input, const TfLiteEvalTensor* axis) {
  const int rank = input->dims->size;
  const int count = tflite::micro::GetTensorShape(axis).FlatSize();
  const int32_t* a = tflite::micro::GetTensorData<int32_t>(axis);
  if (rank < 1 || count < 1) return false;
  for (int i = 0; i < count; ++i) {
    if (a[i] != rank - 1 && a[i] != -1) return false;
  }
  return true;
}

// TFLM's reference int8 mean (reference_ops::QuantizedMeanOrSum) for rows of `depth` elements: the
// sum of each row, then its requantisation with the 1/depth factor folded in as the reference does.
void MeanRowsInt8(const tflite::OpDataReduce& op, int rows, int depth, const int8_t* in, int8_t* out) {
  int shift = 63 - tflite::CountLeadingZeros(static_cast<uint64_t>(depth));
  shift = std::min(shift, 32);
  shift = std::min(shift, 31 + op.shift);
  const int32_t multiplier =
      static_cast<int32_t>((static_cast<int64_t>(op.multiplier) << shift) / depth);
  const int out_shift = op.shift - shift;
  for (int r = 0; r < rows; ++r) {
    const int8_t* x = in + r * depth;
    int32_t sum = 0;
    for (int c = 0; c < depth; ++c) sum += x[c];
    const int32_t shifted_sum = static_cast<int32_t>(sum - op.input_zp * static_cast<int64_t>(depth));
    int32_t o = tflite::MultiplyByQuantizedMultiplier(shifted_sum, multiplier, out_shift) + op.output_zp;
    o = std::min(std::max(o, static_cast<int32_t>(-128)), static_cast<int32_t>(127));
    out[r] = static_cast<int8_t>(o);
  }
}

TfLiteStatus MeanEval(TfLiteContext* context, TfLiteNode* node) {
  auto* op = static_cast<tflite::OpDataReduce*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* axis = tflite::micro::GetEvalInput(context, node, 1);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  if (input->type != kTfLiteInt8 || axis->type != kTfLiteInt32 || !ReducesLastAxisOnly(input, axis)) {
    return tflite::EvalMeanHelper(context, node, op);
  }
  const tflite::RuntimeShape shape = tflite::micro::GetTensorShape(input);
  const int depth = shape.Dims(shape.DimensionsCount() - 1);
  if (depth == 0) return tflite::EvalMeanHelper(context, node, op);
  const int rows = shape.FlatSize() / depth;
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  MeanRowsInt8(*op, rows, depth, tflite::micro::GetTensorData<int8_t>(input), out);
#if defined(EMBBERT_TABLE_KERNELS_VERIFY)
  int8_t fast[1024];
  if (rows <= 1024) {
    for (int r = 0; r < rows; ++r) fast[r] = out[r];
    TF_LITE_ENSURE_OK(context, tflite::EvalMeanHelper(context, node, op));  // overwrites out
    for (int r = 0; r < rows; ++r) {
      g_check.mean_checked++;
      if (fast[r] != out[r]) g_check.mean_mismatches++;
    }
  }
#endif
  return kTfLiteOk;
}

// --- ADD ---------------------------------------------------------------------------------------

void* AddInit(TfLiteContext* context, const char* buffer, size_t length) {
  return context->AllocatePersistentBuffer(context, sizeof(tflite::OpDataAdd));
}

// The reference kernel's parameters (TFLM's EvalAddQuantized, kernels/add.cc).
tflite::ArithmeticParams AddParams(const tflite::OpDataAdd& d) {
  tflite::ArithmeticParams p = {};
  p.left_shift = d.left_shift;
  p.input1_offset = d.input1_offset;
  p.input1_multiplier = d.input1_multiplier;
  p.input1_shift = d.input1_shift;
  p.input2_offset = d.input2_offset;
  p.input2_multiplier = d.input2_multiplier;
  p.input2_shift = d.input2_shift;
  p.output_offset = d.output_offset;
  p.output_multiplier = d.output_multiplier;
  p.output_shift = d.output_shift;
  tflite::SetActivationParams(d.output_activation_min, d.output_activation_max, &p);
  return p;
}

// Rescaled input values of AddFunc (reference/integer_ops/add.h), one per possible byte.
void AddInputTable(int32_t offset, int left_shift, int32_t multiplier, int shift, int32_t table[256]) {
  for (int v = -128; v < 128; ++v) {
    const int32_t shifted = (offset + v) * (1 << left_shift);
    table[v + 128] = tflite::MultiplyByQuantizedMultiplierSmallerThanOneExp(shifted, multiplier, shift);
  }
}

inline int8_t AddOutput(int32_t raw_sum, const tflite::ArithmeticParams& p) {
  const int32_t raw = tflite::MultiplyByQuantizedMultiplierSmallerThanOneExp(raw_sum, p.output_multiplier,
                                                                             p.output_shift) +
                      p.output_offset;
  return static_cast<int8_t>(std::min(p.quantized_activation_max, std::max(p.quantized_activation_min, raw)));
}

// Shape `s` right-aligned to `rank` dimensions.
int DimFromRight(const tflite::RuntimeShape& s, int rank, int i) {
  const int k = i - (rank - s.DimensionsCount());
  return k < 0 ? 1 : s.Dims(k);
}

// True when `small` is one row of `big` repeated: right-aligned, all its dimensions but the last are 1.
bool IsRowOf(const tflite::RuntimeShape& small, const tflite::RuntimeShape& big) {
  const int rank = std::max(small.DimensionsCount(), big.DimensionsCount());
  if (rank < 1 || DimFromRight(small, rank, rank - 1) != DimFromRight(big, rank, rank - 1)) return false;
  for (int i = 0; i < rank - 1; ++i) {
    if (DimFromRight(small, rank, i) != 1) return false;
  }
  return true;
}

bool SameShape(const tflite::RuntimeShape& a, const tflite::RuntimeShape& b) {
  const int rank = std::max(a.DimensionsCount(), b.DimensionsCount());
  for (int i = 0; i < rank; ++i) {
    if (DimFromRight(a, rank, i) != DimFromRight(b, rank, i)) return false;
  }
  return true;
}

void AddReference(tflite::ArithmeticParams p, const tflite::RuntimeShape& s1, const int8_t* in1,
                  const tflite::RuntimeShape& s2, const int8_t* in2, const tflite::RuntimeShape& so,
                  int8_t* out) {
  if (tflite::reference_ops::ProcessBroadcastShapes(s1, s2, &p)) {
    tflite::reference_integer_ops::BroadcastAdd4DSlow(p, s1, in1, s2, in2, so, out);
  } else {
    tflite::reference_integer_ops::Add(p, s1, in1, s2, in2, so, out);
  }
}

TfLiteStatus AddEval(TfLiteContext* context, TfLiteNode* node) {
  const auto& d = *static_cast<const tflite::OpDataAdd*>(node->user_data);
  const TfLiteEvalTensor* input1 = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* input2 = tflite::micro::GetEvalInput(context, node, 1);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  if (output->type != kTfLiteInt8) {
    MicroPrintf("embbert ADD table kernel: int8 only; register TFLM's Register_ADD() instead");
    return kTfLiteError;
  }
  const tflite::ArithmeticParams p = AddParams(d);
  const tflite::RuntimeShape s1 = tflite::micro::GetTensorShape(input1);
  const tflite::RuntimeShape s2 = tflite::micro::GetTensorShape(input2);
  const tflite::RuntimeShape so = tflite::micro::GetTensorShape(output);
  const int8_t* in1 = tflite::micro::GetTensorData<int8_t>(input1);
  const int8_t* in2 = tflite::micro::GetTensorData<int8_t>(input2);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  const int n = so.FlatSize();
  const bool same = SameShape(s1, so) && SameShape(s2, so);
  const bool row2 = SameShape(s1, so) && IsRowOf(s2, so);
  const bool row1 = SameShape(s2, so) && IsRowOf(s1, so);
  if (n < 2 * kTableEntries || !(same || row1 || row2)) {
    AddReference(p, s1, in1, s2, in2, so, out);
    return kTfLiteOk;
  }
  int32_t t1[kTableEntries], t2[kTableEntries];
  AddInputTable(p.input1_offset, p.left_shift, p.input1_multiplier, p.input1_shift, t1);
  AddInputTable(p.input2_offset, p.left_shift, p.input2_multiplier, p.input2_shift, t2);
  if (same) {
    for (int i = 0; i < n; ++i) out[i] = AddOutput(t1[in1[i] + 128] + t2[in2[i] + 128], p);
  } else {
    const int depth = so.Dims(so.DimensionsCount() - 1);
    for (int i = 0; i < n; ++i) {
      const int c = i % depth;
      const int8_t a = row1 ? in1[c] : in1[i];
      const int8_t b = row2 ? in2[c] : in2[i];
      out[i] = AddOutput(t1[a + 128] + t2[b + 128], p);
    }
  }
#if defined(EMBBERT_TABLE_KERNELS_VERIFY)
  static int8_t ref[65536];
  if (n <= 65536) {
    AddReference(p, s1, in1, s2, in2, so, ref);
    for (int i = 0; i < n; ++i) {
      g_check.add_checked++;
      if (ref[i] != out[i]) g_check.add_mismatches++;
    }
  }
#endif
  return kTfLiteOk;
}

}  // namespace

void LogisticInt8Table(const tflite::OpDataLogistic& op, int8_t table[256]) {
  for (int v = -128; v < 128; ++v) {
    const int8_t x = static_cast<int8_t>(v);
    tflite::reference_integer_ops::Logistic(op.input_zero_point, op.input_range_radius, op.input_multiplier,
                                            op.input_left_shift, 1, &x, &table[v + 128]);
  }
}

void SoftmaxInt8Rows(const tflite::SoftmaxParams& params, int rows, int depth, const int8_t* input,
                     int8_t* output) {
  int32_t exp_table[kTableEntries];
  SoftmaxExpTable(params, exp_table);
  SoftmaxRowsWithTable(params, exp_table, rows, depth, input, output);
}

const TableKernelCheck& TableKernelCheckCounts() { return g_check; }

TFLMRegistration Register_LOGISTIC_INT8_TABLE() {
  return tflite::micro::RegisterOp(LogisticTableInit, LogisticTablePrepare, LogisticTableEval);
}

TFLMRegistration Register_ADD_INT8_TABLE() {
  return tflite::micro::RegisterOp(AddInit, tflite::AddPrepare, AddEval);
}

TFLMRegistration Register_MEAN_INT8_LAST_AXIS() { return tflite::micro::RegisterOp(MeanInit, MeanPrepare, MeanEval); }

TFLMRegistration Register_SOFTMAX_INT8_TABLE() {
  return tflite::micro::RegisterOp(tflite::SoftmaxInit, SoftmaxTablePrepare, SoftmaxTableEval);
}

}  // namespace embbert
