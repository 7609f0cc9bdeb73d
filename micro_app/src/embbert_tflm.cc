// The C interface of embbert_tflm.h over TFLM's public C++ API, as the TFLM
// examples use it: GetModel, MicroMutableOpResolver, MicroInterpreter on a
// caller-owned arena, AllocateTensors, input()/output(), Invoke,
// arena_used_bytes. Compiled with TFLM (C++17).
#include "embbert_tflm.h"

#if !defined(EMBBERT_STOCK_KERNELS)
#include "embbert_kernels.h"
#endif

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/compatibility.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/micro/micro_time.h"
#include "tensorflow/lite/micro/system_setup.h"
#include "tensorflow/lite/schema/schema_generated.h"

#if __has_include("tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h")
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#define EMBBERT_TFLM_HAS_LOG_CALLBACK 1
#endif

#ifndef EMBBERT_TFLM_MAX_OPS
#define EMBBERT_TFLM_MAX_OPS 24
#endif

#ifndef EMBBERT_TFLM_MAX_EVENTS
#define EMBBERT_TFLM_MAX_EVENTS 256
#endif

static_assert(static_cast<int>(EMBBERT_TFLM_FLOAT32) == static_cast<int>(kTfLiteFloat32), "TfLiteType changed");
static_assert(static_cast<int>(EMBBERT_TFLM_INT32) == static_cast<int>(kTfLiteInt32), "TfLiteType changed");
static_assert(static_cast<int>(EMBBERT_TFLM_INT16) == static_cast<int>(kTfLiteInt16), "TfLiteType changed");
static_assert(static_cast<int>(EMBBERT_TFLM_INT8) == static_cast<int>(kTfLiteInt8), "TfLiteType changed");

namespace {

using Resolver = tflite::MicroMutableOpResolver<EMBBERT_TFLM_MAX_OPS>;

Resolver& OpResolver() {
  static Resolver resolver;
  return resolver;
}

// Records one event per operator of an Invoke (tflite::MicroProfiler would do
// it too, but its 4,096-event buffers take about 80 KB of RAM).
class EventProfiler : public tflite::MicroProfilerInterface {
 public:
  uint32_t BeginEvent(const char* tag) override {
    if (count_ >= EMBBERT_TFLM_MAX_EVENTS) return EMBBERT_TFLM_MAX_EVENTS;
    tags_[count_] = tag;
    ticks_[count_] = tflite::GetCurrentTimeTicks();
    return count_++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle < count_) ticks_[handle] = tflite::GetCurrentTimeTicks() - ticks_[handle];
  }
  void Clear() { count_ = 0; }
  uint32_t count() const { return count_; }
  const char* tag(uint32_t i) const { return tags_[i]; }
  uint32_t ticks(uint32_t i) const { return ticks_[i]; }

 private:
  const char* tags_[EMBBERT_TFLM_MAX_EVENTS] = {};
  uint32_t ticks_[EMBBERT_TFLM_MAX_EVENTS] = {};
  uint32_t count_ = 0;
  TF_LITE_REMOVE_VIRTUAL_DELETE
};

tflite::MicroInterpreter* g_interpreter = nullptr;
EventProfiler* g_profiler = nullptr;  // set by embbert_tflm_enable_profiling
bool g_init_done = false;
int g_init_result = -1;

int SetUp(const void* model_data, uint8_t* arena, size_t arena_bytes) {
  if (model_data == nullptr || arena == nullptr) {
    MicroPrintf("embbert_tflm_init: no model or no arena");
    return -1;
  }
  tflite::InitializeTarget();
  const tflite::Model* model = tflite::GetModel(model_data);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    MicroPrintf("embbert_tflm_init: model schema %d, the runtime supports %d",
                static_cast<int>(model->version()), TFLITE_SCHEMA_VERSION);
    return -1;
  }
  static tflite::MicroInterpreter interpreter(model, OpResolver(), arena,
                                              arena_bytes, nullptr, g_profiler);
  if (interpreter.AllocateTensors() != kTfLiteOk) {
    MicroPrintf("embbert_tflm_init: AllocateTensors failed (arena %u bytes)",
                static_cast<unsigned>(arena_bytes));
    return -1;
  }
  g_interpreter = &interpreter;
  return 0;
}

int View(const TfLiteTensor* t, EmbBertTflmTensor* view) {
  if (t == nullptr || view == nullptr || t->dims == nullptr ||
      t->dims->size > EMBBERT_TFLM_MAX_RANK) {
    return -1;
  }
  view->data = t->data.data;
  view->bytes = t->bytes;
  view->type = static_cast<int>(t->type);
  view->rank = t->dims->size;
  for (int i = 0; i < EMBBERT_TFLM_MAX_RANK; ++i) {
    view->dims[i] = i < t->dims->size ? t->dims->data[i] : 0;
  }
  view->scale = t->params.scale;
  view->zero_point = t->params.zero_point;
  return 0;
}

}  // namespace

