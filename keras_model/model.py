"""Building, saving and loading EmbBERT models.

* `build_classifier(config)`: the trainable model, inputs `token_ids` and
  `segment_ids` (int32, (batch, L)), output logits (batch, num_labels);
  num_labels == 1 is a regression head.
* `build_pretrainer(config)`: backbone + masked-LM head (inputs add `mask_positions`).
* `build_deploy_model(model, length)`: the deployable graph — batch size 1, static
  length — calling the *same layer objects*, so it shares the trained weights
  (float or QAT).
* `save_model` / `load_model`: weights + `config.json`; a QAT model is rebuilt
  through tfmot before its weights are loaded.
"""
from __future__ import annotations

import os
from pathlib import Path

from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError

from ._tf import keras, tf
from .layers import ClassificationHead, EncoderLayer, MaskedLMHead, NanoEmbedder

TOKEN_IDS = "token_ids"
SEGMENT_IDS = "segment_ids"
MASK_POSITIONS = "mask_positions"
BACKBONE_LAYERS = ("embedder",)  # plus encoder_0 .. encoder_{n-1}


def _inputs(length: int | None, batch_size: int | None):
    tok = keras.Input(shape=(length,), batch_size=batch_size, dtype=tf.int32, name=TOKEN_IDS)
    seg = keras.Input(shape=(length,), batch_size=batch_size, dtype=tf.int32, name=SEGMENT_IDS)
    return tok, seg


def _backbone_layers(config: EmbBertConfig, quantize: bool = False):
    m = config.model
    embedder = NanoEmbedder(m.vocab_size, m.max_positions, m.hidden, m.reduced, quantize=quantize, name="embedder")
    encoders = [
        EncoderLayer(m.kernel, m.expansion, m.dropout, quantize=quantize, name=f"encoder_{i}") for i in range(m.layers)
    ]
    return embedder, encoders


def build_classifier(
    config: EmbBertConfig, *, length: int | None = None, batch_size: int | None = None, quantize: bool = False
) -> keras.Model:
    """The classification (or regression, num_labels == 1) model."""
    tok, seg = _inputs(length if length is not None else config.max_length, batch_size)
    embedder, encoders = _backbone_layers(config, quantize)
    x, seg_ids = embedder([tok, seg])
    for layer in encoders:
        x = layer([x, seg_ids])
    logits = ClassificationHead(config.num_labels, quantize=quantize, name="head")(x)
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, logits, name="embbert_classifier")


def build_pretrainer(config: EmbBertConfig, max_predictions: int) -> keras.Model:
    """Backbone + masked-LM head over `max_predictions` masked positions per sequence."""
    tok, seg = _inputs(config.max_length, None)
    pos = keras.Input(shape=(max_predictions,), dtype=tf.int32, name=MASK_POSITIONS)
    embedder, encoders = _backbone_layers(config)
    x, seg_ids = embedder([tok, seg])
    for layer in encoders:
        x = layer([x, seg_ids])
    logits = MaskedLMHead(config.model.vocab_size, name="mlm_head")([x, pos])
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg, MASK_POSITIONS: pos}, logits, name="embbert_pretrainer")


def _layer_by_role(model: keras.Model, role: str):
    """Find a layer by its name, also inside tfmot's QuantizeWrapper ('quant_<name>')."""
    for layer in model.layers:
        inner = getattr(layer, "layer", None)
        if layer.name == role or (inner is not None and inner.name == role):
            return layer
    raise EmbBertError(f"model {model.name!r} has no layer {role!r}")


def backbone_layer_names(config: EmbBertConfig) -> list[str]:
    return ["embedder"] + [f"encoder_{i}" for i in range(config.model.layers)]


def build_deploy_model(model: keras.Model, config: EmbBertConfig, length: int | None = None, *,
                       transposed_keys: bool = True, first_token_only: bool = True,
                       causal_valid: bool = True, query_blocks: int = 1) -> keras.Model:
    """Batch 1, static length, same layer objects (so the trained weights are shared).

    The deployed form of the same maths (the training graph is untouched; both options are
    call arguments of `EncoderLayer`): `transposed_keys` computes the context matmul on a
    pre-transposed y (no persistent transposed copy in TFLM's BATCH_MATMUL),
    `first_token_only` makes the last encoder layer compute position 0 only (the head reads
    nothing else), `causal_valid` convolves with the k trained taps after k-1 zero steps instead of
    a SAME convolution with k-1 zero taps, `query_blocks` > 1 runs the attention of every layer
    but a token-0 one in that many query blocks. All False / 1: the graph as it was before issue 12."""
    length = length or config.max_length
    if length > config.model.max_positions:
        raise EmbBertError(f"length {length} exceeds the model's {config.model.max_positions} positions")
    tok, seg = _inputs(length, 1)
    x, seg_ids = _layer_by_role(model, "embedder")([tok, seg], training=False)
    n = config.model.layers
    for i in range(n):
        x = _layer_by_role(model, f"encoder_{i}")(
            [x, seg_ids], training=False, deploy=transposed_keys,
            first_token_only=first_token_only and transposed_keys and i == n - 1,
            causal_valid=causal_valid and transposed_keys, query_blocks=query_blocks if transposed_keys else 1)
    logits = _layer_by_role(model, "head")(x, training=False)
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, logits, name="embbert_deploy")


