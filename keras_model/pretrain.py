"""Masked-language-model pretraining of the EmbBERT backbone (`embbert pretrain`).

Data path (cheap, done once):

1. corpus files are read line by line: plain text (one paragraph or document per line) or
   JSON Lines with a "text" field (e.g. the IMDb `unsupervised` split); 1 % of the lines
   (seeded) are held out and never trained on;
2. every line is encoded once with the project tokenizer (`tokenizers`, multi-threaded) and
   the ids are cached on disk (`cache/`), keyed by the corpus, the tokenizer and L;
3. packing ("full", the default): the lines are joined into one token stream with [SEP]
   after each line and cut into sequences `[CLS] t1 .. t_{L-1}`: no padding except in the
   last sequence. Segment ids follow the fine-tuning rule (1 up to the first [SEP], 2 from
   it on). "lines" packing (one line per sequence, truncated and padded) is kept for the
   controlled comparison in docs/pretraining.md;
4. masking is dynamic: keras-nlp's `MaskedLMMaskGenerator` draws new positions for every
   batch: 15 % of the tokens ([PAD]/[CLS]/[SEP] never); of those 80 % [MASK], 10 % a random
   token, 10 % unchanged; with `summary_slots` N, N more predictions per window from position 0
   ([CLS]) of words of the window (`summary_targets`; the training "accuracy" then counts them too,
   the held-out figure never does).

Training: AdamW with linear warm-up and cosine decay (or a constant rate), the loss over the
masked positions only (sample weight 0 on empty prediction slots). Every `eval_every` steps
(one Keras "epoch") the held-out masked-token accuracy is measured on fixed, seeded masks of
the held-out lines, next to the most-frequent-token baseline on the same positions.

Resumable: `BackupAndRestore` checkpoints in `.pretrain/` after every evaluation window;
`--resume` continues at the saved step with the same settings. `--init` continues from an
existing pretrained directory or preset (backbone, and the MLM head when it is there).

No next-sentence prediction: RoBERTa (Liu et al. 2019) showed it does not help downstream,
and the corpora here are paragraphs of mixed sources with no reliable sentence order.

Output directory: config.json, tokenizer/, backbone.weights.h5 (what `embbert train --init`
loads), pretrainer.weights.h5 (backbone + MLM head, to continue pretraining),
history.csv (one row per window), history.png, pretrain.json (settings and summary).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from embbert.core import layout
from embbert.core.config import EmbBertConfig, PretrainSettings
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_text
from embbert.datasets.tokenizer import MERGES_FILE, VOCAB_FILE, pack_sequences, packing_stats

from ._tf import keras, tf
from .distribute import make_strategy
from .electra import build_electra
from .model import EmbBertBackbone, build_pretrainer, load_backbone_into, resolve_pretrained, save_weights

MASK_RATE = 0.15
HELDOUT_FRACTION = 0.01
HISTORY_FIELDS = ["step", "loss", "accuracy", "heldout_accuracy", "heldout_loss", "baseline_accuracy",
                  "learning_rate", "seconds", "tokens_per_second", "mlm_loss", "rtd_loss", "rtd_accuracy"]


# -- corpus -----------------------------------------------------------------------------------
def read_corpus(files: Sequence[str | os.PathLike]) -> list[str]:
    """Non-blank lines of plain-text files, or the "text" field of JSON Lines files (.jsonl)."""
    lines: list[str] = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise EmbBertError(f"{path}: corpus file not found")
        jsonl = path.suffix == ".jsonl"
        try:
            with open(path, encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    if jsonl:
                        try:
                            text = json.loads(line)["text"]
                        except (json.JSONDecodeError, KeyError, TypeError):
                            raise EmbBertError(f"{path}:{number}: not a JSON object with a \"text\" field") from None
                        if not isinstance(text, str):
                            raise EmbBertError(f"{path}:{number}: \"text\" is not a string")
                        text = text.strip()
                        if text:
                            lines.append(text)
                    else:
                        lines.append(line.strip())
        except UnicodeDecodeError as exc:
            raise EmbBertError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise EmbBertError("the corpus is empty (no non-blank lines)")
    return lines


def split_heldout(lines: list[str], seed: int, fraction: float = HELDOUT_FRACTION) -> tuple[list[str], list[str]]:
    """(train lines, held-out lines): a seeded `fraction` of the lines (at least one) is held out."""
    if len(lines) < 2:
        raise EmbBertError("the corpus needs at least 2 lines (1 % is held out for evaluation)")
    rng = np.random.default_rng(seed)
    n_held = max(1, int(round(fraction * len(lines))))
    held = np.zeros(len(lines), bool)
    held[rng.choice(len(lines), n_held, replace=False)] = True
    return [t for t, h in zip(lines, held) if not h], [t for t, h in zip(lines, held) if h]


def encode_lines(tokenizer, lines: list[str], batch: int = 4096) -> list[np.ndarray]:
    """Token ids of every line (no special tokens), with `tokenizers`' batch encoder."""
    out: list[np.ndarray] = []
    for i in range(0, len(lines), batch):
        out.extend(np.asarray(ids, np.int32) for ids in tokenizer.encode_batch(lines[i:i + batch]))
    return out


