"""`embbert convert` / `check` / arena report on the tiny preset trained a few steps on synthetic data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embbert.core.errors import EmbBertError


@pytest.fixture(scope="module")
def converted(tiny_run_dir):
    from embbert.tflite.convert import convert_run

    summary = convert_run(tiny_run_dir, max_calibration=100)
    return tiny_run_dir, summary


def test_convert_writes_int8_and_float32(converted):
    run, summary = converted
    assert (run / "model_int8.tflite").stat().st_size == summary["int8_bytes"] > 0
    assert (run / "model_float32.tflite").stat().st_size == summary["float32_bytes"] > summary["int8_bytes"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "temporary files left"


def test_ops_and_dtypes(converted):
    from embbert.tflite.convert import TFLM_INT8_OPS, validate_for_tflm
    from embbert.tflite.graph import read_graph

    run, summary = converted
    data = (run / "model_int8.tflite").read_bytes()
    ops = validate_for_tflm(data)
    assert ops == summary["ops"] and set(ops) <= TFLM_INT8_OPS
    assert {"FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GATHER"} <= set(ops)
    g = read_graph(data)
    assert sorted(g.tensors[i].dtype for i in g.inputs) == ["int32", "int32"]
    assert g.input_index("token_ids") != g.input_index("segment_ids")
    assert g.tensors[g.outputs[0]].dtype == "int8" and g.tensors[g.outputs[0]].shape == [1, 3]
    ids = set(g.inputs)  # the int32 inputs and slices of them (the last layer's segment id of token 0)
    for op in g.ops:
        if op.name in ("STRIDED_SLICE", "RESHAPE") and op.inputs[0] in ids:
            ids.update(op.outputs)
    for t in g.tensors:
        assert t.dtype in ("int8", "int32"), (t.name, t.dtype)
        assert all(d > 0 for d in t.shape_signature), t.name
        if t.dtype == "int32":
            assert t.constant or t.index in ids, t.index  # only ids, index constants and biases
    for op in g.ops:
        if op.name == "FULLY_CONNECTED":
            assert g.tensors[op.inputs[1]].dtype == "int8"
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                assert g.tensors[op.inputs[2]].dtype == "int32"


def test_float_model_is_refused_naming_tensor_and_layer(converted):
    from embbert.tflite.convert import validate_for_tflm

    run, _ = converted
    with pytest.raises(EmbBertError, match=r"float32.*|.*float32") as exc:
        validate_for_tflm((run / "model_float32.tflite").read_bytes())
    assert "layer" in str(exc.value) and "\n" not in str(exc.value)


def test_fixture_model_is_trained(tiny_run_accuracy):
    assert tiny_run_accuracy >= 0.8  # otherwise near-tied logits make the agreement tests meaningless


def test_tflm_agrees_with_tflite(converted):
    from embbert.core.config import EmbBertConfig
    from embbert.tflite.check import tflite_predict, tflm_predict
    from embbert.datasets.pipeline import encoded_split

    run, _ = converted
    tok, seg, _, _ = encoded_split(run, EmbBertConfig.load(run), "test", 300)
    assert tok.shape[0] == 300
    data = (run / "model_int8.tflite").read_bytes()
    a, b = tflite_predict(data, tok, seg), tflm_predict(data, tok, seg)
    assert a.dtype == b.dtype == np.int8 and a.shape == b.shape == (300, 3)
    assert np.mean(a.argmax(-1) == b.argmax(-1)) >= 0.99
    # inputs found by name: swapped arrays put token ids into the 3-row segment table, which TFLM refuses
    with pytest.raises(EmbBertError, match="invoke failed"):
        tflm_predict(data, seg[:5], tok[:5])


def test_check_run_writes_table(converted):
    from embbert.tflite.check import check_run

    run, _ = converted
    report = check_run(run, max_examples=40)
    assert report["examples"] == 40
    assert set(report["models"]) == {"float_keras", "qat_keras", "int8_tflite", "int8_tflm"}
    assert report["tflm_vs_tflite"]["agreement"] >= 0.95
    assert json.loads((run / "check.json").read_text())["examples"] == 40


def test_arena_is_exact_and_reported(converted):
    from embbert.tflite.arena import arena_report
    from embbert.tflite.check import tflm_predict
    from embbert.tflite.probe import ArenaProbe

    run, _ = converted
    r = arena_report(run)
    data = (run / "model_int8.tflite").read_bytes()
    n = r["min_arena_bytes"]
    assert n % 16 == 0
    with ArenaProbe(data) as probe:
        assert probe.works(n) and not probe.works(n - 16)
    assert r["breakdown"]["total_bytes"] <= n
    assert r["breakdown"]["persistent_bytes"] + r["breakdown"]["non_persistent_bytes"] == r["breakdown"]["total_bytes"]
    # 32-bit board: host minimum - the derived pointer saving + the CMSIS-NN scratch; 64-bit host: minimum + scratch
    from embbert.tflite.graph import read_graph

    g = read_graph(data)
    assert r["pointer_savings_bytes"] == 12 * len(g.tensors) + 32 * len(g.ops) > 0
    assert r["recommended_arena_bytes"] == -(-(n - r["pointer_savings_bytes"] + r["margin_bytes"]) // 16) * 16
    assert r["host_arena_bytes"] == n + r["margin_bytes"] and r["margin_bytes"] > 0
    assert r["total_footprint_bytes"] == r["model_bytes"] + r["recommended_arena_bytes"]
    assert r["macs"] > 0 and r["host_latency_ms"] > 0
    assert [b["name"] for b in r["boards"]] == ["Arduino Nano 33 BLE", "ESP32", "ESP32-S3"]
    saved = json.loads((run / "arena_report.json").read_text())
    for key in ("model_bytes", "min_arena_bytes", "recommended_arena_bytes", "margin_bytes",
                "total_footprint_bytes", "boards", "macs", "host_latency_ms"):
        assert key in saved
    assert (run / "arena_report.png").read_bytes()[:4] == b"\x89PNG"
    assert "Board fit" in (run / "arena_report.md").read_text()
    # the interpreter runs at the minimum and refuses 16 bytes less with a one-line error
    from embbert.core.config import EmbBertConfig
    from embbert.datasets.pipeline import encoded_split

    tok, seg, _, _ = encoded_split(run, EmbBertConfig.load(run), "test", 3)
    assert tflm_predict(data, tok, seg, arena_size=n).shape == (3, 3)
    with pytest.raises(EmbBertError, match="too small"):
        tflm_predict(data, tok, seg, arena_size=n - 16)


def _gelu_model_bytes():
    from embbert.keras_model._tf import keras, tf
    from embbert.tflite.convert import convert_keras

    class Table(keras.layers.Layer):
        def build(self, shape):
            self.table = self.add_weight(name="table", shape=(50, 16), initializer="random_normal")

        def call(self, ids):
            return tf.gather(self.table, ids)

    tok = keras.Input(shape=(8,), batch_size=1, dtype="int32", name="token_ids")
    seg = keras.Input(shape=(8,), batch_size=1, dtype="int32", name="segment_ids")
    x = Table(name="tokens")(tok) + Table(name="segments")(seg)
    x = keras.layers.Dense(16, activation="gelu", name="ffn_gelu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(2, name="logits")(x)
    model = keras.Model({"token_ids": tok, "segment_ids": seg}, out, name="embbert_deploy")
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(10):
            yield {"token_ids": rng.integers(0, 50, (1, 8), dtype=np.int32),
                   "segment_ids": rng.integers(0, 3, (1, 8), dtype=np.int32)}

    return convert_keras(model, rep)


def test_gelu_is_refused_with_operator_named():
    from embbert.tflite.convert import validate_for_tflm

    data = _gelu_model_bytes()
    with pytest.raises(EmbBertError, match=r"operator GELU \(layer ffn_gelu") as exc:
        validate_for_tflm(data)
    assert "\n" not in str(exc.value)


def test_corrupt_and_missing_tflite(tmp_path, converted):
    from embbert.tflite.check import check_run, tflm_predict
    from embbert.tflite.convert import validate_for_tflm

    with pytest.raises(EmbBertError, match="TFLite FlatBuffer|truncated"):
        validate_for_tflm(b"not a model at all")
    run, _ = converted
    data = (run / "model_int8.tflite").read_bytes()
    with pytest.raises(EmbBertError):
        validate_for_tflm(data[: len(data) // 3])
    with pytest.raises(EmbBertError, match="no config.json"):
        check_run(tmp_path)
    (tmp_path / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(EmbBertError, match="model_int8.tflite: not found"):
        check_run(tmp_path)
    with pytest.raises(EmbBertError, match="too small"):
        tflm_predict(data, np.zeros((1, 32), np.int32), np.zeros((1, 32), np.int32), arena_size=1024)


def test_run_dir_without_model(tmp_path, converted):
    from embbert.tflite.convert import convert_run

    run, _ = converted
    (tmp_path / "config.json").write_text((run / "config.json").read_text())
    with pytest.raises(EmbBertError, match="no QAT model"):
        convert_run(tmp_path)
    assert not list(tmp_path.glob("*.tflite"))


def test_cli_errors_are_one_line(tmp_path, capsys):
    from embbert.cli import main

    (tmp_path / "model_int8.tflite").write_bytes(b"\x00" * 64)
    assert main(["check", str(tmp_path)]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("embbert: error:") and "\n" not in err
    assert main(["convert", str(tmp_path / "missing")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("embbert: error:") and "\n" not in err


def test_limited_split_is_a_seeded_sample_not_the_first_rows(tmp_path):
    """Splits are often ordered by class (IMDb test: negatives, then positives)."""
    import json as _json

    from embbert.core.config import EmbBertConfig
    from embbert.datasets.tokenizer import train_tokenizer
    from embbert.datasets.pipeline import encoded_split

    task = tmp_path / "ordered"
    task.mkdir()
    rows = [{"text": f"bad awful text {i}", "label": 0} for i in range(50)]
    rows += [{"text": f"good great text {i}", "label": 1} for i in range(50)]
    for split in ("train", "test"):
        (task / f"{split}.jsonl").write_text("".join(_json.dumps(r) + "\n" for r in rows))
    (task / "task.json").write_text(_json.dumps({
        "name": "ordered", "text_columns": ["text"], "label_column": "label", "label_names": ["neg", "pos"],
        "metric": "accuracy", "splits": {"train": "train.jsonl", "test": "test.jsonl"}}))
    train_tokenizer([r["text"] for r in rows], 300, tmp_path / "run" / "tokenizer")
    config = EmbBertConfig.create("nano", 16, num_labels=2, task=str(task), tokenizer="tokenizer")
    tok, seg, labels, _ = encoded_split(tmp_path / "run", config, "test", 20)
    assert tok.shape == (20, 16) and 5 <= int(labels.sum()) <= 15  # both classes, not the first 20 rows
    again = encoded_split(tmp_path / "run", config, "test", 20)[2]
    assert list(again) == list(labels)  # seeded: the same sample every time


def test_committed_example_is_what_convert_makes_of_its_configuration():
    """micro_app/example/emotion-tiny-L64 holds no weights (its run is not in the checkout); its graph depends on
    the configuration and the deploy form, not on the weight values: a QAT classifier of the example's
    config.json with random weights, converted as `embbert convert` converts, must give the same operators,
    tensor shapes, byte count, form, memory plan and arena figures as the committed model and report."""
    import json

    from embbert.core.config import EmbBertConfig
    from embbert.keras_model._tf import tf
    from embbert.keras_model.forms import DeployForm
    from embbert.keras_model.model import build_classifier
    from embbert.keras_model.quantize import quantize_model
    from embbert.tflite.arena import recommended_arena, table_bytes
    from embbert.tflite.convert import convert_qat
    from embbert.tflite.graph import macs, read_graph

    example = Path(__file__).resolve().parent.parent / "micro_app" / "example" / "emotion-tiny-L64"
    config = EmbBertConfig.load(example)
    report = json.loads((example / "arena_report.json").read_text())
    committed = (example / "model_int8.tflite").read_bytes()
    tf.keras.utils.set_random_seed(0)
    qat = quantize_model(build_classifier(config))
    rng = np.random.default_rng(0)
    n, length = 24, config.max_length
    tok = rng.integers(5, config.model.vocab_size, (n, length)).astype(np.int32)
    seg = np.ones((n, length), np.int32)
    for i, used in enumerate(rng.integers(4, length, n)):
        tok[i, used:], seg[i, used:] = 0, 0
    # trained weights are never exactly their initial values (a gain of exactly 1 lets the converter drop a MUL)
    qat.set_weights([w + rng.normal(0, 0.05, w.shape).astype(w.dtype) if w.dtype.kind == "f" and w.ndim else w
                     for w in qat.get_weights()])
    qat({"token_ids": tok, "segment_ids": seg}, training=True)  # activation ranges
    data, info = convert_qat(qat, config, tok, seg)

    def shape(d):
        g = read_graph(d)
        return g, [(o.name, [g.tensors[i].shape if i >= 0 else None for i in o.inputs],
                    [g.tensors[i].shape for i in o.outputs]) for o in g.ops]

    (g_new, ops_new), (g_old, ops_old) = shape(data), shape(committed)
    assert ops_new == ops_old and len(g_new.tensors) == len(g_old.tensors)
    assert len(data) == len(committed) == report["model_bytes"]
    assert DeployForm.from_record(info["options"]).label() == report["graph_options"]
    assert report["ops"] == g_new.op_names
    assert macs(g_new)["total"] == report["macs"]
    plan = info["plan"]
    assert plan["written"] and plan["tflm_min_arena_with_plan"] == report["min_arena_bytes"]
    assert recommended_arena(plan["tflm_min_arena_with_plan"], g_new) == report["recommended_arena_bytes"]
    assert table_bytes(config.tokenizer_dir(example)) == report["tokenizer_table_bytes"]
    # the committed Markdown is the rendering of the committed report with today's runtime figures
    from embbert.tflite.arena import TFLM_RUNTIME_FLASH_BYTES, TFLM_RUNTIME_RAM_BYTES
    from embbert.tflite.reports import report_markdown

    assert report["tflm_runtime_flash_bytes"] == TFLM_RUNTIME_FLASH_BYTES
    assert report_markdown(report, TFLM_RUNTIME_FLASH_BYTES, TFLM_RUNTIME_RAM_BYTES) == \
        (example / "arena_report.md").read_text()
