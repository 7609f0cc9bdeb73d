"""`embbert bench record`: cells imported only when their recipe is the record's, kept across calls, a cell of
another recipe refused in one line, pending cells said, the report rewritten from the cells alone; and (slow)
real cells trained, converted and checked on a synthetic task, then reused by a second call."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from embbert.cli import main

GRID = [2e-4, 5e-4, 1e-3, 2e-3, 5e-3]


def _accuracy_results(path: Path, *, lr_grid=GRID, seeds=(0, 1, 2), epochs=10, init="/x/pretrained/embbert_en",
                      tasks=("emotion", "snips")) -> Path:
    """A `bench accuracy` results.json as that command writes it (the fields the record reads)."""
    rows = [{"task": t, "metric": "accuracy", "max_length": 64, "float": 88.0, "qat": 88.5, "tflite": 88.6,
             "tflm": 88.5 + k, "tflm_std": 0.4, "seeds": list(seeds),
             "by_seed": {"tflm": [88.0 + k, 88.5 + k, 89.0 + k][:len(seeds)]}, "learning_rate": 2e-3,
             "qat_learning_rate": 2e-4,
             "lr_grid": [{"learning_rate": lr, "qat_learning_rate": lr / 10, "seed": 0, "validation": 0.9}
                         for lr in lr_grid],
             "validation": 90.0, "agreement": 0.997, "max_lsb_diff": 3, "model_bytes": 384928, "arena_bytes": 59088,
             "min_arena_bytes": 56768, "total_bytes": 444016} for k, t in enumerate(tasks)]
    path.write_text(json.dumps({"preset": "embbert", "epochs": epochs, "qat_epochs": 2, "learning_rate": 5e-4,
                                "qat_learning_rate": 5e-5, "lr_grid": list(lr_grid), "batch_size": 32,
                                "seeds": list(seeds), "max_train_examples": None, "max_test_examples": None,
                                "init": init, "rows": rows}))
    return path


def _memory(docs: Path, lengths=(64,)) -> None:
    """A measured memory table, so that the fast tests convert nothing."""
    (docs / "results_cells").mkdir(parents=True, exist_ok=True)
    rows = [{"preset": "embbert", "max_length": L, "model_bytes": 384928, "arena_bytes": 59088, "min_arena_bytes": 1,
             "total_bytes": 444016, "macs": 13701888, "fits": ["Arduino Nano 33 BLE"], "measured": "2026-12-07"}
            for L in lengths]
    (docs / "results_cells" / "memory.json").write_text(json.dumps({"rows": rows}))


def _record(tmp_path: Path, *extra: str) -> int:
    return main(["bench", "record", "--tasks", "emotion", "snips", "--report-only",
                 "--runs-dir", str(tmp_path / "runs"), "--docs-dir", str(tmp_path / "docs"), *extra])


def test_import_takes_rows_of_the_same_recipe_only(tmp_path, capsys):
    _memory(tmp_path / "docs")
    same = _accuracy_results(tmp_path / "same.json")
    other = _accuracy_results(tmp_path / "other.json", lr_grid=[5e-5, 2e-4], init=None)
    assert _record(tmp_path, "--import", str(same), str(other)) == 0
    out = capsys.readouterr().out
    assert "emotion (embbert_en) taken as a finished cell" in out
    assert "emotion (none) not taken: lr_grid [5e-05, 0.0002] != [0.0002, 0.0005, 0.001, 0.002, 0.005]" in out
    cells = sorted(p.name for p in (tmp_path / "docs" / "results_cells").glob("*--*.json"))
    assert cells == ["emotion--embbert_en.json", "snips--embbert_en.json"]
    results = json.loads((tmp_path / "docs" / "results.json").read_text())
    emotion = results["rows"][0]
    assert emotion["cells"]["embbert_en"]["tflm"] == 88.5 and emotion["cells"]["none"] is None
    assert emotion["cells"]["embbert_en"]["source"] == f"imported from {same}"
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "| emotion | 64 | 88.50 ± 0.40 | 0.002 | pending |  | – | 89.58 | 89.90 |" in md
    assert "| 64 | 384,928 | 59,088 | 444,016 | 13,701,888 | Arduino Nano 33 BLE |" in md
    assert (tmp_path / "docs" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cells_stay_and_the_delta_appears_when_both_starts_are_done(tmp_path, capsys):
    _memory(tmp_path / "docs")
    assert _record(tmp_path, "--import", str(_accuracy_results(tmp_path / "a.json"))) == 0
    scratch = _accuracy_results(tmp_path / "b.json", init=None, tasks=("emotion",))
    assert _record(tmp_path, "--import", str(scratch)) == 0  # the first call's cells are kept
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "| emotion | 64 | 88.50 ± 0.40 | 0.002 | 88.50 ± 0.40 | 0.002 | 0.00 |" in md
    assert "| snips | 64 | 89.50 ± 0.40 | 0.002 | pending |  | – |" in md


def test_a_cell_of_another_recipe_is_refused_in_one_line(tmp_path, capsys):
    _memory(tmp_path / "docs")
    assert _record(tmp_path, "--import", str(_accuracy_results(tmp_path / "a.json"))) == 0
    capsys.readouterr()
    code = _record(tmp_path, "--epochs", "3")
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1
    assert "was made with another recipe (epochs 10 != 3)" in err and "emotion--embbert_en.json" in err


@pytest.mark.parametrize("extra, expected", [
    (["--tasks", "no_such_task"], "no_such_task"),
    (["--import", "missing.json"], "--import missing.json: no such file"),
    (["--inits", "no_such_preset"], "no_such_preset"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, capsys, extra, expected):
    code = main(["bench", "record", "--runs-dir", str(tmp_path / "r"), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_real_cells_are_trained_checked_and_reused(tmp_path, capsys):
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "synth", num_labels=2, n_train=90, n_test=30, seed=3)
    argv = ["bench", "record", "--tasks", str(task), "--inits", "none", "tiny_en", "--preset", "tiny",
            "--max-length", "32", "--epochs", "1", "--qat-epochs", "1", "--lr-grid", "1e-3", "3e-3",
            "--seeds", "0", "1", "--runs-dir", str(tmp_path / "runs"), "--docs-dir", str(tmp_path / "docs")]
    assert main(argv) == 0
    results = json.loads((tmp_path / "docs" / "results.json").read_text())
    row = results["rows"][0]
    assert row["task"] == "synth" and set(row["cells"]) == {"none", "tiny_en"}
    for cell in row["cells"].values():
        assert cell["source"] == "run" and cell["seeds"] == [0, 1] and len(cell["by_seed"]["tflm"]) == 2
        assert [g["learning_rate"] for g in cell["lr_grid"]] == [1e-3, 3e-3] and cell["agreement"] > 0.9
    assert [m["max_length"] for m in results["memory"]] == [32] and results["memory"][0]["preset"] == "tiny"
    capsys.readouterr()
    assert main(argv) == 0  # every cell and the memory row reused: nothing trained or converted
    out = capsys.readouterr().out
    assert out.count("finished cell") == 2 and "Epoch" not in out and "memory: converting" not in out


def test_readme_results_table_is_the_record():
    """The README's results section shows the committed record's table, cell for cell."""
    root = Path(__file__).resolve().parents[1]

    def table(text: str) -> list[str]:
        lines = text.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("| task | L | "))
        end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
        return lines[start:end]

    assert table((root / "README.md").read_text()) == table((root / "docs" / "results.md").read_text())


def test_a_start_of_another_size_and_a_damaged_memory_table_are_one_line_errors(tmp_path, capsys):
    code = main(["bench", "record", "--tasks", "emotion", "--inits", "tiny_en", "--report-only",
                 "--runs-dir", str(tmp_path / "runs"), "--docs-dir", str(tmp_path / "docs")])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "tiny_en" in err
    (tmp_path / "docs" / "results_cells").mkdir(parents=True)
    (tmp_path / "docs" / "results_cells" / "memory.json").write_text("[1, 2]")
    code = _record(tmp_path)
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "not the record's memory table" in err
