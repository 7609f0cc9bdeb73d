/* EmbBERT classifier on TensorFlow Lite Micro: raw text in, label out.
 * The tokenizer (embbert_tokenizer.c) and the model both run on the device.
 * Plain C (C99 and any C++): TFLM itself is reached only through
 * embbert_tflm.h, so this compiles with the Arduino core's gnu++14. */
#ifndef EMBBERT_CLASSIFIER_H_
#define EMBBERT_CLASSIFIER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum EmbBertStatus { kEmbBertOk = 0, kEmbBertError = 1 } EmbBertStatus;

typedef struct EmbBertResult {
  int label;           /* argmax index (0 for a regression model) */
  float score;         /* dequantised logit of `label` (the value for regression) */
  size_t num_tokens;   /* real tokens, [CLS] and [SEP] included */
} EmbBertResult;

/* Registers the model's operators and sets up the interpreter on the static
 * tensor arena (size from model_settings.h). Safe to call again: later calls
 * return the first result. */
EmbBertStatus EmbBertInit(void);

/* Tokenizes `len` bytes of UTF-8 text (any bytes accepted), runs the model. */
EmbBertStatus EmbBertClassify(const char* text, size_t len, EmbBertResult* result);

/* Same for a text pair ([CLS] A [SEP] B [SEP]). */
EmbBertStatus EmbBertClassifyPair(const char* text_a, size_t len_a,
                                  const char* text_b, size_t len_b,
                                  EmbBertResult* result);

/* Arena bytes actually used after AllocateTensors() (0 before EmbBertInit). */
size_t EmbBertArenaUsedBytes(void);

/* Name of a label (from model_settings.h), "?" when out of range. */
const char* EmbBertLabelName(int label);

/* Sends TFLM's and EmbBERT's messages to `callback` (call before EmbBertInit).
 * Needed on TFLM's cortex_m_generic target (Arduino Nano 33 BLE), where they
 * otherwise go nowhere; elsewhere TFLM prints them itself. Returns kEmbBertOk
 * when the callback was installed. */
EmbBertStatus EmbBertSetLog(void (*callback)(const char* message));

/* Per-operator profile (embbert_tflm.h): call before EmbBertInit. Then
 * EmbBertLogProfile() prints the last classification's operators through the
 * log, one line each, "profile,<index>,<operator>,<ticks>", and
 * "profile,total,<ticks>" (ticks: CPU cycles on a Cortex-M, DWT counter). */
EmbBertStatus EmbBertEnableProfiling(void);
void EmbBertLogProfile(void);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* EMBBERT_CLASSIFIER_H_ */
