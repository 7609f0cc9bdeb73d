"""Checks of user-given paths and names that run before TensorFlow is imported.

Each command validates its arguments here first, so a typo costs a fraction of a second
(not the 8-50 s of a TensorFlow import) and fails before anything is written.
Every check raises `UsageError` (one line, exit 2). The checks that need a stage's knowledge
live with the stage: `embbert.datasets.loading.data_dir_arg`, `embbert.datasets.tasks.task_arg`,
`embbert.keras_model.presets.init_arg`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from . import layout
from .args import given_options
from .config import ARCH_DEFAULT_PRESET, ARCHS, PRESETS, EmbBertConfig, preset
from .errors import EmbBertError, UsageError
from .files import output_dir  # noqa: F401 - the commands call it as preflight.output_dir


def directory_with(path: str | os.PathLike, needed: str, what: str, flag: str) -> Path:
    """A folder that must hold the file `needed` (e.g. a tokenizer folder with tokenizer.json)."""
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{p}: {flag}: {what} not found" if not p.exists() else f"{p}: {flag}: not a directory")
    if not (p / needed).is_file():
        raise UsageError(f"{p}: {flag}: not a {what} (no {needed})")
    return p


def files(paths, flag: str, what: str) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"{p}: {flag}: {what} not found" if not Path(p).exists() else f"{p}: {flag}: not a file")
        readable(p, flag)


def readable(path: str | os.PathLike, flag: str) -> None:
    """A file this process can open for reading (as the command will), else one line saying what to do."""
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{path}: {flag}: cannot read it ({exc.strerror or exc}); give this user read "
                         f"permission (chmod u+r {path}) or use a copy it can read") from None


def output_file(path: str | os.PathLike, flag: str = "--out") -> Path:
    """A file to write: not a folder, and inside a folder that exists (or can be made) and is writable."""
    if not str(path).strip():
        raise UsageError(f"{flag}: empty path")
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"{p}: {flag}: is a folder; give the path of a file to write")
    parent = p.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{p}: {flag}: cannot write it ({parent} is a file, not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{p}: {flag}: cannot write it ({parent} is not a writable folder)")
    return p


def max_length(value: int | None, preset_name: str, flag: str = "--max-length") -> int | None:
    """A sequence length L for the preset: at least 2 ([CLS] + one token), at most its position table."""
    if value is not None:
        positions = preset(preset_name).max_positions
        if value < 2:
            raise UsageError(f"{flag} {value}: expected at least 2 ([CLS] and one token)")
        if value > positions:
            raise UsageError(f"{flag} {value}: more than the {positions} positions of the {preset_name} preset")
    return value


def fits_preset(preset_name: str, init: str | None, tokenizer: str | None) -> None:
    """`--init` (a checked folder with config.json) holds a backbone of the `--preset` size, and the tokenizer
    (`--tokenizer`, else the one of `--init`) has no more tokens than the preset's embedding has rows."""
    import json

    model = preset(preset_name)
    if init is not None:
        init_dir = Path(init)
        try:
            pretrained = EmbBertConfig.load(init_dir)
        except EmbBertError as exc:
            raise UsageError(f"--init {init}: {exc}") from None
        if not (init_dir / layout.BACKBONE_WEIGHTS).is_file():
            raise UsageError(f"--init {init}: no {layout.BACKBONE_WEIGHTS} (expected an `embbert pretrain` output "
                             "or a shipped preset)")
        if pretrained.model != model:
            raise UsageError(f"--init {init}: a backbone of the {pretrained.preset} size, not of --preset {preset_name}")
        if tokenizer is None and pretrained.tokenizer:
            tokenizer = str(pretrained.tokenizer_dir(init_dir))
    if tokenizer is not None:
        vocab_file = Path(tokenizer) / "vocab.json"
        try:
            vocab = json.loads(vocab_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{vocab_file}: cannot read the tokenizer's vocabulary ({type(exc).__name__})") from None
        if isinstance(vocab, dict) and len(vocab) > model.vocab_size:
            raise UsageError(f"{tokenizer}: a tokenizer of {len(vocab)} tokens, more than the {model.vocab_size} "
                             f"rows of the {preset_name} preset's embedding")


def load_config(folder: Path) -> EmbBertConfig:
    """FOLDER/config.json as an `EmbBertConfig`; any fault of the file is one line naming it (exit 2)."""
    path = folder / layout.CONFIG
    if not path.is_file():
        try:
            return EmbBertConfig.load(folder)  # its own words for a missing file
        except EmbBertError as exc:
            raise UsageError(f"{folder}: {exc}" if str(folder) not in str(exc) else str(exc)) from None
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                         "expected the JSON config an embbert command wrote") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}); expected the config an embbert command wrote") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k, {}), dict) for k in ("model", "train")):
        raise UsageError(f"{path}: not an EmbBERT config (expected a JSON object with \"model\" and \"train\" "
                         "objects, as an embbert command wrote it)")
    try:
        return EmbBertConfig.from_dict(data)
    except EmbBertError as exc:
        raise UsageError(f"{path}: {exc}") from None
    except (ValueError, TypeError, AttributeError) as exc:  # a value of the wrong kind inside a valid object
        raise UsageError(f"{path}: not a valid EmbBERT config ({exc})") from None


