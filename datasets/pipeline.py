"""Model inputs as tf.data: `make_dataset` over the arrays of `encode_texts`.

The packing rule, the segment ids and `encode_texts` live in `embbert.datasets.tokenizer`
(`packing`); they are re-exported here. Texts are encoded once with `tokenizers` (outside
the graph); the dataset is built from the resulting numpy arrays.
"""
from __future__ import annotations

import os

import numpy as np

from embbert.core.config import CONFIG_FILE, EmbBertConfig
from embbert.core.errors import EmbBertError

from .loading import Split, load_task
from .tokenizer import check_length, encode_texts, pack, segment_ids_from_token_ids, truncate_pair


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
    """tf.data of `({"token_ids", "segment_ids"}: int32 [B, L], labels)`, exactly `encode_texts`' arrays.

    Tokenisation happens once, in fixed order, before the dataset is built; shuffling is
    seeded, so the order of batches is deterministic for a given seed. `tokenizer_dir` may
    also be a loaded `BpeTokenizer`.
    """
    import tensorflow as tf

    pair = split.texts_b is not None
    check_length(max_length, pair)
    if batch_size < 1:
        raise EmbBertError(f"batch size must be >= 1, got {batch_size}")
    if len(split) == 0:
        raise EmbBertError("cannot build a dataset from an empty split")
    token_ids, segment_ids = encode_texts(tokenizer_dir, split.texts_a, split.texts_b, max_length)
    labels = np.asarray(split.labels)
    ds = tf.data.Dataset.from_tensor_slices(({"token_ids": token_ids, "segment_ids": segment_ids}, labels))
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    if cache:
        ds = ds.cache()
    if shuffle:
        ds = ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def encoded_split(run_dir: str | os.PathLike, config: EmbBertConfig, split: str, limit: int | None = None):
    """token_ids, segment_ids (int32 [N, L]) and labels of a split of the run's task."""
    if not config.task:
        raise EmbBertError(f"{run_dir}: {CONFIG_FILE} names no task")
    data = load_task(config.task, config.data_dir, seed=config.train.seed)
    part = getattr(data, split)
    if limit is not None and len(part) > limit:
        # A seeded random subset, not the first rows: splits are often ordered by class
        # (IMDb's test split is all negatives, then all positives).
        rng = np.random.default_rng(config.train.seed)
        part = part.subset(sorted(rng.choice(len(part), size=limit, replace=False).tolist()))
    if len(part) == 0:
        raise EmbBertError(f"task {data.spec.name}: the {split} split is empty")
    tok, seg = encode_texts(config.tokenizer_dir(run_dir), part.texts_a, part.texts_b, config.max_length)
    return tok, seg, part.labels, data.spec


__all__ = ["encoded_split", "pack", "truncate_pair", "encode_texts", "segment_ids_from_token_ids", "make_dataset"]