extern "C" {

int embbert_tflm_init(const void* model_data, uint8_t* arena,
                      size_t arena_bytes) {
  if (!g_init_done) {
    g_init_result = SetUp(model_data, arena, arena_bytes);
    g_init_done = true;
  }
  return g_init_result;
}

size_t embbert_tflm_num_inputs(void) {
  return g_interpreter == nullptr ? 0 : g_interpreter->inputs_size();
}

size_t embbert_tflm_num_outputs(void) {
  return g_interpreter == nullptr ? 0 : g_interpreter->outputs_size();
}

int embbert_tflm_input(size_t index, EmbBertTflmTensor* tensor) {
  if (index >= embbert_tflm_num_inputs()) return -1;
  return View(g_interpreter->input(index), tensor);
}

int embbert_tflm_output(size_t index, EmbBertTflmTensor* tensor) {
  if (index >= embbert_tflm_num_outputs()) return -1;
  return View(g_interpreter->output(index), tensor);
}

int embbert_tflm_invoke(void) {
  if (g_interpreter == nullptr) return -1;
  if (g_profiler != nullptr) g_profiler->Clear();
  if (g_interpreter->Invoke() != kTfLiteOk) {
    MicroPrintf("embbert_tflm_invoke: Invoke failed");
    return -1;
  }
  return 0;
}

size_t embbert_tflm_arena_used_bytes(void) {
  return g_interpreter == nullptr ? 0 : g_interpreter->arena_used_bytes();
}

int embbert_tflm_set_log(void (*callback)(const char* message)) {
#ifdef EMBBERT_TFLM_HAS_LOG_CALLBACK
  RegisterDebugLogCallback(callback);
  return 0;
#else
  (void)callback;
  return -1;
#endif
}

void embbert_tflm_log(const char* message) { MicroPrintf("%s", message); }

int embbert_tflm_enable_profiling(void) {
  static EventProfiler profiler;
  if (g_init_done) {
    MicroPrintf("embbert_tflm_enable_profiling: call it before embbert_tflm_init");
    return -1;
  }
  g_profiler = &profiler;
  return 0;
}

size_t embbert_tflm_profile_events(void) {
  return g_profiler == nullptr ? 0 : g_profiler->count();
}

int embbert_tflm_profile_event(size_t index, const char** tag, uint32_t* ticks) {
  if (index >= embbert_tflm_profile_events() || tag == nullptr || ticks == nullptr) {
    return -1;
  }
  *tag = g_profiler->tag(static_cast<uint32_t>(index));
  *ticks = g_profiler->ticks(static_cast<uint32_t>(index));
  return 0;
}

// One function per operator, so that the linker keeps only the kernels of the
// operators the application registers (with -ffunction-sections/--gc-sections).
#define EMBBERT_TFLM_OP(name, method)                               \
  int embbert_tflm_add_##name(void) {                                \
    if (OpResolver().method() != kTfLiteOk) {                        \
      MicroPrintf("embbert_tflm: cannot register " #name             \
                  " (at most %d operators)", EMBBERT_TFLM_MAX_OPS);  \
      return -1;                                                     \
    }                                                                \
    return 0;                                                        \
  }

