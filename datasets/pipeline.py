"""Model inputs: packing (`[CLS] A` / `[CLS] A [SEP] B [SEP]`), segment ids, tf.data.

Packing rule (also in docs/tokenizer.md):
* single text: `[CLS] + A[:L-1]`, right-padded with [PAD]=0 to L;
* pair: `[CLS] A [SEP] B [SEP]`; while len(A) + len(B) > L - 3, drop the last token of
  the longer one (A on a tie);
* segment ids: 1 for [CLS] and A, 2 from the first [SEP] onwards, 0 for padding.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from embbert.core.errors import EmbBertError

from .loading import Split
from .tokenizer import CLS_ID, PAD_ID, SEP_ID, BpeTokenizer, load_tokenizer

#: Rows tokenised per tf.data map call.
TOKENIZE_BATCH = 256


def _check_length(max_length: int, pair: bool) -> None:
    minimum = 3 if pair else 2
    if not isinstance(max_length, (int, np.integer)) or max_length < minimum:
        raise EmbBertError(
            f"max length must be an integer >= {minimum} for {'text pairs' if pair else 'single texts'}, got {max_length!r}"
        )


def truncate_pair(len_a: int, len_b: int, budget: int) -> tuple[int, int]:
    """Longest-first truncation: the kept lengths of A and B (closed form of the loop)."""
    budget = max(budget, 0)
    keep_a = min(len_a, max(budget - len_b, budget // 2))
    keep_b = min(len_b, budget - keep_a)
    return keep_a, keep_b


def pack(ids_a: Sequence[int], ids_b: Sequence[int] | None, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """token_ids, segment_ids (np.int32 [L]) of one example."""
    _check_length(max_length, ids_b is not None)
    a = list(ids_a)
    if ids_b is None:
        tokens = [CLS_ID] + a[: max_length - 1]
        segments = [1] * len(tokens)
    else:
        b = list(ids_b)
        while len(a) + len(b) > max_length - 3:  # longest first, A on a tie
            if len(a) >= len(b):
                a.pop()
            else:
                b.pop()
        tokens = [CLS_ID] + a + [SEP_ID] + b + [SEP_ID]
        segments = [1] * (1 + len(a)) + [2] * (len(b) + 2)
    token_ids = np.full(max_length, PAD_ID, np.int32)
    segment_ids = np.zeros(max_length, np.int32)
    token_ids[: len(tokens)] = tokens
    segment_ids[: len(segments)] = segments
    return token_ids, segment_ids


def segment_ids_from_token_ids(token_ids) -> np.ndarray:
    """Segment ids from token ids ([L] or [N, L]): 1 before the first [SEP], 2 from it on, 0 on padding."""
    ids = np.asarray(token_ids)
    seen_sep = np.cumsum(ids == SEP_ID, axis=-1) > 0
    seg = np.where(seen_sep, 2, 1).astype(np.int32)
    seg[ids == PAD_ID] = 0
    return seg


def _as_tokenizer(tokenizer) -> BpeTokenizer:
    if isinstance(tokenizer, BpeTokenizer):
        return tokenizer
    return load_tokenizer(tokenizer)


def encode_texts(tokenizer, texts_a: Sequence[str], texts_b: Sequence[str] | None, max_length: int):
    """token_ids, segment_ids (np.int32 [N, L]) with the `tokenizers` implementation."""
    tok = _as_tokenizer(tokenizer)
    _check_length(max_length, texts_b is not None)
    if texts_b is not None and len(texts_b) != len(texts_a):
        raise EmbBertError(f"text pairs: {len(texts_a)} first texts but {len(texts_b)} second texts")
    ids_a = tok.encode_batch(list(texts_a))
    ids_b = tok.encode_batch(list(texts_b)) if texts_b is not None else [None] * len(ids_a)
    n = len(ids_a)
    token_ids = np.zeros((n, max_length), np.int32)
    segment_ids = np.zeros((n, max_length), np.int32)
    for i in range(n):
        token_ids[i], segment_ids[i] = pack(ids_a[i], ids_b[i], max_length)
    return token_ids, segment_ids


def tf_pack(ids_a, ids_b, max_length: int):
    """The packing rule on ragged int32 batches: dense token_ids, segment_ids [B, L]."""
    import tensorflow as tf

    batch = ids_a.nrows()
    cls = tf.fill([batch, 1], tf.constant(CLS_ID, tf.int32))
    sep = tf.fill([batch, 1], tf.constant(SEP_ID, tf.int32))
    if ids_b is None:
        a = ids_a[:, : max_length - 1]
        tokens = tf.concat([cls, a], axis=1)
        segments = tf.ones_like(tokens)
    else:
        len_a = tf.cast(ids_a.row_lengths(), tf.int32)
        len_b = tf.cast(ids_b.row_lengths(), tf.int32)
        budget = max_length - 3
        keep_a = tf.minimum(len_a, tf.maximum(budget - len_b, budget // 2))
        keep_b = tf.minimum(len_b, budget - keep_a)
        a = tf.ragged.boolean_mask(ids_a, tf.ragged.range(len_a) < keep_a[:, None])
        b = tf.ragged.boolean_mask(ids_b, tf.ragged.range(len_b) < keep_b[:, None])
        first = tf.concat([cls, a], axis=1)
        second = tf.concat([sep, b, sep], axis=1)
        tokens = tf.concat([first, second], axis=1)
        segments = tf.concat([tf.ones_like(first), 2 * tf.ones_like(second)], axis=1)
    shape = [None, max_length]
    return tokens.to_tensor(PAD_ID, shape=shape), segments.to_tensor(0, shape=shape)


_LAYERS: dict = {}


def _cached_layer(tokenizer_dir):
    """One keras-nlp layer per tokenizer (its BPE cache then serves every dataset built from it)."""
    from .tokenizer import MERGES_FILE, VOCAB_FILE, keras_nlp_tokenizer

    path = os.path.realpath(tokenizer_dir)
    try:
        stamp = tuple(os.stat(os.path.join(path, f)).st_mtime_ns for f in (VOCAB_FILE, MERGES_FILE))
    except OSError:
        stamp = None
    key = (path, stamp)
    if stamp is None or key not in _LAYERS:
        layer = keras_nlp_tokenizer(tokenizer_dir)
        if stamp is not None:
            _LAYERS[key] = layer
        return layer
    return _LAYERS[key]


def make_dataset(
    split: Split,
    tokenizer_dir: str | os.PathLike,
    max_length: int,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool = True,
    drop_remainder: bool = False,
    repeat: bool = False,
):
    """tf.data of `({"token_ids", "segment_ids"}: int32 [B, L], labels)`, tokenised by keras-nlp.

    Tokenisation happens once in fixed order (and is cached); shuffling is seeded, so the
    order of batches is deterministic for a given seed.
    """
    import tensorflow as tf

    from .tokenizer import tf_tokenize

    pair = split.texts_b is not None
    _check_length(max_length, pair)
    if batch_size < 1:
        raise EmbBertError(f"batch size must be >= 1, got {batch_size}")
    if len(split) == 0:
        raise EmbBertError("cannot build a dataset from an empty split")
    layer = _cached_layer(tokenizer_dir)
    labels = np.asarray(split.labels)
    if pair:
        ds = tf.data.Dataset.from_tensor_slices((list(split.texts_a), list(split.texts_b), labels))  # type: ignore[arg-type]

        def encode(a, b, y):
            tokens, segments = tf_pack(tf_tokenize(layer, a), tf_tokenize(layer, b), max_length)
            return {"token_ids": tokens, "segment_ids": segments}, y
    else:
        ds = tf.data.Dataset.from_tensor_slices((list(split.texts_a), labels))

        def encode(a, y):
            tokens, segments = tf_pack(tf_tokenize(layer, a), None, max_length)
            return {"token_ids": tokens, "segment_ids": segments}, y

    options = tf.data.Options()
    options.deterministic = True
    ds = ds.batch(TOKENIZE_BATCH).map(encode, num_parallel_calls=1).unbatch().with_options(options)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


__all__ = ["pack", "truncate_pair", "encode_texts", "segment_ids_from_token_ids", "tf_pack", "make_dataset"]
