"""The files of micro_app/ that `embbert export` reads: hand-written sources and templates.

`embbert.micro_app.ROOT` owns the location (a checkout or an installed wheel). Templates live in
micro_app/templates/<target>/ as `<file>.in` and are rendered with `string.Template`: `${name}` is a
value, `$$` a literal `$` (CMake's `${VAR}` is written `$${VAR}` there); a missing value is an error.
"""
from __future__ import annotations

from string import Template

from embbert.core.errors import EmbBertError
from embbert.micro_app import ROOT as MICRO_APP

TEMPLATES = "templates"


def hand_written(rel: str) -> str:
    """The text of micro_app/<rel>."""
    path = MICRO_APP / rel
    if not path.is_file():
        raise EmbBertError(f"{path}: missing (micro_app/ ships with the package as embbert.micro_app; "
                           "reinstall embbert-micro)")
    return path.read_text(encoding="utf-8")


def render(rel: str, **values) -> str:
    """micro_app/templates/<rel> with its `${name}` placeholders replaced by `values` (str() of each)."""
    text = hand_written(f"{TEMPLATES}/{rel}")
    try:
        return Template(text).substitute({k: str(v) for k, v in values.items()})
    except (KeyError, ValueError) as exc:
        raise EmbBertError(f"micro_app/{TEMPLATES}/{rel}: cannot render ({type(exc).__name__}: {exc})") from None


__all__ = ["MICRO_APP", "hand_written", "render"]
