"""Fine-tuning: `model.fit` in float, then quantisation-aware `model.fit` (tfmot).

Run directory (file names: `embbert.core.layout`; everything the later stages need):

    config.json         the EmbBertConfig (task, preset, L, training settings, tokenizer path)
    tokenizer/          the tokenizer (trained on the task's train split if none was given)
    float.weights.h5    the float model, best validation epoch
    qat.weights.h5      the QAT model, best validation epoch
    history.csv         one row per epoch and stage: epoch, stage, loss, validation metric, best, seconds
    metrics.json        validation and test metric of the float and the QAT model
    .train/             resume state: state.json (finished stages, the --init it started from), per stage <stage>_backup/
                        (BackupAndRestore) and <stage>_best/ (ModelCheckpoint); removed when the run completes

`_train` runs named steps: open the run directory -> load the task -> prepare the tokenizer ->
build the datasets -> float stage -> evaluate -> QAT stage -> evaluate -> write metrics.json.
Each stage's `model.fit` runs with, in this order, stock Keras callbacks where they fit:

    TaskMetric        the task's metric on the validation split -> logs["val_<metric>"]
    ModelCheckpoint   save_best_only on it (mode max): the best epoch's weights, restored at the end
    EpochHistory      Keras' CSVLogger (append=True) with the run's columns: the history.csv row
    BackupAndRestore  the resume checkpoint of the finished epoch

Resume: an interrupted run loses at most the epoch in progress (BackupAndRestore); the stage's
ModelCheckpoint starts from the best score of the stage in history.csv so far
(`initial_value_threshold`), so the best epoch of the whole run is restored, also across restarts.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_text

from ._tf import keras, tf
from .distribute import make_strategy, wait_for_workers, worker_index
from .model import build_classifier, load_backbone_into, save_weights
from .quantize import quantize_model


def make_optimizer(learning_rate: float, weight_decay: float) -> keras.optimizers.Optimizer:
    return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)


def loss_and_metrics(regression: bool) -> tuple[keras.losses.Loss, list[Any]]:
    """The fine-tuning loss and metrics: cross-entropy on logits and accuracy, or mean squared error."""
    if regression:
        return keras.losses.MeanSquaredError(), []
    return (keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            [keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def compile_classifier(model: keras.Model, config: EmbBertConfig, learning_rate: float) -> None:
    loss, metrics = loss_and_metrics(config.regression)
    model.compile(optimizer=make_optimizer(learning_rate, config.train.weight_decay), loss=loss, metrics=metrics)


def predictions(model: keras.Model, dataset, regression: bool) -> np.ndarray:
    out = model.predict(dataset, verbose=0)
    return out[:, 0] if regression else np.argmax(out, axis=-1)


def score(model: keras.Model, dataset, labels, metric: str, regression: bool) -> float:
    """The task's metric of the model's predictions on a dataset."""
    from embbert.datasets.metrics import compute_metric

    return float(compute_metric(metric, labels, predictions(model, dataset, regression)))


# -- the callbacks of a stage --------------------------------------------------------------------
class TaskMetric(keras.callbacks.Callback):
    """After every epoch: the task's metric on the validation split, put into `logs` as
    `val_<metric>` for the ModelCheckpoint and the history logger that come after it (NaN as
    -inf: never an improvement)."""

    def __init__(self, dataset, labels, metric: str, regression: bool):
        super().__init__()
        self.dataset, self.labels, self.metric, self.regression = dataset, labels, metric, regression
        self.key = f"val_{metric}"

    def on_epoch_end(self, epoch, logs=None):
        value = score(self.model, self.dataset, self.labels, self.metric, self.regression)
        if logs is not None:
            logs[self.key] = -np.inf if np.isnan(value) else value


class EpochHistory(keras.callbacks.CSVLogger):
    """history.csv: Keras' CSVLogger (append=True, so a resumed run goes on in the same file) with
    the run's columns: epoch (from 1, as Keras prints it), stage, loss, val_metric (the task's
    metric from `TaskMetric`), best (1 where the ModelCheckpoint kept the epoch) and seconds."""

    COLUMNS = ("stage", "loss", "val_metric", "best", "seconds")  # after CSVLogger's "epoch"

    def __init__(self, path: Path, stage: str, monitor: str, checkpoint: keras.callbacks.ModelCheckpoint):
        super().__init__(str(path), append=True)
        self.keys = list(self.COLUMNS)  # fixed columns (CSVLogger otherwise takes the first epoch's log keys)
        self.stage, self.monitor, self.checkpoint = stage, monitor, checkpoint
        self._t0, self._best_before = time.time(), checkpoint.best

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._best_before = time.time(), self.checkpoint.best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = float(logs.get(self.monitor, np.nan))
        best = self.checkpoint.best != self._best_before  # the checkpoint (before this) saved the epoch
        row = {"stage": self.stage, "loss": float(logs.get("loss", np.nan)), "val_metric": value,
               "best": int(best), "seconds": round(time.time() - self._t0, 1)}
        super().on_epoch_end(epoch + 1, row)
        metric = self.monitor[len("val_"):]
        print(f"  [{self.stage}] epoch {epoch + 1}: val {metric} = {value:.4f}{' (best)' if best else ''}", flush=True)


def best_score(history: Path, stage: str) -> float | None:
    """The best validation score of `stage` in a history.csv so far (None: no epoch yet)."""
    if not history.is_file():
        return None
    with open(history, newline="") as f:
        scores = [float(row["val_metric"]) for row in csv.DictReader(f) if row.get("stage") == stage]
    return max(scores) if scores else None


def unique_history(history: Path) -> None:
    """Keep one row per (epoch, stage) in history.csv: the last one written.

    A kill between an epoch's row and its BackupAndRestore checkpoint makes the resumed run train
    that epoch again and append a second row for it; the later row is the epoch the run went on
    from. Rewritten atomically, only when a duplicate exists (called when a stage's fit has ended,
    after CSVLogger closed the file)."""
    if not history.is_file():
        return
    with open(history, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept: dict[tuple, dict] = {}
    for row in rows:
        kept[(row.get("epoch"), row.get("stage"))] = row  # a later row replaces the earlier, keeping its place
    if not fields or len(kept) == len(rows):
        return
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields)  # the excel dialect, as CSVLogger writes it
    writer.writeheader()
    writer.writerows(kept.values())
    atomic_write_text(history, text.getvalue())


def restore_checkpoint(model: keras.Model, path: Path) -> bool:
    """Load a ModelCheckpoint (TensorFlow checkpoint format: loadable under every strategy, unlike a
    .weights.h5 under MultiWorkerMirroredStrategy); False when none was written."""
    if not Path(f"{path}.index").is_file():
        return False
    status = model.load_weights(str(path))
    if status is not None:
        status.expect_partial()  # e.g. optimizer slots a fresh model has not created yet
    return True


# -- one training run ------------------------------------------------------------------------------
@dataclass
class _Task:
    spec: Any  # embbert.datasets.tasks.TaskSpec
    train: Any  # the train split (at most max_train_examples)
    validation: Any
    test: Any


@dataclass
class _Datasets:
    train: Any
    validation: Any
    test: Any
    validation_labels: np.ndarray
    test_labels: np.ndarray
    steps_per_epoch: int | None  # None: one pass over the train split per epoch


@dataclass
class _Run:
    """What the stages of one run share."""

    config: EmbBertConfig
    run_dir: Path  # this worker's directory
    shared_dir: Path  # the chief's run directory (the same but on multi-worker workers > 0)
    metric: str
    data: _Datasets
    strategy: tf.distribute.Strategy
    callbacks: Sequence[keras.callbacks.Callback]
    tensorboard: bool
    verbose: int

    def state_path(self, stage: str, what: str) -> Path:
        """The chief's resume state of a stage (shared by every worker): "backup" or "best"."""
        return self.shared_dir / layout.TRAIN_STATE_DIR / f"{stage}_{what}"

    def best_checkpoint(self, stage: str) -> Path:
        return self.state_path(stage, "best") / "weights"


