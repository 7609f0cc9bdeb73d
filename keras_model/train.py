"""Fine-tuning: `model.fit` in float, then quantisation-aware `model.fit` (tfmot).

Run directory layout (everything needed by the later stages):

    config.json         the EmbBertConfig (task, preset, L, training settings, tokenizer path)
    tokenizer/          the tokenizer (trained on the task's train split if none was given)
    float.weights.h5    the float model, best validation epoch
    qat.weights.h5      the QAT model, best validation epoch
    history.csv         one row per epoch and stage: loss, validation metric, time
    metrics.json        validation and test metric of the float and the QAT model
    .train/             resume state (per-stage BackupAndRestore checkpoints, best weights);
                        removed when the run completes

Resume: each stage's `model.fit` runs with `BackupAndRestore`, so an interrupted
run loses at most the epoch in progress; `.train/state.json` records finished
stages, and the best-epoch weights and score are kept on disk.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embbert.core.config import EmbBertConfig
from embbert.core.files import atomic_write_bytes, atomic_write_text
from embbert.core.errors import EmbBertError

from ._tf import keras, tf
from .model import FLOAT_WEIGHTS, QAT_WEIGHTS, build_classifier, load_backbone_into, save_weights
from .quantize import quantize_model

STATE_DIR = ".train"
HISTORY = "history.csv"
METRICS = "metrics.json"
TOKENIZER_DIR = "tokenizer"


_MULTI_WORKER: list = []  # the one MultiWorkerMirroredStrategy of this process


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The distribution strategy of `--strategy` (the only code path for all).

    multi-worker: MultiWorkerMirroredStrategy over the workers of $TF_CONFIG. TensorFlow needs it
    created before any other operation, so the commands create it first; later calls return it.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi-worker":
        if not _MULTI_WORKER:
            _MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
        return _MULTI_WORKER[0]
    raise EmbBertError(f"unknown strategy {name!r}; choose default, mirrored or multi-worker")


def worker_index(strategy_name: str) -> int:
    """This process's index among the workers of $TF_CONFIG (0, the chief, outside multi-worker)."""
    if strategy_name != "multi-worker":
        return 0
    from embbert.core.args import check_tf_config

    return int(check_tf_config()["task"]["index"])


def make_optimizer(learning_rate: float, weight_decay: float) -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)


def compile_classifier(model: keras.Model, config: EmbBertConfig, learning_rate: float) -> None:
    if config.regression:
        loss = keras.losses.MeanSquaredError()
        metrics: list[Any] = []
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    model.compile(optimizer=make_optimizer(learning_rate, config.train.weight_decay), loss=loss, metrics=metrics)


def predictions(model: keras.Model, dataset, regression: bool) -> np.ndarray:
    out = model.predict(dataset, verbose=0)
    return out[:, 0] if regression else np.argmax(out, axis=-1)


def labels_of(dataset) -> np.ndarray:
    return np.concatenate([y.numpy() for _, y in dataset]) if dataset is not None else np.zeros(0)


