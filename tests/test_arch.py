"""The baseline architectures (`--arch`): sizes, and each one through fit, QAT, int8 conversion and both
interpreters, on the same path as EmbBERT."""
from __future__ import annotations

import pytest

from embbert.core.config import ARCH_DEFAULT_PRESET, ARCHS, PRESETS, EmbBertConfig
from embbert.core.errors import EmbBertError, UsageError

BASELINES = [a for a in ARCHS if a != "embbert"]


def expected_backbone_params(m) -> int:
    """The parameter count written out from the architectures' definitions (keras_model/baselines.py)."""
    d = m.hidden
    if m.arch == "bert":
        embedder = m.vocab_size * d + m.max_positions * d + 3 * d + 2 * d  # tables + LayerNorm
        block = 4 * (d * d + d) + (d * m.ffn + m.ffn) + (m.ffn * d + d) + 2 * 2 * d
        return embedder + m.layers * block
    embedder = m.vocab_size * m.reduced + m.reduced * d + m.max_positions * m.reduced + m.reduced * d + 3 * d
    de = d * m.expansion
    if m.arch == "mamba":
        r = -(-d // 16)  # the step size's rank
        block = (d + 2 * d * de + m.kernel * de + de + de * r + r * de + de + 3 * de * m.state + de + de * d)
        return embedder + m.layers * block
    block = d + m.kernel * de + de + de * d + d  # RMSNorm gain, depthwise kernel + bias, output map + bias
    return embedder + m.layers * block


@pytest.mark.parametrize("preset", [p for p, m in PRESETS.items() if m.arch != "embbert"])
def test_parameter_counts(preset):
    from embbert.keras_model.model import parameter_counts

    config = EmbBertConfig.create(preset, 32, num_labels=4)
    counts = parameter_counts(config)
    assert counts["backbone_params"] == expected_backbone_params(config.model)
    assert counts["head_params"] == config.model.hidden * 4 + 4


def test_default_sizes_are_the_documented_ones():
    from embbert.keras_model.model import parameter_counts

    got = {a: parameter_counts(EmbBertConfig.create(ARCH_DEFAULT_PRESET[a], 32))["backbone_params"] for a in BASELINES}
    # bert: 2 MB float32 budget for the weights; embedder: embbert's embedder; embedder_conv: the authors' 0.28 M
    assert got == {"bert": 378_816, "embedder": 139_648, "embedder_conv": 284_160, "mamba": 265_824}
    assert 4 * got["bert"] <= 2_000_000


def test_arch_and_preset_checks():
    from embbert.core.preflight import arch_preset

    assert arch_preset(None, None) == "tiny"
    assert arch_preset("bert", None) == "bert"
    assert arch_preset(None, "embedder_conv") == "embedder_conv"
    with pytest.raises(UsageError, match="size of the embbert architecture, not of bert"):
        arch_preset("bert", "tiny")
    with pytest.raises(UsageError, match="unknown architecture"):
        arch_preset("mamba2", None)
    with pytest.raises(EmbBertError, match="no layers"):
        PRESETS["embedder"].__class__(**{**PRESETS["embedder"].to_dict(), "layers": 1})
    with pytest.raises(EmbBertError, match="multiple of 3 heads"):
        PRESETS["bert"].__class__(**{**PRESETS["bert"].to_dict(), "heads": 3})


def test_embbert_config_json_is_unchanged_by_the_arch_fields():
    d = EmbBertConfig.create("tiny", 64).to_dict()["model"]
    assert "arch" not in d and "heads" not in d and "ffn" not in d
    assert EmbBertConfig.from_dict(EmbBertConfig.create("bert", 64).to_dict()).model == PRESETS["bert"]


def test_masked_lm_needs_a_per_token_output():
    from embbert.keras_model.model import build_pretrainer

    with pytest.raises(EmbBertError, match="no per-token output"):
        build_pretrainer(EmbBertConfig.create("embedder", 32), 4)


@pytest.mark.parametrize("arch", [a for a in BASELINES if a != "mamba"])  # mamba: docs/baselines.md, 15 min
def test_fit_qat_int8_and_both_interpreters(arch, tmp_path, make_run):
    """A few steps of fit + QAT on a synthetic task, the deployed full-int8 graph (only TFLM int8 operators),
    then the TFLite and TFLM interpreters: trained (above chance) and agreeing."""
    from embbert.tflite.check import check_run
    from embbert.tflite.convert import TFLM_INT8_OPS, convert_run

    run = make_run(tmp_path, preset=ARCH_DEFAULT_PRESET[arch], steps=120, qat_steps=30)
    info = convert_run(run, max_calibration=50, float32=False)
    assert set(info["ops"]) <= set(TFLM_INT8_OPS)
    assert [i["dtype"] for i in info["inputs"].values()] == ["int32", "int32"] and info["output"]["dtype"] == "int8"
    report = check_run(run)
    models = report["models"]
    assert models["int8_tflm"]["metric"] > 0.6, models  # 3 classes: chance is 1/3
    assert report["tflm_vs_tflite"]["agreement"] >= 0.97


def test_pareto_front():
    from embbert.bench.arch import pareto

    # (memory, metric): b is smaller and better than a; c is larger and better than b; d equals b
    assert pareto([(200, 80.0), (100, 85.0), (300, 90.0), (100, 85.0)]) == [False, True, True, True]


@pytest.mark.slow
def test_bench_arch_table_plot_and_resume(tmp_path, capsys):
    """Two architectures on a synthetic task: one row each with metric, memory and MACs, a PNG, and a second
    call that reuses every run (nothing trained again)."""
    import json

    from embbert.cli import main
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "task", num_labels=3, n_train=300, n_test=100, seed=0)
    argv = ["bench", "arch", "--tasks", str(task), "--presets", "embedder", "embedder_conv", "--max-length", "32",
            "--epochs", "1", "--qat-epochs", "1", "--lr-grid", "3e-3", "--seeds", "0", "--runs-dir",
            str(tmp_path / "runs")]
    assert main(argv) == 0
    out = tmp_path / "runs" / "results"
    results = json.loads((out / "arch.json").read_text())
    rows = {r["preset"]: r for r in results["rows"]}
    assert set(rows) == {"embedder", "embedder_conv"}
    for r in rows.values():
        assert r["tflm"] is not None and r["total_bytes"] == r["model_bytes"] + r["arena_bytes"] and r["macs"] > 0
    assert rows["embedder_conv"]["macs"] > rows["embedder"]["macs"]
    assert (out / "arch_task.png").read_bytes()[:4] == b"\x89PNG"
    assert "| embedder | embedder |" in (out / "arch.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 2


@pytest.mark.slow
def test_tune_never_trains_what_does_not_fit_and_resumes(tmp_path, capsys):
    """med does not fit the Nano 33 BLE's flash and embedder_conv exceeds --max-macs: both are measured on their
    converted graph and never trained; embedder wins and is deployed; a second call measures and trains nothing."""
    import json

    from embbert.cli import main
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "task", num_labels=3, n_train=300, n_test=100, seed=0)
    out = tmp_path / "tune"
    argv = ["tune", "--task", str(task), "--board", "nano33ble", "--presets", "embedder", "embedder_conv", "med",
            "--lengths", "16", "--max-macs", "1000000", "--epochs", "1", "--qat-epochs", "1",
            "--learning-rate", "3e-3", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "tune.json").read_text())
    status = {c["preset"]: c["excluded"] for c in result["candidates"]}
    assert status["embedder"] is None
    assert status["med"] == "does not fit the board" and "MACs" in status["embedder_conv"]
    assert result["best"] == "embedder-L16" and (out / "best" / "model_int8.tflite").is_file()
    assert not (out / "rung0" / "med-L16").exists() and not (out / "rung0" / "embedder_conv-L16").exists()
    assert "| med-L16 | embbert |" in (out / "tune.md").read_text()
    capsys.readouterr()
    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "measuring" not in again and "already done" in again


