"""The Python API (issue 22): presets, text in, fit, QAT, convert, check, arena report, export.

Tiny configurations: the shipped `tiny_en` preset at L=16..32 on synthetic keyword texts, one or two
epochs. The CLI-parity test reuses the session's `tiny_run_dir` (conftest.py).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import embbert
from embbert import EmbBertError

REPO = Path(__file__).resolve().parent.parent
L = 24


def _synthetic(n: int, num_labels: int = 3, seed: int = 0):
    from embbert.datasets.synthetic import CLASS_WORDS, FILLER

    rng = np.random.default_rng(seed)
    words = [c.split() for c in CLASS_WORDS[:num_labels]]
    texts, labels = [], []
    for i in range(n):
        label = i % num_labels
        body = list(rng.choice(FILLER, 6)) + list(rng.choice(words[label], 2))
        rng.shuffle(body)
        texts.append(" ".join(body))
        labels.append(label)
    return texts, np.asarray(labels)


# -- import, help, errors ----------------------------------------------------------------------------------
def test_import_is_lazy_and_help_lists_the_api():
    code = ("import sys, pydoc, embbert; assert 'tensorflow' not in sys.modules, 'import embbert loaded TF'; "
            "print(pydoc.render_doc(embbert, renderer=pydoc.plaintext))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("EmbBertTokenizer", "EmbBertPreprocessor", "EmbBertBackbone", "EmbBertClassifier", "EmbBertError",
                 "TFLiteModel"):
        assert f"\n    class {name}(" in out.stdout, name  # in help's CLASSES, not just the docstring
    for name in ("quantize_model", "convert", "check", "arena_report", "export"):
        assert f"\n    {name}(" in out.stdout, name  # in FUNCTIONS, with its signature
    for name in embbert._API:
        obj = getattr(embbert, name)
        assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


def test_errors_are_embbert_errors_with_one_line():
    with pytest.raises(EmbBertError, match="neither a preset directory nor a shipped preset") as e:
        embbert.EmbBertClassifier.from_preset("no_such_preset", num_classes=2)
    assert "\n" not in str(e.value)
    with pytest.raises(EmbBertError, match="exceeds the preset's 256 positions"):
        embbert.EmbBertPreprocessor.from_preset("tiny_en", sequence_length=1000)
    with pytest.raises(EmbBertError, match="give num_classes"):
        embbert.EmbBertClassifier.from_preset("tiny_en")
    with pytest.raises(EmbBertError, match="unknown target"):
        embbert.export(b"", None, target="zephyr", out="x")
    with pytest.raises(EmbBertError, match="FlatBuffer|model"):
        embbert.arena_report(b"not a model")


# -- tokenizer and preprocessor --------------------------------------------------------------------------------
def test_preprocessor_strings_pairs_and_tf_data_match_the_cli_encoding():
    import tensorflow as tf

    from embbert.datasets.tokenizer import SEGMENT_B, encode_texts
    from embbert.keras_model.presets import preset_dir

    pre = embbert.EmbBertPreprocessor.from_preset("tiny_en", sequence_length=L)
    tok = embbert.EmbBertTokenizer.from_preset("tiny_en")
    assert pre.tokenizer.vocabulary_size == tok.vocabulary_size == 2048
    texts = ["I feel wonderful today!", "the engine and the gear broke", "Crème brûlée, déjà vu"]
    seconds = ["what a day", "call the mechanic", "again"]
    want_tok, want_seg = encode_texts(preset_dir("tiny_en") / "tokenizer", texts, None, L)

    one = pre(texts[0])
    assert one["token_ids"].shape == (L,) and np.array_equal(one["token_ids"], want_tok[0])
    batch = pre(texts)
    assert np.array_equal(batch["token_ids"], want_tok) and np.array_equal(batch["segment_ids"], want_seg)
    assert tok(texts[0]) == [int(i) for i in want_tok[0][1:1 + len(tok(texts[0]))]]
    assert tok.detokenize(tok(texts[0])) == "i feel wonderful today!"

    pair_tok, pair_seg = encode_texts(preset_dir("tiny_en") / "tokenizer", texts, seconds, L)
    pairs = pre((texts, seconds))
    assert np.array_equal(pairs["token_ids"], pair_tok) and (pairs["segment_ids"] == SEGMENT_B).any()
    assert np.array_equal(pre(list(zip(texts, seconds)))["token_ids"], pair_tok)  # a list of pairs

    # tf.data: unbatched and batched elements, single texts and pairs, with labels
    labels = np.arange(3)
    mapped = tf.data.Dataset.from_tensor_slices((texts, labels)).map(pre)
    rows = list(mapped.as_numpy_iterator())
    assert np.array_equal(np.stack([r[0]["token_ids"] for r in rows]), want_tok)
    assert [int(r[1]) for r in rows] == [0, 1, 2]
    (x, y), = tf.data.Dataset.from_tensor_slices((texts, labels)).batch(3).map(pre).as_numpy_iterator()
    assert x["token_ids"].shape == (3, L) and np.array_equal(x["segment_ids"], want_seg)
    x, = tf.data.Dataset.from_tensor_slices((texts, seconds)).batch(3).map(lambda a, b: pre((a, b))).as_numpy_iterator()
    assert np.array_equal(x["token_ids"], pair_tok) and np.array_equal(x["segment_ids"], pair_seg)
    assert mapped.element_spec[0]["token_ids"].shape == (L,)


# -- the whole path on a tiny configuration ---------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """tiny_en fine-tuned on synthetic keyword texts (strings -> fit -> quantize -> fit), L=24."""
    from tf_keras.utils import set_random_seed

    set_random_seed(0)
    texts, labels = _synthetic(240)
    test_texts, test_labels = _synthetic(60, seed=1)
    clf = embbert.EmbBertClassifier.from_preset("tiny_en", num_classes=3, sequence_length=L,
                                               label_names=["fruit", "water", "engine"])
    history = clf.fit(texts, labels, epochs=2, batch_size=16, verbose=0)
    qat = embbert.quantize_model(clf, calibration_data=texts)
    qat.fit(texts, labels, epochs=1, batch_size=16, verbose=0)
    return {"clf": clf, "qat": qat, "texts": texts, "labels": labels, "test_texts": test_texts,
            "test_labels": test_labels, "history": history, "tmp": tmp_path_factory.mktemp("api")}


def test_fit_on_strings_learns_and_tf_data_gives_the_same_evaluation(trained):
    import tensorflow as tf

    clf, qat = trained["clf"], trained["qat"]
    losses = trained["history"].history["loss"]
    assert losses[-1] < losses[0]
    _, acc = clf.evaluate(trained["test_texts"], trained["test_labels"], verbose=0)
    assert acc > 0.8, acc  # keywords decide the class: a fitted model gets them
    ds = tf.data.Dataset.from_tensor_slices((trained["test_texts"], trained["test_labels"]))
    assert clf.evaluate(ds, verbose=0)[1] == pytest.approx(acc)
    assert clf.evaluate(ds.batch(7), verbose=0)[1] == pytest.approx(acc)
    logits = clf.predict(trained["test_texts"])
    assert logits.shape == (60, 3)
    assert np.array_equal(clf.predict(trained["test_texts"][0])[0], logits[0])
    pairs = clf.predict((trained["test_texts"][:4], trained["test_texts"][4:8]))  # sentence pairs
    assert pairs.shape == (4, 3)
    pair_ds = tf.data.Dataset.from_tensor_slices(((trained["test_texts"][:8], trained["test_texts"][8:16]),
                                                  trained["test_labels"][:8]))
    assert len(clf.evaluate(pair_ds, verbose=0)) == 2
    with pytest.raises(EmbBertError, match="60 texts but 3 labels"):
        clf.evaluate(trained["test_texts"], [0, 1, 2], verbose=0)
    with pytest.raises(EmbBertError, match="expected texts"):
        clf.predict(42)
    with pytest.raises(EmbBertError, match=r"class labels must be in 0..2, got 0..5"):
        clf.evaluate(trained["test_texts"][:2], [0, 5], verbose=0)
    with pytest.raises(EmbBertError, match=r"labels \['plum'\] are not among the label names"):
        clf.evaluate(trained["test_texts"][:2], ["fruit", "plum"], verbose=0)
    names = np.array(["fruit", "water", "engine"])[trained["test_labels"]]  # label names work as labels
    assert clf.evaluate(trained["test_texts"], names, verbose=0)[1] == pytest.approx(acc)
    assert qat.quantized and not clf.quantized
    assert float(qat.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)  # the recipe's QAT rate
    assert float(clf.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)
    assert qat.evaluate(trained["test_texts"], trained["test_labels"], verbose=0)[1] > 0.8


def test_convert_check_arena_export(trained):
    from embbert.tflite.convert import validate_for_tflm

    qat = trained["qat"]
    model = embbert.convert(qat, representative_data=trained["texts"])
    assert isinstance(model, bytes) and model.info["calibration_examples"] == 200
    assert "BATCH_MATMUL" in validate_for_tflm(model)
    assert model.info["options"]["transposed_keys"] and model.info["options"]["first_token_only"]
    report = embbert.check(model, trained["test_texts"], trained["test_labels"])
    names = np.array(["fruit", "water", "engine"])[trained["test_labels"]]
    by_name = embbert.check(model, trained["test_texts"], names)["models"]
    assert {k: v["metric"] for k, v in by_name.items()} == {k: v["metric"] for k, v in report["models"].items()}
    keras_acc = qat.evaluate(trained["test_texts"], trained["test_labels"], verbose=0)[1]
    assert report["examples"] == 60
    assert report["models"]["int8_tflm"]["metric"] >= keras_acc - 0.1
    assert report["tflm_vs_tflite"]["agreement"] >= 0.9
    arena = embbert.arena_report(model)
    assert 16 <= arena["min_arena_bytes"] <= arena["recommended_arena_bytes"] + arena["pointer_savings_bytes"]
    assert arena["model_bytes"] == len(model) and arena["tokenizer_table_bytes"] > 0
    assert {b["key"] for b in arena["boards"]} == {"nano33ble", "esp32", "esp32s3"}
    out = trained["tmp"] / "EmbBERT"
    paths = embbert.export(model, qat.preprocessor, target="arduino", out=out)
    assert (out / "library.properties").is_file() and out / "library.properties" in paths
    settings = (out / "src" / "model_settings.h").read_text()
    assert f"kEmbBertMaxLength = {L}" in settings and '"engine"' in settings
    manifest = json.loads((out / "embbert_export.json").read_text())
    assert manifest["model_bytes"] == len(model) and manifest["min_arena_bytes"] == arena["min_arena_bytes"]
    data_file, = (out / "src").glob("model_data.c*")  # .cc or .cpp: the package's C++ extension
    assert data_file.read_text().count("0x") == len(model)
    trained["model"] = model


def test_convert_refuses_a_qat_model_that_saw_no_data(trained):
    fresh = embbert.quantize_model(trained["clf"])
    with pytest.raises(EmbBertError, match="seen no data"):
        embbert.convert(fresh, representative_data=trained["texts"][:4])


def test_save_to_preset_round_trips_bit_identical(trained):
    from embbert.keras_model.model import load_model

    clf, qat, tmp = trained["clf"], trained["qat"], trained["tmp"]
    x = trained["test_texts"]
    clf.save_to_preset(tmp / "float")
    back = embbert.EmbBertClassifier.from_preset(tmp / "float")
    assert back.label_names == ("fruit", "water", "engine") and not back.quantized
    assert all(np.array_equal(a, b) for a, b in zip(clf.get_weights(), back.get_weights()))
    assert np.array_equal(back.predict(x), clf.predict(x))
    meta = json.loads((tmp / "float" / "metadata.json").read_text())
    assert meta["kind"] == "classifier" and meta["parameter_count"] == 146_048 + 128 * 3 + 3
    assert meta["versions"]["embbert"] == embbert.__version__ and (tmp / "float" / "README.md").is_file()
    # the folder has a run directory's layout: the CLI's loader reads it, and `--init` takes it
    run_model = load_model(tmp / "float")
    pre = clf.preprocessor(x)
    assert np.array_equal(run_model.predict(pre, verbose=0), clf.predict(x))
    from embbert.core.config import EmbBertConfig
    from embbert.keras_model.model import build_classifier, load_backbone_into
    from embbert.keras_model.presets import init_arg
    from embbert.keras_model.train import pretrained_tokenizer_dir

    init = init_arg(str(tmp / "float"))
    config = EmbBertConfig.load(tmp / "float").replace(num_labels=2, label_names=())
    fresh = build_classifier(config)
    load_backbone_into(fresh, init, config)
    assert all(np.array_equal(a, b) for a, b in zip(fresh.get_weights()[:-2], clf.backbone.get_weights()))
    assert pretrained_tokenizer_dir(init).resolve() == (tmp / "float" / "tokenizer").resolve()

    qat.save_to_preset(tmp / "qat")
    qback = embbert.EmbBertClassifier.from_preset(tmp / "qat")
    assert qback.quantized
    assert np.array_equal(qback.predict(x), qat.predict(x))

    backbone = clf.backbone
    backbone.save_to_preset(tmp / "backbone")
    bback = embbert.EmbBertBackbone.from_preset(tmp / "backbone")
    assert all(np.array_equal(a, b) for a, b in zip(backbone.get_weights(), bback.get_weights()))
    clf.preprocessor.tokenizer.save_to_preset(tmp / "backbone")
    assert embbert.EmbBertTokenizer.from_preset(tmp / "backbone")(x[0]) == clf.preprocessor.tokenizer(x[0])
    # a new head on the saved classifier's backbone
    two = embbert.EmbBertClassifier.from_preset(tmp / "float", num_classes=2)
    assert two.num_classes == 2
    assert all(np.array_equal(a, b) for a, b in zip(two.backbone.get_weights(), backbone.get_weights()))


def test_shipped_presets_have_the_preset_layout():
    from embbert.core import layout
    from embbert.keras_model.presets import list_presets, preset_dir, read_metadata

    assert {"tiny_en", "embbert_en"} <= set(list_presets())
    for name in ("tiny_en", "embbert_en"):
        d = preset_dir(name)
        meta = read_metadata(d)
        assert meta["kind"] == "backbone" and meta["parameter_count"] > 0, name
        for f in (layout.CONFIG, layout.BACKBONE_WEIGHTS, layout.MODEL_CARD, layout.PRESET_METADATA):
            assert (d / f).is_file(), (name, f)
    b = embbert.EmbBertBackbone.from_preset("tiny_en")
    assert sum(int(np.prod(w.shape)) for w in b.trainable_weights) == read_metadata(preset_dir("tiny_en"))["parameter_count"]


def test_regression_head(tmp_path):
    from tf_keras.utils import set_random_seed

    set_random_seed(0)
    texts, labels = _synthetic(64)
    scores = labels.astype("float32") / 2.0  # a score that the keywords decide
    reg = embbert.EmbBertClassifier.from_preset("tiny_en", num_classes=1, sequence_length=16)
    assert reg.loss.__class__.__name__ == "MeanSquaredError"
    history = reg.fit(texts, scores, epochs=2, batch_size=16, verbose=0, validation_data=(texts[:16], scores[:16]))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert len(history.history["val_loss"]) == 2
    out = reg.predict(texts[:5])
    assert out.shape == (5, 1)
    reg.save_to_preset(tmp_path / "reg")
    assert np.array_equal(embbert.EmbBertClassifier.from_preset(tmp_path / "reg").predict(texts[:5]), out)
    # a float model converts too (quantized and calibrated on the representative texts, no QAT epochs)
    model = embbert.convert(reg, representative_data=texts, max_calibration=16)
    assert model.info["calibration_examples"] == 16
    report = embbert.check(model, texts[:32], scores[:32])
    assert report["metric"] == "spearman" and report["tflm_vs_tflite"]["agreement_rule"] == "same output within 1 LSB"
    from scipy.stats import spearmanr

    keras_rho = spearmanr(scores[:32], reg.predict(texts[:32])[:, 0]).statistic
    assert report["models"]["int8_tflm"]["metric"] > keras_rho - 0.15, (report, keras_rho)


# -- the command line runs the same functions ----------------------------------------------------------------
def test_cli_and_api_give_the_same_bytes(tiny_run_dir, tmp_path):
    """`embbert convert` / arena report / `embbert export` on a run directory, and the API on the same QAT
    model and the same calibration texts: the same .tflite, arena and package, byte for byte."""
    import shutil

    from embbert.cli import main
    from embbert.core import layout
    from embbert.core.config import EmbBertConfig
    from embbert.datasets.loading import load_task
    from embbert.datasets.pipeline import encoded_split

    run = tmp_path / tiny_run_dir.name
    shutil.copytree(tiny_run_dir, run, ignore=shutil.ignore_patterns("model_*", "arena_*", "micro_app"))
    n = 64  # calibration examples (a seeded sample of the train split)
    assert main(["convert", str(run), "--max-calibration", str(n)]) == 0
    assert main(["export", str(run), "--target", "sources", "--out", str(tmp_path / "cli_sources")]) == 0
    cli_bytes = (run / layout.INT8_MODEL).read_bytes()

    config = EmbBertConfig.load(run)
    data = load_task(config.task, config.data_dir, seed=config.train.seed)
    rng = np.random.default_rng(config.train.seed)  # encoded_split's seeded sample of the train split
    idx = sorted(rng.choice(len(data.train), size=n, replace=False).tolist())
    texts = [data.train.texts_a[i] for i in idx]
    qat = embbert.EmbBertClassifier.from_preset(run, quantized=True)
    tok, _, _, _ = encoded_split(run, config, "train", n)
    assert np.array_equal(qat.preprocessor(texts)["token_ids"], tok)

    model = embbert.convert(qat, representative_data=texts, max_calibration=n)
    assert bytes(model) == cli_bytes
    cli_arena = json.loads((run / layout.ARENA_JSON).read_text())
    api_arena = embbert.arena_report(model)
    for key in ("min_arena_bytes", "recommended_arena_bytes", "model_bytes", "tokenizer_table_bytes", "macs"):
        assert api_arena[key] == cli_arena[key], key
    embbert.export(model, qat.preprocessor, target="sources", out=tmp_path / "api_sources", name=run.name)
    cli_files = {p.relative_to(tmp_path / "cli_sources"): p.read_bytes() for p in (tmp_path / "cli_sources").rglob("*")
                 if p.is_file()}
    api_files = {p.relative_to(tmp_path / "api_sources"): p.read_bytes() for p in (tmp_path / "api_sources").rglob("*")
                 if p.is_file()}
    assert cli_files.keys() == api_files.keys()
    differ = [str(k) for k in cli_files if cli_files[k] != api_files[k]]
    assert not differ, differ
