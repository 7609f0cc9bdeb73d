"""`embbert check`: the four models of a run directory on the task's test split.

Float Keras, QAT Keras, int8 in the TFLite interpreter (ai-edge-litert, reference
kernels) and int8 in the TFLM interpreter (tflite-micro): the task's metric of each,
plus the agreement of TFLM with TFLite (same predicted class; for regression, the
same output within 1 LSB) and the largest int8 logit difference in LSB.
Written to RUN_DIR/check.json.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait as connection_wait
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_text

from embbert.datasets.metrics import compute_metric
from embbert.datasets.pipeline import encoded_split

from .graph import read_graph
from .runtime import captured_stderr, load_tflite, tflm_interpreter


def _check_inputs(token_ids, segment_ids) -> tuple[np.ndarray, np.ndarray]:
    tok = np.asarray(token_ids, dtype=np.int32)
    seg = np.asarray(segment_ids, dtype=np.int32)
    if tok.ndim != 2 or tok.shape != seg.shape:
        raise EmbBertError(f"token_ids {tok.shape} and segment_ids {seg.shape} must both be [N, L]")
    return tok, seg


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


class _TFLiteRunner:
    """The model in the TFLite interpreter (reference kernels, one thread): int8 logits of rows of examples."""

    def __init__(self, tflite_bytes: bytes, arena_size: int | None = None):
        read_graph(tflite_bytes)  # clear error on a corrupt buffer
        try:
            interp = Interpreter(model_content=bytes(tflite_bytes), num_threads=1,
                                 experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
            interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise EmbBertError(f"TFLite cannot load the model: {_first_line(exc)}") from None
        ins = interp.get_input_details()

        def index(role: str) -> int:
            hits = [d["index"] for d in ins if role in d["name"]]
            if len(hits) != 1:
                raise EmbBertError(f"the model has no single input named like {role!r}: {[d['name'] for d in ins]}")
            return hits[0]

        self.interp, self.t_idx, self.s_idx = interp, index("token_ids"), index("segment_ids")
        self.out_idx = interp.get_output_details()[0]["index"]

    def __call__(self, tok: np.ndarray, seg: np.ndarray, start: int = 0) -> np.ndarray:
        interp, outs = self.interp, []
        for i in range(tok.shape[0]):
            interp.set_tensor(self.t_idx, tok[i:i + 1])
            interp.set_tensor(self.s_idx, seg[i:i + 1])
            try:
                interp.invoke()
            except (ValueError, RuntimeError) as exc:
                raise EmbBertError(f"TFLite invoke failed on example {start + i}: {_first_line(exc)}") from None
            outs.append(interp.get_tensor(self.out_idx).reshape(-1).copy())
        return np.stack(outs) if outs else np.zeros((0, 0), np.int8)


class _TFLMRunner:
    """The model in the TFLM interpreter: int8 logits of rows of examples."""

    def __init__(self, tflite_bytes: bytes, arena_size: int | None = None):
        graph = read_graph(tflite_bytes)
        self.t_pos, self.s_pos = graph.input_index("token_ids"), graph.input_index("segment_ids")
        self.interp = tflm_interpreter(tflite_bytes, arena_size)

    def __call__(self, tok: np.ndarray, seg: np.ndarray, start: int = 0) -> np.ndarray:
        interp, outs = self.interp, []
        for i in range(tok.shape[0]):
            interp.set_input(tok[i:i + 1], self.t_pos)  # TFLM reuses input buffers: set before every invoke
            interp.set_input(seg[i:i + 1], self.s_pos)
            with captured_stderr() as log:
                try:
                    interp.invoke()
                except RuntimeError as exc:
                    raise EmbBertError(f"TFLM invoke failed on example {start + i}: {exc} "
                                       f"{' '.join(log[-2:])}".strip()) from None
            outs.append(np.asarray(interp.get_output(0)).reshape(-1).copy())
        return np.stack(outs) if outs else np.zeros((0, 0), np.int8)


_RUNNERS = {"int8_tflite": _TFLiteRunner, "int8_tflm": _TFLMRunner}
_NAMES = {"int8_tflite": "TFLite", "int8_tflm": "TFLM"}


# Parallel checks --------------------------------------------------------------------------------------
# Neither interpreter can batch: the converted graph has batch 1 in its shapes (TFLite refuses a resized
# [B, L] input: "shapes [B,L,L] and [B,L] are not broadcastable"), and TFLM has no batch. So a large test
# set is split into chunks that worker processes run (fresh interpreters: the parent may hold
# TensorFlow's threads, which rules out fork), each with its own interpreters built once from the bytes.

PROBE_EXAMPLES = 4  # timed in this process to decide whether a pool pays for its start-up
# Estimated serial CPU time of both interpreters below which a check stays in this process: a pool of 2
# workers costs 0.7 s of CPU to start, build both interpreters and stop (measured, docs/conversion.md).
PARALLEL_MIN_SECONDS = 4.0
CHUNK_EXAMPLES = 64  # at most this many examples per task (small chunks: even ends on a shared machine)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _jobs(jobs: int | None) -> int:
    if jobs is None:
        return usable_cpus()
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise EmbBertError(f"jobs must be an integer >= 1, got {jobs!r}")
    return int(jobs)


def _chunk_size(n: int, jobs: int) -> int:
    """About 8 chunks per worker, at most CHUNK_EXAMPLES examples each."""
    return max(1, min(CHUNK_EXAMPLES, -(-n // (8 * jobs))))


_WORKER = "from embbert.tflite.check import _worker_main; _worker_main()"


def _worker_main() -> None:
    """A worker process (`python -c _WORKER IN_FD OUT_FD`): the model and the encoded set, then
    (task id, kind, start, stop) tasks until None or end of input; one result message per task."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the workers
    conn_in = Connection(int(sys.argv[1]), writable=False)
    conn_out = Connection(int(sys.argv[2]), readable=False)
    os.dup2(2, 1)  # a library's stray print goes to stderr
    runners: dict[str, Any] = {}
    try:
        tflite_bytes, arena_size, tok, seg = conn_in.recv()
        while (task := conn_in.recv()) is not None:
            task_id, kind, lo, hi = task
            try:
                if kind not in runners:
                    runners[kind] = _RUNNERS[kind](tflite_bytes, arena_size)
                wall, cpu = time.perf_counter(), time.process_time()
                out = runners[kind](tok[lo:hi], seg[lo:hi], lo)
                conn_out.send((task_id, out, time.perf_counter() - wall, time.process_time() - cpu))
            except EmbBertError as exc:
                conn_out.send((task_id, None, str(exc), None))
            except Exception as exc:  # noqa: BLE001 - anything else becomes one line in the parent
                conn_out.send((task_id, None, f"{type(exc).__name__}: {_first_line(exc)}", None))
    except (EOFError, BrokenPipeError):  # the parent has gone
        pass


