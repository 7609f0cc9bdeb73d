"""Building, saving and loading EmbBERT models.

All of them are flat functional graphs over the layers of an `EmbBertBackbone`
(`keras_model/backbone.py`): embedder + encoder layers.

* `build_classifier(config)`: the trainable model, inputs `token_ids` and
  `segment_ids` (int32, (batch, L)), output logits (batch, num_labels);
  num_labels == 1 is a regression head.
* `build_pretrainer(config)`: backbone + masked-LM head (inputs add `mask_positions`).
* `build_deploy_model(model, config, form=...)`: the deployable graph — batch size 1, static
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
from .forms import DEFAULT, DeployForm
from .layers import ClassificationHead, MaskedLMHead
from .presets import preset_dir
from .quantize import quantize_model
from .weights import count_params, save_weights

MASK_POSITIONS = "mask_positions"


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
    if config.model.arch not in ("embbert", "bert"):
        raise EmbBertError(f"the {config.model.arch} architecture has no per-token output to pretrain with masked LM")
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
                       form: DeployForm = DEFAULT) -> keras.Model:
    """Batch 1, static length, same layer objects (so the trained weights are shared), in the deployed
    `form` of the same maths (`forms.DeployForm`; the training graph is untouched)."""
    length = length or config.max_length
    if length > config.model.max_positions:
        raise EmbBertError(f"length {length} exceeds the model's {config.model.max_positions} positions")
    tok, seg = inputs(length, 1)
    x = EmbBertBackbone.of(model).encode(tok, seg, form=form)
    logits = classification_head(model)(x, training=False)
    return keras.Model({TOKEN_IDS: tok, SEGMENT_IDS: seg}, logits, name="embbert_deploy")


def parameter_counts(config: EmbBertConfig) -> dict[str, int]:
    """Backbone / head / total trainable parameters of the float classifier."""
    model = build_classifier(config)
    backbone = count_params(EmbBertBackbone.of(model).trainable_weights)
    head = count_params(classification_head(model).trainable_weights)
    return {"backbone_params": backbone, "head_params": head, "total_params": backbone + head}


# -- saving and loading --------------------------------------------------------
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
        model = quantize_model(model)
    try:
        model.load_weights(str(path))
    except (OSError, ValueError) as exc:
        raise EmbBertError(f"{path}: cannot load weights: {str(exc).splitlines()[0]}") from None
    return model


def resolve_pretrained(name_or_dir: str | os.PathLike) -> Path:
    """A pretrained backbone: a directory (`embbert pretrain` output) or a shipped preset name."""
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