def _prepare_tokenizer(config: EmbBertConfig, run_dir: Path, train_texts: Sequence[str]) -> EmbBertConfig:
    from embbert.datasets.tokenizer import TOKENIZER_FILE, load_tokenizer, train_tokenizer

    target = run_dir / layout.TOKENIZER_DIR
    own = Path(layout.TOKENIZER_DIR)
    if config.tokenizer and Path(config.tokenizer) == own and (target / TOKENIZER_FILE).is_file():
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
        if not (target / TOKENIZER_FILE).is_file():
            print(f"training a {config.model.vocab_size}-token BPE tokenizer on the train split", flush=True)
            train_tokenizer(list(train_texts), vocab_size=config.model.vocab_size, out_dir=target)
    vocab = load_tokenizer(target).vocab_size
    if vocab > config.model.vocab_size:
        raise EmbBertError(
            f"tokenizer has {vocab} tokens but the {config.preset} preset's embedding has {config.model.vocab_size}"
        )
    return config.replace(tokenizer=layout.TOKENIZER_DIR)


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
    state_dir = run_dir / layout.TRAIN_STATE_DIR
    index = worker_index(config.train.strategy)
    if index > 0:
        # Multi-worker: only the chief (worker 0) writes the run directory. The other workers keep
        # their files in RUN_DIR/.worker-<i>/ and share the chief's resume state (BackupAndRestore and
        # best-epoch checkpoints), so a restarted cluster resumes from the chief's last finished epoch.
        private = run_dir / f"{layout.WORKER_DIR_PREFIX}{index}"
        own_state = private / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE
        kwargs["resume"] = bool(kwargs.get("resume")) and own_state.is_file()
        result = _train(config, private, shared_dir=run_dir, **kwargs)
        shutil.rmtree(private, ignore_errors=True)
        return result
    created = [p for p in (run_dir, state_dir, run_dir / layout.TOKENIZER_DIR, run_dir / layout.CONFIG)
               if not p.exists()]
    try:
        return _train(config, run_dir, **kwargs)
    except BaseException:
        if not (state_dir / layout.TRAIN_STATE).is_file():
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
    shared_dir: str | os.PathLike | None = None,
) -> dict:
    """Fine-tune float then QAT; returns the metrics written to metrics.json."""
    run_dir = Path(run_dir)
    config, state = _open_run(config, run_dir, resume)
    if resume and "init" in state:
        init = state["init"]  # the run's own start (scratch or a backbone), whatever the resuming command says
    else:
        state["init"] = str(init) if init else None
    keras.utils.set_random_seed(config.train.seed)
    config, task = _load_task(config)
    if init and not config.tokenizer and not resume:
        # The pretrained embeddings belong to the pretraining tokenizer: fine-tune with it.
        config = config.replace(tokenizer=str(pretrained_tokenizer_dir(init)))
    config = _prepare_tokenizer(config, run_dir, task.train.texts_a + (task.train.texts_b or []))
    _start_run(config, run_dir, state)
    run = _Run(config=config, run_dir=run_dir, shared_dir=Path(shared_dir) if shared_dir else run_dir,
               metric=task.spec.metric, data=_make_datasets(config, task, run_dir / layout.TOKENIZER_DIR),
               strategy=make_strategy(config.train.strategy), callbacks=callbacks, tensorboard=tensorboard,
               verbose=verbose)
    results: dict[str, Any] = {"task": config.task, "metric": run.metric, "preset": config.preset,
                               "max_length": config.max_length}
    float_model = _float_stage(run, state, init)
    results.update(_evaluate(run, float_model, "float"))
    qat_model = _qat_stage(run, float_model)
    results.update(_evaluate(run, qat_model, "qat"))
    results["train_examples"] = len(task.train)
    results["test_examples"] = len(task.test)
    _finish_run(run_dir, results)
    return results


