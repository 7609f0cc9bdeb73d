"""Issue 24, findings 3 and 5: settings silently accepted, errors given late or with the wrong exit code.

Every case runs the CLI in this process and must end before TensorFlow is imported: exit code 2,
exactly one stderr line `embbert: error: ...`, and no file written or changed in the folder it ran in.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from embbert.cli import main
from embbert.core.config import EmbBertConfig


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _fails(argv, folder: Path, capsys, *expected: str) -> str:
    """Run `embbert ARGV` in `folder`: exit 2, one error line holding every EXPECTED text, nothing changed."""
    had_tf = "tensorflow" in sys.modules
    before = _tree(folder)
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("embbert: error: "), err
    for text in expected:
        assert text in lines[0], err
    assert _tree(folder) == before
    assert had_tf or "tensorflow" not in sys.modules, "the check ran after TensorFlow was imported"
    return lines[0]


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMBBERT_DATA_DIR", raising=False)
    return tmp_path


def _unfinished_pretrain(folder: Path) -> Path:
    folder.mkdir()
    EmbBertConfig.create("tiny", 64, tokenizer="tokenizer").save(folder)
    (folder / ".pretrain").mkdir()
    settings = {"steps": 400, "learning_rate": 1e-3, "schedule": "cosine", "warmup_steps": 20, "packing": "full",
                "eval_every": 100, "heldout_sequences": 512, "jit_compile": False, "summary_slots": 0}
    (folder / ".pretrain" / "settings.json").write_text(json.dumps(
        {"settings": settings, "corpus": [str(folder / "c.txt")], "init": None}))
    (folder / "c.txt").write_text("some text\n")
    return folder


# --- finding 3: --resume with other settings --------------------------------------------------
@pytest.mark.parametrize("command", ["train", "run"])
def test_resume_with_other_settings_lists_the_differences(here, capsys, command, unfinished_train):
    unfinished_train(here / "rd")
    line = _fails([command, "--task", "sst2", "--preset", "tiny", "--max-length", 32, "--qat-epochs", 5,
                   "--out", "rd", "--resume"], here, capsys,
                  "--task sst2 (saved: emotion)", "--preset tiny (saved: nano)", "--max-length 32 (saved: 16)",
                  "--qat-epochs 5 (saved: 2)")
    assert ("--force" in line) == (command == "run")


def test_pretrain_resume_with_other_steps_is_refused(here, capsys):
    _unfinished_pretrain(here / "pd")
    _fails(["pretrain", "--resume", "--steps", 60, "--out", "pd"], here, capsys, "--steps 60 (saved: 400)")


# --- finding 5: checks before TensorFlow ------------------------------------------------------
def test_pretrain_resume_with_nothing_to_resume(here, capsys):
    (here / "pd").mkdir()
    _fails(["pretrain", "--resume", "--out", "pd"], here, capsys, "nothing to resume")


def test_pretrain_warmup_not_below_steps(here, capsys):
    (here / "c.txt").write_text("some text\n")
    _fails(["pretrain", "--corpus", "c.txt", "--steps", 10, "--warmup-steps", 10, "--out", "pd"], here, capsys,
           "--warmup-steps 10", "--steps 10")


# --- finding 5: exit 2 for bad arguments ------------------------------------------------------
@pytest.mark.parametrize("argv,expected", [
    (["train", "--task", "emotion", "--out", "r", "--max-length", 1], "--max-length 1"),
    (["train", "--task", "emotion", "--out", "r", "--max-length", 300], "--max-length 300"),
    (["run", "--out", "r", "--max-length", 300], "256 positions"),
    (["pretrain", "--corpus", "c.txt", "--out", "r", "--max-length", 1], "at least 2"),
    (["model", "summary", "--preset", "nano", "--num-labels", 2, "--max-length", 300], "nano"),
    (["bench", "accuracy", "--tasks", "emotion", "--max-length", 300, "--runs-dir", "r"], "--max-length 300"),
    (["tokenizer", "train", "--corpus", "nope.txt", "--out", "r"], "nope.txt: --corpus: corpus file not found"),
    (["export", "/nope"], "/nope: run directory not found"),
    (["bench", "accuracy", "--tasks", "nosuch", "--runs-dir", "r"], "unknown task 'nosuch'"),
], ids=["train-L1", "train-L300", "run-L300", "pretrain-L1", "summary-L300", "bench-L300", "missing-corpus",
        "export-nope", "bench-unknown-task"])
def test_bad_argument_exits_2(here, capsys, argv, expected):
    (here / "c.txt").write_text("some text\n")
    (here / "neighbour.txt").write_text("keep me\n")
    _fails(argv, here, capsys, expected)


# --- finding 5: a custom task's files and a data directory without the task, before TensorFlow ----------
def _custom_task(folder: Path, test_csv: str | None) -> Path:
    folder.mkdir()
    (folder / "task.json").write_text(json.dumps({
        "name": "mine", "text_columns": ["text"], "label_column": "label", "label_names": ["a", "b"],
        "splits": {"train": "train.csv", "test": "test.csv"}}))
    (folder / "train.csv").write_text("text,label\nhello,a\nbye,b\n")
    if test_csv is not None:
        (folder / "test.csv").write_text(test_csv)
    return folder


@pytest.mark.parametrize("test_csv,expected", [
    (None, "test.csv: file not found (expected the test split of task mine)"),
    ("text,lab\nhello,a\n", "test.csv: missing column(s) label"),
    ("text,label\n", "test.csv: no rows"),
], ids=["missing-split", "missing-label-column", "empty-split"])
@pytest.mark.parametrize("command", ["train", "run"])
def test_custom_task_files_checked_before_tensorflow(here, capsys, command, test_csv, expected):
    _custom_task(here / "task", test_csv)
    _fails([command, "--task", "task", "--out", "r"], here, capsys, expected)


@pytest.mark.parametrize("command", ["train", "run"])
def test_data_dir_without_the_task_never_tries_the_hub(here, capsys, monkeypatch, command):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the code as it was tried the hub: fail fast there
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (here / "data" / "hub").mkdir(parents=True)
    _fails([command, "--task", "emotion", "--data-dir", "data", "--out", "r"], here, capsys,
           "dair-ai/emotion/train.jsonl: file not found", "the hub is used only without --data-dir")


def test_bench_memory_length_beyond_the_preset(here, capsys):
    rd = here / "rd"
    rd.mkdir()
    EmbBertConfig.create("nano", 16, task="emotion", num_labels=6, tokenizer="tokenizer").save(rd)
    (rd / "qat.weights.h5").write_bytes(b"placeholder")
    _fails(["bench", "memory", "rd", "--lengths", 64, 300], here, capsys,
           "--lengths 300: more than the 256 positions of the nano preset")


# --- finding 3: the rest of what was silently accepted ----------------------------------------------
SHIPPED_TOKENIZER = Path(__file__).resolve().parents[1] / "keras_model" / "pretrained" / "tiny_en" / "tokenizer"


def test_data_list_on_a_folder_without_hub(here, capsys):
    (here / "notdata").mkdir()
    (here / "notdata" / "notes.txt").write_text("x\n")
    _fails(["data", "list", "--data-dir", "notdata"], here, capsys, "notdata: no hub/ (or local/) folder inside")


def test_whitespace_only_corpus(here, capsys):
    (here / "blank.txt").write_text("   \n\t\n \n")
    _fails(["tokenizer", "train", "--corpus", "blank.txt", "--vocab-size", 300, "--out", "tok"], here, capsys,
           "corpus has only blank lines (3)")


def test_vocab_size_beyond_every_preset(here, capsys):
    (here / "c.txt").write_text("the quick brown fox\n")
    _fails(["tokenizer", "train", "--corpus", "c.txt", "--vocab-size", 100000000, "--out", "tok"], here, capsys,
           "--vocab-size 100000000: more than 16384")


def _tokenizer_copy(here: Path) -> Path:
    import shutil

    return Path(shutil.copytree(SHIPPED_TOKENIZER, here / "tok"))


def test_encode_pair_that_would_drop_both_texts(here, capsys):
    _tokenizer_copy(here)
    _fails(["tokenizer", "encode", "--tokenizer", "tok", "--text", "hello world", "--pair-text", "x",
            "--max-length", 3], here, capsys, "--max-length 3: at least 5")


@pytest.mark.parametrize("name,content,expected", [
    ("tokenizer.json", "truncated", "tokenizer.json: not valid JSON"),
    ("tokenizer.json", b"\xff\x8a\x00random\x13bytes", "tokenizer.json: not valid JSON"),
    ("tokenizer.json", '{"model": {"type": "BPE", "vocab": {"a": 0}}}', "tokenizer.json: not the BPE of vocab.json"),
    ("tokenizer_config.json", '"hello"', "tokenizer_config.json: expected the config of a byte-level BPE"),
    ("tokenizer_config.json", '{"type": "byte_level_bpe", "vocab_size": 7}', '"vocab_size": 2048'),
], ids=["truncated", "random-bytes", "other-vocab", "config-not-object", "config-wrong-size"])
def test_encode_refuses_a_damaged_tokenizer(here, capsys, name, content, expected):
    tok = _tokenizer_copy(here)
    path = tok / name
    if content == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    _fails(["tokenizer", "encode", "--tokenizer", "tok", "--text", "hello"], here, capsys, expected)


def test_bench_fuzz_negative_seconds(here, capsys):
    _fails(["bench", "fuzz", "--seconds", -5], here, capsys, "--seconds: expected a positive integer")


# --- finding 5: --init and tokenizer against the preset, before TensorFlow -----------------------------
@pytest.mark.parametrize("command", ["train", "run", "pretrain"])
def test_init_of_another_size(here, capsys, command):
    (here / "c.txt").write_text("some text\n")
    _custom_task(here / "task", "text,label\nhi,b\n")
    source = ["--corpus", "c.txt"] if command == "pretrain" else ["--task", "task"]
    _fails([command, *source, "--preset", "nano", "--init", "tiny_en", "--out", "r"], here, capsys,
           "a backbone of the tiny size, not of --preset nano")


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_tokenizer_larger_than_the_preset(here, capsys, command):
    (here / "c.txt").write_text("some text\n")
    _custom_task(here / "task", "text,label\nhi,b\n")
    big = _tokenizer_copy(here)
    (big / "vocab.json").write_text(json.dumps({f"t{i}": i for i in range(3000)}))
    source = ["--corpus", "c.txt"] if command == "pretrain" else ["--task", "task"]
    _fails([command, *source, "--preset", "tiny", "--tokenizer", "tok", "--out", "r"], here, capsys,
           "a tokenizer of 3000 tokens, more than the 2048 rows of the tiny preset's embedding")


# --- finding 2: a command that fails on --data-dir leaves config.json as it was ------------------------
@pytest.mark.parametrize("command,artefact", [("check", "model_int8.tflite"), ("convert", "qat.weights.h5")])
def test_data_dir_without_the_task_is_refused_before_config_is_rewritten(here, capsys, command, artefact):
    rd = here / "rd"
    rd.mkdir()
    EmbBertConfig.create("nano", 16, task="emotion", num_labels=6, tokenizer="tokenizer").save(rd)
    (rd / artefact).write_bytes(b"placeholder")
    (here / "data" / "hub").mkdir(parents=True)
    _fails([command, "rd", "--data-dir", "data"], here, capsys, "dair-ai/emotion/", "file not found")


# --- run --export-dir into a foreign folder: refused before the training ------------------------------
def test_run_export_dir_holding_foreign_files_is_refused_up_front(here, capsys):
    _custom_task(here / "task", "text,label\nhi,b\n")
    (here / "mine").mkdir()
    (here / "mine" / "notes.txt").write_text("keep me\n")
    _fails(["run", "--task", "task", "--preset", "nano", "--out", "r", "--export-dir", "mine"], here, capsys,
           "mine: --export-dir: folder holds files not written by `embbert export` (notes.txt)", "--force")
