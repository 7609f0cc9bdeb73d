/* EmbBERT classifier (see embbert_classifier.h): tokenizer -> TFLM -> argmax,
 * through the C interface of embbert_tflm.h. */
#include "embbert_classifier.h"

#include <stdio.h>

#include "embbert_ops.h"
#include "embbert_postprocess.h"
#include "embbert_tflm.h"
#include "embbert_tokenizer.h"
#include "model_data.h"
#include "model_settings.h"

static _Alignas(16) uint8_t g_tensor_arena[kEmbBertTensorArenaSize];
static int32_t* g_token_ids = NULL;
static int32_t* g_segment_ids = NULL;
static int8_t* g_logits = NULL;
static int g_init_done = 0;
static EmbBertStatus g_init_status = kEmbBertError;

static int IsIdInput(const EmbBertTflmTensor* t) {
  return t->type == EMBBERT_TFLM_INT32 && t->rank == 2 && t->dims[0] == 1 &&
         t->dims[1] == kEmbBertMaxLength;
}

static EmbBertStatus SetUp(void) {
  EmbBertTflmTensor tokens, segments, out;
  if (embbert_register_ops() != 0) {
    embbert_tflm_log("EmbBERT: registering the model's operators failed");
    return kEmbBertError;
  }
  if (embbert_tflm_init(g_embbert_model_data, g_tensor_arena, sizeof(g_tensor_arena)) != 0) {
    embbert_tflm_log("EmbBERT: TFLM set-up failed (see above)");
    return kEmbBertError;
  }
  if (embbert_tflm_num_inputs() != 2 || embbert_tflm_num_outputs() != 1) {
    embbert_tflm_log("EmbBERT: expected 2 inputs and 1 output");
    return kEmbBertError;
  }
  if (embbert_tflm_input(kEmbBertTokenIdsInput, &tokens) != 0 || !IsIdInput(&tokens) ||
      embbert_tflm_input(kEmbBertSegmentIdsInput, &segments) != 0 || !IsIdInput(&segments)) {
    embbert_tflm_log("EmbBERT: token_ids and segment_ids must be int32 [1, kEmbBertMaxLength]");
    return kEmbBertError;
  }
  if (embbert_tflm_output(0, &out) != 0 || out.type != EMBBERT_TFLM_INT8 || out.rank < 1 ||
      out.dims[out.rank - 1] != kEmbBertNumLabels) {
    embbert_tflm_log("EmbBERT: the output is not int8 [1, kEmbBertNumLabels]");
    return kEmbBertError;
  }
  g_token_ids = (int32_t*)tokens.data;
  g_segment_ids = (int32_t*)segments.data;
  g_logits = (int8_t*)out.data;
  return kEmbBertOk;
}

static EmbBertStatus Run(EmbBertResult* result) {
  int best;
  if (embbert_tflm_invoke() != 0) return kEmbBertError;
  best = embbert_argmax_int8(g_logits, kEmbBertNumLabels);
  if (best < 0) return kEmbBertError;
  result->label = best;
  result->score = embbert_dequantize_int8(g_logits[best], kEmbBertOutputScale,
                                          kEmbBertOutputZeroPoint);
  return kEmbBertOk;
}

EmbBertStatus EmbBertInit(void) {
  if (!g_init_done) {
    g_init_status = SetUp();
    g_init_done = 1;
  }
  return g_init_status;
}

EmbBertStatus EmbBertClassify(const char* text, size_t len, EmbBertResult* result) {
  if (result == NULL || EmbBertInit() != kEmbBertOk) return kEmbBertError;
  result->num_tokens = embbert_encode_single((const uint8_t*)text, len, g_token_ids,
                                             g_segment_ids, kEmbBertMaxLength);
  return Run(result);
}

EmbBertStatus EmbBertClassifyPair(const char* text_a, size_t len_a, const char* text_b,
                                  size_t len_b, EmbBertResult* result) {
  if (result == NULL || EmbBertInit() != kEmbBertOk) return kEmbBertError;
  result->num_tokens = embbert_encode_pair((const uint8_t*)text_a, len_a,
                                           (const uint8_t*)text_b, len_b, g_token_ids,
                                           g_segment_ids, kEmbBertMaxLength);
  return Run(result);
}

size_t EmbBertArenaUsedBytes(void) { return embbert_tflm_arena_used_bytes(); }

const char* EmbBertLabelName(int label) {
  if (label < 0 || label >= kEmbBertNumLabels) return "?";
  return kEmbBertLabelNames[label];
}

EmbBertStatus EmbBertSetLog(void (*callback)(const char* message)) {
  return embbert_tflm_set_log(callback) == 0 ? kEmbBertOk : kEmbBertError;
}

EmbBertStatus EmbBertEnableProfiling(void) {
  return embbert_tflm_enable_profiling() == 0 ? kEmbBertOk : kEmbBertError;
}

void EmbBertLogProfile(void) {
  char line[96];
  const char* tag;
  uint32_t ticks, total = 0;
  size_t i, n = embbert_tflm_profile_events();
  for (i = 0; i < n; ++i) {
    if (embbert_tflm_profile_event(i, &tag, &ticks) != 0) break;
    total += ticks;
    snprintf(line, sizeof(line), "profile,%u,%s,%lu", (unsigned)i, tag ? tag : "?", (unsigned long)ticks);
    embbert_tflm_log(line);
  }
  snprintf(line, sizeof(line), "profile,total,%lu", (unsigned long)total);
  embbert_tflm_log(line);
}
