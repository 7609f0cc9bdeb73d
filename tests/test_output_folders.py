"""Issue 24, finding 1: an output folder is ours or empty.

`embbert tokenizer train` and `embbert export` write a whole folder. A folder that holds
anything the command did not write (by its manifest: tokenizer_config.json of a byte-level
BPE and nothing but the four tokenizer files; embbert_export.json) is refused with one
line and exit 2 unless `--force`; `--out .` and an --out that holds the working directory
are refused unless ours or empty, and then filled in place (the working directory is never
removed); an existing folder keeps its mode. Each test runs the CLI in this process.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from embbert.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "micro_app" / "example" / "emotion-tiny-L64"
TOKENIZER_FILES = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("".join(f"the quick brown fox {i} jumps over the lazy dog\n" for i in range(40)))
    return path


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _foreign(folder: Path) -> Path:
    """A folder of someone else's work: a task file, data, a sub-folder with notes."""
    folder.mkdir()
    (folder / "task.json").write_text('{"mine": true}\n')
    (folder / "data.csv").write_text("text,label\nhello,1\n")
    (folder / "sub").mkdir()
    (folder / "sub" / "notes.txt").write_text("keep me\n")
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _names(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _one_error_line(capsys, folder: Path) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("embbert: error: "), err
    assert str(folder.resolve()) in err and "--force" in err, err
    return err


def _train(corpus: Path, out, *extra: str) -> int:
    return main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "300", "--out", str(out), *extra])


def _export(tmp_path: Path, out, *extra: str) -> int:
    run = tmp_path / "run"
    if not run.exists():
        shutil.copytree(EXAMPLE, run)
    return main(["export", str(run), "--out", str(out), *extra])


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------------
# embbert tokenizer train
# ---------------------------------------------------------------------------
def test_tokenizer_keeps_neighbour_files_and_exits_2(tmp_path, corpus, capsys):
    folder = _foreign(tmp_path / "mine")
    before = _tree(folder)
    assert _train(corpus, folder) == 2
    assert "not written by `embbert tokenizer train`" in _one_error_line(capsys, folder)
    assert _tree(folder) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_tokenizer_folder_with_the_same_file_names_but_not_ours_is_refused(tmp_path, corpus, capsys):
    folder = tmp_path / "hf"  # e.g. another library's tokenizer: same names, not a byte_level_bpe config
    folder.mkdir()
    for name in TOKENIZER_FILES:
        (folder / name).write_text("{}\n")
    assert _train(corpus, folder) == 2
    _one_error_line(capsys, folder)
    assert all((folder / n).read_text() == "{}\n" for n in TOKENIZER_FILES)


def test_tokenizer_force_replaces_the_folder(tmp_path, corpus):
    folder = _foreign(tmp_path / "mine")
    assert _train(corpus, folder, "--force") == 0
    assert _names(folder) == TOKENIZER_FILES
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_tokenizer_out_dot_and_parent_paths_from_inside_a_foreign_folder_are_refused(tmp_path, corpus, capsys,
                                                                                    monkeypatch):
    folder = _foreign(tmp_path / "mine")
    before = _tree(folder)
    monkeypatch.chdir(folder)
    for out in (".", "../mine"):
        assert _train(corpus, out) == 2
        assert "(the working directory)" in _one_error_line(capsys, folder)
    monkeypatch.chdir(folder / "sub")
    assert _train(corpus, "..") == 2
    assert "(it contains the working directory)" in _one_error_line(capsys, folder)
    assert _tree(folder) == before


def test_tokenizer_out_dot_fills_an_empty_working_directory_in_place(tmp_path, corpus, monkeypatch):
    folder = tmp_path / "empty"
    folder.mkdir()
    inode = folder.stat().st_ino
    monkeypatch.chdir(folder)
    assert _train(corpus, ".") == 0
    assert _train(corpus, ".") == 0  # again: now it is ours
    assert os.stat(os.getcwd()).st_ino == inode == folder.stat().st_ino  # never removed from under the process
    assert {p.name for p in folder.iterdir()} == TOKENIZER_FILES  # no temporary file left


