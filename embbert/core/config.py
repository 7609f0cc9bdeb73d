"""The one configuration object that travels through every stage.

`EmbBertConfig` = size preset (model sizes) + task + max length + training settings
(+ the tokenizer and data locations). It is saved as `config.json` next to every
artefact (run directory, pretrained backbone, converted model, exported C files),
so any stage can rebuild the model and its data pipeline from it alone.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from . import layout
from .errors import EmbBertError
from .files import atomic_write_text

CONFIG_FILE = layout.CONFIG
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Defaults:
    """The defaults every stage falls back to, one table (the commands' help texts read them too)."""

    #: `embbert run`: the task and the model size preset
    task: str = "emotion"
    preset: str = "tiny"
    #: sequence length L when no value and no task gives one (pretraining, `model summary`, custom tasks)
    max_length: int = 128
    #: L per registered task (`datasets.tasks.max_length_for`): short single texts 64, pairs 128, long reviews 256
    task_lengths: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({
        "imdb": 256, "ag_news": 128, "cyberbullying": 64, "limit": 64, "emotion": 64, "nlu": 64, "snips": 64,
        "cola": 64, "sst2": 64, "mrpc": 128, "stsb": 128, "qqp": 128, "mnli-m": 128, "mnli-mm": 128,
        "qnli": 128, "rte": 128, "wnli": 128,
    }))
    #: the shipped pretrained preset `--init auto` starts from, per model size: only where it was measured to
    #: help (docs/presets.md; embbert_en trained emotion more slowly than a start from scratch with the short
    #: recipe, its model card)
    pretrained: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({"tiny": "tiny_en"}))
    #: training texts from which `--init auto` starts from that preset; below it from scratch
    #: (docs/experiments/small_data.md: tiny_en loses at 300-3,000, ties at 8,000, helps at 16,200 emotion texts:
    #: its corpus tokenizer splits the task's words, which little data cannot make up for)
    pretrained_min_train_texts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({"tiny_en": 16_000}))
    #: representative (calibration) examples of the int8 conversion: `embbert convert`, `embbert.convert`
    max_calibration: int = 200


DEFAULTS = Defaults()
#: Sequence length L when no value and no task gives one (`Defaults.max_length`).
DEFAULT_MAX_LENGTH = DEFAULTS.max_length


#: The architectures (`--arch`): EmbBERT and the papers' baselines (keras_model/baselines.py).
ARCHS = ("embbert", "bert", "embedder", "embedder_conv", "mamba")


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of a model (notation of the reference: V, L, d, r, e, k) and its architecture.

    `arch` "embbert" uses every size but `heads`/`ffn`; "bert" uses V, L, d, layers, `heads` and
    `ffn` (the feed-forward width); "embedder" uses V, L, d, r and has no layers; "embedder_conv"
    uses V, L, d, r, e, k and layers; "mamba" uses V, L, d, r (its embedder), e, k, layers and `state`."""

    vocab_size: int  # V
    max_positions: int  # L of the preset: rows of the position table
    hidden: int  # d
    reduced: int  # r, the embedding size before the r -> d maps
    expansion: int  # e, channel multiplier of the depthwise convolution
    kernel: int  # k, convolution kernel (causal)
    layers: int  # number of encoder layers
    dropout: float = 0.1  # attention-weight dropout in training
    arch: str = "embbert"
    heads: int = 1  # attention heads (bert)
    ffn: int = 1  # feed-forward width (bert)
    state: int = 1  # state size N of each channel (mamba)

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise EmbBertError(f"model config: unknown architecture {self.arch!r}; choose one of {', '.join(ARCHS)}")
        for name in ("vocab_size", "max_positions", "hidden", "reduced", "expansion", "kernel", "layers", "heads",
                     "ffn", "state"):
            value = getattr(self, name)
            if name == "layers" and self.arch == "embedder":
                if value != 0:
                    raise EmbBertError(f"model config: the embedder architecture has no layers, got {value!r}")
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise EmbBertError(f"model config: {name} must be a positive integer, got {value!r}")
        if self.hidden % self.heads:
            raise EmbBertError(f"model config: hidden size {self.hidden} is not a multiple of {self.heads} heads")
        if not 0.0 <= self.dropout < 1.0:
            raise EmbBertError(f"model config: dropout must be in [0, 1), got {self.dropout!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields, without the architecture fields an EmbBERT config leaves at their defaults (so
        EmbBERT's config.json files are those written before architectures existed)."""
        d = dataclasses.asdict(self)
        if self.arch == "embbert":
            for name in ("arch", "heads", "ffn", "state"):
                if d[name] == ModelConfig.__dataclass_fields__[name].default:
                    del d[name]
        return d


