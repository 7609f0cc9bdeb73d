// EmbBERT text classifier for Arduino: the library's main header.
// Needs a TensorFlow Lite Micro Arduino library with BATCH_MATMUL
// (docs/arduino.md says how to make one from tflite-micro).
#ifndef EMBBERT_ARDUINO_H_
#define EMBBERT_ARDUINO_H_

#include "embbert_classifier.h"
#include "model_settings.h"

#endif  // EMBBERT_ARDUINO_H_
