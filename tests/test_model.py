"""keras_model: sizes, causality, padding, segments, learning, save/load, deploy graph, config, CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embbert.core.config import DEFAULT_MAX_LENGTH, PRESETS, EmbBertConfig, ModelConfig, TrainConfig
from embbert.core.errors import EmbBertError

REFERENCE_BACKBONE = {"nano": 65_856, "tiny": 146_048, "embbert": 357_248, "med": 1_834_752, "big": 7_306_752}
SMALL_LENGTH = {"nano": 32, "tiny": 32, "embbert": 32, "med": 16, "big": 16, "bert": 32, "embedder": 32,
                "embedder_conv": 32, "mamba": 16}
CLS, SEP, PAD = 2, 4, 0


def _tf():
    from embbert.keras_model._tf import keras, tf

    return keras, tf


def _randomise(model, seed: int = 0, scale: float = 0.3) -> None:
    """Give every weight non-trivial random values (incl. biases, which start at zero)."""
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])


def _single(rng, n_tokens: int, vocab: int, length: int):
    tok = np.zeros(length, np.int32)
    tok[0] = CLS
    tok[1:1 + n_tokens] = rng.integers(5, vocab, n_tokens)
    seg = np.where(tok != PAD, 1, 0).astype(np.int32)
    return tok, seg


def _pair(rng, n_a: int, n_b: int, vocab: int, length: int):
    ids = [CLS] + list(rng.integers(5, vocab, n_a)) + [SEP] + list(rng.integers(5, vocab, n_b)) + [SEP]
    tok = np.zeros(length, np.int32)
    tok[: len(ids)] = ids
    seg = np.zeros(length, np.int32)
    seg[: n_a + 1] = 1
    seg[n_a + 1: len(ids)] = 2
    return tok, seg


# -- sizes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(REFERENCE_BACKBONE))
def test_backbone_parameters_match_reference(preset):
    from embbert.keras_model.model import parameter_counts

    d = PRESETS[preset].hidden
    for n in (1, 2, 7):
        config = EmbBertConfig.create(preset, SMALL_LENGTH[preset], num_labels=n)
        counts = parameter_counts(config)
        assert counts["backbone_params"] == REFERENCE_BACKBONE[preset]
        assert counts["head_params"] == d * n + n
        assert counts["total_params"] == REFERENCE_BACKBONE[preset] + d * n + n


def test_parameter_count_does_not_depend_on_max_length():
    from embbert.keras_model.model import parameter_counts

    a = parameter_counts(EmbBertConfig.create("nano", 8, num_labels=2))
    b = parameter_counts(EmbBertConfig.create("nano", 256, num_labels=2))
    assert a == b


# -- causality -----------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,multiplier", [(4, 1), (8, 2)])
def test_convolution_path_is_causal(kernel, multiplier):
    keras, tf = _tf()
    from embbert.keras_model.layers import CausalDepthwiseConv

    T, d = 20, 6
    layer = CausalDepthwiseConv(kernel, multiplier)
    layer.build(tf.TensorShape([None, T, d]))
    rng = np.random.default_rng(1)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
    assert np.abs(layer.bias.numpy()).max() > 0.1
    x = rng.standard_normal((2, T, d)).astype(np.float32)
    base = layer(x).numpy()
    assert base.shape == (2, T, d * multiplier)
    for t in (0, 3, kernel - 1, 11, T - 2):
        x2 = x.copy()
        x2[:, t + 1:, :] = rng.standard_normal(x2[:, t + 1:, :].shape) * 5.0
        out = layer(x2).numpy()
        np.testing.assert_allclose(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        # and the future is not ignored either: position t+1 does change
        assert np.abs(out[:, t + 1] - base[:, t + 1]).max() > 1e-3


def test_convolution_sees_exactly_k_steps_back():
    keras, tf = _tf()
    from embbert.keras_model.layers import CausalDepthwiseConv

    T, d, k = 16, 3, 4
    layer = CausalDepthwiseConv(k, 1)
    layer.build(tf.TensorShape([None, T, d]))
    rng = np.random.default_rng(2)
    layer.kernel.assign(rng.uniform(0.5, 1.5, layer.kernel.shape).astype(np.float32))
    layer.bias.assign(np.full(layer.bias.shape, 0.25, np.float32))
    x = rng.standard_normal((1, T, d)).astype(np.float32)
    base = layer(x).numpy()
    x2 = x.copy()
    x2[:, 5] += 3.0
    changed = np.abs(layer(x2).numpy() - base).max(axis=-1)[0] > 1e-6
    assert changed.tolist() == [t in range(5, 5 + k) for t in range(T)]


def test_convolution_matches_numpy_reference():
    keras, tf = _tf()
    from embbert.keras_model.layers import CausalDepthwiseConv

    T, d, k, e = 9, 4, 3, 2
    layer = CausalDepthwiseConv(k, e)
    layer.build(tf.TensorShape([None, T, d]))
    rng = np.random.default_rng(3)
    w = rng.standard_normal((1, k, d, e)).astype(np.float32)
    b = rng.standard_normal(d * e).astype(np.float32)
    layer.kernel.assign(w)
    layer.bias.assign(b)
    x = rng.standard_normal((1, T, d)).astype(np.float32)
    # the k trained taps are applied to x[t-k+1..t] (tap j multiplies x[t-k+1+j]) — see causal_kernel
    ref = np.zeros((T, d * e), np.float32)
    for t in range(T):
        for c in range(d):
            for m in range(e):
                s = b[c * e + m]
                for j in range(k):
                    src = t - k + 1 + j
                    if src >= 0:
                        s += w[0, j, c, m] * x[0, src, c]
                ref[t, c * e + m] = s
    silu = ref / (1.0 + np.exp(-ref))
    np.testing.assert_allclose(layer(x).numpy()[0], silu, rtol=1e-5, atol=1e-5)


# -- padding -------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", list(PRESETS))
def test_padding_does_not_change_logits(preset):
    from embbert.keras_model.model import build_classifier, build_deploy_model

    L = SMALL_LENGTH[preset] // 2
    config = EmbBertConfig.create(preset, 2 * L, num_labels=3)
    model = build_classifier(config)
    _randomise(model, seed=PRESETS[preset].hidden, scale=0.1)
    short = build_deploy_model(model, config, length=L)
    vocab = config.model.vocab_size
    rng = np.random.default_rng(0)
    cases = [_single(rng, n, vocab, L) for n in (L - 1, L // 2, 3)]
    cases += [_pair(rng, n_a, n_b, vocab, L) for n_a, n_b in ((3, L - 6), (L // 3, 2))]
    for tok, seg in cases:
        long_tok = np.concatenate([tok, np.zeros(L, np.int32)])
        long_seg = np.concatenate([seg, np.zeros(L, np.int32)])
        a = short({"token_ids": tok[None], "segment_ids": seg[None]}, training=False).numpy()
        b = model({"token_ids": long_tok[None], "segment_ids": long_seg[None]}, training=False).numpy()
        assert np.abs(a).max() > 1e-3
        # float32 rounding only: the deployed graph computes the same sums in another order
        # (pre-transposed keys, token 0 only), so allow 1e-5 relative as well as absolute
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_padding_is_masked_not_ignored_by_accident():
    """Control: the same tokens marked as real text (segment 1) instead of padding change the logits."""
    from embbert.keras_model.model import build_classifier

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    model = build_classifier(config)
    _randomise(model, seed=5, scale=0.1)
    tok, seg = _single(np.random.default_rng(1), 5, config.model.vocab_size, 16)
    a = model({"token_ids": tok[None], "segment_ids": seg[None]}).numpy()
    seg2 = seg.copy()
    seg2[6:] = 1
    b = model({"token_ids": tok[None], "segment_ids": seg2[None]}).numpy()
    assert np.abs(a - b).max() > 1e-3


# -- segment rule --------------------------------------------------------------------------
def test_segment_ids_from_token_ids():
    from embbert.datasets.pipeline import segment_ids_from_token_ids

    ids = np.array([[2, 11, 12, 4, 13, 14, 4, 0, 0], [2, 11, 12, 13, 0, 0, 0, 0, 0], [2, 4, 4, 0, 0, 0, 0, 0, 0]])
    expected = [[1, 1, 1, 2, 2, 2, 2, 0, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 2, 2, 0, 0, 0, 0, 0, 0]]
    np.testing.assert_array_equal(segment_ids_from_token_ids(ids), expected)
    np.testing.assert_array_equal(segment_ids_from_token_ids(ids[0]), expected[0])
    assert segment_ids_from_token_ids(ids).dtype == np.int32


def test_segment_rule_agrees_with_packing():
    from embbert.datasets.pipeline import pack, segment_ids_from_token_ids

    tok, seg = pack([10, 11, 12], [20, 21], 12)
    np.testing.assert_array_equal(segment_ids_from_token_ids(tok), seg)
    tok, seg = pack([10, 11, 12], None, 8)
    np.testing.assert_array_equal(segment_ids_from_token_ids(tok), seg)


# -- learning ------------------------------------------------------------------------------
MARKERS = ((10, 11), (20, 21))
MARKER_COPIES = 3


def _marker_task(n: int, length: int, seed: int):
    """Random filler tokens; the class is which marker family appears (3 times) in the sequence."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(MARKERS), n)
    tok = rng.integers(100, 2000, (n, length)).astype(np.int32)
    tok[:, 0] = CLS
    lengths = rng.integers(length // 2, length + 1, n)
    for i in range(n):
        tok[i, lengths[i]:] = PAD
        where = rng.choice(np.arange(1, lengths[i]), MARKER_COPIES, replace=False)
        tok[i, where] = rng.choice(MARKERS[y[i]], MARKER_COPIES)
    seg = np.where(tok == PAD, 0, 1).astype(np.int32)
    return {"token_ids": tok, "segment_ids": seg}, y.astype(np.int64)


def test_tiny_preset_learns_separable_task():
    keras, tf = _tf()
    from embbert.keras_model.model import build_classifier

    keras.utils.set_random_seed(0)
    config = EmbBertConfig.create("tiny", 16, num_labels=len(MARKERS))
    x, y = _marker_task(768, 16, seed=0)
    xt, yt = _marker_task(300, 16, seed=1)
    model = build_classifier(config)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    before = model.evaluate(xt, yt, verbose=0)[1]
    model.fit(x, y, batch_size=32, epochs=5, verbose=0)
    after = float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))
    assert before < 0.8
    assert after >= 0.95


