// EmbBERT on Arduino (Nano 33 BLE, Cortex-M4F with the mbed core).
// Reads one line of text from Serial, prints label, score, latency in ms and
// MicroInterpreter::arena_used_bytes(). Needs the EmbBERT library (this
// sketch's parent folder, from `embbert export RUN_DIR --target arduino`) and
// the precompiled EmbBERT_TFLM library (docs/arduino.md).
#include <Arduino.h>
#include <string.h>

#include <EmbBERT.h>

// Uncomment for a per-operator profile: the line "!profile" then prints the
// operators of the last classification with their CPU cycles (DWT counter).
// #define EMBBERT_PROFILE 1

namespace {
constexpr size_t kLineMax = 1024;  // longer lines are cut; only L-1 tokens count
constexpr unsigned long kSerialWaitMs = 3000;  // then run on without a monitor
char g_line[kLineMax];
size_t g_len = 0;
bool g_ready = false;
}  // namespace

// TFLM's cortex_m_generic target drops its messages until told where they go.
extern "C" void EmbBertPrintLog(const char* s) { Serial.print(s); }

void setup() {
  Serial.begin(115200);
  const unsigned long start = millis();
  while (!Serial && millis() - start < kSerialWaitMs) {
  }
  EmbBertSetLog(EmbBertPrintLog);
#ifdef EMBBERT_PROFILE
  EmbBertEnableProfiling();
#endif
  if (EmbBertInit() != kEmbBertOk) {
    Serial.println("EmbBERT: set-up failed (see the messages above)");
    return;
  }
  g_ready = true;
  Serial.print("EmbBERT ready: arena ");
  Serial.print(static_cast<unsigned long>(kEmbBertTensorArenaSize));
  Serial.print(" bytes, arena_used_bytes() = ");
  Serial.println(static_cast<unsigned long>(EmbBertArenaUsedBytes()));
}

void loop() {
  while (g_ready && Serial.available() > 0) {
    int c = Serial.read();
    if (c == '\r') continue;
    if (c != '\n') {
      if (g_len < kLineMax) g_line[g_len++] = static_cast<char>(c);
      continue;
    }
#ifdef EMBBERT_PROFILE
    if (g_len == 8 && memcmp(g_line, "!profile", 8) == 0) {
      g_len = 0;
      EmbBertLogProfile();
      continue;
    }
#endif
    EmbBertResult result;
    unsigned long start = millis();
    EmbBertStatus status = EmbBertClassify(g_line, g_len, &result);
    unsigned long elapsed = millis() - start;
    g_len = 0;
    if (status != kEmbBertOk) {
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
