/* A small C interface to one TensorFlow Lite Micro interpreter.
 *
 * Why C: TFLM needs C++17, while the Arduino mbed core compiles sketches and
 * libraries as gnu++14. The C++ side (embbert_tflm.cc) is compiled once with
 * TFLM (for Arduino: into the precompiled library that
 * micro_app/tools/tflm_arduino_library.py makes); everything else (the
 * classifier, the tokenizer, the model array) only needs this header.
 *
 * Use: call the embbert_tflm_add_<operator>() functions the model needs (the
 * generated embbert_ops.c does), then embbert_tflm_init(), then fill the
 * inputs, embbert_tflm_invoke(), read the outputs. Only the operator functions
 * the application calls are linked (each is its own section). Every function
 * returns 0 on success and -1 on failure (with a message through the log). */
#ifndef EMBBERT_TFLM_H_
#define EMBBERT_TFLM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tensor element types: the values of TFLM's TfLiteType (checked at compile
 * time in embbert_tflm.cc). */
enum {
  EMBBERT_TFLM_FLOAT32 = 1,
  EMBBERT_TFLM_INT32 = 2,
  EMBBERT_TFLM_INT16 = 7,
  EMBBERT_TFLM_INT8 = 9
};

enum { EMBBERT_TFLM_MAX_RANK = 6 };

/* A view of one input or output tensor (valid after embbert_tflm_init). */
typedef struct EmbBertTflmTensor {
  void* data;        /* the tensor's bytes in the arena */
  size_t bytes;      /* their count */
  int type;          /* EMBBERT_TFLM_* */
  int rank;          /* number of dimensions, at most EMBBERT_TFLM_MAX_RANK */
  int dims[EMBBERT_TFLM_MAX_RANK];
  float scale;       /* per-tensor quantisation: real = scale * (q - zero_point) */
  int32_t zero_point;
} EmbBertTflmTensor;

/* Builds the interpreter for `model_data` (a .tflite FlatBuffer, 16-byte
 * aligned) on `arena` (16-byte aligned, `arena_bytes` long) and allocates its
 * tensors. Later calls return the first call's result. */
int embbert_tflm_init(const void* model_data, uint8_t* arena, size_t arena_bytes);

size_t embbert_tflm_num_inputs(void);
size_t embbert_tflm_num_outputs(void);
int embbert_tflm_input(size_t index, EmbBertTflmTensor* tensor);
int embbert_tflm_output(size_t index, EmbBertTflmTensor* tensor);
int embbert_tflm_invoke(void);

/* MicroInterpreter::arena_used_bytes() (0 before a successful init). */
size_t embbert_tflm_arena_used_bytes(void);

/* Where TFLM's messages go. On TFLM's cortex_m_generic target they go nowhere
 * until this is called (returns 0); elsewhere TFLM prints them itself and this
 * returns -1. */
int embbert_tflm_set_log(void (*callback)(const char* message));

/* Prints one message through TFLM's log (MicroPrintf). */
void embbert_tflm_log(const char* message);

/* Per-operator profile of the last embbert_tflm_invoke(), through TFLM's
 * MicroProfilerInterface: one event per operator with its name and its ticks
 * (tflite::GetCurrentTimeTicks(): the DWT cycle counter on TFLM's
 * cortex_m_generic target, clock() ticks on the host). Call
 * embbert_tflm_enable_profiling() before embbert_tflm_init(); it holds up to
 * EMBBERT_TFLM_MAX_EVENTS (256 unless the library was built with another
 * -DEMBBERT_TFLM_MAX_EVENTS) events in 3 KB of RAM, linked only when called. */
int embbert_tflm_enable_profiling(void);
size_t embbert_tflm_profile_events(void);
int embbert_tflm_profile_event(size_t index, const char** tag, uint32_t* ticks);

/* Operator registration, one function per TFLM builtin operator. The resolver
 * holds EMBBERT_TFLM_MAX_OPS operators (24 unless the library was built with
 * another -DEMBBERT_TFLM_MAX_OPS). */
int embbert_tflm_add_abs(void);
int embbert_tflm_add_add(void);
int embbert_tflm_add_average_pool_2d(void);
int embbert_tflm_add_batch_matmul(void);
int embbert_tflm_add_concatenation(void);
int embbert_tflm_add_conv_2d(void);
int embbert_tflm_add_cumsum(void);
int embbert_tflm_add_depthwise_conv_2d(void);
int embbert_tflm_add_dequantize(void);
int embbert_tflm_add_div(void);
int embbert_tflm_add_exp(void);
int embbert_tflm_add_expand_dims(void);
int embbert_tflm_add_fully_connected(void);
int embbert_tflm_add_gather(void);
int embbert_tflm_add_hard_swish(void);
int embbert_tflm_add_leaky_relu(void);
int embbert_tflm_add_log(void);
int embbert_tflm_add_logistic(void);
int embbert_tflm_add_max_pool_2d(void);
int embbert_tflm_add_maximum(void);
int embbert_tflm_add_mean(void);
int embbert_tflm_add_minimum(void);
int embbert_tflm_add_mul(void);
int embbert_tflm_add_neg(void);
int embbert_tflm_add_pack(void);
int embbert_tflm_add_pad(void);
int embbert_tflm_add_padv2(void);
int embbert_tflm_add_quantize(void);
int embbert_tflm_add_reduce_max(void);
int embbert_tflm_add_relu(void);
int embbert_tflm_add_reshape(void);
int embbert_tflm_add_rsqrt(void);
int embbert_tflm_add_select_v2(void);
int embbert_tflm_add_slice(void);
int embbert_tflm_add_softmax(void);
int embbert_tflm_add_split(void);
int embbert_tflm_add_sqrt(void);
int embbert_tflm_add_square(void);
int embbert_tflm_add_squared_difference(void);
int embbert_tflm_add_squeeze(void);
int embbert_tflm_add_strided_slice(void);
int embbert_tflm_add_sub(void);
int embbert_tflm_add_sum(void);
int embbert_tflm_add_tanh(void);
int embbert_tflm_add_transpose(void);
int embbert_tflm_add_unpack(void);

/* The same operators with the project's kernels (embbert_kernels.h: int8, TFLM's
 * reference results bit for bit, fewer instructions), for operators whose
 * tensors are all int8 (the generated embbert_ops.c calls these only then).
 * Which operators get them is fixed when this library is compiled:
 *   default                  LOGISTIC, SOFTMAX, MEAN and ADD;
 *   ESP-IDF (ESP_PLATFORM)   LOGISTIC and MEAN (esp-tflite-micro's ADD and
 *                            SOFTMAX are ESP-NN kernels and stay);
 *   -DEMBBERT_STOCK_KERNELS  none: each registers TFLM's stock kernel. */
int embbert_tflm_add_add_int8(void);
int embbert_tflm_add_logistic_int8(void);
int embbert_tflm_add_mean_int8(void);
int embbert_tflm_add_softmax_int8(void);

/* Which operators this build registers with the project's kernels: a mask of
 * EMBBERT_TFLM_KERNEL_* (0 when compiled with -DEMBBERT_STOCK_KERNELS). */
enum {
  EMBBERT_TFLM_KERNEL_LOGISTIC = 1,
  EMBBERT_TFLM_KERNEL_SOFTMAX = 2,
  EMBBERT_TFLM_KERNEL_MEAN = 4,
  EMBBERT_TFLM_KERNEL_ADD = 8
};
int embbert_tflm_project_kernels(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* EMBBERT_TFLM_H_ */
