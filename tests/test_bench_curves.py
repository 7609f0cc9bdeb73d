"""`embbert bench curves`: the learning-curve grid on a small synthetic task (real float + QAT training,
tiny preset, L=32, one float epoch, the QAT model built, calibrated and scored without a QAT epoch): every cell's metrics reach the JSON and the table as mean ± sd over
the seeds, a plot per task is written, a rerun reuses finished cells and trains only a missing one, a
cell made with other settings is refused, and bad arguments fail before TensorFlow is imported."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from embbert.cli import main

SIZES, SEEDS, INITS = ["40"], ["0", "1"], ["none", "tiny_en"]


def _argv(task: Path, runs: Path, out: Path) -> list[str]:
    return ["bench", "curves", "--tasks", str(task), "--sizes", *SIZES, "--seeds", *SEEDS, "--inits", *INITS,
            "--preset", "tiny", "--max-length", "32", "--epochs", "1", "--qat-epochs", "0",
            "--runs-dir", str(runs), "--out", str(out), "--name", "grid"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    from embbert.datasets.synthetic import write_synthetic_task

    root = tmp_path_factory.mktemp("curves")
    task = write_synthetic_task(root / "synth", num_labels=2, n_train=90, n_test=30, seed=3)
    runs, out = root / "runs", root / "out"
    assert main(_argv(task, runs, out)) == 0
    return task, runs, out


def _metrics_of(run_dir: str) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def test_every_cell_in_json_and_table(grid):
    _, runs, out = grid
    results = json.loads((out / "grid.json").read_text())
    cells = results["cells"]
    assert len(cells) == len(SIZES) * len(SEEDS) * len(INITS)
    assert {(c["size"], c["seed"], c["start"]) for c in cells} == {
        (s, int(seed), i) for s in SIZES for seed in SEEDS for i in INITS}
    for c in cells:  # the JSON holds what the run wrote, in percent
        m = _metrics_of(c["run_dir"])
        for key in ("float_val", "qat_val", "float_test", "qat_test"):
            assert c[key] == pytest.approx(100 * m[key], abs=0.006)
        assert Path(c["run_dir"]).parent.parent == runs
        assert c["train_examples"] == m["train_examples"] == 40  # the seeded subset, not the 81 texts
    table = (out / "grid.md").read_text()
    for row in results["summary"]:
        vals = [c["qat_val"] for c in cells if (c["size"], c["start"]) == (row["size"], row["start"])]
        mean = sum(vals) / 2
        sd = math.sqrt(sum((v - mean) ** 2 for v in vals))  # sample sd of two values
        assert row["qat_val"] == pytest.approx(mean, abs=0.006)
        assert row["qat_val_sd"] == pytest.approx(sd, abs=0.006)
        assert f"{row['qat_val']:.2f} ± {row['qat_val_sd']:.2f}" in table
        if row["start"] == "tiny_en":  # paired difference to scratch, same seeds
            base = {c["seed"]: c["qat_val"] for c in cells if (c["size"], c["start"]) == (row["size"], "none")}
            diffs = [c["qat_val"] - base[c["seed"]] for c in cells if (c["size"], c["start"]) == (row["size"], "tiny_en")]
            assert row["qat_val_minus_scratch"] == pytest.approx(sum(diffs) / 2, abs=0.006)
    assert "## synth: QAT validation (decides)" in table and "## synth: QAT test (final figure)" in table
    assert "| train texts | none | tiny_en | Δ tiny_en |" in table
    assert "(n=" not in table  # every cell has all its seeds
    assert (out / "grid_synth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_starts_differ_as_asked(grid):
    """The pretrained cells use the preset's tokenizer, the scratch cells one trained on the task."""
    _, runs, _ = grid
    from embbert.keras_model.presets import preset_dir

    preset_vocab = (preset_dir("tiny_en") / "tokenizer" / "vocab.json").read_bytes()
    for cell in sorted(runs.glob("*/*-s0")):
        vocab = (cell / "tokenizer" / "vocab.json").read_bytes()
        assert (vocab == preset_vocab) == cell.name.startswith("tiny_en"), cell