# -- save / load ---------------------------------------------------------------------------
def _tiny_inputs(config, n=6, seed=0):
    rng = np.random.default_rng(seed)
    rows = [_single(rng, int(rng.integers(3, config.max_length)), config.model.vocab_size, config.max_length)
            for _ in range(n)]
    return {"token_ids": np.stack([r[0] for r in rows]), "segment_ids": np.stack([r[1] for r in rows])}


def test_float_save_load_round_trip(tmp_path):
    from embbert.core import layout
    from embbert.keras_model.model import build_classifier, load_model, save_model

    config = EmbBertConfig.create("tiny", 16, num_labels=3, task="synthetic")
    model = build_classifier(config)
    _randomise(model, seed=3, scale=0.1)
    save_model(model, config, tmp_path)
    assert (tmp_path / layout.FLOAT_WEIGHTS).is_file() and (tmp_path / "config.json").is_file()
    assert not list(tmp_path.glob(".tmp*"))
    loaded = load_model(tmp_path)
    x = _tiny_inputs(config)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert EmbBertConfig.load(tmp_path) == config
    fresh = build_classifier(config)
    assert np.abs(fresh.predict(x, verbose=0) - model.predict(x, verbose=0)).max() > 1e-4


def test_qat_save_load_round_trip(tmp_path):
    keras, tf = _tf()
    from embbert.core import layout
    from embbert.keras_model.model import build_classifier, load_model, save_model
    from embbert.keras_model.quantize import quantize_model

    keras.utils.set_random_seed(1)
    config = EmbBertConfig.create("tiny", 16, num_labels=2)
    model = build_classifier(config)
    qat = quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-3),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = _tiny_inputs(config, n=8, seed=1)
    y = np.array([0, 1] * 4, np.int64)
    x0 = qat.predict(x, verbose=0)
    for _ in range(3):
        qat.train_on_batch(x, y)
    trained = qat.predict(x, verbose=0)
    assert np.abs(trained - x0).max() > 1e-5  # training moved weights and/or ranges
    save_model(qat, config, tmp_path, qat=True)
    assert (tmp_path / layout.QAT_WEIGHTS).is_file()
    loaded = load_model(tmp_path, qat=True)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained)
    # the quantizer ranges (non-trainable) travel too
    a = {w.name: w.numpy() for w in qat.non_trainable_weights}
    b = {w.name: w.numpy() for w in loaded.non_trainable_weights}
    assert len(a) == len(b) > 0
    for (na, va), (nb, vb) in zip(sorted(a.items()), sorted(b.items())):
        np.testing.assert_array_equal(va, vb)