class BestEpoch(keras.callbacks.Callback):
    """Scores the task metric on the validation split after every epoch and keeps the best weights.

    The best score and weights are written to disk, so a resumed run still restores the
    best epoch of the whole run, not only of the part after the interruption.
    """

    def __init__(self, val_ds, val_labels, metric: str, regression: bool, state_dir: Path, stage: str,
                 history_path: Path):
        super().__init__()
        self.val_ds, self.val_labels, self.metric, self.regression = val_ds, val_labels, metric, regression
        self.best_path = state_dir / f"{stage}_best.npz"  # numpy: also loadable under multi-worker
        self.score_path = state_dir / f"{stage}_best.json"
        self.stage, self.history_path = stage, history_path
        self.best = -np.inf
        if self.score_path.is_file():
            self.best = json.loads(self.score_path.read_text())["score"]
        self._t0 = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        from embbert.datasets.metrics import compute_metric

        score = float(compute_metric(self.metric, self.val_labels, predictions(self.model, self.val_ds, self.regression)))
        if np.isnan(score):
            score = -np.inf
        improved = score > self.best
        if improved:
            self.best = score
            save_arrays(self.best_path, self.model.get_weights())
            atomic_write_text(self.score_path, json.dumps({"score": score, "epoch": epoch + 1}))
        logs = dict(logs or {})
        row = {
            "stage": self.stage,
            "epoch": epoch + 1,
            "loss": f"{logs.get('loss', float('nan')):.6f}",
            f"val_{self.metric}": f"{score:.6f}",
            "best": int(improved),
            "seconds": f"{time.time() - self._t0:.1f}",
        }
        _append_history(self.history_path, row)
        print(f"  [{self.stage}] epoch {epoch + 1}: val {self.metric} = {score:.4f}{' (best)' if improved else ''}",
              flush=True)

    def restore_best(self) -> float:
        if self.best_path.is_file():
            self.model.set_weights(load_arrays(self.best_path))
        return self.best


def save_arrays(path: Path, arrays: list) -> None:
    """Weights as an .npz, written atomically (a MultiWorkerMirroredStrategy model cannot load a
    .weights.h5 into its on-read variables, but takes numpy arrays through set_weights)."""
    import io

    buf = io.BytesIO()
    np.savez(buf, **{f"w{i}": a for i, a in enumerate(arrays)})
    atomic_write_bytes(path, buf.getvalue())


def load_arrays(path: Path) -> list:
    with np.load(path) as f:
        return [f[f"w{i}"] for i in range(len(f.files))]


def _append_history(path: Path, row: dict) -> None:
    fields = ["stage", "epoch", "loss", "val_metric", "best", "seconds"]
    row = {("val_metric" if k.startswith("val_") else k): v for k, v in row.items()}
    new = not path.is_file()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerow(row)


def _prepare_tokenizer(config: EmbBertConfig, run_dir: Path, train_texts: Sequence[str]) -> EmbBertConfig:
    from embbert.datasets.tokenizer import load_tokenizer, train_tokenizer

    target = run_dir / TOKENIZER_DIR
    if config.tokenizer and Path(config.tokenizer) == Path(TOKENIZER_DIR) and (target / "tokenizer.json").is_file():
        pass  # resuming: the run's own tokenizer
    elif config.tokenizer:
        source = Path(config.tokenizer)
        if not source.is_dir():
            raise EmbBertError(f"{source}: tokenizer directory not found")
        if source.resolve() != target.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(source, target)
    else:
        if not (target / "tokenizer.json").is_file():
            print(f"training a {config.model.vocab_size}-token BPE tokenizer on the train split", flush=True)
            train_tokenizer(list(train_texts), vocab_size=config.model.vocab_size, out_dir=target)
    vocab = load_tokenizer(target).vocab_size
    if vocab > config.model.vocab_size:
        raise EmbBertError(
            f"tokenizer has {vocab} tokens but the {config.preset} preset's embedding has {config.model.vocab_size}"
        )
    return config.replace(tokenizer=TOKENIZER_DIR)


def _discard(run_dir: Path, created: list[Path]) -> None:
    """Remove what a failed start of a run created: files and folders, then the run folder if now empty."""
    for p in created:
        if p == run_dir:
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    if run_dir in created and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()


def pretrained_tokenizer_dir(init: str | os.PathLike) -> Path:
    """The tokenizer of a pretrained backbone (a directory or a shipped preset name)."""
    from .model import resolve_pretrained

    init_dir = resolve_pretrained(init)
    try:
        return EmbBertConfig.load(init_dir).tokenizer_dir(init_dir)
    except EmbBertError:
        raise EmbBertError(f"{init}: not a pretrained backbone directory (no config.json naming a tokenizer)") from None


