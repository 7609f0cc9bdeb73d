// EmbBERT classifier on TensorFlow Lite Micro: raw text in, label out.
// The tokenizer (embbert_tokenizer.c) and the model both run on the device.
#ifndef EMBBERT_CLASSIFIER_H_
#define EMBBERT_CLASSIFIER_H_

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c/common.h"

struct EmbBertResult {
  int label;           // argmax index (0 for a regression model)
  float score;         // dequantised logit of `label` (the value for regression)
  size_t num_tokens;   // real tokens, [CLS] and [SEP] included
};

// Sets up the interpreter on the static tensor arena (size from
// model_settings.h). Safe to call again: later calls return the first result.
TfLiteStatus EmbBertInit();

// Tokenizes `len` bytes of UTF-8 text (any bytes accepted), runs the model.
TfLiteStatus EmbBertClassify(const char* text, size_t len, EmbBertResult* result);

// Same for a text pair ([CLS] A [SEP] B [SEP]).
TfLiteStatus EmbBertClassifyPair(const char* text_a, size_t len_a,
                                 const char* text_b, size_t len_b,
                                 EmbBertResult* result);

// Arena bytes actually used after AllocateTensors() (0 before EmbBertInit).
size_t EmbBertArenaUsedBytes();

// Name of a label (from model_settings.h), "?" when out of range.
const char* EmbBertLabelName(int label);

#endif  // EMBBERT_CLASSIFIER_H_
