// EmbBERT on ESP32: reads a line from the console, prints label, score,
// latency in ms and the arena bytes used. Built with -DEMBBERT_PROFILE (or the
// define below), the line "!profile" prints the operators of the last
// classification with their ticks.
#include <stdio.h>
#include <string.h>

#include "embbert_classifier.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

namespace {
constexpr size_t kLineMax = 1024;
char g_line[kLineMax];
}  // namespace

// #define EMBBERT_PROFILE 1

extern "C" void app_main(void) {
#ifdef EMBBERT_PROFILE
  EmbBertEnableProfiling();
#endif
  if (EmbBertInit() != kEmbBertOk) {
    printf("EmbBERT: set-up failed (see messages above)\n");
    return;
  }
  printf("EmbBERT ready, arena used: %u bytes. Type a line.\n",
         static_cast<unsigned>(EmbBertArenaUsedBytes()));
  size_t len = 0;
  while (true) {
    int c = getchar();
    if (c == EOF) {
      vTaskDelay(pdMS_TO_TICKS(10));
      continue;
    }
    if (c == '\r') continue;
    if (c != '\n') {
      if (len < kLineMax) g_line[len++] = static_cast<char>(c);
      continue;
    }
#ifdef EMBBERT_PROFILE
    if (len == 8 && memcmp(g_line, "!profile", 8) == 0) {
      len = 0;
      EmbBertLogProfile();
      continue;
    }
#endif
    EmbBertResult result;
    int64_t start = esp_timer_get_time();
    EmbBertStatus status = EmbBertClassify(g_line, len, &result);
    int64_t elapsed_us = esp_timer_get_time() - start;
    len = 0;
    if (status != kEmbBertOk) {
      printf("error: classification failed\n");
      continue;
    }
    printf("label=%s score=%.4f latency_ms=%.1f arena_used=%u\n",
           EmbBertLabelName(result.label), static_cast<double>(result.score),
           elapsed_us / 1000.0, static_cast<unsigned>(EmbBertArenaUsedBytes()));
  }
}
