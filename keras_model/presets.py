"""Pretrained backbones shipped inside the package, loadable by name (keras-hub `from_preset` style).

A preset is a directory `keras_model/pretrained/<name>/` holding what `embbert pretrain` writes
minus the MLM head (too large to ship): `config.json`, `tokenizer/`, `backbone.weights.h5`,
`pretrain.json`, `history.csv` and a model card `README.md`.

    embbert train --task emotion --init tiny_en ...      # by name
    embbert train --task emotion --init runs/my-pretrain  # or a directory

`embbert.keras_model.presets.list_presets()` names them; `preset_dir(name)` gives the folder.
"""
from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import embbert
from embbert.core import layout, preflight
from embbert.core.config import DEFAULTS
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_text

PRETRAINED_ROOT = Path(__file__).resolve().parent / "pretrained"


def list_presets() -> list[str]:
    if not PRETRAINED_ROOT.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_ROOT.iterdir() if (p / layout.BACKBONE_WEIGHTS).is_file())


def default_for(size: str) -> str | None:
    """The shipped pretrained preset `--init auto` starts from for a model size preset (`DEFAULTS.pretrained`),
    or None when none is shipped."""
    name = DEFAULTS.pretrained.get(size)
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


# -- presets written and read by the Python API (`save_to_preset` / `from_preset`) ----------------------
#: What kind of object a preset directory was saved from (metadata.json "kind").
PRESET_KINDS = ("backbone", "tokenizer", "classifier")
PRESET_FORMAT_VERSION = 1


def resolve(name_or_dir: str | os.PathLike) -> Path:
    """A preset directory: an existing directory with a config.json (a shipped preset, a `save_to_preset`
    folder, an `embbert pretrain` output or an `embbert train` run directory), or a shipped preset's name."""
    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / layout.CONFIG).is_file():
            raise EmbBertError(f"{path}: no {layout.CONFIG} (expected a preset, an `embbert pretrain` output or a "
                               "run directory)")
        return path
    if isinstance(name_or_dir, str) and name_or_dir in list_presets():
        return preset_dir(name_or_dir)
    names = ", ".join(list_presets()) or "none shipped"
    raise EmbBertError(f"{name_or_dir}: neither a preset directory nor a shipped preset (presets: {names})")


def _versions() -> dict[str, str]:
    out = {"embbert": embbert.__version__}
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization", "tokenizers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def metadata(kind: str, config_preset: str, parameter_count: int | None, **extra) -> dict:
    """metadata.json of a preset: what it holds, the versions that wrote it and its parameter count."""
    if kind not in PRESET_KINDS:
        raise EmbBertError(f"unknown preset kind {kind!r}; choose one of {', '.join(PRESET_KINDS)}")
    meta = {"format": "embbert-preset", "format_version": PRESET_FORMAT_VERSION, "kind": kind,
            "size_preset": config_preset, "parameter_count": parameter_count, "versions": _versions()}
    meta.update(extra)
    return meta


def write_metadata(directory: str | os.PathLike, meta: dict) -> Path:
    path = Path(directory) / layout.PRESET_METADATA
    atomic_write_text(path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def read_metadata(directory: str | os.PathLike) -> dict:
    """metadata.json of a preset directory ({} for a directory without one: an `embbert pretrain` output
    or a run directory)."""
    path = Path(directory) / layout.PRESET_METADATA
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbBertError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != "embbert-preset":
        raise EmbBertError(f"{path}: not an EmbBERT preset metadata file")
    if meta.get("format_version", 0) > PRESET_FORMAT_VERSION:
        raise EmbBertError(f"{path}: preset format {meta['format_version']} is newer than this embbert "
                           f"({PRESET_FORMAT_VERSION}); upgrade embbert-micro")
    return meta


def write_model_card(directory: str | os.PathLike, title: str, lines: list[str]) -> Path | None:
    """A short generated README.md, unless the folder already has a model card."""
    path = Path(directory) / layout.MODEL_CARD
    if path.is_file():
        return None
    atomic_write_text(path, f"# {title}\n\n" + "\n".join(lines) + "\n")
    return path