def test_tune_with_nothing_that_fits_is_one_line(tmp_path, capsys):
    from embbert.cli import main
    from embbert.datasets.synthetic import write_synthetic_task

    task = write_synthetic_task(tmp_path / "task", num_labels=3, n_train=300, n_test=100, seed=0)
    argv = ["tune", "--task", str(task), "--board", "nano33ble", "--presets", "embedder", "--lengths", "16",
            "--max-macs", "10", "--out", str(tmp_path / "tune")]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("embbert: error: no candidate fits the Arduino Nano 33 BLE within 10 MACs")


def test_mamba_unrolled_scan_equals_tf_scan():
    """The deployed graph's unrolled recurrence (static length) and the backbone's tf.scan (any length) are the
    same maths: equal outputs on the same weights."""
    import numpy as np

    from embbert.keras_model.backbone import EmbBertBackbone, inputs
    from embbert.keras_model._tf import keras

    config = EmbBertConfig.create("mamba", 12, num_labels=2)
    backbone = EmbBertBackbone.create(config)  # built at any length: tf.scan
    tok, seg = inputs(12, 2)
    static = keras.Model([tok, seg], backbone.encode(tok, seg))  # the same layers at L = 12: unrolled
    rng = np.random.default_rng(0)
    t = rng.integers(5, 8192, size=(2, 12)).astype("int32")
    s = np.ones((2, 12), "int32")
    t[1, 7:], s[1, 7:] = 0, 0
    a = backbone({"token_ids": t, "segment_ids": s}).numpy()
    b = static([t, s]).numpy()
    assert np.abs(a).max() > 1e-3
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", [p for p, m in PRESETS.items() if m.arch != "embbert"])
def test_model_summary_of_every_architecture(preset):
    from embbert.keras_model.summary import model_summary

    info = model_summary(EmbBertConfig.create(preset, 64, num_labels=4))
    assert info["arch"] == PRESETS[preset].arch
    # int8 matrices and tables, int32 vectors, the position rows beyond L dropped: about a byte per parameter
    assert 0.9 * info["total_params"] <= info["int8_weight_bytes"] < 2 * info["total_params"]
    assert info["largest_activation_bytes"] >= 64 * PRESETS[preset].hidden


