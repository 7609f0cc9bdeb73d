/* EmbBERT on-device tokenizer: see embbert_tokenizer.h and docs/micro_app.md.
 *
 * Pipeline (a single pass, pull-based, bounded memory):
 *   bytes --UTF-8 decode (Python "replace")--> code points
 *         --normalise (tables: drop Mn, map, Hangul)--> code points (queue)
 *         --GPT-2 regex pre-tokeniser--> pieces
 *         --cut into <= 128-byte chunks--> BPE merges --> ids
 */
#include "embbert_tokenizer.h"

#include <string.h>

#include "embbert_tokenizer_tables.h"

#define TOK_EOS 0xFFFFFFFFu
#define TOK_QUEUE 16u /* power of two; >= 3 look-ahead + one expansion */

enum { CLS_OTHER = 0, CLS_LETTER = 1, CLS_NUMBER = 2, CLS_SPACE = 3 };

#if EMBBERT_TOK_NORM_MAX_OUT + 3 > 16
#error "normalisation expansion too large for the look-ahead queue"
#endif

typedef struct {
  const uint8_t *text;
  size_t len;
  size_t pos;
  uint32_t queue[TOK_QUEUE];
  unsigned head;
  unsigned count;
  /* current BPE chunk */
  uint8_t chunk[EMBBERT_TOK_CHUNK_BYTES];
  size_t chunk_len;
  /* output */
  int32_t *ids;
  size_t max_ids;
  size_t n_ids;
} Tok;

/* ---- UTF-8 decoding, maximal-subpart replacement like CPython ---------- */
static uint32_t decode_next(const uint8_t *s, size_t len, size_t *pos) {
  uint8_t b0 = s[*pos];
  uint32_t cp;
  unsigned need, i;
  uint8_t lo = 0x80, hi = 0xBF;
  *pos += 1;
  if (b0 < 0x80) return b0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
    cp = b0 & 0x1Fu;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    cp = b0 & 0x0Fu;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F; /* no surrogates */
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    cp = b0 & 0x07u;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F; /* <= U+10FFFF */
  } else {
    return 0xFFFDu;
  }
  for (i = 0; i < need; ++i) {
    uint8_t b;
    if (*pos >= len) return 0xFFFDu;
    b = s[*pos];
    if (b < lo || b > hi) return 0xFFFDu; /* b starts the next sequence */
    lo = 0x80;
    hi = 0xBF;
    cp = (cp << 6) | (uint32_t)(b & 0x3Fu);
    *pos += 1;
  }
  return cp;
}

/* ---- normalisation ----------------------------------------------------- */
static void queue_push(Tok *t, uint32_t cp) {
  /* callers guarantee room: count <= 3 before a code point is normalised */
  t->queue[(t->head + t->count) & (TOK_QUEUE - 1u)] = cp;
  t->count += 1;
}

static int in_drop_ranges(uint32_t cp) {
  size_t lo = 0, hi = EMBBERT_TOK_NUM_DROP;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (kEmbBertTokDropRanges[2 * mid + 1] < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo < EMBBERT_TOK_NUM_DROP && kEmbBertTokDropRanges[2 * lo] <= cp;
}

static void normalise_push(Tok *t, uint32_t cp) {
  size_t lo = 0, hi = EMBBERT_TOK_NUM_NORM;
  if (in_drop_ranges(cp)) return;
  if (cp >= 0xAC00u && cp <= 0xD7A3u) { /* Hangul syllable: canonical NFD */
    uint32_t s = cp - 0xAC00u;
    queue_push(t, 0x1100u + s / 588u);
    queue_push(t, 0x1161u + (s % 588u) / 28u);
    if (s % 28u != 0) queue_push(t, 0x11A7u + s % 28u);
    return;
  }
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if ((kEmbBertTokNormCps[mid] & 0xFFFFFFu) < cp) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < EMBBERT_TOK_NUM_NORM && (kEmbBertTokNormCps[lo] & 0xFFFFFFu) == cp) {
    size_t n = kEmbBertTokNormCps[lo] >> 24;
    size_t p = kEmbBertTokNormOffsets[lo];
    size_t end = p + n;
    while (p < end) { /* the pool is valid UTF-8 written by the exporter */
      queue_push(t, decode_next(kEmbBertTokNormPool, end, &p));
    }
    return;
  }
  queue_push(t, cp); /* identity, or outside the supported normalisation */
}

