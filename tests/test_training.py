"""keras_model training: float + QAT fine-tuning, resume, pretraining, init, mirrored strategy, bench (issue 4)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from embbert.core.config import EmbBertConfig, TrainConfig
from embbert.core.errors import EmbBertError

HISTORY_COLUMNS = ["epoch", "stage", "loss", "val_metric", "best", "seconds"]


def _task_and_tokenizer(root: Path, *, n_train: int, n_test: int, seed: int = 0, vocab: int = 800):
    from embbert.datasets.loading import load_task
    from embbert.datasets.synthetic import write_synthetic_task
    from embbert.datasets.tokenizer import train_tokenizer

    task = write_synthetic_task(root / "task", num_labels=2, n_train=n_train, n_test=n_test, seed=seed)
    data = load_task(str(task))
    tok = train_tokenizer(list(data.train.texts_a), vocab, root / "tokenizer")
    return task, tok


def _config(task, tok, **train) -> EmbBertConfig:
    settings = dict(batch_size=16, learning_rate=1e-3, qat_learning_rate=1e-4, seed=0)
    settings.update(train)
    return EmbBertConfig.create("tiny", 32, task=str(task), tokenizer=str(tok), train=TrainConfig(**settings))


def _history(run: Path) -> list[dict]:
    with open(run / "history.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == HISTORY_COLUMNS
        return list(reader)


# -- float + QAT fine-tuning ---------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from embbert.keras_model.train import train

    root = tmp_path_factory.mktemp("finetune")
    task, tok = _task_and_tokenizer(root, n_train=480, n_test=300)
    config = _config(task, tok, epochs=10, qat_epochs=2)
    run = root / "run"
    metrics = train(config, run, verbose=0)
    return config, run, metrics


def test_finetune_writes_metrics_and_artefacts(finished_run):
    config, run, metrics = finished_run
    on_disk = json.loads((run / "metrics.json").read_text())
    assert on_disk == metrics
    for key in ("float_val", "float_test", "qat_val", "qat_test"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["metric"] == "accuracy" and metrics["preset"] == "tiny" and metrics["max_length"] == 32
    assert metrics["test_examples"] == 300
    assert metrics["train_examples"] == 480 - round(0.1 * 480)  # 10 % held out for validation
    assert metrics["float_test"] >= 0.9  # the synthetic task is clearly separable
    assert abs(metrics["qat_test"] - metrics["float_test"]) <= 0.02
    for name in ("config.json", "float.weights.h5", "qat.weights.h5", "tokenizer/tokenizer.json"):
        assert (run / name).is_file(), name
    assert not (run / ".train").exists()  # resume state removed when the run completes
    saved = EmbBertConfig.load(run)
    assert saved.num_labels == 2 and saved.tokenizer == "tokenizer" and saved.train == config.train


def test_finetune_history_one_row_per_epoch_and_stage(finished_run):
    config, run, metrics = finished_run
    rows = _history(run)
    stages = [(r["stage"], int(r["epoch"])) for r in rows]
    assert stages == [("float", e) for e in range(1, 11)] + [("qat", e) for e in range(1, 3)]
    for stage in ("float", "qat"):
        mine = [r for r in rows if r["stage"] == stage]
        assert int(mine[0]["best"]) == 1  # the first epoch always improves on -inf
        best = max(float(r["val_metric"]) for r in mine)
        assert best == pytest.approx(metrics[f"{stage}_val"], abs=1e-6)  # the best epoch's weights are kept
        assert all(float(r["loss"]) > 0 for r in mine)
    losses = [float(r["loss"]) for r in rows if r["stage"] == "float"]
    assert losses[-1] < losses[0]


def test_finished_run_loads_and_scores(finished_run):
    from embbert.datasets.loading import load_task
    from embbert.datasets.pipeline import encode_texts
    from embbert.keras_model.model import load_model

    config, run, metrics = finished_run
    data = load_task(config.task)
    tok, seg = encode_texts(run / "tokenizer", data.test.texts_a, None, 32)
    x = {"token_ids": tok, "segment_ids": seg}
    for qat, key in ((False, "float_test"), (True, "qat_test")):
        model = load_model(run, qat=qat)
        acc = float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == np.asarray(data.test.labels)))
        assert acc == pytest.approx(metrics[key], abs=1e-9)


def test_train_refuses_existing_run_and_bad_resume(finished_run, tmp_path):
    from embbert.keras_model.train import train

    config, run, _ = finished_run
    with pytest.raises(EmbBertError, match="already holds a run"):
        train(config, run, verbose=0)
    with pytest.raises(EmbBertError, match="nothing to resume"):
        train(config, run, resume=True, verbose=0)  # finished
    with pytest.raises(EmbBertError, match="nothing to resume"):
        train(config, tmp_path / "missing", resume=True, verbose=0)
    with pytest.raises(EmbBertError, match="task"):
        train(config.replace(task=None), tmp_path / "no_task", verbose=0)


# -- interrupt and resume ------------------------------------------------------------------
class _Interrupt(Exception):
    pass


def _stop_after_first_epoch():
    """A callback that interrupts training after its first epoch (a simulated crash)."""
    from embbert.keras_model._tf import keras

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise _Interrupt("simulated crash after epoch 1")

    return StopAfterFirstEpoch()


def test_interrupt_and_resume(tmp_path):
    from embbert.keras_model.train import train

    task, tok = _task_and_tokenizer(tmp_path, n_train=160, n_test=40, vocab=400)
    config = _config(task, tok, epochs=3, qat_epochs=1)
    run = tmp_path / "run"
    with pytest.raises(_Interrupt):
        train(config, run, callbacks=[_stop_after_first_epoch()], verbose=0)
    assert (run / ".train" / "state.json").is_file() or (run / ".train").is_dir()
    assert not (run / "metrics.json").exists()
    assert [(r["stage"], r["epoch"]) for r in _history(run)] == [("float", "1")]
    with pytest.raises(EmbBertError, match="already holds a run"):
        train(config, run, verbose=0)  # without --resume
    metrics = train(config, run, resume=True, verbose=0)
    assert set(metrics) >= {"float_val", "float_test", "qat_val", "qat_test"}
    rows = _history(run)
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("float", 1), ("float", 2), ("float", 3), ("qat", 1)]
    assert (run / "metrics.json").is_file() and not (run / ".train").exists()
    with pytest.raises(EmbBertError, match="nothing to resume"):
        train(config, run, resume=True, verbose=0)



def test_kill_between_history_row_and_backup_then_resume_keeps_one_row_per_epoch(tmp_path, monkeypatch):
    """A SIGKILL after a QAT epoch's history row but before its BackupAndRestore checkpoint: the
    resumed run trains that epoch again, and history.csv still has one row per (epoch, stage)."""
    from embbert.keras_model._tf import keras
    from embbert.keras_model.train import train

    real = keras.callbacks.BackupAndRestore.on_epoch_end

    def killed(self, epoch, logs=None):
        if "qat" in str(self.backup_dir) and epoch == 1:
            raise _Interrupt("killed after the row of QAT epoch 2, before its backup")
        return real(self, epoch, logs)

    task, tok = _task_and_tokenizer(tmp_path, n_train=96, n_test=32, vocab=400)
    config = _config(task, tok, epochs=1, qat_epochs=2)
    run = tmp_path / "run"
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", killed)
    with pytest.raises(_Interrupt):
        train(config, run, verbose=0)
    assert [(r["stage"], r["epoch"]) for r in _history(run)] == [("float", "1"), ("qat", "1"), ("qat", "2")]
    assert json.loads((run / ".train" / "state.json").read_text())["init"] is None  # its start: from scratch
    monkeypatch.setattr(keras.callbacks.BackupAndRestore, "on_epoch_end", real)
    train(config, run, resume=True, verbose=0)
    assert [(r["stage"], r["epoch"]) for r in _history(run)] == [("float", "1"), ("qat", "1"), ("qat", "2")]


@pytest.mark.slow  # a second interrupted-and-resumed training; the default suite stays under 15 minutes
def test_resume_restores_the_best_epoch_of_the_whole_run(tmp_path):
    """The best epoch before an interruption stays the run's best: its score and weights survive the restart."""
    from embbert.keras_model.model import build_classifier, load_model
    from embbert.keras_model.train import restore_checkpoint, train

    task, tok = _task_and_tokenizer(tmp_path, n_train=96, n_test=32, vocab=400)
    config = _config(task, tok, epochs=3, qat_epochs=0)
    run = tmp_path / "run"
    with pytest.raises(_Interrupt):
        train(config, run, callbacks=[_stop_after_first_epoch()], verbose=0)
    first = _history(run)
    assert [(r["epoch"], r["best"]) for r in first] == [("1", "1")]
    epoch1 = build_classifier(EmbBertConfig.load(run))
    assert restore_checkpoint(epoch1, run / ".train" / "float_best" / "weights")
    # As if epoch 1 had scored above anything a later epoch can (accuracy <= 1): whatever epochs 2
    # and 3 score after the restart, the run must end with the weights epoch 1 left before it.
    text = (run / "history.csv").read_text()
    (run / "history.csv").write_text(text.replace(f",{first[0]['val_metric']},", ",2.0,"))
    assert _history(run)[0]["val_metric"] == "2.0"
    metrics = train(config, run, resume=True, verbose=0)
    rows = _history(run)
    assert [(r["stage"], int(r["epoch"]), int(r["best"])) for r in rows] == [("float", 1, 1), ("float", 2, 0),
                                                                             ("float", 3, 0)]
    assert metrics["float_val"] == pytest.approx(float(first[0]["val_metric"]), abs=1e-12)
    final = load_model(run).get_weights()
    assert len(final) == len(epoch1.get_weights()) > 0
    for a, b in zip(final, epoch1.get_weights()):
        np.testing.assert_array_equal(a, b)


