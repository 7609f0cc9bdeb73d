"""The exact smallest TFLM tensor arena of a model, and what TFLM records in it.

* `minimal_arena(data)`: the smallest arena (a multiple of 16 bytes) with which the TFLM
  interpreter allocates the model and runs one inference; found by bisection in a child process
  (`ArenaProbe`: the interpreter raises when the arena is too small), so it works at the result
  and fails 16 bytes below it.
* `recorded_allocations(data, size)`: the RecordingMicroAllocator breakdown after one inference.
* `host_latency_ms(data, size)`: host TFLM time per inference.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from embbert.core.errors import EmbBertError

from .graph import Graph, read_graph
from .runtime import captured_stderr, invoke_zeros, tflm_interpreter

ALIGN = 16


_PROBE = r"""
import os, sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
shapes = [(tuple(int(v) for v in s.split(",")), np.dtype(d)) for s, d in (x.split(":") for x in sys.argv[2].split(";"))]
devnull = os.open(os.devnull, os.O_WRONLY)
os.dup2(devnull, 2)
for line in sys.stdin:
    n = int(line)
    try:
        interp = runtime.Interpreter.from_bytes(data, arena_size=n)
        for pos, (shape, dtype) in enumerate(shapes):
            interp.set_input(np.zeros(shape, dtype), pos)
        interp.invoke()
        ok = 1
    except RuntimeError:
        ok = 0
    print(ok, flush=True)
"""


class ArenaProbe:
    """Tries arena sizes in a child process (the TFLM Python runtime).

    TFLM's Python runtime crashes (SIGSEGV in `Interpreter.__init__`) for some arena sizes far
    below the minimum instead of reporting them too small (tiny preset, L=32: 20,160 bytes; any
    other size from 1,000 to 36,544 was refused cleanly). A crash in the child counts as "does not
    fit" and the child is restarted, so the bisection never takes the command down."""

    def __init__(self, tflite_bytes: bytes, graph: Graph | None = None):
        graph = graph or read_graph(tflite_bytes)
        self._file = tempfile.NamedTemporaryFile(suffix=".tflite")
        self._file.write(bytes(tflite_bytes))
        self._file.flush()
        self._shapes = ";".join(
            f"{','.join(map(str, graph.tensors[i].shape))}:{'int32' if graph.tensors[i].dtype == 'int32' else 'int8'}"
            for i in graph.inputs)
        self._proc = None

    def _start(self):
        self._proc = subprocess.Popen([sys.executable, "-c", _PROBE, self._file.name, self._shapes],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                      text=True)

    def works(self, arena_size: int) -> bool:
        for _ in range(2):
            if self._proc is None or self._proc.poll() is not None:
                self._start()
            try:
                self._proc.stdin.write(f"{int(arena_size)}\n")
                self._proc.stdin.flush()
                line = self._proc.stdout.readline()
            except BrokenPipeError:
                line = ""
            if line.strip() in ("0", "1"):
                return line.strip() == "1"
            self._proc.wait()
            if self._proc.returncode not in (None, 0) and self._proc.returncode < 0:
                self._proc = None
                return False  # killed by a signal for this size: it does not work with it
            self._proc = None
        raise EmbBertError("the TFLM probe process failed to start (is tflite-micro installed?)")

    def close(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


_MINIMA: dict[str, int] = {}  # sha256 of the model -> its minimal arena (the bisection is deterministic)


def minimal_arena(tflite_bytes: bytes) -> int:
    """The smallest arena (multiple of 16 bytes) TFLM accepts for the model: bisection."""
    key = hashlib.sha256(bytes(tflite_bytes)).hexdigest()
    if key not in _MINIMA:
        _MINIMA[key] = _bisect_arena(tflite_bytes)
    return _MINIMA[key]


def _bisect_arena(tflite_bytes: bytes) -> int:
    graph = read_graph(tflite_bytes)
    with ArenaProbe(tflite_bytes, graph) as probe:
        hi = max(ALIGN, (len(tflite_bytes) // 4) // ALIGN * ALIGN)
        while not probe.works(hi):
            hi *= 2
            if hi > 1 << 31:
                raise EmbBertError("TFLM does not accept the model with any arena up to 2 GB")
        lo = 0  # a 0-byte arena never works
        while hi - lo > ALIGN:
            mid = (lo + hi) // 2 // ALIGN * ALIGN
            if mid <= lo:
                mid = lo + ALIGN
            if probe.works(mid):
                hi = mid
            else:
                lo = mid
    return hi


_TOTAL = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CAT = re.compile(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) ")


def recorded_allocations(tflite_bytes: bytes, arena_size: int) -> dict[str, Any]:
    """RecordingMicroAllocator breakdown after one inference (print_allocations, parsed)."""
    graph = read_graph(tflite_bytes)
    interp = tflm_interpreter(tflite_bytes, arena_size)
    with captured_stderr():
        invoke_zeros(interp, graph)
    with captured_stderr() as log:
        interp.print_allocations()
    text = "\n".join(log)
    totals = {k: int(v) for k, v in _TOTAL.findall(text)}
    if "total" not in totals:
        raise EmbBertError("TFLM printed no allocation record (RecordingMicroAllocator output not found)")
    cats = {name: {"bytes": int(b), "requested_bytes": int(r), "allocations": int(n)}
            for name, b, r, n in _CAT.findall(text)}
    return {"total_bytes": totals["total"], "non_persistent_bytes": totals.get("head", 0),
            "persistent_bytes": totals.get("tail", 0), "categories": cats}


def host_latency_ms(tflite_bytes: bytes, arena_size: int, runs: int = 20) -> float:
    """Host TFLM time per inference: the minimum CPU time (process_time) of `runs` invokes, which a
    loaded machine inflates far less than a wall-clock median."""
    graph = read_graph(tflite_bytes)
    interp = tflm_interpreter(tflite_bytes, arena_size)
    times = []
    with captured_stderr():
        invoke_zeros(interp, graph)
        for _ in range(runs):
            # TFLM reuses the input buffers for later tensors: set the inputs before every invoke
            for pos, idx in enumerate(graph.inputs):
                interp.set_input(np.zeros(graph.tensors[idx].shape, dtype=np.int32), pos)
            t0 = time.process_time()
            interp.invoke()
            times.append(time.process_time() - t0)
    return round(1000 * min(times), 3)


__all__ = ["ALIGN", "ArenaProbe", "minimal_arena", "recorded_allocations", "host_latency_ms"]