static uint32_t peek(Tok *t, unsigned k) {
  while (t->count <= k && t->pos < t->len) {
    normalise_push(t, decode_next(t->text, t->len, &t->pos));
  }
  if (t->count <= k) return TOK_EOS;
  return t->queue[(t->head + k) & (TOK_QUEUE - 1u)];
}

static uint32_t pop(Tok *t) {
  uint32_t cp = peek(t, 0);
  if (cp != TOK_EOS) {
    t->head = (t->head + 1u) & (TOK_QUEUE - 1u);
    t->count -= 1;
  }
  return cp;
}

static int char_class(uint32_t cp) {
  size_t lo = 0, hi = EMBBERT_TOK_NUM_CLASS;
  /* last start <= cp; kEmbBertTokClassStarts[0] == 0 */
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    if ((kEmbBertTokClassStarts[mid] & 0xFFFFFFu) <= cp) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return (int)(kEmbBertTokClassStarts[lo] >> 24);
}

/* ---- BPE ------------------------------------------------------------- */
/* Returns the rank of the merge (left, right), or 0xFFFFFFFF if none; *result
 * receives the merged id. */
static uint32_t merge_rank(uint16_t left, uint16_t right, uint16_t *result) {
  uint32_t key = ((uint32_t)left << 16) | right;
  size_t lo = 0, hi = EMBBERT_TOK_NUM_MERGES;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (kEmbBertTokMergePairs[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < EMBBERT_TOK_NUM_MERGES && kEmbBertTokMergePairs[lo] == key) {
    *result = kEmbBertTokMergeIds[lo];
    return kEmbBertTokMergeRanks[lo];
  }
  return 0xFFFFFFFFu;
}

static void emit(Tok *t, int32_t id) {
  if (t->n_ids < t->max_ids) t->ids[t->n_ids++] = id;
}

static void flush_chunk(Tok *t) {
  uint16_t sym[EMBBERT_TOK_CHUNK_BYTES];
  uint32_t rank[EMBBERT_TOK_CHUNK_BYTES];   /* rank of pair (i, i+1) */
  uint16_t merged[EMBBERT_TOK_CHUNK_BYTES]; /* its result */
  size_t n = t->chunk_len, i;
  if (n == 0) return;
  t->chunk_len = 0;
  for (i = 0; i < n; ++i) sym[i] = kEmbBertTokByteIds[t->chunk[i]];
  for (i = 0; i + 1 < n; ++i) rank[i] = merge_rank(sym[i], sym[i + 1], &merged[i]);
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = 0xFFFFFFFFu;
    for (i = 0; i + 1 < n; ++i) {
      if (rank[i] < best_rank) { /* strict: the leftmost of equal ranks */
        best_rank = rank[i];
        best = i;
      }
    }
    if (best_rank == 0xFFFFFFFFu) break;
    sym[best] = merged[best];
    for (i = best + 1; i + 1 < n; ++i) {
      sym[i] = sym[i + 1];
      if (i + 2 < n) {
        rank[i] = rank[i + 1];
        merged[i] = merged[i + 1];
      }
    }
    n -= 1;
    if (best > 0) rank[best - 1] = merge_rank(sym[best - 1], sym[best], &merged[best - 1]);
    if (best + 1 < n) rank[best] = merge_rank(sym[best], sym[best + 1], &merged[best]);
  }
  for (i = 0; i < n; ++i) emit(t, (int32_t)sym[i]);
}

static void add_cp(Tok *t, uint32_t cp) {
  uint8_t buf[4];
  size_t n, i;
  if (cp < 0x80u) {
    buf[0] = (uint8_t)cp;
    n = 1;
  } else if (cp < 0x800u) {
    buf[0] = (uint8_t)(0xC0u | (cp >> 6));
    buf[1] = (uint8_t)(0x80u | (cp & 0x3Fu));
    n = 2;
  } else if (cp < 0x10000u) {
    buf[0] = (uint8_t)(0xE0u | (cp >> 12));
    buf[1] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
    buf[2] = (uint8_t)(0x80u | (cp & 0x3Fu));
    n = 3;
  } else {
    buf[0] = (uint8_t)(0xF0u | (cp >> 18));
    buf[1] = (uint8_t)(0x80u | ((cp >> 12) & 0x3Fu));
    buf[2] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
    buf[3] = (uint8_t)(0x80u | (cp & 0x3Fu));
    n = 4;
  }
  for (i = 0; i < n; ++i) {
    t->chunk[t->chunk_len++] = buf[i];
    if (t->chunk_len == EMBBERT_TOK_CHUNK_BYTES) flush_chunk(t);
  }
}

static int full(const Tok *t) { return t->n_ids >= t->max_ids; }

