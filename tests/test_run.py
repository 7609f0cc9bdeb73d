"""`embbert run` end to end and the `embbert bench accuracy` harness, on tiny generated tasks."""
from __future__ import annotations

import json

import pytest

from embbert.cli import main
from embbert.datasets.synthetic import write_synthetic_task


def test_run_end_to_end(tmp_path, capsys):
    task = write_synthetic_task(tmp_path / "task", num_labels=2, n_train=160, n_test=40, seed=3)
    out, export = tmp_path / "run", tmp_path / "generated"
    rc = main(["run", "--task", str(task), "--preset", "nano", "--max-length", "24", "--epochs", "2",
               "--qat-epochs", "1", "--batch-size", "16", "--out", str(out), "--export-dir", str(export)])
    assert rc == 0
    text = capsys.readouterr().out
    # Every stage ran and left its artefacts.
    for name in ("config.json", "float.weights.h5", "qat.weights.h5", "metrics.json", "history.csv",
                 "model_int8.tflite", "model_float32.tflite", "check.json", "arena_report.json",
                 "arena_report.md", "arena_report.png", "summary.txt", "run.json"):
        assert (out / name).is_file(), name
    for name in ("model_data.cc", "model_data.h", "model_settings.h", "embbert_ops.c"):
        assert (export / name).is_file(), name
    assert (export / "model_data.cc").read_text().count("0x") > (out / "model_int8.tflite").stat().st_size * 0.99
    # The summary reports the four metrics, the footprint and the board fit, with real numbers.
    check = json.loads((out / "check.json").read_text())
    arena = json.loads((out / "arena_report.json").read_text())
    assert set(check["models"]) == {"float_keras", "qat_keras", "int8_tflite", "int8_tflm"}
    assert check["examples"] == 40
    for label in ("float Keras", "QAT Keras", "int8 TFLite", "int8 TFLM", "Arduino Nano 33 BLE", "ESP32"):
        assert label in text
    assert f"total {arena['total_footprint_bytes']:,} B" in text
    assert arena["total_footprint_bytes"] == arena["model_bytes"] + arena["recommended_arena_bytes"]
    # The files, all relative to the run directory (the C sources too), including the report and records.
    files = text[text.index(f"  files (paths relative to {out}):"):].splitlines()
    for name in ("model_int8.tflite", "arena_report.json", "arena_report.md", "summary.txt, run.json"):
        assert any(line.strip().startswith(name) for line in files), (name, files)
    assert any(line.strip().startswith("C sources: ../generated (") for line in files), files
    assert str(tmp_path) not in "\n".join(files[1:]), files  # no absolute path among them
    assert (out / "summary.txt").read_text().strip() in text