def _cache_key(lines: list[str], tokenizer_dir: Path, L: int, packing: str, seed: int) -> str:
    h = hashlib.sha256()
    for name in (VOCAB_FILE, MERGES_FILE):
        h.update((tokenizer_dir / name).read_bytes())
    h.update(f"{L}|{packing}|{seed}|{len(lines)}".encode())
    for line in lines:
        h.update(line.encode("utf-8", "surrogatepass"))
        h.update(b"\n")
    return h.hexdigest()[:16]


def prepare_data(lines: list[str], tokenizer_dir: Path, cache_dir: Path, L: int, packing: str, seed: int,
                 verbose: int = 1) -> dict:
    """Packed train and held-out sequences (cached on disk) and the most frequent train token."""
    from embbert.datasets.tokenizer import load_tokenizer

    key = _cache_key(lines, tokenizer_dir, L, packing, seed)
    path = cache_dir / f"packed-{key}.npz"
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    t0 = time.time()
    train_lines, held_lines = split_heldout(lines, seed)
    tok = load_tokenizer(tokenizer_dir)
    train_enc, held_enc = encode_lines(tok, train_lines), encode_lines(tok, held_lines)
    counts = np.bincount(np.concatenate(train_enc), minlength=tok.vocab_size)
    data = {
        "train": pack_sequences(train_enc, L, packing),
        "heldout": pack_sequences(held_enc, L, packing),
        "most_frequent": np.asarray(int(np.argmax(counts)), np.int32),
    }
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    np.savez(tmp, **data)
    os.replace(tmp, path)
    if verbose:
        s = packing_stats(data["train"])
        print(f"encoded {len(train_lines):,} train / {len(held_lines):,} held-out lines in {time.time() - t0:.0f} s: "
              f"{s['sequences']:,} sequences of L={L}, {s['tokens']:,} tokens, padding {s['padding_share']:.1%}",
              flush=True)
    return data


# -- masking ----------------------------------------------------------------------------------
def max_predictions_for(L: int) -> int:
    return max(1, int(round(MASK_RATE * L)))


def make_masker(vocab_size: int, L: int):
    import keras_nlp

    from embbert.datasets.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID

    return keras_nlp.layers.MaskedLMMaskGenerator(
        vocabulary_size=vocab_size,
        mask_selection_rate=MASK_RATE,
        mask_token_id=MASK_ID,
        mask_selection_length=max_predictions_for(L),
        unselectable_token_ids=[PAD_ID, CLS_ID, SEP_ID],
        mask_token_rate=0.8,
        random_token_rate=0.1,
    )