def test_rerun_reuses_finished_cells_and_trains_a_missing_one(grid, capsys):
    import shutil

    task, runs, out = grid
    cells = sorted(p for p in runs.glob("*/*") if (p / "metrics.json").is_file())
    assert len(cells) == 4
    stamps = {p: (p / "metrics.json").stat().st_mtime_ns for p in cells}
    gone = next(p for p in cells if p.name == "tiny_en-n40-s1")
    shutil.rmtree(gone)
    capsys.readouterr()
    assert main(_argv(task, runs, out)) == 0
    log = capsys.readouterr().out
    assert log.count("reusing") == 3 and log.count("training in") == 1 and "tiny_en n=40 seed 1: training" in log
    for p, stamp in stamps.items():
        if p != gone:
            assert (p / "metrics.json").stat().st_mtime_ns == stamp, p
    assert (gone / "metrics.json").is_file()
    assert len(json.loads((out / "grid.json").read_text())["cells"]) == 4


def test_partial_cells_say_so(grid):
    """A cell with fewer seeds than asked (a grid still running) is marked in the table."""
    from embbert.bench.curves import markdown, summarise

    _, _, out = grid
    results = json.loads((out / "grid.json").read_text())
    results["cells"] = [c for c in results["cells"] if (c["start"], c["seed"]) != ("tiny_en", 1)]
    results["summary"] = summarise(results["cells"], results["seeds"])
    table = markdown(results)
    row = next(line for line in table.splitlines() if line.startswith("| 40 |"))
    assert row.count("(n=1 of 2, partial)") == 1, row


def test_report_only_trains_nothing(grid, capsys, tmp_path):
    task, runs, out = grid
    before = sorted(p for p in runs.rglob("*"))
    argv = _argv(task, runs, tmp_path / "report")
    argv[argv.index("--seeds") + 1:argv.index("--inits")] = ["0", "1", "2"]
    assert main(argv + ["--report-only"]) == 0
    log = capsys.readouterr().out
    assert log.count("not run yet") == 2 and "training in" not in log
    assert sorted(p for p in runs.rglob("*")) == before
    table = (tmp_path / "report" / "grid.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| 40 |"))
    assert row.count("(n=2 of 3, partial)") == 2, row


def test_sizes_and_starts():
    from embbert.bench.curves import size_arg, start_of
    from embbert.core.errors import UsageError

    assert size_arg("all") is None and size_arg("ALL") is None and size_arg("300") == 300
    for bad in ("0", "-3", "1.5", "x"):
        with pytest.raises(UsageError):
            size_arg(bad)
    tok = start_of("tok:tiny_en")
    assert tok["tag"] == "tok-tiny_en" and tok["init"] is None and tok["tokenizer"].endswith("tokenizer")
    pre = start_of("tiny_en")
    assert pre["tag"] == "tiny_en" and pre["init"] and pre["tokenizer"] is None
    assert start_of("none") == {"tag": "none", "spec": "none", "init": None, "tokenizer": None}


def test_cell_with_other_settings_is_refused(grid):
    from embbert.bench.curves import same_cell
    from embbert.core.config import EmbBertConfig
    from embbert.core.errors import EmbBertError

    _, runs, _ = grid
    cell = next(runs.glob("*/none-n40-s0"))
    have = EmbBertConfig.load(cell)
    same_cell(cell, have)
    with pytest.raises(EmbBertError, match="learning rate"):
        same_cell(cell, have.replace(train={"learning_rate": have.train.learning_rate * 3}))


@pytest.mark.parametrize("extra, expected", [
    (["--sizes", "0"], "--sizes"),
    (["--sizes", "many"], "--sizes"),
    (["--inits", "no_such_preset"], "no_such_preset"),
    (["--inits", "none", "none"], None),  # duplicates are dropped, not an error: checked below
])
def test_bad_arguments_fail_before_tensorflow(tmp_path, capsys, extra, expected):
    if expected is None:
        from embbert.bench.curves import check_curves_args
        from embbert.cli import build_parser

        args = build_parser().parse_args(["bench", "curves", "--tasks", "emotion", *extra,
                                          "--runs-dir", str(tmp_path / "r")])
        check_curves_args(args)
        assert [s["tag"] for s in args.starts] == ["none"]
        return
    had_tf = "tensorflow" in sys.modules
    code = main(["bench", "curves", "--tasks", "emotion", *extra, "--runs-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("embbert: error: ") and expected in err, err
    assert not (tmp_path / "r").exists()
    assert had_tf or "tensorflow" not in sys.modules
