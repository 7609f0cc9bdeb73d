"""Model inputs from token ids: the one packer of fine-tuning and the stream packer of pretraining.

Fine-tuning rule (also in docs/tokenizer.md, and in micro_app/src/embbert_tokenizer.c):
* single text: `[CLS] + A[:L-1]`, right-padded with [PAD]=0 to L;
* pair: `[CLS] A [SEP] B [SEP]`; while len(A) + len(B) > L - 3, drop the last token of
  the longer one (A on a tie);
* segment ids: 1 for [CLS] and A, 2 from the first [SEP] onwards, 0 for padding.

`pack_batch` implements it on whole batches with numpy; `pack` (one example) and
`encode_texts` (texts -> arrays) go through it.

Pretraining (`pack_sequences`): "full" joins the lines into one stream with [SEP] after each
line and cuts it into `[CLS] t1 .. t_{L-1}`; "lines" puts one line per sequence.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np

from embbert.core.errors import EmbBertError

from .bpe import as_tokenizer
from .spec import CLS_ID, PAD_ID, SEGMENT_A, SEGMENT_B, SEGMENT_PAD, SEP_ID


def check_length(max_length: int, pair: bool) -> None:
    """Refuse a max length that cannot hold [CLS] (and two [SEP]) plus one token."""
    minimum = 3 if pair else 2
    if not isinstance(max_length, (int, np.integer)) or max_length < minimum:
        raise EmbBertError(
            f"max length must be an integer >= {minimum} for {'text pairs' if pair else 'single texts'}, got {max_length!r}"
        )


def truncate_pair(len_a, len_b, budget: int):
    """Longest-first truncation, A kept on a tie: the kept lengths of A and B (the closed form of removing
    one token at a time from the longer one). Ints give ints, arrays (one length per example) arrays."""
    budget = max(budget, 0)
    keep_a = np.minimum(len_a, np.maximum(budget - np.asarray(len_b), budget // 2))
    keep_b = np.minimum(len_b, budget - keep_a)
    if np.ndim(keep_a) == 0:
        return int(keep_a), int(keep_b)
    return keep_a, keep_b


def _lengths(rows: Sequence[Sequence[int]]) -> np.ndarray:
    return np.fromiter((len(r) for r in rows), np.int64, len(rows))


def _place(out: np.ndarray, rows: Sequence[Sequence[int]], keep: np.ndarray, start: np.ndarray) -> None:
    """out[i, start[i] + j] = rows[i][j] for j < keep[i], for every row at once."""
    flat = np.fromiter(itertools.chain.from_iterable(r[:k] for r, k in zip(rows, keep.tolist())), np.int64,
                       int(keep.sum()))
    row = np.repeat(np.arange(len(rows)), keep)
    within = np.arange(len(flat)) - np.repeat(np.cumsum(keep) - keep, keep)
    out[row, start[row] + within] = flat


def pack_batch(ids_a: Sequence[Sequence[int]], ids_b: Sequence[Sequence[int]] | None,
               max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """token_ids, segment_ids (np.int32 [N, L]) of N examples (`ids_b` None: single texts)."""
    pair = ids_b is not None
    check_length(max_length, pair)
    n, L = len(ids_a), int(max_length)
    if pair and len(ids_b) != n:
        raise EmbBertError(f"text pairs: {n} first texts but {len(ids_b)} second texts")
    rows = np.arange(n)
    positions = np.arange(L)[None, :]
    token_ids = np.full((n, L), PAD_ID, np.int32)
    token_ids[:, 0] = CLS_ID
    len_a = _lengths(ids_a)
    if not pair:
        keep_a = np.minimum(len_a, L - 1)
        _place(token_ids, ids_a, keep_a, np.ones(n, np.int64))
        segment_ids = np.where(positions < 1 + keep_a[:, None], SEGMENT_A, SEGMENT_PAD).astype(np.int32)
        return token_ids, segment_ids
    len_b = _lengths(ids_b)
    keep_a, keep_b = truncate_pair(len_a, len_b, L - 3)  # [CLS] A [SEP] B [SEP]
    _place(token_ids, ids_a, keep_a, np.ones(n, np.int64))
    token_ids[rows, 1 + keep_a] = SEP_ID
    _place(token_ids, ids_b, keep_b, 2 + keep_a)
    token_ids[rows, 2 + keep_a + keep_b] = SEP_ID
    segment_ids = np.where(positions < 1 + keep_a[:, None], SEGMENT_A,
                           np.where(positions < (3 + keep_a + keep_b)[:, None], SEGMENT_B, SEGMENT_PAD))
    return token_ids, segment_ids.astype(np.int32)


def pack(ids_a: Sequence[int], ids_b: Sequence[int] | None, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """token_ids, segment_ids (np.int32 [L]) of one example."""
    check_length(max_length, ids_b is not None)
    token_ids, segment_ids = pack_batch([list(ids_a)], None if ids_b is None else [list(ids_b)], max_length)
    return token_ids[0], segment_ids[0]


def segment_ids_from_token_ids(token_ids) -> np.ndarray:
    """Segment ids from token ids ([L] or [N, L]): 1 before the first [SEP], 2 from it on, 0 on padding."""
    ids = np.asarray(token_ids)
    seen_sep = np.cumsum(ids == SEP_ID, axis=-1) > 0
    seg = np.where(seen_sep, SEGMENT_B, SEGMENT_A).astype(np.int32)
    seg[ids == PAD_ID] = SEGMENT_PAD
    return seg


def encode_texts(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_length: int):
    """token_ids, segment_ids (np.int32 [N, L]): texts encoded with `tokenizers` in one batch, then packed.

    `tokenizer` is a `BpeTokenizer` or a tokenizer directory."""
    tok = as_tokenizer(tokenizer)
    check_length(max_length, texts_b is not None)
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise EmbBertError(f"text pairs: {len(texts_a)} first texts but {len(texts_b)} second texts")
    ids_a = tok.encode_batch(list(texts_a))
    ids_b = tok.encode_batch(list(texts_b)) if texts_b is not None else None
    return pack_batch(ids_a, ids_b, max_length)


# ---------------------------------------------------------------------------
# pretraining
# ---------------------------------------------------------------------------
def pack_sequences(encoded: list[np.ndarray], max_length: int, packing: str = "full") -> np.ndarray:
    """Token ids [N, L]: "full" joins the lines ([SEP] after each) and cuts [CLS] + L-1 tokens;
    "lines" puts one line per sequence ([CLS] line, truncated, right-padded)."""
    L = max_length
    if packing == "lines":
        out = np.full((len(encoded), L), PAD_ID, np.int32)
        out[:, 0] = CLS_ID
        for i, ids in enumerate(encoded):
            ids = ids[: L - 1]
            out[i, 1:1 + len(ids)] = ids
        return out
    if packing != "full":
        raise EmbBertError(f"unknown packing {packing!r}; choose full or lines")
    stream = np.concatenate([np.append(ids, SEP_ID).astype(np.int32) for ids in encoded])
    body = L - 1
    n = -(-len(stream) // body)
    padded = np.full(n * body, PAD_ID, np.int32)
    padded[: len(stream)] = stream
    return np.concatenate([np.full((n, 1), CLS_ID, np.int32), padded.reshape(n, body)], axis=1)


def packing_stats(sequences: np.ndarray) -> dict:
    """Share of padding and tokens per sequence of packed sequences."""
    real = sequences != PAD_ID
    return {
        "sequences": int(len(sequences)),
        "tokens": int(real.sum()),
        "padding_share": float(1.0 - real.mean()) if real.size else 0.0,
        "tokens_per_sequence": float(real.sum(axis=1).mean()) if len(real) else 0.0,
    }


__all__ = ["check_length", "truncate_pair", "pack_batch", "pack", "segment_ids_from_token_ids", "encode_texts",
           "pack_sequences", "packing_stats"]