def train(config: EmbBertConfig, run_dir: str | os.PathLike, **kwargs: Any) -> dict:
    """Fine-tune float then QAT (`_train`); returns the metrics written to metrics.json.

    Until `.train/state.json` exists nothing is resumable: a failure or interrupt before it
    removes whatever this call created, so the same command can simply be run again.
    """
    run_dir = Path(run_dir)
    index = worker_index(config.train.strategy)
    if index > 0:
        # Multi-worker: only the chief (worker 0) writes the run directory. The other workers keep
        # their files in RUN_DIR/.worker-<i>/ and share the chief's BackupAndRestore checkpoints,
        # so a restarted cluster resumes from the chief's last finished epoch.
        private = run_dir / f".worker-{index}"
        kwargs["resume"] = bool(kwargs.get("resume")) and (private / STATE_DIR / "state.json").is_file()
        result = _train(config, private, backup_root=run_dir / STATE_DIR, **kwargs)
        shutil.rmtree(private, ignore_errors=True)
        return result
    state_dir = run_dir / STATE_DIR
    created = [p for p in (run_dir, state_dir, run_dir / TOKENIZER_DIR, run_dir / "config.json") if not p.exists()]
    try:
        return _train(config, run_dir, **kwargs)
    except BaseException:
        if not (state_dir / "state.json").is_file():
            _discard(run_dir, created)
        raise