def _segments(token_ids):
    """The fine-tuning rule in TF ops: 1 before the first [SEP], 2 from it on, 0 on padding."""
    from embbert.datasets.tokenizer import PAD_ID, SEP_ID

    seen_sep = tf.cumsum(tf.cast(tf.equal(token_ids, SEP_ID), tf.int32), axis=-1) > 0
    seg = tf.where(seen_sep, 2, 1)
    return tf.where(tf.equal(token_ids, PAD_ID), 0, seg)


def summary_targets(tokens, slots: int):
    """`slots` prediction slots at position 0 ([CLS]): each a word of the window drawn at random
    (never [PAD]/[CLS]/[SEP]), weight 1, or weight 0 where the window has none. MLM alone never
    trains token 0, the one the classifier reads; predicting words of the window from it makes it
    a summary of the window. Returns (positions, ids, weights), each (B, slots)."""
    from embbert.datasets.tokenizer import CLS_ID, PAD_ID, SEP_ID

    tokens = tf.cast(tokens, tf.int32)
    special = tf.reduce_any(tf.equal(tokens[..., None], tf.constant([PAD_ID, CLS_ID, SEP_ID])), axis=-1)
    has = tf.reduce_any(~special, axis=-1)
    logits = tf.where(special, tf.float32.min, 0.0)
    picks = tf.random.categorical(logits, slots, dtype=tf.int32)
    ids = tf.gather(tokens, picks, batch_dims=1)
    weights = tf.tile(tf.cast(has, tf.float32)[:, None], [1, slots])
    return tf.zeros_like(picks), tf.where(has[:, None], ids, 0), weights


def mlm_dataset(sequences: np.ndarray, vocab_size: int, batch_size: int, seed: int, summary_slots: int = 0):
    """tf.data of ({token_ids, segment_ids, mask_positions}, mask_ids, mask_weights), new masks every batch
    (then `summary_slots` more slots at position 0, `summary_targets`)."""
    L = sequences.shape[1]
    masker = make_masker(vocab_size, L)

    def mask(tokens):
        masked = masker(tokens)
        positions = tf.cast(masked["mask_positions"], tf.int32)
        ids, weights = tf.cast(masked["mask_ids"], tf.int32), tf.cast(masked["mask_weights"], tf.float32)
        if summary_slots:
            sp, si, sw = summary_targets(tokens, summary_slots)
            positions = tf.concat([positions, sp], axis=1)
            ids, weights = tf.concat([ids, si], axis=1), tf.concat([weights, sw], axis=1)
        x = {"token_ids": tf.cast(masked["token_ids"], tf.int32), "segment_ids": _segments(tokens),
             "mask_positions": positions}
        return x, ids, weights

    ds = tf.data.Dataset.from_tensor_slices(sequences).shuffle(min(len(sequences), 100_000), seed=seed).repeat()
    return ds.batch(batch_size, drop_remainder=True).map(mask, num_parallel_calls=tf.data.AUTOTUNE).prefetch(4)


def fixed_masks(sequences: np.ndarray, vocab_size: int, seed: int):
    """Seeded, fixed masks for evaluation (same 15 % / 80-10-10 rule as training), numpy only.

    Returns (inputs dict, mask_ids [N, P], mask_weights [N, P])."""
    from embbert.datasets.tokenizer import CLS_ID, MASK_ID, PAD_ID, SEP_ID, segment_ids_from_token_ids

    rng = np.random.default_rng(seed)
    n, L = sequences.shape
    P = max_predictions_for(L)
    tokens = sequences.copy()
    positions = np.zeros((n, P), np.int32)
    ids = np.zeros((n, P), np.int32)
    weights = np.zeros((n, P), np.float32)
    for i in range(n):
        cand = np.flatnonzero(~np.isin(sequences[i], [PAD_ID, CLS_ID, SEP_ID]))
        if len(cand) == 0:
            continue
        k = min(P, max(1, int(round(MASK_RATE * len(cand)))))
        pick = np.sort(rng.choice(cand, k, replace=False))
        positions[i, :k], ids[i, :k], weights[i, :k] = pick, sequences[i, pick], 1.0
        r = rng.random(k)
        tokens[i, pick[r < 0.8]] = MASK_ID
        rand = pick[(r >= 0.8) & (r < 0.9)]
        tokens[i, rand] = rng.integers(0, vocab_size, len(rand))
    x = {"token_ids": tokens, "segment_ids": segment_ids_from_token_ids(sequences), "mask_positions": positions}
    return x, ids, weights