@pytest.mark.parametrize("extra, expected", [
    ([], "--tune needs --board"),
    (["--board", "nano33ble", "--preset", "tiny"], "--tune chooses the architecture, size and L itself: drop --preset"),
    (["--board", "esp32", "--max-length", "32", "--arch", "bert"], "drop --arch, --max-length"),
    (["--board", "esp32", "--init", "tiny_en"], "--init: not taken with --tune"),
])
def test_run_tune_refuses_what_the_tuner_chooses_in_one_line(tmp_path, capsys, extra, expected):
    from embbert.cli import main

    code = main(["run", "--tune", "--out", str(tmp_path / "t"), *extra])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and expected in err
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_run_tune_runs_the_winner_and_summarises_it(tmp_path, capsys, monkeypatch):
    """`run --board B --tune`: the tuner's search (here narrowed to the embedder), then the winner's whole run with
    run's summary in OUT/best."""
    from embbert import tune as tune_module
    from embbert.cli import main
    from embbert.datasets.synthetic import write_synthetic_task

    monkeypatch.setattr(tune_module, "DEFAULT_PRESETS", ("embedder",))
    task = write_synthetic_task(tmp_path / "task", num_labels=3, n_train=300, n_test=100, seed=0)
    out = tmp_path / "tuned"
    assert main(["run", "--tune", "--board", "nano33ble", "--task", str(task), "--epochs", "1", "--qat-epochs", "1",
                 "--learning-rate", "3e-3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chosen by `embbert tune` for the Arduino Nano 33 BLE: embedder-L" in text
    summary = (out / "best" / "summary.txt").read_text()
    assert "TFLM vs TFLite" in summary and "Arduino Nano 33 BLE: fits" in summary
    assert (out / "tune.md").is_file() and (out / "best" / "run.json").is_file()


def test_bench_arch_merge_keeps_earlier_rows_of_the_same_recipe_only(tmp_path):
    """--merge: rows of presets not run now come from an earlier arch.json of the same recipe; another recipe is a
    one-line error before anything runs."""
    import argparse
    import json

    from embbert.bench.arch import merge_results, read_merge
    from embbert.core.errors import EmbBertError

    recipe = {"lr_grid": [1e-3, 3e-3], "seeds": [0, 1, 2], "epochs": 3, "qat_epochs": 1, "batch_size": 32,
              "max_train_examples": None, "max_test_examples": None}
    row = {"preset": "tiny", "task": "emotion", "tflm": 85.8}
    (tmp_path / "arch.json").write_text(json.dumps({**recipe, "presets": ["tiny", "bert"], "tasks": ["emotion"],
                                                    "duration_s": 10.0, "skipped": [],
                                                    "rows": [row, {**row, "preset": "bert", "tflm": 89.7}]}))
    args = argparse.Namespace(merge=str(tmp_path / "arch.json"), **recipe)
    earlier = read_merge(args)
    now = {**recipe, "presets": ["bert", "embbert"], "tasks": ["emotion"], "duration_s": 5.0, "skipped": [],
           "rows": [{**row, "preset": "bert", "tflm": 90.0}, {**row, "preset": "embbert", "tflm": 89.7}]}
    merged = merge_results(now, earlier)
    assert [(r["preset"], r["tflm"]) for r in merged["rows"]] == [("tiny", 85.8), ("bert", 90.0), ("embbert", 89.7)]
    assert merged["presets"] == ["tiny", "bert", "embbert"] and merged["duration_s"] == 15.0
    with pytest.raises(EmbBertError, match=r"another recipe \(epochs 3 != 10\)"):
        read_merge(argparse.Namespace(**{**vars(args), "epochs": 10}))
    with pytest.raises(EmbBertError, match="no such file"):
        read_merge(argparse.Namespace(**{**vars(args), "merge": str(tmp_path / "none.json")}))
