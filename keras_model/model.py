"""Building, saving and loading EmbBERT models.

All of them are flat functional graphs over the layers of an `EmbBertBackbone`
(`keras_model/backbone.py`): embedder + encoder layers.

* `build_classifier(config)`: the trainable model, inputs `token_ids` and
  `segment_ids` (int32, (batch, L)), output logits (batch, num_labels);
  num_labels == 1 is a regression head.
* `build_pretrainer(config)`: backbone + masked-LM head (inputs add `mask_positions`).
* `build_deploy_model(model, length)`: the deployable graph — batch size 1, static
  length — calling the *same layer objects*, so it shares the trained weights
  (float or QAT).
* `save_model` / `load_model`: weights + `config.json`; a QAT model is rebuilt
  through tfmot before its weights are loaded.
* `load_backbone_into`: a pretrained backbone (directory or shipped preset) into a task model.
"""
from __future__ import annotations

import os
from pathlib import Path

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError

from ._tf import keras, tf
from .backbone import SEGMENT_IDS, TOKEN_IDS, EmbBertBackbone, inputs, layers_of_type
from .layers import ClassificationHead, MaskedLMHead

MASK_POSITIONS = "mask_positions"
# Kept importable from here for tflite/convert.py; the names live in embbert.core.layout.
QAT_WEIGHTS = layout.QAT_WEIGHTS


def build_classifier(
    config: EmbBertConfig, *, length: int | None = None, batch_size: int | None = None, quantize: bool = False,
    backbone: EmbBertBackbone | None = None,
) -> keras.Model:
    """The classification (or regression, num_labels == 1) model; on the layers of `backbone` when given
    (its weights are then the model's), else on new ones."""
    if backbone is None:
        backbone = EmbBertBackbone.create(config, quantize=quantize)
    tok, seg = inputs(length if length is not None else config.max_length, batch_size)
    x = backbone.encode(tok, seg)
    logits = ClassificationHead(config.num_labels, quantize=quantize, name="head")(x)
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, logits, name="embbert_classifier")


def build_pretrainer(config: EmbBertConfig, max_predictions: int) -> keras.Model:
    """Backbone + masked-LM head over `max_predictions` masked positions per sequence."""
    backbone = EmbBertBackbone.create(config)
    tok, seg = inputs(config.max_length, None)
    pos = keras.Input(shape=(max_predictions,), dtype=tf.int32, name=MASK_POSITIONS)
    x = backbone.encode(tok, seg)
    logits = MaskedLMHead(config.model.vocab_size, name="mlm_head")([x, pos])
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg, MASK_POSITIONS: pos}, logits, name="embbert_pretrainer")


def classification_head(model: keras.Model):
    """The classification head of a classifier (float, or its QuantizeWrapperV2 in a QAT model)."""
    heads = layers_of_type(model, ClassificationHead)
    if len(heads) != 1:
        raise EmbBertError(f"model {model.name!r} has {len(heads)} classification heads, not 1")
    return heads[0]


def build_deploy_model(model: keras.Model, config: EmbBertConfig, length: int | None = None, *,
                       transposed_keys: bool = True, first_token_only: bool = True,
                       causal_valid: bool = True, query_blocks: int = 1,
                       constant_positions: bool = False) -> keras.Model:
    """Batch 1, static length, same layer objects (so the trained weights are shared).

    The deployed form of the same maths (the training graph is untouched; both options are
    call arguments of `EncoderLayer`): `transposed_keys` computes the context matmul on a
    pre-transposed y (no persistent transposed copy in TFLM's BATCH_MATMUL),
    `first_token_only` makes the last encoder layer compute position 0 only (the head reads
    nothing else), `causal_valid` convolves with the k trained taps after k-1 zero steps instead of
    a SAME convolution with k-1 zero taps, `query_blocks` > 1 runs the attention of every layer
    but a token-0 one in that many query blocks, `constant_positions` stores the position path's
    (length, d) output as a constant instead of computing it. All False / 1: the graph as it was
    before issue 12."""
    length = length or config.max_length
    if length > config.model.max_positions:
        raise EmbBertError(f"length {length} exceeds the model's {config.model.max_positions} positions")
    tok, seg = inputs(length, 1)
    x = EmbBertBackbone.of(model).encode(tok, seg, deploy=True, transposed_keys=transposed_keys,
                                         first_token_only=first_token_only, causal_valid=causal_valid,
                                         query_blocks=query_blocks, constant_positions=constant_positions)
    logits = classification_head(model)(x, training=False)
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, logits, name="embbert_deploy")


def count_params(weights) -> int:
    return int(sum(int(tf.size(w)) for w in weights))


def parameter_counts(config: EmbBertConfig) -> dict[str, int]:
    """Backbone / head / total trainable parameters of the float classifier."""
    model = build_classifier(config)
    backbone = count_params(EmbBertBackbone.of(model).trainable_weights)
    head = count_params(classification_head(model).trainable_weights)
    return {"backbone_params": backbone, "head_params": head, "total_params": backbone + head}


# -- saving and loading --------------------------------------------------------
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


def _weights_file(qat: bool) -> str:
    return layout.QAT_WEIGHTS if qat else layout.FLOAT_WEIGHTS


def save_model(model: keras.Model, config: EmbBertConfig, directory: str | os.PathLike, *, qat: bool = False) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory)
    return save_weights(model, directory / _weights_file(qat))


def load_model(directory: str | os.PathLike, *, qat: bool = False, config: EmbBertConfig | None = None) -> keras.Model:
    """Rebuild the float (or QAT) classifier of a run directory and load its weights."""
    directory = Path(directory)
    config = config or EmbBertConfig.load(directory)
    path = directory / _weights_file(qat)
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


def resolve_pretrained(name_or_dir: str | os.PathLike) -> Path:
    """A pretrained backbone: a directory (`embbert pretrain` output) or a shipped preset name."""
    from .presets import preset_dir

    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / layout.BACKBONE_WEIGHTS).is_file():
            raise EmbBertError(f"{path}: no {layout.BACKBONE_WEIGHTS} (is it an `embbert pretrain` output or a preset?)")
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
    path = backbone_dir / layout.BACKBONE_WEIGHTS
    try:
        EmbBertBackbone.of(model).load_weights(str(path))
    except (OSError, ValueError) as exc:
        raise EmbBertError(f"{path}: cannot load backbone weights: {str(exc).splitlines()[0]}") from None