# -- pretraining and --init ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    from embbert.datasets.synthetic import write_corpus
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.keras_model.pretrain import PretrainSettings, pretrain

    root = tmp_path_factory.mktemp("pretrain")
    corpus = write_corpus(root / "corpus.txt", 300, seed=1)
    tok = train_tokenizer([corpus], 400, root / "tokenizer")
    config = EmbBertConfig.create("tiny", 32, tokenizer=str(tok), train=TrainConfig(batch_size=16, seed=0))
    out = root / "backbone"
    settings = PretrainSettings(steps=50, learning_rate=3e-3, warmup_steps=5, eval_every=25, heldout_sequences=16)
    summary = pretrain(config, [corpus], out, settings, verbose=0)
    return config, out, summary


def _backbone_weights(model):
    """{layer name: weights} of the embedder and encoder layers."""
    from embbert.keras_model.backbone import EmbBertBackbone

    backbone = EmbBertBackbone.of(model)
    return {layer.name: [w.copy() for w in layer.get_weights()] for layer in [backbone.embedder, *backbone.encoders]}


def _backbone_names(config):
    return ["embedder"] + [f"encoder_{i}" for i in range(config.model.layers)]


def test_load_backbone_into_copies_pretrained_weights(pretrained):
    from embbert.core import layout
    from embbert.keras_model.model import build_classifier, build_pretrainer, load_backbone_into

    config, out, _ = pretrained
    names = _backbone_names(config)
    pre = build_pretrainer(EmbBertConfig.load(out), max_predictions=1)
    pre.load_weights(str(out / layout.PRETRAINER_WEIGHTS))
    expected = _backbone_weights(pre)
    assert sorted(expected) == sorted(names)
    clf_config = EmbBertConfig.create("tiny", 32, num_labels=3)
    model = build_classifier(clf_config)
    before = _backbone_weights(model)
    load_backbone_into(model, out, clf_config)
    after = _backbone_weights(model)
    for n in names:
        assert len(after[n]) == len(expected[n]) > 0
        for a, e, b in zip(after[n], expected[n], before[n]):
            np.testing.assert_array_equal(a, e)
        assert any(np.abs(e - b).max() > 1e-3 for e, b in zip(expected[n], before[n]))
    with pytest.raises(EmbBertError, match="does not match"):
        load_backbone_into(build_classifier(EmbBertConfig.create("nano", 32)), out, EmbBertConfig.create("nano", 32))
    with pytest.raises(EmbBertError):
        load_backbone_into(model, out.parent, clf_config)  # not a pretrain output


