// EmbBERT on Arduino (Nano 33 BLE / any Cortex-M4F with enough RAM).
// Reads one line of text from Serial, prints label, score, latency in ms and
// the arena bytes used. Copy micro_app/src/* and micro_app/generated/* next to
// this file first (see docs/micro_app.md).
#include <Arduino.h>

#include "embbert_classifier.h"
#include "tensorflow/lite/micro/system_setup.h"

namespace {
constexpr size_t kLineMax = 1024;  // longer lines are cut; only L-1 tokens count
char g_line[kLineMax];
size_t g_len = 0;
}  // namespace

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
  tflite::InitializeTarget();
  if (EmbBertInit() != kTfLiteOk) {
    Serial.println("EmbBERT: set-up failed (see messages above)");
    return;
  }
  Serial.print("EmbBERT ready, arena used: ");
  Serial.println(static_cast<unsigned long>(EmbBertArenaUsedBytes()));
}

void loop() {
  while (Serial.available() > 0) {
    int c = Serial.read();
    if (c == '\r') continue;
    if (c != '\n') {
      if (g_len < kLineMax) g_line[g_len++] = static_cast<char>(c);
      continue;
    }
    EmbBertResult result;
    unsigned long start = millis();
    TfLiteStatus status = EmbBertClassify(g_line, g_len, &result);
    unsigned long elapsed = millis() - start;
    g_len = 0;
    if (status != kTfLiteOk) {
      Serial.println("error: classification failed");
      continue;
    }
    Serial.print("label=");
    Serial.print(EmbBertLabelName(result.label));
    Serial.print(" score=");
    Serial.print(result.score, 4);
    Serial.print(" latency_ms=");
    Serial.print(elapsed);
    Serial.print(" arena_used=");
    Serial.println(static_cast<unsigned long>(EmbBertArenaUsedBytes()));
  }
}