def _open_run(config: EmbBertConfig, run_dir: Path, resume: bool) -> tuple[EmbBertConfig, dict]:
    """A new run (refused where a run already is) or the unfinished run to resume: its config and state."""
    if not config.task:
        raise EmbBertError("no task given (--task)")
    state_dir = run_dir / layout.TRAIN_STATE_DIR
    state_file = state_dir / layout.TRAIN_STATE
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if (run_dir / layout.METRICS).is_file() or state_dir.exists():
            raise EmbBertError(f"{run_dir} already holds a run; use --resume to continue it or choose another --out")
    if resume:
        if not state_file.is_file():
            raise EmbBertError(f"{run_dir}: nothing to resume (no unfinished run there)")
        config = EmbBertConfig.load(run_dir)  # the interrupted run's own settings
    state_dir.mkdir(parents=True, exist_ok=True)
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"float_done": False}
    return config, state


def _load_task(config: EmbBertConfig) -> tuple[EmbBertConfig, _Task]:
    """The task's splits (the train split cut to max_train_examples, seeded); the config with its labels."""
    from embbert.datasets.loading import load_task, resolve_data_dir
    from embbert.datasets.tasks import get_task

    spec = get_task(config.task)
    data = load_task(spec, resolve_data_dir(config.data_dir), seed=config.train.seed)
    train_split = data.train
    limit = config.train.max_train_examples
    if limit and len(train_split) > limit:
        rng = np.random.default_rng(config.train.seed)
        train_split = train_split.subset(sorted(rng.choice(len(train_split), limit, replace=False)))
    config = config.replace(num_labels=spec.num_labels, label_names=tuple(spec.label_names or ()), task=str(config.task))
    return config, _Task(spec, train_split, data.validation, data.test)