def test_train_with_init_starts_from_pretrained_backbone(pretrained, tmp_path):
    from embbert.datasets.synthetic import write_synthetic_task
    from embbert.keras_model._tf import keras
    from embbert.core import layout
    from embbert.keras_model.model import build_pretrainer
    from embbert.keras_model.train import train

    pre_config, out, _ = pretrained
    names = _backbone_names(pre_config)
    pre = build_pretrainer(EmbBertConfig.load(out), max_predictions=1)
    pre.load_weights(str(out / layout.PRETRAINER_WEIGHTS))
    expected = _backbone_weights(pre)

    seen = {}

    class CaptureStart(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if not seen:
                seen.update(_backbone_weights(self.model))

    task = write_synthetic_task(tmp_path / "task", num_labels=2, n_train=64, n_test=16, seed=3)
    config = _config(task, out / "tokenizer", epochs=1, qat_epochs=0)
    metrics = train(config, tmp_path / "run", init=out, callbacks=[CaptureStart()], verbose=0)
    assert set(seen) == set(names)
    for n in names:
        for a, e in zip(seen[n], expected[n]):
            np.testing.assert_array_equal(a, e)
    assert np.isfinite(metrics["float_test"]) and np.isfinite(metrics["qat_test"])
    with pytest.raises(EmbBertError):
        train(config, tmp_path / "run2", init=tmp_path / "no_backbone", verbose=0)


# -- MirroredStrategy over two logical CPUs ------------------------------------------------
MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json
    from embbert.keras_model._tf import keras, tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
    import numpy as np
    from embbert.core.config import EmbBertConfig
    from embbert.keras_model.model import build_classifier
    from embbert.keras_model.distribute import make_strategy
    from embbert.keras_model.train import compile_classifier

    config = EmbBertConfig.create("tiny", 16, num_labels=2)
    strategy = make_strategy("mirrored")
    with strategy.scope():
        model = build_classifier(config)
        compile_classifier(model, config, 1e-3)
    rng = np.random.default_rng(0)
    tok = rng.integers(5, 2048, (32, 16)).astype(np.int32)
    tok[:, 0] = 2
    seg = np.ones_like(tok)
    y = rng.integers(0, 2, 32)
    before = [w.copy() for w in model.get_weights()]
    hist = model.fit({"token_ids": tok, "segment_ids": seg}, y, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0)
    changed = any(np.abs(a - b).max() > 0 for a, b in zip(before, model.get_weights()))
    print("RESULT " + json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "devices": list(strategy.extended.worker_devices),
        "loss": [float(v) for v in hist.history["loss"]],
        "changed": bool(changed),
    }))
    """
)


def test_mirrored_strategy_on_two_logical_cpus():
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True, text=True, timeout=240)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["replicas"] == 2
    assert len(result["devices"]) == 2 and all("CPU" in d for d in result["devices"])
    assert len(result["loss"]) == 1 and np.isfinite(result["loss"][0])
    assert result["changed"]


def test_progress_is_one_line_per_epoch_when_not_a_terminal(tmp_path):
    """Keras' progress bar fills log files (381 KB for the main job): a file or pipe gets verbose=2."""
    import io

    from embbert.keras_model.train import fit_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity(1, Terminal()) == 1
    assert fit_verbosity(1, io.StringIO()) == 2
    with open(tmp_path / "log.txt", "w") as f:
        assert fit_verbosity(1, f) == 2
    assert fit_verbosity(0, io.StringIO()) == 0 and fit_verbosity(2, Terminal()) == 2