def test_load_model_errors(tmp_path):
    from embbert.keras_model.model import build_classifier, load_model, save_model

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    with pytest.raises(EmbBertError):
        load_model(tmp_path)  # no config.json
    save_model(build_classifier(config), config, tmp_path)
    with pytest.raises(EmbBertError, match="QAT"):
        load_model(tmp_path, qat=True)
    other = EmbBertConfig.create("tiny", 16, num_labels=2)
    with pytest.raises(EmbBertError):
        load_model(tmp_path, config=other)  # weights of another preset


# -- deployable graph ----------------------------------------------------------------------
def test_deploy_model_shares_weights_and_is_static():
    keras, tf = _tf()
    from embbert.keras_model.model import build_classifier, build_deploy_model

    keras.utils.set_random_seed(2)
    config = EmbBertConfig.create("tiny", 32, num_labels=3)
    model = build_classifier(config)
    x, y = _marker_task(64, 32, seed=3)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    deploy = build_deploy_model(model, config)
    for t in deploy.inputs:
        assert tuple(t.shape) == (1, 32)
    assert tuple(deploy.outputs[0].shape) == (1, 3)
    assert deploy.count_params() == model.count_params()
    expected = model.predict(x, verbose=0)
    for i in range(4):
        one = {k: v[i:i + 1] for k, v in x.items()}
        np.testing.assert_allclose(deploy(one, training=False).numpy(), expected[i:i + 1], rtol=1e-5, atol=1e-5)
    # weights are shared, not copied: a change to the trained model shows in the deploy graph
    head = model.get_layer("head")
    head.set_weights([w + 1.0 for w in head.get_weights()])
    one = {k: v[:1] for k, v in x.items()}
    np.testing.assert_allclose(deploy(one).numpy(), model(one).numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(deploy(one).numpy() - expected[:1]).max() > 0.5


def test_deploy_model_lengths():
    from embbert.keras_model.model import build_classifier, build_deploy_model

    config = EmbBertConfig.create("nano", 32, num_labels=2)
    model = build_classifier(config)
    small = build_deploy_model(model, config, length=8)
    assert [tuple(t.shape) for t in small.inputs] == [(1, 8), (1, 8)]
    tok, seg = _single(np.random.default_rng(0), 5, config.model.vocab_size, 8)
    out = small({"token_ids": tok[None], "segment_ids": seg[None]}).numpy()
    assert out.shape == (1, 2) and np.all(np.isfinite(out))
    full = build_deploy_model(model, config, length=config.model.max_positions)
    assert tuple(full.inputs[0].shape) == (1, config.model.max_positions)
    with pytest.raises(EmbBertError):
        build_deploy_model(model, config, length=config.model.max_positions + 1)


def test_deploy_model_of_qat_model_matches():
    keras, tf = _tf()
    from embbert.keras_model.model import build_classifier, build_deploy_model
    from embbert.keras_model.quantize import quantize_model

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    qat = quantize_model(build_classifier(config))
    x = _tiny_inputs(config, n=4, seed=4)
    qat(x, training=True)  # set the activation ranges
    deploy = build_deploy_model(qat, config)
    expected = qat.predict(x, verbose=0)
    for i in range(4):
        one = {k: v[i:i + 1] for k, v in x.items()}
        np.testing.assert_allclose(deploy(one).numpy(), expected[i:i + 1], rtol=1e-4, atol=1e-4)



# -- the backbone --------------------------------------------------------------------------
def _sequence_inputs(config, n=3, seed=0):
    x = _tiny_inputs(config, n=n, seed=seed)
    x["segment_ids"][1, 2:6] = np.where(x["token_ids"][1, 2:6] != PAD, 2, 0)  # a second segment
    return x


def test_backbone_of_a_task_model_shares_its_layers():
    keras, tf = _tf()
    from embbert.keras_model.backbone import EmbBertBackbone
    from embbert.keras_model.layers import EncoderLayer, NanoEmbedder
    from embbert.keras_model.model import build_classifier, build_pretrainer

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    for model in (build_classifier(config), build_pretrainer(config, max_predictions=2)):
        backbone = EmbBertBackbone.of(model)
        assert isinstance(backbone.embedder, NanoEmbedder) and backbone.embedder.name == "embedder"
        assert [e.name for e in backbone.encoders] == [f"encoder_{i}" for i in range(config.model.layers)]
        assert all(isinstance(e, EncoderLayer) for e in backbone.encoders)
        model_layers = {id(layer) for layer in model.layers}
        assert {id(layer) for layer in [backbone.embedder, *backbone.encoders]} <= model_layers
        assert {id(w) for w in backbone.weights} <= {id(w) for w in model.weights}
        assert len(backbone.weights) == len(model.weights) - 2  # all but the head's kernel and bias
        x = _tiny_inputs(config)
        assert backbone(x).shape == (len(x["token_ids"]), 16, config.model.hidden)
        assert not any(isinstance(layer, keras.Model) for layer in model.layers)  # flat: no nested model
    with pytest.raises(EmbBertError, match="not an EmbBERT model"):
        EmbBertBackbone.of(_plain_model())


def _plain_model():
    keras, tf = _tf()
    x = keras.Input(shape=(4,))
    return keras.Model(x, keras.layers.Dense(2)(x))


def test_backbone_moves_between_classifier_and_pretrainer(tmp_path):
    """A backbone saved from a classifier loads into a pretrainer, and the reverse: identical sequences."""
    from embbert.keras_model.backbone import EmbBertBackbone
    from embbert.keras_model.model import build_classifier, build_pretrainer, save_weights

    config = EmbBertConfig.create("tiny", 16, num_labels=3)
    x = _sequence_inputs(config)
    for source_kind in ("classifier", "pretrainer"):
        classifier, pretrainer = build_classifier(config), build_pretrainer(config, max_predictions=2)
        source, target = (classifier, pretrainer) if source_kind == "classifier" else (pretrainer, classifier)
        _randomise(source, seed=7, scale=0.1)
        path = save_weights(EmbBertBackbone.of(source), tmp_path / f"from_{source_kind}.weights.h5")
        target_head = target.get_layer("head" if target is classifier else "mlm_head")
        head = [w.copy() for w in target_head.get_weights()]
        before = EmbBertBackbone.of(target)(x, training=False).numpy()
        EmbBertBackbone.of(target).load_weights(str(path))
        expected = EmbBertBackbone.of(source)(x, training=False).numpy()
        got = EmbBertBackbone.of(target)(x, training=False).numpy()
        assert np.abs(expected - before).max() > 1e-3  # the load changed something
        np.testing.assert_array_equal(got, expected)
        for a, b in zip(target_head.get_weights(), head):  # the head is not touched
            np.testing.assert_array_equal(a, b)


def _layer_ids(backbone):
    return [id(layer) for layer in [backbone.embedder, *backbone.encoders]]


def test_deploy_graph_is_built_on_the_backbone_weights():
    keras, tf = _tf()
    from embbert.keras_model.backbone import EmbBertBackbone
    from embbert.keras_model.model import build_classifier, build_deploy_model
    from embbert.keras_model.quantize import quantize_model

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    model = build_classifier(config)
    _randomise(model, seed=8, scale=0.1)
    qat = quantize_model(model)
    for task_model in (model, qat):
        backbone = EmbBertBackbone.of(task_model)
        deploy = build_deploy_model(task_model, config)
        deploy_backbone = EmbBertBackbone.of(deploy)
        assert _layer_ids(deploy_backbone) == _layer_ids(backbone)
        backbone_ids = {id(w) for w in backbone.weights}
        assert backbone_ids <= {id(w) for w in deploy.weights}
        assert len(backbone_ids) > 0
    # one weight of the backbone changed: the deploy graph follows (a shared variable, not a copy)
    deploy = build_deploy_model(model, config)
    x = _tiny_inputs(config, n=1, seed=9)
    before = deploy(x).numpy()
    table = EmbBertBackbone.of(model).embedder.token_table
    table.assign(table.numpy() + 0.5)
    np.testing.assert_allclose(deploy(x).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-5)
    assert np.abs(deploy(x).numpy() - before).max() > 1e-4


def test_qat_model_starts_from_the_float_weights_layer_by_layer():
    from embbert.keras_model.backbone import EmbBertBackbone, unwrapped
    from embbert.keras_model.model import build_classifier
    from embbert.keras_model.quantize import copy_float_weights, quantize_model

    config = EmbBertConfig.create("nano", 16, num_labels=2)
    model = build_classifier(config)
    _randomise(model, seed=10, scale=0.1)
    qat = quantize_model(model)
    assert [type(unwrapped(layer)) for layer in qat.layers] == [type(layer) for layer in model.layers]
    for source, layer in zip(model.layers, qat.layers):
        targets = unwrapped(layer).trainable_weights
        assert len(targets) == len(source.trainable_weights)
        for a, b in zip(targets, source.trainable_weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert sum(len(layer.trainable_weights) for layer in model.layers) > 0
    encoders = EmbBertBackbone.of(qat).encoders
    assert [e.name for e in encoders] == [f"quant_encoder_{i}" for i in range(config.model.layers)]
    with pytest.raises(ValueError):
        copy_float_weights(model, build_classifier(EmbBertConfig.create("tiny", 16, num_labels=2)))


# -- config --------------------------------------------------------------------------------
def test_config_json_round_trip(tmp_path):
    train = TrainConfig(batch_size=8, learning_rate=1e-3, epochs=3, qat_epochs=1, seed=7, steps_per_epoch=5)
    config = EmbBertConfig.create("med", 64, num_labels=3, task="sst2", tokenizer="tok", label_names=["a", "b", "c"],
                                  train=train)
    text = config.to_json()
    assert json.loads(text)["model"]["hidden"] == 256
    again = EmbBertConfig.from_json(text)
    assert again == config
    assert again.label_names == ("a", "b", "c") and again.train.steps_per_epoch == 5
    config.save(tmp_path)
    assert EmbBertConfig.load(tmp_path) == config
    assert EmbBertConfig.load(tmp_path / "config.json") == config
    assert EmbBertConfig.create("nano").max_length == DEFAULT_MAX_LENGTH == 128
    assert EmbBertConfig.create("big").model == PRESETS["big"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: EmbBertConfig.create("huge", 32),
        lambda: EmbBertConfig.create("tiny", 257),
        lambda: EmbBertConfig.create("tiny", 1),
        lambda: EmbBertConfig.create("tiny", 32, num_labels=0),
        lambda: TrainConfig(batch_size=0),
        lambda: TrainConfig(learning_rate=0.0),
        lambda: TrainConfig(epochs=-1),
        lambda: TrainConfig(strategy="tpu"),
        lambda: TrainConfig(validation_fraction=1.0),
        lambda: ModelConfig(vocab_size=0, max_positions=8, hidden=8, reduced=4, expansion=1, kernel=2, layers=1),
        lambda: ModelConfig(vocab_size=8, max_positions=8, hidden=8, reduced=4, expansion=1, kernel=2, layers=1,
                            dropout=1.0),
        lambda: EmbBertConfig.from_json("{not json"),
        lambda: EmbBertConfig.from_json("{}"),
        lambda: EmbBertConfig.from_json(json.dumps({**EmbBertConfig.create("tiny", 32).to_dict(), "format_version": 99})),
        lambda: EmbBertConfig.from_json(json.dumps({**EmbBertConfig.create("tiny", 32).to_dict(), "extra": 1})),
        lambda: EmbBertConfig.from_json(json.dumps({**EmbBertConfig.create("tiny", 32).to_dict(), "max_length": 999})),
    ],
)
def test_bad_config_values_raise(make):
    with pytest.raises(EmbBertError):
        make()


def test_load_missing_config(tmp_path):
    with pytest.raises(EmbBertError, match="config.json"):
        EmbBertConfig.load(tmp_path)


# -- CLI -----------------------------------------------------------------------------------
def test_cli_model_summary_json(capsys):
    from embbert.cli import main

    assert main(["model", "summary", "--preset", "embbert", "--num-labels", "2", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["backbone_params"] == 357_248
    assert info["head_params"] == 258
    assert info["total_params"] == 357_248 + 258


def test_cli_model_summary_text(capsys):
    from embbert.cli import main

    assert main(["model", "summary", "--preset", "nano", "--num-labels", "7", "--max-length", "64"]) == 0
    out = capsys.readouterr().out
    assert "65,856" in out and f"{64 * 7 + 7:,}" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["model", "summary", "--preset", "huge", "--num-labels", "2"],
        ["model", "summary", "--preset", "tiny", "--num-labels", "0"],
        ["model", "summary", "--preset", "tiny", "--num-labels", "two"],
        ["model", "summary", "--preset", "tiny"],
        ["model", "summary", "--preset", "tiny", "--num-labels", "2", "--bogus"],
    ],
)
def test_cli_bad_arguments(argv, capsys):
    from embbert.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("embbert") and "error" in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in captured.err and captured.out == ""


def test_cli_value_error_is_one_line(capsys):
    from embbert.cli import main

    code = main(["model", "summary", "--preset", "tiny", "--num-labels", "2", "--max-length", "300"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "300" in err and "Traceback" not in err


def test_cli_console_script_bad_args():
    exe = Path(sys.executable).with_name("embbert")
    if not exe.is_file():
        pytest.skip("console script not installed")
    proc = subprocess.run([str(exe), "model", "summary", "--preset", "nope", "--num-labels", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