class CheckPool:
    """`jobs` worker processes running the interpreters on chunks of one encoded test set.

    Plain `python -c` children (not multiprocessing: nothing of the caller's __main__ is re-imported, no
    `if __name__ == "__main__"` needed) that get the bytes and the set once through a pipe and build
    their own interpreters. `map(kind, lo, hi)` returns the int8 logits of rows lo..hi in order and the
    workers' summed CPU seconds; a worker's error, or a worker that dies, becomes one EmbBertError line
    and ends the pool. Use as a context manager: leaving it, by an error or Ctrl-C too, stops the workers."""

    def __init__(self, tflite_bytes: bytes, tok: np.ndarray, seg: np.ndarray, jobs: int,
                 arena_size: int | None = None, chunk: int | None = None):
        self.chunk = chunk or _chunk_size(tok.shape[0], jobs)
        self.procs: list[subprocess.Popen] = []
        self.conns: list[tuple[Connection, Connection]] = []  # (to the worker, from the worker)
        self._next_id = 0
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [p for p in sys.path if p] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        previous = None
        try:  # started with SIGINT ignored (kept through exec): a Ctrl-C reaches only this process
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        except ValueError:  # not the main thread: signals stay as they are
            pass
        try:
            for _ in range(jobs):
                task_r, task_w = os.pipe()
                result_r, result_w = os.pipe()
                self.conns.append((Connection(task_w, readable=False), Connection(result_r, writable=False)))
                try:
                    self.procs.append(subprocess.Popen(
                        [sys.executable, "-c", _WORKER, str(task_r), str(result_w)],
                        pass_fds=(task_r, result_w), stdin=subprocess.DEVNULL, env=env))
                finally:
                    os.close(task_r)
                    os.close(result_w)
        except BaseException:
            self.terminate()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        try:
            payload = (bytes(tflite_bytes), arena_size, tok, seg)
            for k, (to_worker, _) in enumerate(self.conns):
                to_worker.send(payload)
        except BaseException as exc:
            reason = self._died(k) if isinstance(exc, OSError) else None
            self.terminate()
            if reason is not None:
                raise EmbBertError(f"a check worker process did not start ({reason})") from None
            raise

    def _died(self, k: int) -> str:
        try:
            code = self.procs[k].wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "it stopped answering"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"exit code {code}"

    def map(self, kind: str, lo: int, hi: int) -> tuple[np.ndarray, float]:
        bounds = [(a, min(a + self.chunk, hi)) for a in range(lo, hi, self.chunk)]
        first, todo = self._next_id, list(range(len(bounds)))[::-1]
        self._next_id += len(bounds)
        outs: list = [None] * len(bounds)
        busy = [0] * len(self.conns)
        cpu = 0.0

        def died(k: int) -> EmbBertError:
            return EmbBertError(f"a {_NAMES[kind]} check worker process died ({self._died(k)}); "
                                f"run with jobs=1 (--jobs 1) to see the failing example")

        def give(k: int) -> None:
            if todo:
                t = todo.pop()
                try:
                    self.conns[k][0].send((first + t, kind, *bounds[t]))
                except OSError:
                    raise died(k) from None
                busy[k] += 1

        for _ in range(2):  # two tasks each in flight: a worker never waits for its next task
            for k in range(len(self.conns)):
                give(k)
        readers = {self.conns[k][1]: k for k in range(len(self.conns))}
        while any(busy):
            for conn in connection_wait([c for c, k in readers.items() if busy[k]]):
                k = readers[conn]
                try:
                    task_id, out, info, task_cpu = conn.recv()
                except (EOFError, OSError):
                    raise died(k) from None
                if out is None:
                    raise EmbBertError(info)
                outs[task_id - first] = out
                cpu += task_cpu
                busy[k] -= 1
                give(k)
        return (np.concatenate(outs) if outs else np.zeros((0, 0), np.int8)), cpu

    def close(self) -> None:
        for to_worker, _ in self.conns:
            try:
                to_worker.send(None)
            except OSError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.terminate()

    def terminate(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()
        for pair in self.conns:
            for conn in pair:
                conn.close()
        self.conns = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


def run_interpreters(tflite_bytes: bytes, token_ids, segment_ids, kinds=("int8_tflite", "int8_tflm"), *,
                     jobs: int | None = 1, arena_size: int | None = None) -> dict[str, dict[str, Any]]:
    """int8 logits [N, C] of each interpreter in `kinds` ("int8_tflite", "int8_tflm"), identical whatever
    `jobs`: {kind: {"logits", "seconds" (wall), "cpu_seconds" (this process + workers), "jobs"}}.

    jobs > 1: the first PROBE_EXAMPLES examples are timed here (CPU time); when both interpreters would
    take PARALLEL_MIN_SECONDS or more on the whole set, the rest runs in up to `jobs` worker processes
    (one interpreter after the other, chunks of at most CHUNK_EXAMPLES), else everything stays here.
    jobs=None: every usable CPU. The pool's start-up counts in the first interpreter's seconds."""
    tok, seg = _check_inputs(token_ids, segment_ids)
    jobs, n = _jobs(jobs), tok.shape[0]
    unknown = [k for k in kinds if k not in _RUNNERS]
    if unknown:
        raise EmbBertError(f"unknown interpreter {unknown[0]!r}; choose from {', '.join(_RUNNERS)}")
    read_graph(tflite_bytes)
    results: dict[str, dict[str, Any]] = {}
    local: dict[str, Any] = {}
    head: dict[str, tuple[np.ndarray, float, float]] = {}
    parallel = jobs > 1 and n > PROBE_EXAMPLES and os.name == "posix"  # workers get their pipes by fd number
    probe = PROBE_EXAMPLES if parallel else 0
    probe_cpu = 0.0  # CPU time of the probe's invokes: the machine's load does not count
    for kind in kinds:  # build the interpreters here (a load error is raised once, from this process)
        wall, cpu = time.perf_counter(), time.process_time()
        local[kind] = _RUNNERS[kind](tflite_bytes, arena_size)
        built = time.process_time()
        out = local[kind](tok[:probe], seg[:probe])
        probe_cpu += time.process_time() - built
        head[kind] = (out, time.perf_counter() - wall, time.process_time() - cpu)
    per_example = probe_cpu / probe if probe else 0.0
    chunk = _chunk_size(n - probe, jobs)
    workers = min(jobs, -(-(n - probe) // chunk)) if probe else 1
    pool, started = None, time.perf_counter()
    if probe and workers > 1 and per_example * n >= PARALLEL_MIN_SECONDS:
        pool = CheckPool(tflite_bytes, tok, seg, workers, arena_size, chunk=chunk)
    startup = time.perf_counter() - started  # counted in the first interpreter's seconds
    with (pool or contextlib.nullcontext()):
        for kind in kinds:
            out, wall0, cpu0 = head[kind]
            wall0, startup = wall0 + startup, 0.0
            wall, cpu = time.perf_counter(), time.process_time()
            if pool is not None:
                rest, worker_cpu = pool.map(kind, probe, n)
            else:
                rest, worker_cpu = local[kind](tok[probe:], seg[probe:], probe), 0.0
            logits = np.concatenate([out, rest]) if probe else rest
            results[kind] = {"logits": logits, "seconds": wall0 + time.perf_counter() - wall,
                             "cpu_seconds": cpu0 + time.process_time() - cpu + worker_cpu,
                             "jobs": workers if pool is not None else 1}
    return results


def tflite_predict(tflite_bytes: bytes, token_ids, segment_ids, *, jobs: int | None = 1) -> np.ndarray:
    """int8 logits [N, C] of the model in the TFLite interpreter (reference kernels); `jobs` > 1: in up to
    that many worker processes for a large set (the same logits)."""
    return run_interpreters(tflite_bytes, token_ids, segment_ids, ("int8_tflite",), jobs=jobs)["int8_tflite"]["logits"]


def tflm_predict(tflite_bytes: bytes, token_ids, segment_ids, arena_size: int | None = None, *,
                 jobs: int | None = 1) -> np.ndarray:
    """int8 logits [N, C] of the model in the TFLM interpreter; `jobs` as in `tflite_predict`."""
    return run_interpreters(tflite_bytes, token_ids, segment_ids, ("int8_tflm",), jobs=jobs,
                            arena_size=arena_size)["int8_tflm"]["logits"]


def _predictions(scores: np.ndarray, regression: bool) -> np.ndarray:
    return scores.reshape(-1) if regression else np.argmax(scores, axis=-1)


def output_quantization(tflite_bytes: bytes) -> tuple[float, int]:
    """(scale, zero point) of the model's int8 output."""
    graph = read_graph(tflite_bytes)
    out = graph.tensors[graph.outputs[0]]
    return (out.scale[0] if out.scale else 1.0), (out.zero_point[0] if out.zero_point else 0)


def compare_interpreters(tflite_bytes: bytes, token_ids, segment_ids, labels, metric: str,
                         regression: bool, *, jobs: int | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The int8 model in the TFLite interpreter and in TFLM on encoded examples: ({"int8_tflite": {metric,
    seconds, cpu_seconds, jobs}, "int8_tflm": ...}, the TFLM-vs-TFLite agreement). What `embbert check` and
    `embbert.check` run. `jobs`: worker processes for a large set (None: every usable CPU; 1: in this
    process); the logits, and so every figure but the times, are the same whatever `jobs`."""
    scale, zp = output_quantization(tflite_bytes)
    runs = run_interpreters(tflite_bytes, token_ids, segment_ids, jobs=jobs)
    results: dict[str, dict[str, Any]] = {}
    preds = {}
    for name, run in runs.items():
        preds[name] = _predictions((run["logits"].astype(np.float32) - zp) * scale, regression)
        results[name] = {"metric": compute_metric(metric, labels, preds[name]), "seconds": round(run["seconds"], 3),
                         "cpu_seconds": round(run["cpu_seconds"], 3), "jobs": run["jobs"]}
    q_tfl, q_tflm = runs["int8_tflite"]["logits"], runs["int8_tflm"]["logits"]
    diff = np.abs(q_tflm.astype(np.int32) - q_tfl.astype(np.int32))
    agree = (diff.max(axis=-1) <= 1) if regression else (preds["int8_tflite"] == preds["int8_tflm"])
    agreement = {
        "agreement": float(np.mean(agree)),
        "agreement_rule": "same output within 1 LSB" if regression else "same predicted class",
        "max_logit_diff_lsb": int(diff.max()) if diff.size else 0,
        "identical_logits": float(np.mean(diff.max(axis=-1) == 0)),
    }
    return results, agreement


def check_run(run_dir, *, max_examples: int | None = None, jobs: int | None = None) -> dict[str, Any]:
    """Evaluate float / QAT / TFLite int8 / TFLM int8 on the test split; write RUN_DIR/check.json.
    `jobs`: worker processes for the interpreters (None: every usable CPU; see `run_interpreters`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory)")
    config = EmbBertConfig.load(run_dir)
    if max_examples is not None and max_examples < 1:
        raise EmbBertError(f"max examples must be >= 1, got {max_examples}")
    data = load_tflite(run_dir / layout.INT8_MODEL)
    scale, zp = output_quantization(data)
    tok, seg, labels, spec = encoded_split(run_dir, config, "test", max_examples)
    regression = config.regression

    from embbert.keras_model.model import load_model  # lazy: TensorFlow

    results: dict[str, dict[str, Any]] = {}
    x = {"token_ids": tok, "segment_ids": seg}
    for name, qat in (("float_keras", False), ("qat_keras", True)):
        t0 = time.perf_counter()
        model = load_model(run_dir, qat=qat, config=config)
        scores = np.asarray(model.predict(x, batch_size=64, verbose=0), dtype=np.float32)
        results[name] = {"metric": compute_metric(spec.metric, labels, _predictions(scores, regression)),
                         "seconds": round(time.perf_counter() - t0, 3)}
    interpreters, agreement = compare_interpreters(data, tok, seg, labels, spec.metric, regression, jobs=jobs)
    results.update(interpreters)
    report = {
        "run_dir": str(run_dir),
        "task": spec.name,
        "metric": spec.metric,
        "split": "test",
        "examples": int(tok.shape[0]),
        "max_examples": max_examples,  # the limit asked for; None: the whole split
        "models": results,
        "tflm_vs_tflite": agreement,
        "output_quantization": {"scale": scale, "zero_point": zp},
    }
    atomic_write_text(run_dir / layout.CHECK, json.dumps(report, indent=2) + "\n")
    return report


def format_table(report: dict[str, Any]) -> str:
    labels = {"float_keras": "float (Keras)", "qat_keras": "QAT (Keras)", "int8_tflite": "int8 (TFLite ref)",
              "int8_tflm": "int8 (TFLM)"}
    metric = report["metric"]
    lines = [f"task {report['task']}, test split, {report['examples']} examples", "",
             f"{'model':<20} {metric:>12} {'seconds':>9}", f"{'-' * 20} {'-' * 12} {'-' * 9}"]
    for key, row in report["models"].items():
        lines.append(f"{labels.get(key, key):<20} {100 * row['metric']:>11.2f}% {row['seconds']:>9.2f}")
    jobs = max((row.get("jobs", 1) for row in report["models"].values()), default=1)
    if jobs > 1:
        lines.append(f"(the interpreters ran in {jobs} worker processes)")
    a = report["tflm_vs_tflite"]
    lines += ["", f"TFLM vs TFLite: agreement {100 * a['agreement']:.2f}% ({a['agreement_rule']}), "
              f"identical logits {100 * a['identical_logits']:.2f}%, max logit difference {a['max_logit_diff_lsb']} LSB"]
    return "\n".join(lines)


__all__ = ["check_run", "compare_interpreters", "output_quantization", "tflite_predict", "tflm_predict", "format_table",
           "run_interpreters", "CheckPool", "usable_cpus"]
