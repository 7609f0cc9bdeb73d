"""`embbert export`: the TFLM application of a run directory, as a package a board user builds.

From a run directory (config.json, model_int8.tflite + the sha256 `embbert convert` recorded,
arena_report.json, the tokenizer files) `cgen.generated_sources` makes the seven generated files,
`packages.package_files` wraps them into one target's package, and `write_package` writes it
atomically (temporary sibling folder, fsync, one rename; `embbert.core.files.write_folder`), with the
user's umask, into a folder that is new, empty or an earlier export (its manifest), unless forced.
This module is the command (`register_export`) and that write. No TensorFlow is imported.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from embbert.core import files as files_, layout, preflight
from embbert.core.errors import EmbBertError

from .cgen import generated_sources
from .packages import MANIFEST, TARGETS, package_files


# --------------------------------------------------------------------------
# Atomic write of a whole folder (embbert.core.files)
# --------------------------------------------------------------------------
_TMP_PREFIX = ".export-"


def is_export(folder: Path) -> bool:
    """A folder an earlier `embbert export` wrote: its manifest says so."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("generator") == "embbert export"


def _check_out(out: str | os.PathLike, force: bool = False) -> Path:
    """`out` absent, empty or an earlier export (by its manifest), else one line and exit 2 (unless `force`)."""
    return files_.check_output_folder(out, is_export, "embbert export", force=force)


def write_package(out: str | os.PathLike, files: dict[str, bytes], force: bool = False) -> list[Path]:
    """Write `files` as the whole content of folder `out`, atomically: built in a temporary sibling,
    fsynced, then swapped in with one rename, the folder's mode kept. `out` afterwards holds exactly
    these files."""
    out = _check_out(out, force)
    return files_.write_folder(out, files, _TMP_PREFIX)


# --------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------
def default_out_dir(run_dir: Path, target: str = "sources") -> Path:
    """Inside the run directory, never in the checkout: RUN_DIR/micro_app/<target>."""
    return Path(run_dir) / layout.EXPORT_DIR / target


def export_micro_app(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     target: str = "sources", arena_bytes: int | None = None, force: bool = False) -> list[Path]:
    """Write the package of `target` for RUN_DIR into `out_dir` (default RUN_DIR/micro_app/<target>);
    returns the written paths. `sources` is the seven generated files alone. A non-empty `out_dir`
    not written by an earlier export is refused unless `force`."""
    if target not in TARGETS:
        raise EmbBertError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    out = Path(out_dir) if out_dir is not None else default_out_dir(Path(run_dir), target)
    _check_out(out, force)  # before the tables take their seconds
    generated, facts = generated_sources(run_dir, arena_bytes)
    files = package_files(target, generated, facts)
    try:
        return write_package(out, files, force)
    except OSError as exc:
        raise EmbBertError(f"{out}: cannot write the package ({exc.strerror or exc})") from None


def _cmd_export(args) -> int:
    preflight.run_dir(args.run_dir)  # no such folder or no valid config.json: exit 2, before anything is read
    paths = export_micro_app(args.run_dir, args.out, target=args.target, arena_bytes=args.arena_bytes,
                             force=args.force)
    root = Path(args.out or default_out_dir(Path(args.run_dir), args.target)).resolve()
    print(f"wrote {len(paths)} files ({args.target}) to {root}:")
    for p in paths:
        print(f"  {p.relative_to(root)}")
    return 0


def _arena_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bytes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register_export(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a TFLM package (Arduino, PlatformIO, ESP-IDF, CMake) or the generated C sources",
        description="From a converted run directory write, into one folder (atomically, replacing an earlier "
                    "export there): `sources` the generated model_data.h/.cc, model_settings.h, embbert_ops.h/.c "
                    "and tokenizer tables; `arduino` an Arduino library with an example sketch; `platformio` a "
                    "PlatformIO library with an example for nano33ble; `esp-idf` an ESP-IDF "
                    "project with an `embbert` component requiring espressif/esp-tflite-micro; `cmake` a CMake "
                    "project for host builds against a TFLM tree. The model must match the hash recorded by "
                    "`embbert convert`.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory with model_int8.tflite and arena_report.json")
    p.add_argument("--target", choices=TARGETS, default="sources", help="what to write (default sources)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default RUN_DIR/micro_app/<target>); a non-empty folder must come "
                        "from an earlier export (its embbert_export.json), unless --force")
    p.add_argument("--force", action="store_true",
                   help="replace a non-empty --out folder that an earlier export did not write (its contents go)")
    p.add_argument("--arena-bytes", type=_arena_arg, default=None, metavar="N",
                   help="tensor arena size (default the report's recommended size; "
                        "never below its measured minimum)")
    p.set_defaults(func=_cmd_export)


__all__ = ["TARGETS", "is_export", "export_micro_app", "write_package", "default_out_dir", "register_export"]
