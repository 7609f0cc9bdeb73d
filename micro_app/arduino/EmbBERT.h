// EmbBERT text classifier for Arduino: the library's main header.
// Plain C / C++14: TFLM is reached through the C interface embbert_tflm.h of
// the precompiled EmbBERT_TFLM library (docs/arduino.md says how to make it).
#ifndef EMBBERT_ARDUINO_H_
#define EMBBERT_ARDUINO_H_

#include "embbert_classifier.h"
#include "model_settings.h"

#endif  // EMBBERT_ARDUINO_H_