EMBBERT_TFLM_OP(abs, AddAbs)
EMBBERT_TFLM_OP(add, AddAdd)
EMBBERT_TFLM_OP(average_pool_2d, AddAveragePool2D)
EMBBERT_TFLM_OP(batch_matmul, AddBatchMatMul)
EMBBERT_TFLM_OP(concatenation, AddConcatenation)
EMBBERT_TFLM_OP(conv_2d, AddConv2D)
EMBBERT_TFLM_OP(cumsum, AddCumSum)
EMBBERT_TFLM_OP(depthwise_conv_2d, AddDepthwiseConv2D)
EMBBERT_TFLM_OP(dequantize, AddDequantize)
EMBBERT_TFLM_OP(div, AddDiv)
EMBBERT_TFLM_OP(exp, AddExp)
EMBBERT_TFLM_OP(expand_dims, AddExpandDims)
EMBBERT_TFLM_OP(fully_connected, AddFullyConnected)
EMBBERT_TFLM_OP(gather, AddGather)
EMBBERT_TFLM_OP(hard_swish, AddHardSwish)
EMBBERT_TFLM_OP(leaky_relu, AddLeakyRelu)
EMBBERT_TFLM_OP(log, AddLog)
EMBBERT_TFLM_OP(logistic, AddLogistic)
EMBBERT_TFLM_OP(max_pool_2d, AddMaxPool2D)
EMBBERT_TFLM_OP(maximum, AddMaximum)
EMBBERT_TFLM_OP(mean, AddMean)
EMBBERT_TFLM_OP(minimum, AddMinimum)
EMBBERT_TFLM_OP(mul, AddMul)
EMBBERT_TFLM_OP(neg, AddNeg)
EMBBERT_TFLM_OP(pack, AddPack)
EMBBERT_TFLM_OP(pad, AddPad)
EMBBERT_TFLM_OP(padv2, AddPadV2)
EMBBERT_TFLM_OP(quantize, AddQuantize)
EMBBERT_TFLM_OP(reduce_max, AddReduceMax)
EMBBERT_TFLM_OP(relu, AddRelu)
EMBBERT_TFLM_OP(reshape, AddReshape)
EMBBERT_TFLM_OP(rsqrt, AddRsqrt)
EMBBERT_TFLM_OP(select_v2, AddSelectV2)
EMBBERT_TFLM_OP(slice, AddSlice)
EMBBERT_TFLM_OP(softmax, AddSoftmax)
EMBBERT_TFLM_OP(split, AddSplit)
EMBBERT_TFLM_OP(sqrt, AddSqrt)
EMBBERT_TFLM_OP(square, AddSquare)
EMBBERT_TFLM_OP(squared_difference, AddSquaredDifference)
EMBBERT_TFLM_OP(squeeze, AddSqueeze)
EMBBERT_TFLM_OP(strided_slice, AddStridedSlice)
EMBBERT_TFLM_OP(sub, AddSub)
EMBBERT_TFLM_OP(sum, AddSum)
EMBBERT_TFLM_OP(tanh, AddTanh)
EMBBERT_TFLM_OP(transpose, AddTranspose)
EMBBERT_TFLM_OP(unpack, AddUnpack)

#undef EMBBERT_TFLM_OP

// The project's kernels (embbert_kernels.h: TFLM's reference results bit for bit, fewer instructions) for
// operators whose tensors are all int8; the generated embbert_ops.c calls these for such operators.
// -DEMBBERT_STOCK_KERNELS: TFLM's stock kernel of the build for all four. On ESP-IDF (ESP_PLATFORM)
// ADD and SOFTMAX keep esp-tflite-micro's kernels: those are ESP-NN's (esp_nn_add_elementwise_s8,
// esp_nn_softmax_s8), while its LOGISTIC and MEAN are TFLM's reference kernels.
#if defined(EMBBERT_STOCK_KERNELS)
#define EMBBERT_KERNEL_LOGISTIC
#define EMBBERT_KERNEL_MEAN
#define EMBBERT_KERNEL_SOFTMAX
#define EMBBERT_KERNEL_ADD
#else
#define EMBBERT_KERNEL_LOGISTIC embbert::Register_LOGISTIC_INT8_TABLE()
#define EMBBERT_KERNEL_MEAN embbert::Register_MEAN_INT8_LAST_AXIS()
#if defined(ESP_PLATFORM)
#define EMBBERT_KERNEL_SOFTMAX
#define EMBBERT_KERNEL_ADD
#else
#define EMBBERT_KERNEL_SOFTMAX embbert::Register_SOFTMAX_INT8_TABLE()
#define EMBBERT_KERNEL_ADD embbert::Register_ADD_INT8_TABLE()
#endif
#endif

#define EMBBERT_TFLM_INT8_OP(name, method, registration)             \
  int embbert_tflm_add_##name##_int8(void) {                         \
    if (OpResolver().method(registration) != kTfLiteOk) {            \
      MicroPrintf("embbert_tflm: cannot register " #name             \
                  " (at most %d operators)", EMBBERT_TFLM_MAX_OPS);  \
      return -1;                                                     \
    }                                                                \
    return 0;                                                        \
  }

EMBBERT_TFLM_INT8_OP(add, AddAdd, EMBBERT_KERNEL_ADD)
EMBBERT_TFLM_INT8_OP(logistic, AddLogistic, EMBBERT_KERNEL_LOGISTIC)
EMBBERT_TFLM_INT8_OP(mean, AddMean, EMBBERT_KERNEL_MEAN)
EMBBERT_TFLM_INT8_OP(softmax, AddSoftmax, EMBBERT_KERNEL_SOFTMAX)

#undef EMBBERT_TFLM_INT8_OP

int embbert_tflm_project_kernels(void) {
  int n = 0;
#if !defined(EMBBERT_STOCK_KERNELS)
  n |= EMBBERT_TFLM_KERNEL_LOGISTIC | EMBBERT_TFLM_KERNEL_MEAN;
#if !defined(ESP_PLATFORM)
  n |= EMBBERT_TFLM_KERNEL_SOFTMAX | EMBBERT_TFLM_KERNEL_ADD;
#endif
#endif
  return n;
}

}  // extern "C"