def test_run_bad_task_is_one_line_error(tmp_path, capsys):
    rc = main(["run", "--task", "no_such_task", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and err.startswith("embbert: error:") and "no_such_task" in err
    assert "Traceback" not in err


def test_bench_accuracy_harness(tmp_path, capsys):
    a = write_synthetic_task(tmp_path / "syn_a", num_labels=2, n_train=120, n_test=30, seed=1, name="syn_a")
    b = write_synthetic_task(tmp_path / "syn_b", num_labels=3, n_train=120, n_test=30, pair=True, seed=2,
                             name="syn_b")
    docs = tmp_path / "docs"
    empty = tmp_path / "empty_data"
    empty.mkdir()
    rc = main(["bench", "accuracy", "--tasks", str(a), str(b), "rte", "--preset", "nano", "--max-length", "24",
               "--epochs", "1", "--qat-epochs", "1", "--learning-rate", "1e-3", "--data-dir", str(empty),
               "--runs-dir", str(tmp_path / "runs"), "--docs-dir", str(docs)])
    assert rc == 0
    results = json.loads((docs / "results.json").read_text())
    assert [r["task"] for r in results["rows"]] == ["syn_a", "syn_b"]
    for row in results["rows"]:
        for key in ("float", "qat", "tflm", "model_bytes", "arena_bytes", "total_bytes"):
            assert row[key] is not None
        assert row["total_bytes"] == row["model_bytes"] + row["arena_bytes"]
        assert 0.0 <= row["tflm"] <= 100.0
    assert [s["task"] for s in results["skipped"]] == ["rte"]
    assert "data absent" in results["skipped"][0]["reason"]
    md = (docs / "results.md").read_text()
    assert "| syn_a |" in md and "| syn_b |" in md and "- rte: data absent" in md
    assert results["published"]["embbert_q_8bit"]["tasks"]["imdb"] == 84.01
    assert results["versions"]["tensorflow"].startswith("2.21")
    assert results["duration_s"] > 0
    png = (docs / "results.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000

    # An interrupted or repeated benchmark reuses the finished task runs (no retraining).
    capsys.readouterr()
    rc = main(["bench", "accuracy", "--tasks", str(a), str(b), "--preset", "nano", "--max-length", "24",
               "--epochs", "1", "--qat-epochs", "1", "--learning-rate", "1e-3", "--runs-dir", str(tmp_path / "runs"),
               "--docs-dir", str(tmp_path / "docs2")])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("reusing the finished run") == 2 and "== 1/5 train" not in out
    again = json.loads((tmp_path / "docs2" / "results.json").read_text())
    assert [r["tflm"] for r in again["rows"]] == [r["tflm"] for r in results["rows"]]


def test_run_refuses_to_overwrite_a_finished_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    rc = main(["run", "--task", "emotion", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("embbert: error:") and "already holds a run" in err
    assert (out / "metrics.json").read_text() == "{}"  # nothing touched


def test_family_means_compare_like_for_like():
    """A task the paper has no figure for (WNLI) is run and averaged, but left out of the comparison."""
    from embbert.bench.accuracy import _like_for_like, published
    from embbert.datasets.tasks import GLUE

    rows = [{"task": "sst2", "tflm": 77.0}, {"task": "cola", "tflm": 5.0}, {"task": "wnli", "tflm": 31.0}]
    run, compared, ours, ref, ref_q = _like_for_like({"published": published(), "rows": rows}, GLUE)
    assert run == ["sst2", "cola", "wnli"] and compared == ["sst2", "cola"]
    assert ours == 41.0 and ref == round((79.33 + 11.01) / 2, 2) and ref_q is None


def test_grid_edge_note():
    """The kept learning rate at either end of the grid is flagged; inside it, or with one rate, it is not."""
    from embbert.bench.accuracy import grid_edge_note

    grid = [{"learning_rate": lr} for lr in (2e-4, 5e-4, 1e-3)]
    assert "largest" in grid_edge_note(grid, 1e-3) and "smallest" in grid_edge_note(grid, 2e-4)
    assert grid_edge_note(grid, 5e-4) == "" and grid_edge_note(grid[:1], 2e-4) == ""


@pytest.mark.slow  # three nano trainings and two conversions, then two checks again
def test_bench_lr_grid_and_seeds(tmp_path, capsys):
    """--lr-grid trains every candidate with the first seed, keeps the best validation score, checks only that
    one; the other --seeds run at it; mean and spread; another test limit re-checks; other settings refused."""
    from embbert.core.config import EmbBertConfig

    a = write_synthetic_task(tmp_path / "syn_g", num_labels=2, n_train=120, n_test=30, seed=4, name="syn_g")
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    base = ["bench", "accuracy", "--tasks", str(a), "--preset", "nano", "--max-length", "24", "--epochs", "1",
            "--qat-epochs", "1", "--learning-rate", "1e-3", "--qat-learning-rate", "5e-4", "--runs-dir", str(runs)]
    rc = main(base + ["--lr-grid", "3e-3", "1e-4", "--seeds", "0", "1", "--docs-dir", str(docs)])
    assert rc == 0
    val = {}
    for lr in ("0.0001", "0.003"):  # the grid is trained with the first seed
        run = runs / f"syn_g-nano-L24-lr{lr}-s0"
        config = EmbBertConfig.load(run)
        assert config.train.seed == 0 and abs(config.train.qat_learning_rate - float(lr) / 2) < 1e-12
        val[lr] = json.loads((run / "metrics.json").read_text())["qat_val"]
    best = "0.0001" if val["0.0001"] > val["0.003"] else "0.003"  # the first of equal scores is kept
    other = "0.003" if best == "0.0001" else "0.0001"
    names = sorted(p.name for p in runs.iterdir())
    assert names == sorted(["syn_g-nano-L24-lr0.0001-s0", "syn_g-nano-L24-lr0.003-s0", f"syn_g-nano-L24-lr{best}-s1"])
    assert EmbBertConfig.load(runs / f"syn_g-nano-L24-lr{best}-s1").train.seed == 1
    # Only the chosen learning rate went on to conversion and the check.
    assert not (runs / f"syn_g-nano-L24-lr{other}-s0" / "check.json").exists()
    row = json.loads((docs / "results.json").read_text())["rows"][0]
    assert row["learning_rate"] == float(best) and row["seeds"] == [0, 1]
    tflm = [100 * json.loads((runs / f"syn_g-nano-L24-lr{best}-s{s}" / "check.json").read_text())
            ["models"]["int8_tflm"]["metric"] for s in (0, 1)]
    assert row["by_seed"]["tflm"] == [round(v, 2) for v in tflm]
    assert abs(row["tflm"] - sum(tflm) / 2) < 0.011
    assert abs(row["tflm_std"] - abs(tflm[0] - tflm[1]) / 2 ** 0.5) < 0.011
    assert [g["learning_rate"] for g in row["lr_grid"]] == [3e-3, 1e-4]
    assert [g["validation"] for g in row["lr_grid"]] == [val["0.003"], val["0.0001"]]
    md = (docs / "results.md").read_text()
    assert "seeds 0, 1 (mean ± sd)" in md and f"kept {float(best):g}" in md and " ± " in md
    assert "the validation optimum may lie beyond it" in md  # a two-point grid: the kept rate is an edge

    # Again with a test limit: nothing is retrained, the chosen runs are checked again on 10 examples.
    capsys.readouterr()
    rc = main(base + ["--lr-grid", "3e-3", "1e-4", "--seeds", "0", "1", "--max-test-examples", "10",
                      "--docs-dir", str(tmp_path / "docs2")])
    out = capsys.readouterr().out
    assert rc == 0 and "== 1/5 train" not in out and out.count("checking again with 10") == 2
    assert json.loads((tmp_path / "docs2" / "results.json").read_text())["rows"][0]["test_examples"] == 10

    # Other settings in the same runs directory are refused, not silently reused.
    rc = main(base + ["--epochs", "2", "--lr-grid", "3e-3", "1e-4", "--seeds", "0", "1",
                      "--docs-dir", str(tmp_path / "docs3")])
    captured = capsys.readouterr()
    assert rc != 0 and "other settings (epochs 1 != 2)" in captured.out + captured.err
    assert not (tmp_path / "docs3" / "results.md").exists()


def test_check_coverage_and_spread():
    from embbert.bench.accuracy import _check_covers, _std

    assert _check_covers({"examples": 25000, "max_examples": None}, None)
    assert not _check_covers({"examples": 2000, "max_examples": 2000}, None)
    assert _check_covers({"examples": 2000}, 2000) and not _check_covers({"examples": 2000}, None)
    assert _std([1.0]) is None and _std([1.0, 3.0]) == round(2 ** 0.5, 2)


def test_resume_of_a_scratch_run_does_not_claim_a_pretrained_start(tmp_path, monkeypatch, capsys):
    """`run --resume` of a nano run started from scratch: no "starting from the pretrained preset tiny_en"
    (the default --preset tiny's choice); it says it resumes with the run's own start."""
    from embbert import run as run_module
    from embbert.cli import main
    from embbert.core.config import EmbBertConfig

    monkeypatch.chdir(tmp_path)
    rd = tmp_path / "rd"
    rd.mkdir()
    EmbBertConfig.create("nano", 16, task="emotion", num_labels=6, tokenizer="tokenizer").save(rd)
    (rd / ".train").mkdir()
    (rd / ".train" / "state.json").write_text('{"float_done": false, "init": null}')

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "run_pipeline", stop)
    assert main(["run", "--out", "rd", "--resume"]) == 130
    out = capsys.readouterr().out
    assert "pretrained preset" not in out and "resuming the run in rd" in out