class HeldOutEvaluation(keras.callbacks.Callback):
    """After every window: held-out masked-token accuracy and loss, the most-frequent-token
    baseline on the same positions, the learning rate, the step and the throughput; written
    into `logs` so that the CSV logger after it records them."""

    def __init__(self, x, ids, weights, most_frequent: int, tokens_per_step: float, batch_size: int = 64):
        super().__init__()
        self.x, self.ids, self.weights, self.batch_size = x, ids, weights, batch_size
        self.tokens_per_step = tokens_per_step
        w = weights > 0
        self.baseline = float(np.mean(ids[w] == most_frequent)) if w.any() else float("nan")
        self._t0 = time.time()
        self._cpu0 = time.process_time()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def evaluate(self) -> tuple[float, float]:
        logits = self.model.predict(self.x, batch_size=self.batch_size, verbose=0)
        w = self.weights > 0
        picked = logits[w]
        pred = picked.argmax(-1)
        accuracy = float(np.mean(pred == self.ids[w]))
        z = picked - picked.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
        loss = float(-np.mean(logp[np.arange(len(pred)), self.ids[w]]))
        return accuracy, loss

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.time() - self._t0
        steps = self.params.get("steps") or 1
        if logs is None:
            return
        accuracy, loss = self.evaluate()
        opt = self.model.optimizer
        step = int(opt.iterations.numpy())
        lr = opt.learning_rate
        lr = float(lr(opt.iterations) if callable(lr) else keras.backend.get_value(lr))
        logs.update(step=step, heldout_accuracy=accuracy, heldout_loss=loss, baseline_accuracy=self.baseline,
                    learning_rate=lr, seconds=round(seconds, 1), tokens_per_second=round(steps * self.tokens_per_step / max(seconds, 1e-9)))
        print(f"  step {step}: held-out masked accuracy {accuracy:.4f} (most-frequent baseline {self.baseline:.4f}), "
              f"held-out loss {loss:.3f}, train loss {logs.get('loss', float('nan')):.3f}, lr {lr:.2e}", flush=True)


def make_schedule(settings: PretrainSettings):
    if settings.schedule == "constant":
        return settings.learning_rate
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=settings.steps - settings.warmup_steps,
        warmup_target=settings.learning_rate,
        warmup_steps=settings.warmup_steps,
    )


def read_history(path: Path) -> list[dict]:
    """history.csv rows, the last row of each step (a resumed window may have been logged twice)."""
    import csv

    if not path.is_file():
        return []
    rows: dict[int, dict] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                step = int(float(row["step"]))
            except (KeyError, ValueError):
                continue
            rows[step] = {k: float(v) for k, v in row.items() if k in HISTORY_FIELDS and v not in ("", None)}
    return [rows[s] for s in sorted(rows)]


