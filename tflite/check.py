"""`embbert check`: the four models of a run directory on the task's test split.

Float Keras, QAT Keras, int8 in the TFLite interpreter (ai-edge-litert, reference
kernels) and int8 in the TFLM interpreter (tflite-micro): the task's metric of each,
plus the agreement of TFLM with TFLite (same predicted class; for regression, the
same output within 1 LSB) and the largest int8 logit difference in LSB.
Written to RUN_DIR/check.json.
"""
from __future__ import annotations

import json
import time
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


def tflite_predict(tflite_bytes: bytes, token_ids, segment_ids) -> np.ndarray:
    """int8 logits [N, C] of the model in the TFLite interpreter (reference kernels)."""
    tok, seg = _check_inputs(token_ids, segment_ids)
    read_graph(tflite_bytes)  # clear error on a corrupt buffer
    try:
        interp = Interpreter(model_content=bytes(tflite_bytes),
                             experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise EmbBertError(f"TFLite cannot load the model: {str(exc).strip().splitlines()[0]}") from None
    ins = interp.get_input_details()

    def index(role: str) -> int:
        hits = [d["index"] for d in ins if role in d["name"]]
        if len(hits) != 1:
            raise EmbBertError(f"the model has no single input named like {role!r}: {[d['name'] for d in ins]}")
        return hits[0]

    t_idx, s_idx = index("token_ids"), index("segment_ids")
    out_idx = interp.get_output_details()[0]["index"]
    outs = []
    for i in range(tok.shape[0]):
        interp.set_tensor(t_idx, tok[i:i + 1])
        interp.set_tensor(s_idx, seg[i:i + 1])
        interp.invoke()
        outs.append(interp.get_tensor(out_idx).reshape(-1).copy())
    return np.stack(outs) if outs else np.zeros((0, 0), np.int8)


def tflm_predict(tflite_bytes: bytes, token_ids, segment_ids, arena_size: int | None = None) -> np.ndarray:
    """int8 logits [N, C] of the model in the TFLM interpreter."""
    tok, seg = _check_inputs(token_ids, segment_ids)
    graph = read_graph(tflite_bytes)
    t_pos, s_pos = graph.input_index("token_ids"), graph.input_index("segment_ids")
    interp = tflm_interpreter(tflite_bytes, arena_size)
    outs = []
    for i in range(tok.shape[0]):
        interp.set_input(tok[i:i + 1], t_pos)
        interp.set_input(seg[i:i + 1], s_pos)
        with captured_stderr() as log:
            try:
                interp.invoke()
            except RuntimeError as exc:
                raise EmbBertError(f"TFLM invoke failed: {exc} {' '.join(log[-2:])}".strip()) from None
        outs.append(np.asarray(interp.get_output(0)).reshape(-1).copy())
    return np.stack(outs) if outs else np.zeros((0, 0), np.int8)


def _predictions(scores: np.ndarray, regression: bool) -> np.ndarray:
    return scores.reshape(-1) if regression else np.argmax(scores, axis=-1)


def output_quantization(tflite_bytes: bytes) -> tuple[float, int]:
    """(scale, zero point) of the model's int8 output."""
    graph = read_graph(tflite_bytes)
    out = graph.tensors[graph.outputs[0]]
    return (out.scale[0] if out.scale else 1.0), (out.zero_point[0] if out.zero_point else 0)


def compare_interpreters(tflite_bytes: bytes, token_ids, segment_ids, labels, metric: str,
                         regression: bool) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The int8 model in the TFLite interpreter and in TFLM on encoded examples: ({"int8_tflite": {metric,
    seconds}, "int8_tflm": ...}, the TFLM-vs-TFLite agreement). What `embbert check` and `embbert.check` run."""
    scale, zp = output_quantization(tflite_bytes)
    results: dict[str, dict[str, Any]] = {}

    def record(name: str, q: np.ndarray, seconds: float) -> np.ndarray:
        pred = _predictions((q.astype(np.float32) - zp) * scale, regression)
        results[name] = {"metric": compute_metric(metric, labels, pred), "seconds": round(seconds, 3)}
        return pred

    t0 = time.perf_counter()
    q_tfl = tflite_predict(tflite_bytes, token_ids, segment_ids)
    p_tfl = record("int8_tflite", q_tfl, time.perf_counter() - t0)
    t0 = time.perf_counter()
    q_tflm = tflm_predict(tflite_bytes, token_ids, segment_ids)
    p_tflm = record("int8_tflm", q_tflm, time.perf_counter() - t0)
    diff = np.abs(q_tflm.astype(np.int32) - q_tfl.astype(np.int32))
    agree = (diff.max(axis=-1) <= 1) if regression else (p_tfl == p_tflm)
    agreement = {
        "agreement": float(np.mean(agree)),
        "agreement_rule": "same output within 1 LSB" if regression else "same predicted class",
        "max_logit_diff_lsb": int(diff.max()) if diff.size else 0,
        "identical_logits": float(np.mean(diff.max(axis=-1) == 0)),
    }
    return results, agreement


def check_run(run_dir, *, max_examples: int | None = None) -> dict[str, Any]:
    """Evaluate float / QAT / TFLite int8 / TFLM int8 on the test split; write RUN_DIR/check.json."""
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
    interpreters, agreement = compare_interpreters(data, tok, seg, labels, spec.metric, regression)
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
    a = report["tflm_vs_tflite"]
    lines += ["", f"TFLM vs TFLite: agreement {100 * a['agreement']:.2f}% ({a['agreement_rule']}), "
              f"identical logits {100 * a['identical_logits']:.2f}%, max logit difference {a['max_logit_diff_lsb']} LSB"]
    return "\n".join(lines)


__all__ = ["check_run", "compare_interpreters", "output_quantization", "tflite_predict", "tflm_predict", "format_table"]
