"""Issue 24, finding 4: errors that used to end as "unexpected <Type>" name their file and what to do.

Each case: a non-zero exit (2 for a bad argument or input file), exactly one stderr line
`embbert: error: ...` without "unexpected", and nothing written or changed in the folder, a
neighbour file included. In-process where the case allows it; stdout cases need a real process.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embbert.cli import describe_error, main
from embbert.core import preflight

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "micro_app" / "example" / "emotion-tiny-L64"
TOKENIZER = REPO / "keras_model" / "pretrained" / "tiny_en" / "tokenizer"
EMBBERT = Path(sys.executable).parent / "embbert"


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EMBBERT_DATA_DIR", raising=False)
    (tmp_path / "neighbour.txt").write_text("keep me\n")
    return tmp_path


def _one_line(argv, folder: Path, capsys, *expected: str, code: int = 2) -> str:
    before = _tree(folder)
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == code, err
    assert len(lines) == 1 and lines[0].startswith("embbert: error: ") and "unexpected" not in err, err
    for text in expected:
        assert text in lines[0], err
    assert _tree(folder) == before
    return lines[0]


# --- config.json that is not an EmbBERT config: one line naming the file ------------------------------
@pytest.mark.parametrize("content,expected", [
    (b'"hello"', "not an EmbBERT config"),
    (b"\xff\xfe{\x00}\x00", "not valid UTF-8 (byte 0xff at offset 0)"),
    (b'{"model": {"preset": "nano"}, "train": null}', "not an EmbBERT config"),
], ids=["string", "utf16-bom", "train-null"])
@pytest.mark.parametrize("command", ["check", "convert", "export"])
def test_damaged_config_json_is_named(here, capsys, command, content, expected):
    shutil.copytree(EXAMPLE, here / "rd")
    (here / "rd" / "qat.weights.h5").write_bytes(b"placeholder")
    (here / "rd" / "config.json").write_bytes(content)
    _one_line([command, "rd"], here, capsys, "rd/config.json: ", expected)


# --- random bytes in the run's tokenizer.json at export --------------------------------------------------
def test_random_tokenizer_json_at_export_is_named(here, capsys):
    shutil.copytree(EXAMPLE, here / "rd")
    (here / "rd" / "tokenizer" / "tokenizer.json").write_bytes(b"\xb5\x13\x00random\xffbytes")
    _one_line(["export", "rd"], here, capsys, "rd/tokenizer/tokenizer.json: not valid UTF-8")


# --- invalid UTF-8 from argv (surrogate escapes) in `encode --text` -----------------------------------
@pytest.mark.parametrize("flag", ["--text", "--pair-text"])
def test_encode_text_that_is_not_utf8(here, capsys, flag):
    shutil.copytree(TOKENIZER, here / "tok")
    text = os.fsdecode(b"caf\xe9")  # what Python makes of the bytes a shell passes
    argv = ["tokenizer", "encode", "--tokenizer", "tok", "--text", "ok"]
    argv += [flag, text] if flag == "--pair-text" else []
    if flag == "--text":
        argv[-1] = text
    _one_line(argv, here, capsys, f"{flag}: not valid UTF-8 (byte 0xe9 at character 4)")


# --- bench footprint --out a file's child or a folder ----------------------------------------------------
@pytest.mark.parametrize("out,expected", [
    ("neighbour.txt/table.md", "neighbour.txt is a file, not a folder"),
    (".", "is a folder; give the path of a file"),
], ids=["child-of-a-file", "folder"])
def test_footprint_out_that_cannot_be_a_file(here, capsys, out, expected):
    _one_line(["bench", "footprint", "--out", out], here, capsys, expected)


# --- an unreadable corpus or split: names the file and what to do ------------------------------------
@pytest.fixture
def unreadable(monkeypatch):
    """Make FILE unreadable: chmod 000, and (root reads it anyway) the open of the checks denied."""
    def deny(path: Path) -> Path:
        path.chmod(0)
        if os.geteuid() == 0:
            real = open

            def guarded(p, *a, **k):
                if Path(p).resolve() == path.resolve():
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(p))
                return real(p, *a, **k)

            monkeypatch.setattr("builtins.open", guarded)
        return path
    return deny


@pytest.mark.parametrize("command", ["pretrain", "tokenizer"])
def test_unreadable_corpus(here, capsys, unreadable, command):
    (here / "c.txt").write_text("some text\n")
    unreadable(here / "c.txt")
    try:
        argv = (["pretrain", "--corpus", "c.txt", "--out", "pd"] if command == "pretrain"
                else ["tokenizer", "train", "--corpus", "c.txt", "--out", "tok"])
        _one_line(argv, here, capsys, "c.txt: --corpus: cannot read it (Permission denied)", "chmod u+r")
    finally:
        (here / "c.txt").chmod(0o644)


def test_unreadable_split(here, capsys, unreadable):
    import json

    task = here / "task"
    task.mkdir()
    (task / "task.json").write_text(json.dumps({
        "name": "mine", "text_columns": ["text"], "label_column": "label", "label_names": ["a", "b"],
        "splits": {"train": "train.csv", "test": "test.csv"}}))
    (task / "train.csv").write_text("text,label\nhello,a\nbye,b\n")
    (task / "test.csv").write_text("text,label\nhello,a\n")
    unreadable(task / "test.csv")
    try:
        _one_line(["train", "--task", "task", "--out", "r"], here, capsys,
                  "test.csv: cannot read the test split of task mine (Permission denied)", "chmod u+r")
    finally:
        (task / "test.csv").chmod(0o644)


# --- the fallback: an operating-system error no check foresaw names its file and what to do -------------
def test_fallback_names_the_file_of_an_os_error():
    assert describe_error(PermissionError(errno.EACCES, "Permission denied", "/x/c.txt")) == (
        "/x/c.txt: Permission denied; check its permissions, or choose a path you can use")
    assert describe_error(OSError(errno.ENOSPC, "No space left on device")).startswith(
        "standard output or an output file: No space left on device; free some space")
    assert describe_error(IsADirectoryError(errno.EISDIR, "Is a directory", "a.tmp", None, "b")) == (
        "a.tmp -> b: Is a directory; give a file path, not a folder")
    assert describe_error(ValueError("x")) is None


# --- stdout to a full device or closed -----------------------------------------------------------------
@pytest.mark.parametrize("redirect", ["> /dev/full", ">&-"], ids=["dev-full", "closed"])
def test_stdout_full_or_closed(tmp_path, redirect):
    if redirect == "> /dev/full" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    proc = subprocess.run(f"'{EMBBERT}' data list --json {redirect}", shell=True, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, executable="/bin/bash")
    lines = proc.stderr.splitlines()
    assert proc.returncode == 1, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("embbert: error: ") and "unexpected" not in lines[0], proc.stderr
    assert ("No space left on device" if "full" in redirect else "standard output is closed") in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- finding 6: bench footprint measures the user's run when given one, and says which ------------------
@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs gcc-arm-none-eabi")
def test_footprint_measures_the_given_run(here, capsys):
    shutil.copytree(EXAMPLE, here / "rd")
    assert main(["export", "rd"]) == 0
    capsys.readouterr()
    assert main(["bench", "footprint", "rd"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "measured: rd/micro_app/sources (the run rd)"
    assert "Command: `embbert bench footprint --generated rd/micro_app/sources" in out
    _one_line(["bench", "footprint", "neighbour.txt"], here, capsys, "neighbour.txt: not a directory")