def run_dir(path: str | os.PathLike, needed: tuple[str, ...] = ()) -> EmbBertConfig:
    """A run directory written by `embbert train`: its config, and the artefacts a stage needs."""
    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{p}: run directory not found" if not p.exists() else f"{p}: not a directory")
    config = load_config(p)
    for name in needed:
        if not (p / name).is_file():
            raise UsageError(f"{p}: no {name} (run the stage that writes it first)")
    _json_files_readable(config, p)
    return config


def _json_files_readable(config: EmbBertConfig, folder: Path) -> None:
    """The JSON files of the run's tokenizer folder are UTF-8 JSON: a damaged one is named here, before a
    stage hands it to a library whose error would not name it."""
    if not config.tokenizer:
        return
    tokenizer = config.tokenizer_dir(folder)
    for path in sorted(tokenizer.glob("*.json")) if tokenizer.is_dir() else ():
        try:
            json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            why = f"not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        except ValueError as exc:
            why = f"not valid JSON ({exc})"
        except OSError as exc:
            why = f"cannot read it ({exc.strerror or exc})"
        else:
            continue
        raise UsageError(f"{path}: {why}; the run's tokenizer is damaged: copy it again from where it came from "
                         "(or train the run again)")


def same_settings(where: str | os.PathLike, now: dict, saved: dict, given, remedy: str) -> None:
    """`--resume` continues a run with its saved settings: an option given on the command line (`given`:
    argparse dests) whose value (`now`, by dest) differs from the saved one (`saved`, by dest) is an error
    listing every difference, then `remedy`."""
    differences = [f"--{dest.replace('_', '-')} {_shown(value)} (saved: {_shown(saved[dest])})"
                   for dest, value in now.items() if dest in given and dest in saved and value != saved[dest]]
    if differences:
        raise UsageError(f"{where}: --resume continues with the run's saved settings, and these options differ: "
                         f"{'; '.join(differences)}; {remedy}")


#: The `TrainConfig` fields `embbert train` / `embbert run` take as options of the same name.
TRAIN_OPTIONS = ("epochs", "qat_epochs", "learning_rate", "qat_learning_rate", "batch_size", "seed", "weight_decay",
                 "strategy", "steps_per_epoch", "max_train_examples")


def resumed_run(out: Path, args, task: str, remedy: str) -> EmbBertConfig:
    """The saved config of the run in `out` that `--resume` continues, after checking that no option
    of the command line (task, preset, max length, training settings) contradicts it."""
    config = run_dir(out)
    now = {"task": task, "preset": args.preset, "max_length": args.max_length, "arch": getattr(args, "arch", None),
           **{name: getattr(args, name) for name in TRAIN_OPTIONS if hasattr(args, name)}}
    saved = {"task": config.task, "preset": config.preset, "max_length": config.max_length, "arch": config.model.arch,
             **{name: getattr(config.train, name) for name in TRAIN_OPTIONS}}
    same_settings(out, now, saved, given_options(args), remedy)
    return config


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value)
    return "none" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def arch_preset(arch: str | None, preset_name: str | None) -> str:
    """The size preset of `--arch` / `--preset`: the architecture's default size when no preset is given;
    a preset of another architecture is an error (`embbert model summary --arch A` lists the sizes)."""
    if arch is not None and arch not in ARCHS:
        raise UsageError(f"--arch {arch}: unknown architecture; choose one of {', '.join(ARCHS)}")
    if preset_name is None:
        return ARCH_DEFAULT_PRESET[arch or "embbert"]
    if preset_name not in PRESETS:
        raise UsageError(f"--preset {preset_name}: unknown preset; choose one of {', '.join(PRESETS)}")
    have = PRESETS[preset_name].arch
    if arch is not None and have != arch:
        sizes = ", ".join(k for k, v in PRESETS.items() if v.arch == arch)
        raise UsageError(f"--preset {preset_name} is a size of the {have} architecture, not of {arch} "
                         f"(sizes of {arch}: {sizes})")
    return preset_name