/* One regex match per iteration, in the order of the alternatives of
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void pretokenize(Tok *t) {
  while (!full(t)) {
    uint32_t c0 = peek(t, 0), c1;
    int k0, k;
    if (c0 == TOK_EOS) break;
    c1 = peek(t, 1);
    if (c0 == '\'') {
      unsigned n = 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        n = 2;
      } else if (c1 == 'r' || c1 == 'v' || c1 == 'l') {
        uint32_t c2 = peek(t, 2);
        if ((c1 != 'l' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) n = 3;
      }
      if (n > 0) {
        while (n-- > 0) add_cp(t, pop(t));
        flush_chunk(t);
        continue;
      }
    }
    k0 = char_class(c0);
    if (k0 != CLS_SPACE || (c0 == ' ' && c1 != TOK_EOS && char_class(c1) != CLS_SPACE)) {
      /* ' ?\p{L}+', ' ?\p{N}+' or ' ?[^\s\p{L}\p{N}]+' */
      if (k0 == CLS_SPACE) add_cp(t, pop(t));
      k = char_class(peek(t, 0));
      while (!full(t)) {
        uint32_t c = peek(t, 0);
        if (c == TOK_EOS || char_class(c) != k) break;
        add_cp(t, pop(t));
      }
      flush_chunk(t);
      continue;
    }
    /* '\s+(?!\S)' then '\s+' */
    {
      size_t run = 0;
      while (!full(t)) {
        uint32_t next = peek(t, 1);
        if (next == TOK_EOS) { /* the run reaches the end: all of it */
          add_cp(t, pop(t));
          break;
        }
        if (char_class(next) == CLS_SPACE) {
          add_cp(t, pop(t));
          run += 1;
          continue;
        }
        /* the current char is the last of the run and a non-space follows */
        if (run == 0) add_cp(t, pop(t)); /* '\s+' of one char */
        break;
      }
      flush_chunk(t);
    }
  }
}

size_t embbert_tokenize(const uint8_t *text, size_t len, int32_t *ids, size_t max_ids) {
  Tok t;
  if (ids == NULL || max_ids == 0) return 0;
  if (text == NULL) len = 0;
  memset(&t, 0, sizeof(t));
  t.text = text;
  t.len = len;
  t.ids = ids;
  t.max_ids = max_ids;
  pretokenize(&t);
  return t.n_ids;
}

size_t embbert_encode_single(const uint8_t *text, size_t len, int32_t *token_ids,
                             int32_t *segment_ids, size_t max_length) {
  size_t n, i;
  if (token_ids == NULL || segment_ids == NULL || max_length < 2) return 0;
  token_ids[0] = EMBBERT_CLS_ID;
  n = 1 + embbert_tokenize(text, len, token_ids + 1, max_length - 1);
  for (i = 0; i < max_length; ++i) {
    if (i >= n) token_ids[i] = EMBBERT_PAD_ID;
    segment_ids[i] = i < n ? EMBBERT_SEGMENT_A : EMBBERT_SEGMENT_PAD;
  }
  return n;
}

size_t embbert_encode_pair(const uint8_t *text_a, size_t len_a, const uint8_t *text_b,
                           size_t len_b, int32_t *token_ids, int32_t *segment_ids,
                           size_t max_length) {
  size_t budget, na, nb, i, n;
  if (token_ids == NULL || segment_ids == NULL || max_length < 3) return 0;
  budget = max_length - 3;
  /* A goes straight to its place; B waits in segment_ids.  Capping both at
   * the budget does not change the longest-first result. */
  na = budget ? embbert_tokenize(text_a, len_a, token_ids + 1, budget) : 0;
  nb = budget ? embbert_tokenize(text_b, len_b, segment_ids, budget) : 0;
  while (na + nb > budget) {
    if (na >= nb) {
      na -= 1;
    } else {
      nb -= 1;
    }
  }
  token_ids[0] = EMBBERT_CLS_ID;
  token_ids[1 + na] = EMBBERT_SEP_ID;
  for (i = 0; i < nb; ++i) token_ids[2 + na + i] = segment_ids[i];
  n = 3 + na + nb;
  token_ids[n - 1] = EMBBERT_SEP_ID;
  for (i = 0; i < max_length; ++i) {
    if (i >= n) token_ids[i] = EMBBERT_PAD_ID;
    segment_ids[i] = i >= n ? EMBBERT_SEGMENT_PAD : (i <= na ? EMBBERT_SEGMENT_A : EMBBERT_SEGMENT_B);
  }
  return n;
}