def _train(
    config: EmbBertConfig,
    run_dir: str | os.PathLike,
    *,
    init: str | os.PathLike | None = None,
    resume: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    tensorboard: bool = False,
    verbose: int = 1,
    backup_root: Path | None = None,
) -> dict:
    """Fine-tune float then QAT; returns the metrics written to metrics.json."""
    from embbert.datasets.loading import load_task, resolve_data_dir
    from embbert.datasets.pipeline import make_dataset
    from embbert.datasets.tasks import get_task

    if not config.task:
        raise EmbBertError("no task given (--task)")
    run_dir = Path(run_dir)
    state_dir = run_dir / STATE_DIR
    state_file = state_dir / "state.json"
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if (run_dir / METRICS).is_file() or state_dir.exists():
            raise EmbBertError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
    if resume:
        if not state_file.is_file():
            raise EmbBertError(f"{run_dir}: nothing to resume (no unfinished run there)")
        config = EmbBertConfig.load(run_dir)  # the interrupted run's own settings
    state_dir.mkdir(parents=True, exist_ok=True)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"float_done": False}

    keras.utils.set_random_seed(config.train.seed)
    spec = get_task(config.task)
    data = load_task(spec, resolve_data_dir(config.data_dir), seed=config.train.seed)
    train_split = data.train
    if config.train.max_train_examples and len(train_split) > config.train.max_train_examples:
        rng = np.random.default_rng(config.train.seed)
        train_split = train_split.subset(sorted(rng.choice(len(train_split), config.train.max_train_examples, replace=False)))
    config = config.replace(
        num_labels=spec.num_labels, label_names=tuple(spec.label_names or ()), task=str(config.task)
    )
    if init and not config.tokenizer and not resume:
        # The pretrained embeddings belong to the pretraining tokenizer: fine-tune with it.
        config = config.replace(tokenizer=str(pretrained_tokenizer_dir(init)))
    config = _prepare_tokenizer(config, run_dir, train_split.texts_a + (train_split.texts_b or []))
    config.save(run_dir)
    if not state_file.is_file():  # from here on the run can be resumed (config.json exists)
        atomic_write_text(state_file, json.dumps(state))
    tok_dir = run_dir / TOKENIZER_DIR

    bs, L = config.train.batch_size, config.max_length
    steps = config.train.steps_per_epoch  # None: one pass over the train split per epoch
    train_ds = make_dataset(train_split, tok_dir, L, bs, shuffle=True, seed=config.train.seed, repeat=bool(steps))
    val_ds = make_dataset(data.validation, tok_dir, L, bs)
    test_ds = make_dataset(data.test, tok_dir, L, bs)
    val_labels, test_labels = np.asarray(data.validation.labels), np.asarray(data.test.labels)
    history_path = run_dir / HISTORY

    strategy = make_strategy(config.train.strategy)
    results: dict[str, Any] = {"task": config.task, "metric": spec.metric, "preset": config.preset, "max_length": L}

    def fit(model, stage: str, epochs: int, learning_rate: float) -> float:
        best = BestEpoch(val_ds, val_labels, spec.metric, config.regression, state_dir, stage, history_path)
        backup = (backup_root or state_dir) / f"{stage}_backup"
        cbs: list[Any] = [keras.callbacks.BackupAndRestore(str(backup)), best, *callbacks]
        if tensorboard:
            cbs.append(keras.callbacks.TensorBoard(str(run_dir / "tensorboard" / stage)))
        if epochs > 0:
            model.fit(train_ds, epochs=epochs, steps_per_epoch=steps, callbacks=cbs, verbose=verbose)
        return best.restore_best() if epochs > 0 else float("nan")

    def score(model, dataset, labels) -> float:
        from embbert.datasets.metrics import compute_metric

        return float(compute_metric(spec.metric, labels, predictions(model, dataset, config.regression)))

    with strategy.scope():
        float_model = build_classifier(config)
        if init:
            load_backbone_into(float_model, init, config)
        compile_classifier(float_model, config, config.train.learning_rate)
    if state["float_done"]:
        best_float = state_dir / "float_best.npz"  # the same weights as float.weights.h5
        if best_float.is_file():
            float_model.set_weights(load_arrays(best_float))
        else:
            float_model.load_weights(str(run_dir / FLOAT_WEIGHTS))
        print("float stage already done: loaded float.weights.h5", flush=True)
    else:
        print(f"stage 1/2: float training, {config.train.epochs} epochs", flush=True)
        fit(float_model, "float", config.train.epochs, config.train.learning_rate)
        save_weights(float_model, run_dir / FLOAT_WEIGHTS)
        state["float_done"] = True
        atomic_write_text(state_file, json.dumps(state))
    results["float_val"] = score(float_model, val_ds, val_labels)
    results["float_test"] = score(float_model, test_ds, test_labels)

    with strategy.scope():
        qat_model = quantize_model(float_model)
        compile_classifier(qat_model, config, config.train.qat_learning_rate)
    print(f"stage 2/2: quantisation-aware training, {config.train.qat_epochs} epochs", flush=True)
    calibrate(qat_model, train_ds, batches=8)
    fit(qat_model, "qat", config.train.qat_epochs, config.train.qat_learning_rate)
    save_weights(qat_model, run_dir / QAT_WEIGHTS)
    results["qat_val"] = score(qat_model, val_ds, val_labels)
    results["qat_test"] = score(qat_model, test_ds, test_labels)
    results["train_examples"] = len(train_split)
    results["test_examples"] = len(data.test)
    atomic_write_text(run_dir / METRICS, json.dumps(results, indent=2) + "\n")
    shutil.rmtree(state_dir, ignore_errors=True)
    return results


def calibrate(qat_model: keras.Model, dataset, batches: int = 8) -> None:
    """Initialise the activation ranges of a fresh QAT model (forward passes in training mode).

    The first training batch sets each `ActivationQuantizer` range; later batches move it by
    EMA. Without this a QAT model with 0 QAT epochs would keep the initial [-6, 6] ranges.
    Dropout is switched off for these passes so it does not widen the ranges.
    """
    for i, (x, _) in enumerate(dataset):
        if i >= batches:
            break
        _calibration_step(qat_model, x)


def _calibration_step(model, x):
    dropouts = [m for m in model.submodules if isinstance(m, keras.layers.Dropout)]
    rates = [d.rate for d in dropouts]
    for d in dropouts:
        d.rate = 0.0
    try:
        model(x, training=True)
    finally:
        for d, rate in zip(dropouts, rates):
            d.rate = rate