def test_tokenizer_read_only_empty_folder_keeps_its_mode_or_is_refused(tmp_path, corpus, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = _train(corpus, folder)
        if os.geteuid() == 0:  # root may write it: filled, still read-only
            assert code == 0 and _names(folder) == TOKENIZER_FILES
        else:
            assert code == 2 and "not writable (mode 0555)" in capsys.readouterr().err
            assert list(folder.iterdir()) == []
        assert _mode(folder) == 0o555
    finally:
        folder.chmod(0o755)


def test_tokenizer_folder_written_earlier_is_replaced_keeping_its_mode(tmp_path, corpus, umask022):
    folder = tmp_path / "tok"
    assert _train(corpus, folder) == 0
    assert _mode(folder) == 0o755
    folder.chmod(0o700)
    assert main(["tokenizer", "train", "--corpus", str(corpus), "--vocab-size", "310", "--out", str(folder)]) == 0
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["requested_vocab_size"] == 310 and _names(folder) == TOKENIZER_FILES
    assert _mode(folder) == 0o700


def test_train_tokenizer_api_refuses_a_foreign_folder(tmp_path):
    from embbert.core.errors import UsageError
    from embbert.datasets.tokenizer import train_tokenizer

    folder = _foreign(tmp_path / "mine")
    before = _tree(folder)
    with pytest.raises(UsageError, match="not written by `embbert tokenizer train`"):
        train_tokenizer(["hello world"] * 5, vocab_size=300, out_dir=folder)
    assert _tree(folder) == before
    train_tokenizer(["hello world"] * 5, vocab_size=300, out_dir=folder, force=True)
    assert _names(folder) == TOKENIZER_FILES


# ---------------------------------------------------------------------------
# embbert export
# ---------------------------------------------------------------------------
def test_export_keeps_neighbour_files_and_exits_2(tmp_path, capsys):
    folder = _foreign(tmp_path / "mine")
    before = _tree(folder)
    assert _export(tmp_path, folder) == 2
    assert "not written by `embbert export`" in _one_error_line(capsys, folder)
    assert _tree(folder) == before


def test_export_force_replaces_the_folder(tmp_path):
    folder = _foreign(tmp_path / "mine")
    assert _export(tmp_path, folder, "--force") == 0
    manifest = json.loads((folder / "embbert_export.json").read_text())
    assert _names(folder) == set(manifest["files"]) | {"embbert_export.json"}
    assert not (folder / "task.json").exists() and not (folder / "sub").exists()


def test_export_out_dot_from_inside_a_foreign_folder_is_refused(tmp_path, capsys, monkeypatch):
    folder = _foreign(tmp_path / "mine")
    before = _tree(folder)
    monkeypatch.chdir(folder)
    assert _export(tmp_path, ".") == 2
    assert "(the working directory)" in _one_error_line(capsys, folder)
    assert _tree(folder) == before


def test_export_out_dot_inside_an_earlier_export_refills_it_in_place(tmp_path, monkeypatch):
    folder = tmp_path / "pkg"
    assert _export(tmp_path, folder, "--target", "cmake") == 0
    inode = folder.stat().st_ino
    monkeypatch.chdir(folder / "src")  # a folder the new package does not have keeps the shell where it is
    assert _export(tmp_path, "..", "--target", "sources") == 0
    assert os.stat(os.getcwd()).st_ino == (folder / "src").stat().st_ino and folder.stat().st_ino == inode
    manifest = json.loads((folder / "embbert_export.json").read_text())
    assert manifest["target"] == "sources"
    assert _names(folder) == set(manifest["files"]) | {"embbert_export.json"}  # nothing of the cmake package
    monkeypatch.chdir(folder)
    assert _export(tmp_path, ".", "--target", "sources") == 0
    assert os.stat(os.getcwd()).st_ino == inode


def test_export_read_only_empty_folder_keeps_its_mode_or_is_refused(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code = _export(tmp_path, folder)
        if os.geteuid() == 0:
            assert code == 0 and (folder / "embbert_export.json").is_file()
        else:
            assert code == 2 and "not writable (mode 0555)" in capsys.readouterr().err
        assert _mode(folder) == 0o555
    finally:
        folder.chmod(0o755)


def test_export_folder_written_earlier_is_replaced_keeping_its_mode(tmp_path, umask022):
    folder = tmp_path / "pkg"
    assert _export(tmp_path, folder, "--target", "cmake") == 0
    folder.chmod(0o750)
    assert _export(tmp_path, folder, "--target", "sources") == 0
    assert not (folder / "CMakeLists.txt").exists() and (folder / "model_data.h").is_file()
    assert _mode(folder) == 0o750
