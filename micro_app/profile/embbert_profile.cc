/* EmbBERT latency profile: ticks per operator and per inference with TFLM's MicroProfiler.
 *
 * Depends only on the generated model array (model_data.h: g_embbert_model_data), TFLM's public
 * API and a small header written by `embbert bench latency` for the model
 * (embbert_profile_config.h: sequence length, vocabulary, input positions, the operators to
 * register, arena size, number of profiled runs). The machine-specific parts (time base,
 * output, exit) are in profile_platform.h.
 *
 * What it prints (every line of TFLM's own CSV comes from MicroProfiler::LogCsv() and
 * LogTicksPerTagCsv(); the rest starts with "embbert_profile:"):
 *   embbert_profile: time_base=...            what a tick is
 *   embbert_profile: ticks_per_second=N
 *   embbert_profile: calibration instructions=I ticks=T   (emulator only)
 *   embbert_profile: arena_used_bytes=N
 *   embbert_profile: run R
 *   "Event","Tag","Ticks"                     one line per operator, in execution order
 *   ...
 *   "Unique Tag","Total ticks ..."            one line per operator type
 *   ...
 *   embbert_profile: run R invoke_ticks=N profiled_ticks=M   (Invoke() as a whole, and the sum of
 *                                                            the operator events)
 *   embbert_profile: logits=q0,q1,...         int8 output of the last run
 *   embbert_profile: done
 * A warm-up inference runs first and is not profiled. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "embbert_profile_config.h"
#include "model_data.h"
#include "profile_platform.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if defined(EMBBERT_PROFILE_DEBUG_LOG_CALLBACK)
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#endif
#if defined(EMBBERT_PROFILE_TABLE_KERNELS)
#include "embbert_kernels.h"
#endif

#ifndef EMBBERT_PROFILE_RUNS
#define EMBBERT_PROFILE_RUNS 1
#endif

namespace {

alignas(16) uint8_t g_arena[EMBBERT_PROFILE_ARENA_BYTES];
tflite::MicroProfiler g_profiler;

void Line(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Line(const char* format, ...) {
  char buf[320];
  va_list args;
  va_start(args, format);
  vsnprintf(buf, sizeof(buf), format, args);
  va_end(args);
  EmbBertProfileWrite(buf);
  EmbBertProfileWrite("\n");
}

#if defined(EMBBERT_PROFILE_DEBUG_LOG_CALLBACK)
void DebugLogToPlatform(const char* s) { EmbBertProfileWrite(s); }
#endif

TfLiteStatus RegisterOps(
    tflite::MicroMutableOpResolver<EMBBERT_PROFILE_NUM_OPS>& resolver) {
// X(method, registration): an empty registration is TFLM's default kernel of the build.
#define EMBBERT_PROFILE_ADD(method, registration) \
  if (resolver.method(registration) != kTfLiteOk) return kTfLiteError;
  EMBBERT_PROFILE_FOR_EACH_OP(EMBBERT_PROFILE_ADD)
#undef EMBBERT_PROFILE_ADD
  return kTfLiteOk;
}

// Deterministic full-length input: [CLS] then ids spread over the vocabulary, segment 1 (no
// padding). TFLM's kernels process all L positions whatever the ids, so the instruction count
// does not depend on the text.
bool FillInputs(tflite::MicroInterpreter& interpreter) {
  TfLiteTensor* tok = interpreter.input(EMBBERT_PROFILE_TOKEN_IDS_INPUT);
  TfLiteTensor* seg = interpreter.input(EMBBERT_PROFILE_SEGMENT_IDS_INPUT);
  if (tok == nullptr || seg == nullptr || tok->type != kTfLiteInt32 ||
      seg->type != kTfLiteInt32 ||
      tok->bytes != EMBBERT_PROFILE_LENGTH * sizeof(int32_t) ||
      seg->bytes != EMBBERT_PROFILE_LENGTH * sizeof(int32_t)) {
    return false;
  }
  int32_t* t = tok->data.i32;
  int32_t* s = seg->data.i32;
  for (int i = 0; i < EMBBERT_PROFILE_LENGTH; ++i) {
    t[i] = i == 0 ? EMBBERT_PROFILE_CLS_ID
                  : 5 + static_cast<int32_t>((i * 7919u) % (EMBBERT_PROFILE_VOCAB_SIZE - 5u));
    s[i] = 1;
  }
  return true;
}

}  // namespace

extern "C" int EmbBertProfileRun(void) {
  EmbBertProfilePlatformInit();
#if defined(EMBBERT_PROFILE_DEBUG_LOG_CALLBACK)
  RegisterDebugLogCallback(DebugLogToPlatform);
#endif
  Line("embbert_profile: time_base=%s", EmbBertProfileTimeBase());
  Line("embbert_profile: ticks_per_second=%lu",
       static_cast<unsigned long>(tflite::ticks_per_second()));
  uint32_t cal_instructions = 0;
  const uint32_t cal_ticks = EmbBertProfileCalibrate(&cal_instructions);
  if (cal_instructions != 0) {
    Line("embbert_profile: calibration instructions=%lu ticks=%lu",
         static_cast<unsigned long>(cal_instructions), static_cast<unsigned long>(cal_ticks));
  }

  const tflite::Model* model = tflite::GetModel(g_embbert_model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    Line("embbert_profile: error: schema version %lu, expected %d",
         static_cast<unsigned long>(model->version()), TFLITE_SCHEMA_VERSION);
    return 1;
  }
  static tflite::MicroMutableOpResolver<EMBBERT_PROFILE_NUM_OPS> resolver;
  if (RegisterOps(resolver) != kTfLiteOk) {
    Line("embbert_profile: error: registering the operators failed");
    return 1;
  }
  static tflite::MicroInterpreter interpreter(model, resolver, g_arena, sizeof(g_arena),
                                              nullptr, &g_profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    Line("embbert_profile: error: AllocateTensors() failed (arena %lu bytes)",
         static_cast<unsigned long>(sizeof(g_arena)));
    return 1;
  }
  Line("embbert_profile: arena_used_bytes=%lu",
       static_cast<unsigned long>(interpreter.arena_used_bytes()));
  // The inputs are filled before every Invoke(): TFLM's memory planner lets later tensors reuse
  // the input buffers once their last reader has run, so after an inference they hold other data.
  if (!FillInputs(interpreter)) {
    Line("embbert_profile: error: inputs are not two int32 tensors of length %d",
         EMBBERT_PROFILE_LENGTH);
    return 1;
  }
  if (interpreter.Invoke() != kTfLiteOk) {  // warm-up, not profiled
    Line("embbert_profile: error: Invoke() failed");
    return 1;
  }
  for (int run = 0; run < EMBBERT_PROFILE_RUNS; ++run) {
    FillInputs(interpreter);
    g_profiler.ClearEvents();
    Line("embbert_profile: run %d", run);
    const uint32_t start = tflite::GetCurrentTimeTicks();
    const TfLiteStatus status = interpreter.Invoke();
    const uint32_t invoke_ticks = tflite::GetCurrentTimeTicks() - start;
    if (status != kTfLiteOk) {
      Line("embbert_profile: error: Invoke() failed");
      return 1;
    }
    g_profiler.LogCsv();
    g_profiler.LogTicksPerTagCsv();
    Line("embbert_profile: run %d invoke_ticks=%lu profiled_ticks=%lu", run,
         static_cast<unsigned long>(invoke_ticks),
         static_cast<unsigned long>(g_profiler.GetTotalTicks()));
  }
  const TfLiteTensor* out = interpreter.output(0);
  char buf[16];
  EmbBertProfileWrite("embbert_profile: logits=");
  for (size_t i = 0; i < out->bytes; ++i) {
    snprintf(buf, sizeof(buf), i ? ",%d" : "%d", static_cast<int>(out->data.int8[i]));
    EmbBertProfileWrite(buf);
  }
  EmbBertProfileWrite("\n");
#if defined(EMBBERT_TABLE_KERNELS_VERIFY)
  const embbert::TableKernelCheck& check = embbert::TableKernelCheckCounts();
  Line("embbert_profile: table_check logistic_checked=%lu logistic_mismatches=%lu softmax_checked=%lu "
       "softmax_mismatches=%lu mean_checked=%lu mean_mismatches=%lu add_checked=%lu add_mismatches=%lu",
       static_cast<unsigned long>(check.logistic_checked),
       static_cast<unsigned long>(check.logistic_mismatches),
       static_cast<unsigned long>(check.softmax_checked),
       static_cast<unsigned long>(check.softmax_mismatches),
       static_cast<unsigned long>(check.mean_checked),
       static_cast<unsigned long>(check.mean_mismatches),
       static_cast<unsigned long>(check.add_checked),
       static_cast<unsigned long>(check.add_mismatches));
#endif
  Line("embbert_profile: done");
  return 0;
}

#if defined(EMBBERT_PROFILE_MAIN)
int main(void) {
  const int status = EmbBertProfileRun();
  EmbBertProfileExit(status);
  return status;
}
#endif
