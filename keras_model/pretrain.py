"""Masked-language-model pretraining of the EmbBERT backbone (`embbert pretrain`).

Data: plain-text corpus files (one paragraph or document per line), tokenised in
tf.data by the project tokenizer (keras-nlp BPE), packed as `[CLS] text`
(truncated to L), masked by keras-nlp's `MaskedLMMaskGenerator`: 15 % of the
tokens are selected; of those 80 % become [MASK], 10 % a random token, 10 % stay.

No next-sentence prediction: the reference adds NSP, but RoBERTa (Liu et al. 2019)
showed it does not help downstream, and our corpora here are paragraphs of mixed
sources with no reliable sentence order; MLM alone keeps the pipeline simple and
every step's compute on the objective that trains the token representations.

Output directory: config.json, tokenizer/, pretrainer.weights.h5 (backbone + MLM
head), history.csv and history.json (MLM loss and accuracy per logging window).
`embbert train --init DIR` loads the backbone from it.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from embbert.config import EmbBertConfig, atomic_write_text
from embbert.errors import EmbBertError

from ._tf import keras, tf
from .model import BACKBONE_WEIGHTS, build_pretrainer, save_weights
from .train import TOKENIZER_DIR, make_optimizer, make_strategy

MASK_RATE = 0.15


def read_corpus(files: Sequence[str | os.PathLike]) -> list[str]:
    lines: list[str] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise EmbBertError(f"{path}: corpus file not found")
        try:
            with open(path, encoding="utf-8") as fh:
                lines.extend(line.strip() for line in fh if line.strip())
        except UnicodeDecodeError as exc:
            raise EmbBertError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise EmbBertError("the corpus is empty (no non-blank lines)")
    return lines


def mlm_dataset(lines: list[str], tokenizer_dir: Path, config: EmbBertConfig, batch_size: int, seed: int):
    """tf.data of ({token_ids, segment_ids, mask_positions}, mask_ids, mask_weights)."""
    import keras_nlp

    from embbert.datasets.pipeline import tf_pack
    from embbert.datasets.tokenizer import CLS_ID, PAD_ID, SEP_ID, tf_tokenize
    from embbert.datasets.pipeline import _cached_layer  # one keras-nlp layer per tokenizer

    L = config.max_length
    max_predictions = max(1, int(round(MASK_RATE * L)))
    layer = _cached_layer(tokenizer_dir)
    masker = keras_nlp.layers.MaskedLMMaskGenerator(
        vocabulary_size=config.model.vocab_size,
        mask_selection_rate=MASK_RATE,
        mask_token_id=3,
        mask_selection_length=max_predictions,
        unselectable_token_ids=[PAD_ID, CLS_ID, SEP_ID],
        mask_token_rate=0.8,
        random_token_rate=0.1,
    )

    def encode(texts):
        tokens, segments = tf_pack(tf_tokenize(layer, texts), None, L)
        masked = masker(tokens)
        x = {
            "token_ids": tf.cast(masked["token_ids"], tf.int32),
            "segment_ids": segments,
            "mask_positions": tf.cast(masked["mask_positions"], tf.int32),
        }
        return x, tf.cast(masked["mask_ids"], tf.int32), tf.cast(masked["mask_weights"], tf.float32)

    ds = tf.data.Dataset.from_tensor_slices(lines).shuffle(len(lines), seed=seed).repeat()
    return ds.batch(batch_size, drop_remainder=True).map(encode, num_parallel_calls=1).prefetch(2), max_predictions


class _History(keras.callbacks.Callback):
    """MLM loss and accuracy per logging window.

    Keras reports running means over the epoch; the mean of the window (s, t] is recovered
    as (mean_t * t - mean_s * s) / (t - s), so each row is the loss of its own steps.
    """

    def __init__(self, every: int):
        super().__init__()
        self.every, self.rows, self._t0 = every, [], time.time()
        self._last = (0, 0.0, 0.0)  # step, running mean loss, running mean accuracy

    def on_train_batch_end(self, batch, logs=None):
        step = batch + 1
        if step % self.every == 0 or step == self.params.get("steps"):
            logs = logs or {}
            loss, acc = float(logs.get("loss", np.nan)), float(logs.get("accuracy", np.nan))
            s, s_loss, s_acc = self._last
            self.rows.append({
                "step": step,
                "loss": (loss * step - s_loss * s) / (step - s),
                "accuracy": (acc * step - s_acc * s) / (step - s),
                "seconds": round(time.time() - self._t0, 1),
            })
            self._last = (step, loss, acc)


def pretrain(
    config: EmbBertConfig,
    corpus: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    steps: int = 1000,
    learning_rate: float = 2e-4,
    verbose: int = 1,
) -> dict:
    from embbert.datasets.tokenizer import load_tokenizer, train_tokenizer

    out_dir = Path(out_dir)
    if (out_dir / BACKBONE_WEIGHTS).exists():
        raise EmbBertError(f"{out_dir} already holds a pretrained backbone; choose another --out")
    lines = read_corpus(corpus)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok_dir = out_dir / TOKENIZER_DIR
    if config.tokenizer:
        if not Path(config.tokenizer).is_dir():
            raise EmbBertError(f"{config.tokenizer}: tokenizer directory not found")
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        shutil.copytree(config.tokenizer, tok_dir)
    elif not (tok_dir / "tokenizer.json").is_file():
        print(f"training a {config.model.vocab_size}-token BPE tokenizer on the corpus ({len(lines)} lines)", flush=True)
        train_tokenizer([Path(f) for f in corpus], vocab_size=config.model.vocab_size, out_dir=tok_dir)
    if load_tokenizer(tok_dir).vocab_size > config.model.vocab_size:
        raise EmbBertError(f"tokenizer is larger than the {config.preset} preset's vocabulary {config.model.vocab_size}")
    config = config.replace(tokenizer=TOKENIZER_DIR, task=None)
    keras.utils.set_random_seed(config.train.seed)
    ds, max_predictions = mlm_dataset(lines, tok_dir, config, config.train.batch_size, config.train.seed)
    with make_strategy(config.train.strategy).scope():
        model = build_pretrainer(config, max_predictions)
        model.compile(
            optimizer=make_optimizer(learning_rate, config.train.weight_decay),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
    history = _History(every=max(1, steps // 50))
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[history], verbose=verbose)
    save_weights(model, out_dir / BACKBONE_WEIGHTS)
    config.save(out_dir)
    rows = history.rows
    with open(out_dir / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "loss", "accuracy", "seconds"])
        writer.writeheader()
        writer.writerows(rows)
    summary = {
        "steps": steps,
        "corpus_lines": len(lines),
        "first_loss": rows[0]["loss"] if rows else None,
        "last_loss": rows[-1]["loss"] if rows else None,
        "last_accuracy": rows[-1]["accuracy"] if rows else None,
        "history": rows,
    }
    atomic_write_text(out_dir / "history.json", json.dumps(summary, indent=2) + "\n")
    return summary