#: The sizes: the five of the reference (`shared/reference/embbert.md`, table "Sizes") and one per
#: baseline architecture (the default size of its `--arch`): `bert` a downsized BERT in the papers'
#: 2 MB float32 budget for the weights (378,816 parameters, 1.52 MB), `embedder` EmbBERT's embedder
#: alone (embbert's 139,648 parameters), `embedder_conv` the embedder and one block of the convolution
#: path sized as the authors' 0.28 M-parameter baseline (284,160 parameters).
PRESETS: dict[str, ModelConfig] = {
    "nano": ModelConfig(vocab_size=2048, max_positions=256, hidden=64, reduced=16, expansion=1, kernel=8, layers=2),
    "tiny": ModelConfig(vocab_size=2048, max_positions=256, hidden=128, reduced=16, expansion=1, kernel=16, layers=2),
    "embbert": ModelConfig(vocab_size=8192, max_positions=256, hidden=128, reduced=16, expansion=1, kernel=32, layers=4),
    "med": ModelConfig(vocab_size=8192, max_positions=512, hidden=256, reduced=16, expansion=2, kernel=32, layers=6),
    "big": ModelConfig(vocab_size=16384, max_positions=1024, hidden=512, reduced=32, expansion=2, kernel=64, layers=6),
    "bert": ModelConfig(arch="bert", vocab_size=4096, max_positions=256, hidden=64, reduced=1, expansion=1, kernel=1,
                        layers=2, heads=2, ffn=256),
    "embedder": ModelConfig(arch="embedder", vocab_size=8192, max_positions=256, hidden=128, reduced=16, expansion=1,
                            kernel=1, layers=0),
    "embedder_conv": ModelConfig(arch="embedder_conv", vocab_size=8192, max_positions=256, hidden=128, reduced=16,
                                 expansion=7, kernel=32, layers=1),
    "mamba": ModelConfig(arch="mamba", vocab_size=8192, max_positions=256, hidden=96, reduced=16, expansion=2,
                         kernel=4, layers=2, state=8),
}
#: The size `--arch A` takes when no `--preset` is given.
ARCH_DEFAULT_PRESET = {"embbert": DEFAULTS.preset, "bert": "bert", "embedder": "embedder", "embedder_conv": "embedder_conv",
                       "mamba": "mamba"}