def plot_history(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.plot(steps, [r.get("loss") for r in rows], label="train (window mean)")
    a1.plot(steps, [r.get("heldout_loss") for r in rows], label="held-out")
    a1.set_xlabel("step")
    a1.set_ylabel("MLM loss (nats, masked positions)")
    a1.legend()
    a2.plot(steps, [100 * r.get("accuracy", np.nan) for r in rows], label="train (window mean)")
    a2.plot(steps, [100 * r.get("heldout_accuracy", np.nan) for r in rows], label="held-out")
    a2.plot(steps, [100 * r.get("baseline_accuracy", np.nan) for r in rows], "--", label="most-frequent token")
    a2.set_xlabel("step")
    a2.set_ylabel("masked-token accuracy (%)")
    a2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path.with_name(f".tmp-{path.name}")
    fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def _prepare_tokenizer(config: EmbBertConfig, out_dir: Path, lines: list[str], verbose: int) -> Path:
    from embbert.datasets.tokenizer import TOKENIZER_FILE, load_tokenizer, train_tokenizer

    tok_dir = out_dir / layout.TOKENIZER_DIR
    if config.tokenizer and Path(config.tokenizer) != Path(layout.TOKENIZER_DIR):
        source = Path(config.tokenizer)
        if not (source / TOKENIZER_FILE).is_file():
            raise EmbBertError(f"{source}: tokenizer directory not found (no tokenizer.json)")
        if tok_dir.exists():
            shutil.rmtree(tok_dir)
        shutil.copytree(source, tok_dir)
    elif not (tok_dir / TOKENIZER_FILE).is_file():
        if verbose:
            print(f"training a {config.model.vocab_size}-token BPE tokenizer on the corpus ({len(lines):,} lines)",
                  flush=True)
        train_tokenizer(lines, vocab_size=config.model.vocab_size, out_dir=tok_dir)
    if load_tokenizer(tok_dir).vocab_size > config.model.vocab_size:
        raise EmbBertError(f"tokenizer is larger than the {config.preset} preset's vocabulary {config.model.vocab_size}")
    return tok_dir


def pretrain(
    config: EmbBertConfig,
    corpus: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    settings: PretrainSettings | None = None,
    *,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int = 1,
) -> dict:
    """MLM-pretrain the backbone of `config` on `corpus` into `out_dir`; returns the summary."""
    out_dir = Path(out_dir)
    state_dir = out_dir / layout.PRETRAIN_STATE_DIR
    settings_file = state_dir / layout.PRETRAIN_SETTINGS
    if resume:
        if not settings_file.is_file():
            raise EmbBertError(f"{out_dir}: nothing to resume (no unfinished pretraining there)")
        saved = json.loads(settings_file.read_text())
        config = EmbBertConfig.load(out_dir)
        settings = PretrainSettings(**saved["settings"])
        corpus, init = saved["corpus"], saved["init"]
    else:
        if (out_dir / layout.BACKBONE_WEIGHTS).exists() or state_dir.exists():
            raise EmbBertError(f"{out_dir} already holds a pretraining run; use --resume or choose another --out")
        settings = settings or PretrainSettings()
    init_dir = resolve_pretrained(init) if init and not resume else None  # a resume restores its checkpoint
    lines = read_corpus(corpus)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if init_dir is not None and not resume:
            init_config = EmbBertConfig.load(init_dir)
            if init_config.model != config.model:
                raise EmbBertError(f"{init}: pretrained preset {init_config.preset!r} does not match {config.preset!r}")
            config = config.replace(tokenizer=str(init_config.tokenizer_dir(init_dir)))
        tok_dir = _prepare_tokenizer(config, out_dir, lines, verbose)
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    config = config.replace(tokenizer=layout.TOKENIZER_DIR, task=None)
    if not resume:
        config.save(out_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(settings_file, json.dumps({
            "settings": asdict(settings), "corpus": [str(Path(c).resolve()) for c in corpus],
            "init": str(init_dir) if init_dir else None}, indent=2))

    L, bs, seed = config.max_length, config.train.batch_size, config.train.seed
    data = prepare_data(lines, tok_dir, out_dir / layout.PRETRAIN_CACHE_DIR, L, settings.packing, seed, verbose)
    train_stats, held_stats = packing_stats(data["train"]), packing_stats(data["heldout"])
    held = data["heldout"]
    if len(held) > settings.heldout_sequences:
        held = held[np.random.default_rng(seed + 1).choice(len(held), settings.heldout_sequences, replace=False)]
    hx, hids, hw = fixed_masks(held, config.model.vocab_size, seed + 2)
    S = settings.summary_slots
    if S:  # the held-out figure stays masked-token accuracy: the summary slots get weight 0 there
        hx = {**hx, "mask_positions": np.pad(hx["mask_positions"], ((0, 0), (0, S)))}
        hids, hw = np.pad(hids, ((0, 0), (0, S))), np.pad(hw, ((0, 0), (0, S)))

    keras.utils.set_random_seed(seed)
    ds = mlm_dataset(data["train"], config.model.vocab_size, bs, seed, S)
    P = max_predictions_for(L) + S
    electra = settings.objective == "electra"
    with make_strategy(config.train.strategy).scope():
        optimizer = keras.optimizers.AdamW(learning_rate=make_schedule(settings), weight_decay=config.train.weight_decay)
        if electra:
            model = build_electra(config, P, settings.rtd_weight, settings.rtd_random)
            if init_dir is not None and not resume:  # the discriminator starts from the given backbone
                load_backbone_into(model.discriminator, init_dir, config)
            model.compile(optimizer=optimizer, jit_compile=settings.jit_compile)
        else:
            model = build_pretrainer(config, P)
            if init_dir is not None and not resume:
                load_backbone_into(model, init_dir, config)
                head = init_dir / layout.PRETRAINER_WEIGHTS
                if head.is_file():
                    model.load_weights(str(head))
            model.compile(
                optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                jit_compile=settings.jit_compile,
            )
    windows = -(-settings.steps // settings.eval_every)
    tokens_per_step = bs * train_stats["tokens_per_sequence"]
    evaluation = HeldOutEvaluation(hx, hids, hw, int(data["most_frequent"]), tokens_per_step)
    history_path = out_dir / layout.PRETRAIN_HISTORY
    callbacks = [
        evaluation,
        keras.callbacks.CSVLogger(str(history_path), append=True),
        keras.callbacks.BackupAndRestore(str(state_dir / "backup")),  # saves after the row is logged
        *callbacks,
    ]
    if verbose:
        print(f"pretraining {config.preset} at L={L} ({settings.objective}): {settings.steps} steps of {bs} sequences, "
              f"{settings.schedule} lr {settings.learning_rate:g}, packing {settings.packing}", flush=True)
    cpu0 = time.process_time()
    t0 = time.time()
    model.fit(ds, epochs=windows, steps_per_epoch=settings.eval_every, callbacks=callbacks,
              verbose=2 if verbose else 0)
    wall, cpu = time.time() - t0, time.process_time() - cpu0

    save_weights(model, out_dir / layout.PRETRAINER_WEIGHTS)
    save_weights(model.discriminator if electra else EmbBertBackbone.of(model), out_dir / layout.BACKBONE_WEIGHTS)
    rows = read_history(history_path)
    plot_history(rows, out_dir / layout.PRETRAIN_PLOT, f"{settings.objective.upper()} pretraining: {config.preset}, "
                 f"L={L}, {out_dir.name}" + (" (masked accuracy: the generator's)" if electra else ""))
    last = rows[-1] if rows else {}
    summary = {
        "preset": config.preset,
        "max_length": L,
        "batch_size": bs,
        "settings": asdict(settings),
        "corpus": [Path(c).name for c in corpus],
        "corpus_lines": len(lines),
        "init": str(init) if init else None,
        "train": train_stats,
        "heldout": {**held_stats, "evaluated_sequences": int(len(held)), "masked_positions": int((hw > 0).sum())},
        "steps": int(last.get("step", 0)),
        "tokens_seen": int(last.get("step", 0) * tokens_per_step),
        "heldout_accuracy": last.get("heldout_accuracy"),
        "best_heldout_accuracy": max((r.get("heldout_accuracy", 0.0) for r in rows), default=None),
        "baseline_accuracy": evaluation.baseline,
        "heldout_loss": last.get("heldout_loss"),
        "train_loss": last.get("loss"),
        "seconds_this_sitting": round(wall, 1),
        "cpu_seconds_this_sitting": round(cpu, 1),
    }
    atomic_write_text(out_dir / layout.PRETRAIN_SUMMARY, json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    return summary