def _write_state(run_dir: Path, state: dict) -> None:
    atomic_write_text(run_dir / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE, json.dumps(state))


def _start_run(config: EmbBertConfig, run_dir: Path, state: dict) -> None:
    """Write config.json and the resume state: from here on the run can be resumed."""
    config.save(run_dir)
    if not (run_dir / layout.TRAIN_STATE_DIR / layout.TRAIN_STATE).is_file():
        _write_state(run_dir, state)


def _make_datasets(config: EmbBertConfig, task: _Task, tokenizer_dir: Path) -> _Datasets:
    from embbert.datasets.pipeline import make_dataset

    bs, L, seed = config.train.batch_size, config.max_length, config.train.seed
    steps = config.train.steps_per_epoch
    return _Datasets(
        train=make_dataset(task.train, tokenizer_dir, L, bs, shuffle=True, seed=seed, repeat=bool(steps)),
        validation=make_dataset(task.validation, tokenizer_dir, L, bs),
        test=make_dataset(task.test, tokenizer_dir, L, bs),
        validation_labels=np.asarray(task.validation.labels),
        test_labels=np.asarray(task.test.labels),
        steps_per_epoch=steps,
    )


def _stage_callbacks(run: _Run, stage: str) -> list[keras.callbacks.Callback]:
    """The callbacks of a stage's fit, in the order they must run at the end of an epoch."""
    metric = TaskMetric(run.data.validation, run.data.validation_labels, run.metric, run.config.regression)
    best = keras.callbacks.ModelCheckpoint(
        str(run.best_checkpoint(stage)), monitor=metric.key, mode="max", save_best_only=True,
        save_weights_only=True, initial_value_threshold=best_score(run.shared_dir / layout.HISTORY, stage))
    cbs: list[keras.callbacks.Callback] = [
        metric,
        best,
        EpochHistory(run.run_dir / layout.HISTORY, stage, metric.key, best),
        keras.callbacks.BackupAndRestore(str(run.state_path(stage, "backup"))),  # after the row is written
        *run.callbacks,
    ]
    if run.tensorboard:
        cbs.append(keras.callbacks.TensorBoard(str(run.run_dir / layout.TENSORBOARD_DIR / stage)))
    return cbs