def count_params(weights) -> int:
    return int(sum(int(tf.size(w)) for w in weights))


def parameter_counts(config: EmbBertConfig) -> dict[str, int]:
    """Backbone / head / total trainable parameters of the float classifier."""
    model = build_classifier(config)
    backbone = sum(count_params(_layer_by_role(model, n).trainable_weights) for n in backbone_layer_names(config))
    head = count_params(_layer_by_role(model, "head").trainable_weights)
    return {"backbone_params": backbone, "head_params": head, "total_params": backbone + head}


# -- saving and loading --------------------------------------------------------
FLOAT_WEIGHTS = "float.weights.h5"
QAT_WEIGHTS = "qat.weights.h5"
BACKBONE_WEIGHTS = "backbone.weights.h5"  # embedder + encoders: what a fine-tuning run loads
PRETRAINER_WEIGHTS = "pretrainer.weights.h5"  # backbone + MLM head: what continued pretraining loads


def save_weights(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save weights atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")  # same suffix: tf_keras picks the format from it
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def save_model(model: keras.Model, config: EmbBertConfig, directory: str | os.PathLike, *, qat: bool = False) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory)
    return save_weights(model, directory / (QAT_WEIGHTS if qat else FLOAT_WEIGHTS))


def load_model(directory: str | os.PathLike, *, qat: bool = False, config: EmbBertConfig | None = None) -> keras.Model:
    """Rebuild the float (or QAT) classifier of a run directory and load its weights."""
    directory = Path(directory)
    config = config or EmbBertConfig.load(directory)
    path = directory / (QAT_WEIGHTS if qat else FLOAT_WEIGHTS)
    if not path.is_file():
        raise EmbBertError(f"{path}: no {'QAT' if qat else 'float'} model weights (train the model first)")
    model = build_classifier(config)
    if qat:
        from .quantize import quantize_model

        model = quantize_model(model)
    try:
        model.load_weights(str(path))
    except (OSError, ValueError) as exc:
        raise EmbBertError(f"{path}: cannot load weights: {str(exc).splitlines()[0]}") from None
    return model


def backbone_view(model: keras.Model, config: EmbBertConfig) -> keras.Model:
    """The backbone (embedder + encoder layers) of a classifier or pretrainer as a model of its own,
    built on the *same layer objects*: saving or loading its weights moves the backbone's weights
    and nothing else, whatever head the model has."""
    tok, seg = _inputs(None, None)
    x, seg_ids = _layer_by_role(model, "embedder")([tok, seg])
    for name in backbone_layer_names(config)[1:]:
        x = _layer_by_role(model, name)([x, seg_ids])
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, x, name="embbert_backbone")


def resolve_pretrained(name_or_dir: str | os.PathLike) -> Path:
    """A pretrained backbone: a directory (`embbert pretrain` output) or a shipped preset name."""
    from .presets import preset_dir

    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / BACKBONE_WEIGHTS).is_file():
            raise EmbBertError(f"{path}: no {BACKBONE_WEIGHTS} (is it an `embbert pretrain` output or a preset?)")
        return path
    return preset_dir(str(name_or_dir))


def load_backbone_into(model: keras.Model, pretrained: str | os.PathLike, config: EmbBertConfig) -> None:
    """Load a pretrained backbone (directory or preset name) into a classifier or pretrainer."""
    backbone_dir = resolve_pretrained(pretrained)
    pre_config = EmbBertConfig.load(backbone_dir)
    if pre_config.model != config.model:
        raise EmbBertError(
            f"{pretrained}: pretrained preset {pre_config.preset!r} does not match the model ({config.preset!r})"
        )
    path = backbone_dir / BACKBONE_WEIGHTS
    try:
        backbone_view(model, config).load_weights(str(path))
    except (OSError, ValueError) as exc:
        raise EmbBertError(f"{path}: cannot load backbone weights: {str(exc).splitlines()[0]}") from None
