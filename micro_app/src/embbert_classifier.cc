// EmbBERT classifier on TensorFlow Lite Micro (see embbert_classifier.h).
// Follows the public API of tensorflow/lite/micro/micro_interpreter.h as the
// TFLM examples use it: GetModel, MicroMutableOpResolver, MicroInterpreter on
// a static arena, AllocateTensors, input()/output(), Invoke, arena_used_bytes.
#include "embbert_classifier.h"

#include "embbert_postprocess.h"
#include "embbert_tokenizer.h"
#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

alignas(16) uint8_t g_tensor_arena[kEmbBertTensorArenaSize];
tflite::MicroInterpreter* g_interpreter = nullptr;
TfLiteStatus g_init_status = kTfLiteError;
bool g_init_done = false;

TfLiteStatus CheckInput(const TfLiteTensor* t, const char* name) {
  if (t == nullptr || t->type != kTfLiteInt32 || t->dims == nullptr ||
      t->dims->size != 2 || t->dims->data[1] != kEmbBertMaxLength) {
    MicroPrintf("EmbBERT: input %s is not int32 [1, %d]", name,
                kEmbBertMaxLength);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

TfLiteStatus SetUp() {
  const tflite::Model* model = tflite::GetModel(g_embbert_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("EmbBERT: model schema %d, runtime supports %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return kTfLiteError;
  }
  static EmbBertOpResolver resolver;
  if (EmbBertRegisterOps(resolver) != kTfLiteOk) {
    MicroPrintf("EmbBERT: registering the %d operators failed", kEmbBertNumOps);
    return kTfLiteError;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_tensor_arena,
                                              kEmbBertTensorArenaSize);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("EmbBERT: AllocateTensors failed (arena %d bytes)",
                kEmbBertTensorArenaSize);
    return kTfLiteError;
  }
  if (interpreter.inputs_size() != 2 || interpreter.outputs_size() != 1) {
    MicroPrintf("EmbBERT: expected 2 inputs and 1 output");
    return kTfLiteError;
  }
  TF_LITE_ENSURE_STATUS(
      CheckInput(interpreter.input(kEmbBertTokenIdsInput), "token_ids"));
  TF_LITE_ENSURE_STATUS(
      CheckInput(interpreter.input(kEmbBertSegmentIdsInput), "segment_ids"));
  const TfLiteTensor* out = interpreter.output(0);
  if (out == nullptr || out->type != kTfLiteInt8 ||
      out->dims->data[out->dims->size - 1] != kEmbBertNumLabels) {
    MicroPrintf("EmbBERT: output is not int8 [1, %d]", kEmbBertNumLabels);
    return kTfLiteError;
  }
  g_interpreter = &interpreter;
  return kTfLiteOk;
}

TfLiteStatus Run(EmbBertResult* result) {
  if (g_interpreter->Invoke() != kTfLiteOk) {
    MicroPrintf("EmbBERT: Invoke failed");
    return kTfLiteError;
  }
  const TfLiteTensor* out = g_interpreter->output(0);
  const int best = embbert_argmax_int8(out->data.int8, kEmbBertNumLabels);
  if (best < 0) return kTfLiteError;
  result->label = best;
  result->score = embbert_dequantize_int8(out->data.int8[best],
                                          kEmbBertOutputScale,
                                          kEmbBertOutputZeroPoint);
  return kTfLiteOk;
}

}  // namespace

TfLiteStatus EmbBertInit() {
  if (!g_init_done) {
    g_init_status = SetUp();
    g_init_done = true;
  }
  return g_init_status;
}

TfLiteStatus EmbBertClassify(const char* text, size_t len,
                             EmbBertResult* result) {
  if (result == nullptr || EmbBertInit() != kTfLiteOk) return kTfLiteError;
  int32_t* tokens = g_interpreter->input(kEmbBertTokenIdsInput)->data.i32;
  int32_t* segments = g_interpreter->input(kEmbBertSegmentIdsInput)->data.i32;
  result->num_tokens = embbert_encode_single(
      reinterpret_cast<const uint8_t*>(text), len, tokens, segments,
      kEmbBertMaxLength);
  return Run(result);
}

TfLiteStatus EmbBertClassifyPair(const char* text_a, size_t len_a,
                                 const char* text_b, size_t len_b,
                                 EmbBertResult* result) {
  if (result == nullptr || EmbBertInit() != kTfLiteOk) return kTfLiteError;
  int32_t* tokens = g_interpreter->input(kEmbBertTokenIdsInput)->data.i32;
  int32_t* segments = g_interpreter->input(kEmbBertSegmentIdsInput)->data.i32;
  result->num_tokens = embbert_encode_pair(
      reinterpret_cast<const uint8_t*>(text_a), len_a,
      reinterpret_cast<const uint8_t*>(text_b), len_b, tokens, segments,
      kEmbBertMaxLength);
  return Run(result);
}

size_t EmbBertArenaUsedBytes() {
  return g_interpreter == nullptr ? 0 : g_interpreter->arena_used_bytes();
}

const char* EmbBertLabelName(int label) {
  if (label < 0 || label >= kEmbBertNumLabels) return "?";
  return kEmbBertLabelNames[label];
}
