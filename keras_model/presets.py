"""Pretrained backbones shipped inside the package, loadable by name (keras-hub `from_preset` style).

A preset is a directory `keras_model/pretrained/<name>/` holding what `embbert pretrain` writes
minus the MLM head (too large to ship): `config.json`, `tokenizer/`, `backbone.weights.h5`,
`pretrain.json`, `history.csv` and a model card `README.md`.

    embbert train --task emotion --init tiny_en ...      # by name
    embbert train --task emotion --init runs/my-pretrain  # or a directory

`embbert.keras_model.presets.list_presets()` names them; `preset_dir(name)` gives the folder.
"""
from __future__ import annotations

from pathlib import Path

from embbert.core import preflight
from embbert.core import layout
from embbert.core.errors import EmbBertError

PRETRAINED_ROOT = Path(__file__).resolve().parent / "pretrained"
#: The shipped preset that `embbert run --init auto` starts from, per model size: only where it was
#: measured to help (docs/presets.md). embbert_en is not a default: with the short fine-tuning
#: recipe it trained emotion more slowly than a start from scratch (its model card).
DEFAULT_FOR_SIZE = {"tiny": "tiny_en"}


def list_presets() -> list[str]:
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / layout.BACKBONE_WEIGHTS).is_file())


def default_for(size: str) -> str | None:
    """The shipped pretrained preset for a model size preset, or None when none is shipped."""
    name = DEFAULT_FOR_SIZE.get(size)
    return name if name in list_presets() else None


def preset_dir(name: str) -> Path:
    """The folder of a shipped pretrained preset; a one-line error names the choices."""
    path = PRETRAINED_ROOT / name
    if "/" in name or "\\" in name or not (path / layout.BACKBONE_WEIGHTS).is_file():
        names = ", ".join(list_presets()) or "none shipped"
        raise EmbBertError(f"{name}: neither a pretrained directory nor a shipped preset (presets: {names})")
    return path


def init_arg(path: str | None) -> str | None:
    if path is None:
        return None
    if not Path(path).exists() and path in list_presets():  # a shipped pretrained preset, by name
        return str(preset_dir(path))
    return str(preflight.directory_with(path, layout.CONFIG, "pretrained backbone directory or preset name", "--init").resolve())


