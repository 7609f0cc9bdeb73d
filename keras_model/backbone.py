"""`EmbBertBackbone`: the embedder and the encoder layers as one functional model (keras-hub style).

Inputs `token_ids` and `segment_ids` (int32, (batch, L)); output the sequence (batch, L, d).
The task models (`model.build_classifier`, `model.build_pretrainer`, `model.build_deploy_model`)
are flat functional graphs over the *layer objects* of a backbone (`EmbBertBackbone.encode`):
tfmot's `quantize_apply` cannot see into a model nested in a model, and a backbone attached to a
task model as an attribute would add itself to the task model's layers and weights file.
`EmbBertBackbone.of(task_model)` gives the backbone of an existing task model, float or QAT (where
tfmot wraps the encoder layers in `QuantizeWrapperV2`), found by layer type; its weights are the
task model's (shared, not copied), so saving or loading them moves the backbone's weights and
nothing else, whatever head the model has.

Weights files: a backbone saves as the `.weights.h5` layout of the shipped presets (layers
`embedder`, `encoder_0` .. `encoder_{n-1}`, found by order and class in the file).

Presets (keras-hub style): `EmbBertBackbone.from_preset("tiny_en")` (or a directory) and
`backbone.save_to_preset(dir)`: config.json + metadata.json + backbone.weights.h5 + model card.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from embbert.core import layout
from embbert.core.config import PRESETS, EmbBertConfig, ModelConfig
from embbert.core.errors import EmbBertError
from embbert.datasets.tokenizer import TOKENIZER_FILE

from . import presets
from ._tf import keras, tf
from .baselines import BertBlock, BertEmbedder, ConvBlock, MambaBlock, MaskedMeanPool
from .forms import DeployForm
from .layers import EncoderLayer, NanoEmbedder
from .weights import count_params, save_weights

#: The layer types a backbone is made of, whatever its architecture: one embedder, then the blocks.
EMBEDDERS = (NanoEmbedder, BertEmbedder)
BLOCKS = (EncoderLayer, BertBlock, ConvBlock, MambaBlock, MaskedMeanPool)

TOKEN_IDS = "token_ids"
SEGMENT_IDS = "segment_ids"


def inputs(length: int | None, batch_size: int | None):
    """The two int32 model inputs, (batch_size, length) (None: any)."""
    tok = keras.Input(shape=(length,), batch_size=batch_size, dtype=tf.int32, name=TOKEN_IDS)
    seg = keras.Input(shape=(length,), batch_size=batch_size, dtype=tf.int32, name=SEGMENT_IDS)
    return tok, seg


def unwrapped(layer):
    """The layer itself, or the layer inside a wrapper (tfmot's QuantizeWrapperV2)."""
    return getattr(layer, "layer", layer)


def layers_of_type(model: keras.Model, cls) -> list:
    """The layers of `model` (in graph order) that are, or wrap, a `cls`."""
    return [layer for layer in model.layers if isinstance(unwrapped(layer), cls)]


def _encode(embedder, encoders: Sequence, token_ids, segment_ids, form: DeployForm | None):
    if form is None:  # the training graph: the layers' default call options
        x, seg = embedder([token_ids, segment_ids])
        for layer in encoders:
            x = layer([x, seg])
        return x
    if form.constant_positions:
        length = token_ids.shape[1]
        if length is None:
            raise EmbBertError("constant positions need a static sequence length")
        table = embedder.positions(int(length)).numpy()  # computed once, now, from the trained weights
        x, seg = embedder([token_ids, segment_ids], training=False, constant_positions=table)
    else:
        x, seg = embedder([token_ids, segment_ids], training=False)
    n = len(encoders)
    for i, layer in enumerate(encoders):
        x = layer([x, seg], training=False, form=form.layer_form(last=i == n - 1))
    return x


class EmbBertBackbone(keras.Model):
    """Embedder + encoder layers: token_ids, segment_ids -> the sequence (batch, L, d).

    `EmbBertBackbone(embedder, encoders)` chains the given layer objects; `create(config)` makes new
    ones, `of(model)` takes those of an existing task model (float or QAT)."""

    def __init__(self, embedder, encoders: Sequence, *, name: str = "embbert_backbone", **kwargs):
        tok, seg = inputs(None, None)  # any batch, any length up to max_positions
        x = _encode(embedder, list(encoders), tok, seg, None)
        super().__init__(inputs={TOKEN_IDS: tok, SEGMENT_IDS: seg}, outputs=x, name=name, **kwargs)

    @classmethod
    def create(cls, config: EmbBertConfig, *, quantize: bool = False, name: str = "embbert_backbone") -> "EmbBertBackbone":
        """A backbone of new layers for `config.model` (`quantize`: with their fake-quant points)."""
        m = config.model
        if m.arch == "bert":
            embedder = BertEmbedder(m.vocab_size, m.max_positions, m.hidden, quantize=quantize, name="embedder")
            encoders = [BertBlock(m.heads, m.ffn, m.dropout, quantize=quantize, name=f"encoder_{i}")
                        for i in range(m.layers)]
        else:
            embedder = NanoEmbedder(m.vocab_size, m.max_positions, m.hidden, m.reduced, quantize=quantize,
                                    name="embedder")
            if m.arch == "embbert":
                encoders = [EncoderLayer(m.kernel, m.expansion, m.dropout, quantize=quantize, name=f"encoder_{i}")
                            for i in range(m.layers)]
            elif m.arch == "mamba":  # the blocks are causal: the mean of the valid tokens, not token 0, is read
                encoders = [MambaBlock(m.expansion, m.kernel, m.state, -(-m.hidden // 16), quantize=quantize,
                                       name=f"encoder_{i}") for i in range(m.layers)]
                encoders.append(MaskedMeanPool(quantize=quantize, name="mean_pool"))
            else:  # embedder, embedder_conv: the blocks (none for embedder), then the mean of the valid tokens
                encoders = [ConvBlock(m.kernel, m.expansion, quantize=quantize, name=f"encoder_{i}")
                            for i in range(m.layers)]
                encoders.append(MaskedMeanPool(quantize=quantize, name="mean_pool"))
        backbone = cls(embedder, encoders, name=name)
        backbone._embbert_config = config
        return backbone

    @classmethod
    def from_preset(cls, name_or_dir: str | os.PathLike) -> "EmbBertBackbone":
        """The backbone of a shipped preset (`tiny_en`, `embbert_en`) or of a directory: a `save_to_preset`
        folder, an `embbert pretrain` output, or an `embbert train` run directory (its float classifier's
        backbone). The weights are float32, loaded bit for bit."""
        directory = presets.resolve(name_or_dir)
        config = EmbBertConfig.load(directory)
        backbone = cls.create(config)
        weights = directory / layout.BACKBONE_WEIGHTS
        if weights.is_file():
            try:
                backbone.load_weights(str(weights))
            except (OSError, ValueError) as exc:
                raise EmbBertError(f"{weights}: cannot load backbone weights: {str(exc).splitlines()[0]}") from None
        elif (directory / layout.FLOAT_WEIGHTS).is_file():
            # a run directory: its float classifier's weights file holds the backbone's layers under their names
            try:
                backbone.load_weights(str(directory / layout.FLOAT_WEIGHTS), by_name=True)
            except (OSError, ValueError) as exc:
                raise EmbBertError(f"{directory / layout.FLOAT_WEIGHTS}: cannot load the backbone's weights: "
                                   f"{str(exc).splitlines()[0]}") from None
        else:
            raise EmbBertError(f"{directory}: no {layout.BACKBONE_WEIGHTS} and no {layout.FLOAT_WEIGHTS}")
        return backbone

    @property
    def embbert_config(self) -> EmbBertConfig:
        """The `EmbBertConfig` of this backbone (from `create`, or rebuilt from its layers' settings)."""
        config = getattr(self, "_embbert_config", None)
        if config is not None:
            return config
        e = self.embedder
        first = unwrapped(self.encoders[0])
        if not isinstance(first, EncoderLayer):
            raise EmbBertError("this backbone was not made by EmbBertBackbone.create: its architecture's sizes are "
                               "unknown (build it with create or from_preset)")
        model = ModelConfig(vocab_size=e.vocab_size, max_positions=e.max_positions, hidden=e.hidden, reduced=e.reduced,
                            expansion=first.expansion, kernel=first.kernel_size, layers=len(self.encoders),
                            dropout=first.dropout_rate)
        name = next((k for k, v in PRESETS.items() if v == model), "custom")
        return EmbBertConfig(preset=name, model=model, max_length=min(128, model.max_positions))

    def save_to_preset(self, directory: str | os.PathLike) -> Path:
        """Write config.json, metadata.json, backbone.weights.h5 and (unless one is there) a model card into
        `directory`; `EmbBertBackbone.from_preset(directory)` loads it back bit for bit. A tokenizer saved
        into the same folder (`EmbBertTokenizer.save_to_preset`) is named in config.json."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = self.embbert_config
        has_tokenizer = (directory / layout.TOKENIZER_DIR / TOKENIZER_FILE).is_file()
        config = config.replace(tokenizer=layout.TOKENIZER_DIR if has_tokenizer else None, data_dir=None)
        config.save(directory)
        save_weights(self, directory / layout.BACKBONE_WEIGHTS)
        params = count_params(self.trainable_weights)
        presets.write_metadata(directory, presets.metadata("backbone", config.preset, params))
        presets.write_model_card(directory, f"EmbBERT backbone ({config.preset})", [
            f"Size preset `{config.preset}`: {params:,} parameters (embedder + {config.model.layers} encoder layers).",
            "", "Load with `embbert.EmbBertBackbone.from_preset(<this folder>)` or fine-tune with",
            "`embbert.EmbBertClassifier.from_preset(<this folder>, num_classes=K)`."])
        return directory

    @classmethod
    def of(cls, model: keras.Model) -> "EmbBertBackbone":
        """The backbone of a classifier, pretrainer or deploy model (float or QAT), on its layer objects:
        its `NanoEmbedder` and its `EncoderLayer`s in graph order (or the wrappers around them)."""
        embedders = layers_of_type(model, EMBEDDERS)
        encoders = layers_of_type(model, BLOCKS)
        if len(embedders) != 1 or not encoders:
            raise EmbBertError(f"model {model.name!r} is not an EmbBERT model "
                               f"({len(embedders)} embedders, {len(encoders)} encoder layers)")
        return cls(embedders[0], encoders)

    @property
    def embedder(self):
        """The embedder layer (the model's own object, not a copy)."""
        return layers_of_type(self, EMBEDDERS)[0]

    @property
    def encoders(self) -> list:
        """The encoder layers in order (QuantizeWrapperV2 around each in a QAT backbone)."""
        return layers_of_type(self, BLOCKS)

    def encode(self, token_ids, segment_ids, *, form: DeployForm | None = None):
        """This backbone's layer objects applied to new inputs: the sequence tensor (batch, L, d).

        A task model built on it shares the backbone's weights. `form` None: the training graph.
        A `DeployForm`: inference (training=False) in that deployed form of the same maths (each
        encoder layer gets `form.layer_form`, the embedder the position constant when
        `form.constant_positions`); with `first_token_only` the last layer computes position 0 only,
        output (batch, 1, d)."""
        return _encode(self.embedder, self.encoders, token_ids, segment_ids, form)
