"""Issue 24, findings 2 and 6: `embbert train --force`, and what a stopped `train` tells the user.

The training function itself is replaced by a stand-in (these tests are about the command around it:
what it removes before training, what it says when training stops); the real training, its resume
and its history are tested in tests/test_training.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from embbert.cli import main
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError


def _task(folder: Path) -> Path:
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({
        "name": "mine", "text_columns": ["text"], "label_column": "label", "label_names": ["a", "b"],
        "splits": {"train": "train.csv", "test": "test.csv"}}))
    (folder / "train.csv").write_text("text,label\nhello,a\nbye,b\n")
    (folder / "test.csv").write_text("text,label\nhi,b\n")
    return folder


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMBBERT_DATA_DIR", raising=False)
    _task(tmp_path / "task")
    return tmp_path


@pytest.fixture
def stand_in(monkeypatch):
    """Replace the training with FUNC(out): what it sees of the run folder when called."""
    from embbert.keras_model import train as train_module

    def install(func):
        def fake(config, out, **kwargs):
            return func(Path(out))
        monkeypatch.setattr(train_module, "train", fake)
    return install


ARGV = ["train", "--task", "task", "--preset", "nano", "--out", "rd"]


def test_force_removes_the_run_and_keeps_the_neighbour(here, capsys, stand_in, unfinished_train):
    unfinished_train(here / "rd", history=True)
    assert main(ARGV) == 2 and "--force" in capsys.readouterr().err  # refused without it, and says so
    seen = {}

    def training(out):
        seen["files"] = sorted(p.name for p in out.iterdir())
        return {"metric": "accuracy", "float_test": 0.5, "qat_test": 0.5}

    stand_in(training)
    assert main(ARGV + ["--force"]) == 0
    assert seen["files"] == ["neighbour.txt"]  # the run's files gone before training, the user's kept
    assert (here / "rd" / "neighbour.txt").read_text() == "keep me\n"


def test_force_and_resume_together_are_refused(here, capsys, unfinished_train):
    unfinished_train(here / "rd", history=True)
    with pytest.raises(SystemExit) as exc:
        main(ARGV + ["--force", "--resume"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("stop,code,expected", [
    (KeyboardInterrupt, 130, "interrupted; rd keeps the finished epochs: continue it with the same command and --resume"),
    (lambda: EmbBertError("disk trouble"), 1, "disk trouble (rd keeps the finished epochs: fix this, then continue it "
                                              "with the same command and --resume"),
], ids=["sigint", "error"])
def test_a_stopped_train_says_how_to_resume(here, capsys, stand_in, stop, code, expected):
    def training(out):
        out.mkdir()
        (out / ".train").mkdir()
        (out / ".train" / "state.json").write_text('{"float_done": false}')  # resumable from here on
        raise stop()

    stand_in(training)
    assert main(ARGV) == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and expected in lines[0], lines


# --- pretrain: a folder holding a pretraining is refused before TensorFlow unless --resume or --force --------
def _pretrain_folder(folder: Path) -> Path:
    folder.mkdir()
    EmbBertConfig.create("tiny", 64, tokenizer="tokenizer").save(folder)
    (folder / "backbone.weights.h5").write_bytes(b"weights")
    (folder / "pretrain.json").write_text("{}")
    (folder / "neighbour.txt").write_text("keep me\n")
    return folder


def test_pretrain_force_removes_only_its_files(here, capsys, monkeypatch):
    from embbert.keras_model import pretrain as pretrain_module

    (here / "c.txt").write_text("some text\n")
    _pretrain_folder(here / "pd")
    argv = ["pretrain", "--corpus", "c.txt", "--out", "pd"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a pretraining run" in err and "--force" in err
    seen = {}

    def fake(config, corpus, out, settings, **kwargs):
        seen["files"] = sorted(p.name for p in Path(out).iterdir())
        raise KeyboardInterrupt  # stopped before anything resumable

    monkeypatch.setattr(pretrain_module, "pretrain", fake)
    assert main(argv + ["--force"]) == 130
    assert seen["files"] == ["neighbour.txt"]  # its files gone before pretraining, the user's kept
    assert (here / "pd" / "neighbour.txt").read_text() == "keep me\n"