def preset(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise EmbBertError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None


#: tf.distribute strategies of `--strategy` (keras_model.distribute.make_strategy builds them).
STRATEGIES = ("default", "mirrored", "multi-worker")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (defaults: the reference fine-tuning recipe)."""

    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.05
    epochs: int = 10
    qat_epochs: int = 2
    qat_learning_rate: float = 2e-5
    validation_fraction: float = 0.1
    seed: int = 0
    strategy: str = "default"
    steps_per_epoch: int | None = None  # None: one pass over the training split
    max_train_examples: int | None = None  # None: the whole training split

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise EmbBertError(f"batch size must be >= 1, got {self.batch_size}")
        if self.epochs < 0 or self.qat_epochs < 0:
            raise EmbBertError("epochs and qat epochs must be >= 0")
        if self.learning_rate <= 0 or self.qat_learning_rate <= 0:
            raise EmbBertError("learning rates must be > 0")
        if not self.weight_decay >= 0:  # also refuses NaN
            raise EmbBertError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise EmbBertError(f"validation fraction must be in (0, 1), got {self.validation_fraction}")
        if self.strategy not in STRATEGIES:
            raise EmbBertError(f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides a pretraining run (saved in pretrain.json; a resume reuses it)."""

    steps: int = 10000
    learning_rate: float = 1e-3  # peak
    schedule: str = "cosine"  # cosine (warm-up + cosine decay to 0) | constant
    warmup_steps: int = 500
    packing: str = "full"  # full | lines
    eval_every: int = 250
    heldout_sequences: int = 512
    jit_compile: bool = False
    summary_slots: int = 0  # predictions from token 0 of a random word of its window (0: MLM only)
    objective: str = "mlm"  # mlm | electra (replaced-token detection, keras_model/electra.py)
    rtd_weight: float = 50.0  # electra: weight of the discriminator's loss against the generator's
    rtd_random: float = 0.0  # electra: share of the replacements drawn uniformly instead of from the generator

    def __post_init__(self) -> None:
        if self.objective not in ("mlm", "electra"):
            raise EmbBertError(f"unknown pretraining objective {self.objective!r}; choose mlm or electra")
        if self.objective == "electra" and self.summary_slots:
            raise EmbBertError("summary slots are a masked-LM option; electra trains token 0 on its own target")
        if not 0.0 <= self.rtd_random <= 1.0:
            raise EmbBertError(f"random replacement share must be in [0, 1], got {self.rtd_random}")
        if not self.rtd_weight > 0:
            raise EmbBertError(f"replaced-token-detection weight must be > 0, got {self.rtd_weight}")
        if self.summary_slots < 0:
            raise EmbBertError(f"summary slots must be >= 0, got {self.summary_slots}")
        if self.steps < 1 or self.eval_every < 1 or self.heldout_sequences < 1:
            raise EmbBertError("steps, eval-every and held-out sequences must be >= 1")
        if self.learning_rate <= 0:
            raise EmbBertError(f"learning rate must be > 0, got {self.learning_rate}")
        if self.warmup_steps < 0 or self.warmup_steps >= self.steps:
            raise EmbBertError(f"warm-up steps must be in [0, steps), got {self.warmup_steps}")
        if self.schedule not in ("cosine", "constant"):
            raise EmbBertError(f"unknown schedule {self.schedule!r}; choose cosine or constant")
        if self.packing not in ("full", "lines"):
            raise EmbBertError(f"unknown packing {self.packing!r}; choose full or lines")


#: The reference fine-tuning recipe: the defaults of `embbert train` and `embbert bench accuracy`.
PAPER_RECIPE = TrainConfig()
#: `embbert run`'s short recipe (a few minutes on 2 cores). Learning rate 1e-3 chosen on emotion validation
#: accuracy for the 3-epoch fine-tune from tiny_en, against 3e-4 (docs/presets.md).
QUICK_RECIPE = TrainConfig(epochs=3, qat_epochs=1, learning_rate=1e-3, qat_learning_rate=1e-4)


@dataclass(frozen=True)
class EmbBertConfig:
    """Everything needed to rebuild a model, its data pipeline and its deployment."""

    preset: str
    model: ModelConfig
    max_length: int
    task: str | None = None
    num_labels: int = 2  # 1 means regression (one output, mean squared error)
    label_names: tuple[str, ...] = ()
    tokenizer: str | None = None  # directory of the tokenizer files
    data_dir: str | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise EmbBertError(f"max length must be an integer >= 2, got {self.max_length!r}")
        if self.max_length > self.model.max_positions:
            raise EmbBertError(
                f"max length {self.max_length} exceeds the preset's {self.model.max_positions} positions"
            )
        if self.num_labels < 1:
            raise EmbBertError(f"number of labels must be >= 1, got {self.num_labels}")

    @property
    def regression(self) -> bool:
        return self.num_labels == 1

    @classmethod
    def create(cls, preset_name: str, max_length: int | None = None, **kwargs: Any) -> "EmbBertConfig":
        model = preset(preset_name)
        if kwargs.get("label_names") is not None:
            kwargs["label_names"] = tuple(kwargs["label_names"])
        return cls(preset=preset_name, model=model, max_length=DEFAULT_MAX_LENGTH if max_length is None else max_length,
                   **kwargs)

    def replace(self, **changes: Any) -> "EmbBertConfig":
        if "train" in changes and isinstance(changes["train"], dict):
            changes["train"] = dataclasses.replace(self.train, **changes["train"])
        return dataclasses.replace(self, **changes)

    def tokenizer_dir(self, base: str | os.PathLike) -> Path:
        """The tokenizer directory of a config saved in `base` (a relative path is relative to it)."""
        if not self.tokenizer:
            raise EmbBertError(f"{base}: {CONFIG_FILE} names no tokenizer directory")
        path = Path(self.tokenizer)
        return path if path.is_absolute() else Path(base) / path

    # -- JSON round trip -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        d["label_names"] = list(self.label_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EmbBertConfig":
        if not isinstance(d, dict):
            raise EmbBertError(f"config is not a valid EmbBERT config: a JSON object was expected, got {type(d).__name__}")
        try:
            d = dict(d)
            version = d.pop("format_version", FORMAT_VERSION)
            if version != FORMAT_VERSION:
                raise EmbBertError(f"config format version {version} is not supported (expected {FORMAT_VERSION})")
            d["model"] = ModelConfig(**d["model"])
            d["train"] = TrainConfig(**d.get("train", {}))
            d["label_names"] = tuple(d.get("label_names", ()))
            return cls(**d)
        except (KeyError, TypeError) as exc:
            raise EmbBertError(f"config is not a valid EmbBERT config: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "EmbBertConfig":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise EmbBertError(f"config is not valid JSON: {exc}") from None

    def save(self, directory: str | os.PathLike) -> Path:
        path = Path(directory) / CONFIG_FILE
        atomic_write_text(path, self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, directory_or_file: str | os.PathLike) -> "EmbBertConfig":
        path = Path(directory_or_file)
        if path.is_dir():
            path = path / CONFIG_FILE
        if not path.is_file():
            raise EmbBertError(f"{path}: no {CONFIG_FILE} (is this a run directory?)")
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise EmbBertError(f"{path}: not UTF-8 text (byte {exc.start}); restore it from the run or start again") from None
        except EmbBertError as exc:
            raise EmbBertError(f"{path}: {exc}") from None
