/* EmbBERT on-device tokenizer (C99).
 *
 * Re-implements docs/tokenizer.md: byte-level BPE with the normaliser
 * NFD -> strip accents (drop Mn) -> lowercase, the GPT-2 pre-tokenisation
 * regex, pieces cut into chunks of at most 128 bytes, and the [CLS]/[SEP]
 * packing of the Python pipeline.  The tables (byte ids, merges, normalisation
 * and character classes) come from `embbert export` (generated/
 * embbert_tokenizer_tables.h/.c).
 *
 * Guarantees: no malloc, no recursion, a fixed stack frame (about 1 KB), all
 * buffers sized by the caller; any byte sequence is accepted (invalid UTF-8
 * is decoded like Python's bytes.decode("utf-8", "replace"); NUL bytes are
 * ordinary characters: the length is explicit).
 *
 * Text outside the supported normalisation (see docs/micro_app.md) is passed
 * through the normaliser unchanged.
 */
#ifndef EMBBERT_TOKENIZER_H_
#define EMBBERT_TOKENIZER_H_

#include <stddef.h>
#include <stdint.h>

/* EMBBERT_*_ID and EMBBERT_SEGMENT_*: generated from the Python tokenizer's
 * spec with the tables, so that the two sides cannot disagree. */
#include "embbert_tokenizer_tables.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes per BPE chunk (the Split(".{1,128}") pre-tokeniser). */
#define EMBBERT_TOK_CHUNK_BYTES 128

/* Tokenizes `len` bytes of `text` (no special tokens) and writes at most
 * `max_ids` ids to `ids`.  Stops reading as soon as `max_ids` ids exist, so
 * the cost is bounded by the output, not the input.  Returns the number of
 * ids written. */
size_t embbert_tokenize(const uint8_t *text, size_t len, int32_t *ids,
                        size_t max_ids);

/* Packs one text for the model: [CLS] + ids[:max_length-1], right-padded with
 * [PAD] to `max_length`; segment ids EMBBERT_SEGMENT_A for [CLS] and the
 * text, EMBBERT_SEGMENT_PAD for padding.  Both arrays hold `max_length` (>= 2) entries.  Returns the number
 * of real (non-padding) tokens, or 0 if max_length < 2. */
size_t embbert_encode_single(const uint8_t *text, size_t len,
                             int32_t *token_ids, int32_t *segment_ids,
                             size_t max_length);

/* Packs a pair: [CLS] A [SEP] B [SEP] with longest-first truncation (while
 * len(A)+len(B) > max_length-3 drop the last token of the longer, A on a
 * tie); segment ids EMBBERT_SEGMENT_A for [CLS] and A, EMBBERT_SEGMENT_B from
 * the first [SEP] on, EMBBERT_SEGMENT_PAD for padding.  Returns the number of real tokens, or 0 if max_length < 3. */
size_t embbert_encode_pair(const uint8_t *text_a, size_t len_a,
                           const uint8_t *text_b, size_t len_b,
                           int32_t *token_ids, int32_t *segment_ids,
                           size_t max_length);

#ifdef __cplusplus
}
#endif

#endif /* EMBBERT_TOKENIZER_H_ */
