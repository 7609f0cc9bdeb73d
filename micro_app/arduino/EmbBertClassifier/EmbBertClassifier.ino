// EmbBERT on Arduino (Nano 33 BLE / any Cortex-M4F with enough RAM).
// Reads one line of text from Serial, prints label, score, latency in ms and
// MicroInterpreter::arena_used_bytes(). The library (this sketch's parent
// folder, from `embbert export RUN_DIR --target arduino`) and a TFLM Arduino
// library (docs/arduino.md) must be installed.
#include <Arduino.h>

#include <EmbBERT.h>

#include "tensorflow/lite/micro/system_setup.h"
#if !defined(ARDUINO_ARCH_ESP32) && !defined(EMBBERT_NO_DEBUG_LOG_CALLBACK)
// TFLM's cortex_m_generic target drops every MicroPrintf message until the
// application registers where they go.
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#define EMBBERT_HAVE_DEBUG_LOG_CALLBACK 1
#endif

namespace {
constexpr size_t kLineMax = 1024;  // longer lines are cut; only L-1 tokens count
char g_line[kLineMax];
size_t g_len = 0;
}  // namespace

#ifdef EMBBERT_HAVE_DEBUG_LOG_CALLBACK
extern "C" void EmbBertDebugLog(const char* s) { Serial.print(s); }
#endif

void setup() {
  Serial.begin(115200);
  while (!Serial) {
  }
#ifdef EMBBERT_HAVE_DEBUG_LOG_CALLBACK
  RegisterDebugLogCallback(EmbBertDebugLog);
#endif
  tflite::InitializeTarget();
  if (EmbBertInit() != kTfLiteOk) {
    Serial.println("EmbBERT: set-up failed (see the messages above)");
    return;
  }
  Serial.print("EmbBERT ready: arena ");
  Serial.print(static_cast<unsigned long>(kEmbBertTensorArenaSize));
  Serial.print(" bytes, arena_used_bytes() = ");
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
    Serial.print(" tokens=");
    Serial.print(static_cast<unsigned long>(result.num_tokens));
    Serial.print(" latency_ms=");
    Serial.print(elapsed);
    Serial.print(" arena_used=");
    Serial.println(static_cast<unsigned long>(EmbBertArenaUsedBytes()));
  }
}
