"""The interpreters' shared helpers, below convert, check and the arena report (which all use them).

* `captured_stderr()`: the C-level stderr (fd 2) into a list of lines (converter and TFLM log noise).
* `load_tflite(path)`: the bytes of a .tflite file, checked to be a TFLite FlatBuffer.
* `tflm_interpreter(data, arena_size)`: a TFLM interpreter; TFLM's RuntimeError becomes EmbBertError.
* `invoke_zeros(interp, graph)`: one inference on all-zero inputs.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from tflite_micro.python.tflite_micro import runtime

from embbert.core.errors import EmbBertError

from .graph import Graph, read_graph


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """Redirect the C-level stderr (fd 2) into a list of lines (the converter's log noise)."""
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            lines.extend(tmp.read().decode("utf-8", "replace").splitlines())


def load_tflite(path) -> bytes:
    """Bytes of a .tflite file, checked to be a TFLite FlatBuffer."""
    path = Path(path)
    if not path.is_file():
        raise EmbBertError(f"{path}: not found; run `embbert convert RUN_DIR` first")
    data = path.read_bytes()
    try:
        read_graph(data)
    except EmbBertError as exc:
        raise EmbBertError(f"{path}: {exc}") from None
    return data


def tflm_interpreter(tflite_bytes: bytes, arena_size: int | None = None, recording: bool = True):
    """A TFLM interpreter (RuntimeError from TFLM becomes EmbBertError; its log is captured)."""
    read_graph(tflite_bytes)
    cfg = runtime.InterpreterConfig.kAllocationRecording if recording else runtime.InterpreterConfig.kPreserveAllTensors
    with captured_stderr() as log:
        try:
            return runtime.Interpreter.from_bytes(bytes(tflite_bytes), arena_size=arena_size,
                                                  intrepreter_config=cfg)
        except RuntimeError as exc:
            err = exc
    detail = next((line.strip() for line in log if "missing" in line or "Failed" in line), "")
    if arena_size is not None and "allocate" in (str(err) + detail):
        raise EmbBertError(f"tensor arena of {arena_size} bytes is too small for the model"
                           + (f" ({detail})" if detail else ""))
    raise EmbBertError(f"TFLM cannot load the model: {err}" + (f" ({detail})" if detail else ""))


def invoke_zeros(interp, graph: Graph) -> None:
    """Set every input to zeros and run one inference (TFLM reuses input buffers: set before every invoke)."""
    for pos, idx in enumerate(graph.inputs):
        t = graph.tensors[idx]
        interp.set_input(np.zeros(t.shape, dtype=np.int32 if t.dtype == "int32" else np.int8), pos)
    interp.invoke()


__all__ = ["captured_stderr", "load_tflite", "tflm_interpreter", "invoke_zeros"]