def fit_verbosity(verbose: int, stream=None) -> int:
    """Keras' progress bar (1) on a terminal; one line per epoch (2) when the output goes to a file or pipe."""
    stream = sys.stdout if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return 2 if verbose == 1 and not (callable(isatty) and isatty()) else verbose


def _fit_stage(run: _Run, model: keras.Model, stage: str, epochs: int) -> None:
    """`model.fit` for `epochs` (resumed where a backup is), then the best epoch's weights restored."""
    if epochs <= 0:
        return
    model.fit(run.data.train, epochs=epochs, steps_per_epoch=run.data.steps_per_epoch,
              callbacks=_stage_callbacks(run, stage), verbose=fit_verbosity(run.verbose))
    unique_history(run.run_dir / layout.HISTORY)  # an epoch trained again after a kill: its last row only
    wait_for_workers(run.strategy)  # the chief has written the best checkpoint that every worker loads
    restore_checkpoint(model, run.best_checkpoint(stage))


def _float_stage(run: _Run, state: dict, init: str | os.PathLike | None) -> keras.Model:
    """Stage 1: the float classifier (from `init`'s backbone where given), trained and saved; or,
    when a resumed run had finished it, loaded."""
    config = run.config
    with run.strategy.scope():
        model = build_classifier(config)
        if init:
            load_backbone_into(model, init, config)
        compile_classifier(model, config, config.train.learning_rate)
    if state["float_done"]:
        if not restore_checkpoint(model, run.best_checkpoint("float")):  # the weights of float.weights.h5
            model.load_weights(str(run.run_dir / layout.FLOAT_WEIGHTS))
        print(f"float stage already done: loaded {layout.FLOAT_WEIGHTS}", flush=True)
        return model
    print(f"stage 1/2: float training, {config.train.epochs} epochs", flush=True)
    _fit_stage(run, model, "float", config.train.epochs)
    save_weights(model, run.run_dir / layout.FLOAT_WEIGHTS)
    state["float_done"] = True
    _write_state(run.run_dir, state)
    return model


def _qat_stage(run: _Run, float_model: keras.Model) -> keras.Model:
    """Stage 2: the QAT model of the float one, calibrated, trained and saved."""
    config = run.config
    with run.strategy.scope():
        model = quantize_model(float_model)
        compile_classifier(model, config, config.train.qat_learning_rate)
    print(f"stage 2/2: quantisation-aware training, {config.train.qat_epochs} epochs", flush=True)
    calibrate(model, run.data.train, batches=8)
    _fit_stage(run, model, "qat", config.train.qat_epochs)
    save_weights(model, run.run_dir / layout.QAT_WEIGHTS)
    return model


def _evaluate(run: _Run, model: keras.Model, name: str) -> dict[str, float]:
    regression = run.config.regression
    return {
        f"{name}_val": score(model, run.data.validation, run.data.validation_labels, run.metric, regression),
        f"{name}_test": score(model, run.data.test, run.data.test_labels, run.metric, regression),
    }


def _finish_run(run_dir: Path, results: dict) -> None:
    """metrics.json; the resume state is removed (the run is complete)."""
    atomic_write_text(run_dir / layout.METRICS, json.dumps(results, indent=2) + "\n")
    shutil.rmtree(run_dir / layout.TRAIN_STATE_DIR, ignore_errors=True)


def calibrate(qat_model: keras.Model, dataset, batches: int = 8) -> None:
    """Initialise the activation ranges of a fresh QAT model (forward passes in training mode).

    The first training batch sets each `ActivationQuantizer` range; later batches move it by
    EMA. Without this a QAT model with 0 QAT epochs would keep the initial [-6, 6] ranges.
    Dropout is switched off for these passes so it does not widen the ranges.
    """
    for i, batch in enumerate(dataset):
        if i >= batches:
            break
        _calibration_step(qat_model, batch[0] if isinstance(batch, tuple) else batch)  # (x, y) or x alone


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