def test_make_strategy_names():
    from embbert.keras_model.distribute import make_strategy

    assert make_strategy("default").num_replicas_in_sync == 1
    with pytest.raises(EmbBertError):
        make_strategy("tpu")


# -- bench train-speed (smoke test, no timing assertions) ----------------------------------
def test_bench_train_speed_smoke():
    from embbert.bench.train_speed import train_speed

    r = train_speed("nano", 16, batch_size=4, steps=2)
    assert r["preset"] == "nano" and r["max_length"] == 16 and r["batch_size"] == 4 and r["steps"] == 2
    assert r["float_steps_per_s"] > 0 and r["qat_steps_per_s"] > 0
    assert r["qat_over_float"] == pytest.approx(r["qat_steps_per_s"] / r["float_steps_per_s"])
    assert r["interleaved"] is True and r["float_cpu_ms_per_step"] > 0 and r["qat_cpu_ms_per_step"] > 0
    with pytest.raises(EmbBertError):
        train_speed("nano", 16, steps=0)


def test_bench_train_speed_cli_registration():
    import argparse

    from embbert.bench.train_speed import _cmd_train_speed, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="bench_command"))
    args = parser.parse_args(["train-speed", "--preset", "tiny", "--max-length", "32", "--steps", "3", "--json"])
    assert args.func is _cmd_train_speed
    assert (args.preset, args.max_length, args.batch_size, args.steps, args.json) == ("tiny", 32, 32, 3, True)
    with pytest.raises(SystemExit):
        parser.parse_args(["train-speed", "--preset", "huge", "--max-length", "32"])


def test_bench_train_speed_in_embbert_cli():
    from embbert.cli import build_parser
    from embbert.bench.train_speed import _cmd_train_speed

    args = build_parser().parse_args(["bench", "train-speed", "--preset", "nano", "--max-length", "16",
                                      "--batch-size", "4", "--steps", "2", "--json"])
    assert args.func is _cmd_train_speed and args.steps == 2 and args.batch_size == 4
