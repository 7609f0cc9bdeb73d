"""Deployment in Python: `convert` -> `check` -> `arena_report` -> `export`, on bytes in memory.

Each is the function the command line runs (`embbert convert`, `check`, `export`), without a run
directory: `convert` is `tflite.convert.convert_qat` (the same deployed graph, candidates and memory
levers), `check` is `tflite.check.compare_interpreters`, `arena_report` is
`tflite.arena.measure_arena`, and `export` hands a run directory made in a temporary folder to
`tflite.export.export_micro_app`.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embbert.core import layout
from embbert.core.config import DEFAULTS, EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

from embbert.datasets.metrics import METRICS
from embbert.keras_model._tf import tf
from embbert.tflite.arena import measure_arena, table_bytes
from embbert.tflite.check import compare_interpreters
from embbert.tflite.convert import convert_qat
from embbert.tflite.export import TARGETS, export_micro_app
from embbert.tflite.graph import read_graph

from .classifier import EmbBertClassifier, calibrated, label_ids, quantize_model
from .preprocessing import EmbBertPreprocessor

#: Representative examples `convert` uses at most (as `embbert convert --max-calibration`).
MAX_CALIBRATION = DEFAULTS.max_calibration


class TFLiteModel(bytes):
    """The full-int8 FlatBuffer (a `bytes`: write it to a `.tflite` file as it is) with what `convert`
    knew: `config` (size preset, L, labels), `preprocessor`, `info` (tensor names, memory plan, graph
    options) and, once measured, `arena` (the `arena_report` dict)."""
    config: EmbBertConfig | None
    preprocessor: EmbBertPreprocessor | None
    info: dict
    arena: dict | None

    def __new__(cls, data: bytes, *, config: EmbBertConfig | None = None,
                preprocessor: EmbBertPreprocessor | None = None, info: dict | None = None) -> "TFLiteModel":
        obj = super().__new__(cls, data)
        obj.config, obj.preprocessor, obj.info, obj.arena = config, preprocessor, dict(info or {}), None
        return obj

    def save(self, path: str | os.PathLike) -> Path:
        """Write the FlatBuffer to `path` (atomically)."""
        atomic_write_bytes(Path(path), bytes(self))
        return Path(path)

    def __repr__(self) -> str:
        return f"<TFLiteModel {len(self):,} bytes>"


def _text_part(element):
    """The text of a dataset element: a text, a (first, second) pair, or the first part of (text, label)."""
    if isinstance(element, tuple):
        if all(np.asarray(e).dtype.kind in "SUO" for e in element):
            return element  # a pair of texts
        return element[0]
    return element


def _encoded(preprocessor: EmbBertPreprocessor, data, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """token_ids, segment_ids of texts, pairs, model inputs or a tf.data of text (at most `limit` rows)."""
    if isinstance(data, tf.data.Dataset):
        rows: list[dict] = []
        count = 0
        for element in data.as_numpy_iterator():
            x = _text_part(element)
            r = preprocessor(tuple(x) if isinstance(x, tuple) else x)
            rows.append(r)
            count += np.atleast_2d(r["token_ids"]).shape[0]
            if limit and count >= limit:
                break
        if not rows:
            raise EmbBertError("the dataset is empty")
        tok = np.concatenate([np.atleast_2d(r["token_ids"]) for r in rows])
        seg = np.concatenate([np.atleast_2d(r["segment_ids"]) for r in rows])
    else:
        x = preprocessor(data)
        tok, seg = np.atleast_2d(np.asarray(x["token_ids"])), np.atleast_2d(np.asarray(x["segment_ids"]))
    if limit:
        tok, seg = tok[:limit], seg[:limit]
    return tok.astype(np.int32), seg.astype(np.int32)


def convert(model: EmbBertClassifier, representative_data, *, max_calibration: int = MAX_CALIBRATION,
            arena_budget: int | None = None) -> TFLiteModel:
    """The full-int8 `.tflite` of a classifier for TFLM: int32 `token_ids`/`segment_ids` inputs, int8
    logits, validated for TFLM's int8 kernels. The deployed graph is `embbert convert`'s, with every memory
    lever (pre-transposed keys, last layer on token 0, both forms of the causal convolution measured and
    the smaller arena kept, operators reordered, offline memory plan where it helps, names stripped).

    `model`: the QAT model (`quantize_model`, then fitted) — or a float classifier, which is quantized here
    and calibrated on `representative_data` without QAT training. `representative_data`: texts, pairs, a
    tf.data of text, or model inputs; the first `max_calibration` examples are used. `arena_budget`
    (bytes): the graph whose recommended arena fits, as `embbert convert --arena-budget`."""
    if not isinstance(model, EmbBertClassifier):
        raise EmbBertError(f"expected an EmbBertClassifier, got {type(model).__name__}")
    if max_calibration < 1:
        raise EmbBertError(f"max_calibration must be >= 1, got {max_calibration}")
    pre = model._need_preprocessor()
    tok, seg = _encoded(pre, representative_data, max_calibration)
    qat = model
    if not model.quantized:
        qat = quantize_model(model, {"token_ids": tok, "segment_ids": seg})
    elif not calibrated(model):
        raise EmbBertError("the QAT model has seen no data (its activation ranges are unset): fit it, or pass "
                           "calibration_data to embbert.quantize_model")
    config = model.embbert_config
    data, info = convert_qat(qat._plain(), config, tok, seg, arena_budget=arena_budget)
    info["calibration_examples"] = int(tok.shape[0])
    return TFLiteModel(data, config=config, preprocessor=pre, info=info)


def _metric_for(regression: bool, metric: str | None) -> str:
    metric = metric or ("spearman" if regression else "accuracy")
    if metric not in METRICS:
        raise EmbBertError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return metric


def _outputs(tflite_bytes: bytes) -> int:
    graph = read_graph(tflite_bytes)
    return int(np.prod(graph.tensors[graph.outputs[0]].shape))


def _regression(tflite_bytes: bytes) -> bool:
    return _outputs(tflite_bytes) == 1


def check(tflite_bytes: bytes, texts, labels: Sequence, *, preprocessor: EmbBertPreprocessor | None = None,
          metric: str | None = None, jobs: int | None = None) -> dict[str, Any]:
    """The int8 model in the TFLite interpreter (reference kernels) and in TFLM on `texts` with `labels`:
    {"metric", "examples", "models": {"int8_tflite": {"metric", "seconds"}, "int8_tflm": ...},
    "tflm_vs_tflite": {"agreement", "max_logit_diff_lsb", ...}} — `embbert check`'s interpreter part.
    `metric`: accuracy (default), matthews, f1_weighted, or spearman (default for regression); `labels`:
    class ids or label names.
    `preprocessor`: needed only for bytes that did not come from `convert`.
    `jobs`: worker processes for the interpreters (default: every usable CPU; 1: in this process), as
    `embbert check --jobs`; a small set stays in this process, and the figures are the same whatever `jobs`."""
    pre = preprocessor or getattr(tflite_bytes, "preprocessor", None)
    if pre is None:
        raise EmbBertError("give preprocessor= (the model's EmbBertPreprocessor) for bytes not made by embbert.convert")
    read_graph(tflite_bytes)
    tok, seg = _encoded(pre, texts)
    regression = _regression(tflite_bytes)
    config = getattr(tflite_bytes, "config", None) or pre.config
    outputs = 1 if regression else _outputs(tflite_bytes)
    labels = label_ids(np.atleast_1d(np.asarray(labels)), outputs,
                       config.label_names if config is not None and len(config.label_names) == outputs else ())
    if labels.shape[0] != tok.shape[0]:
        raise EmbBertError(f"{tok.shape[0]} texts but {labels.shape[0]} labels")
    metric = _metric_for(regression, metric)
    models, agreement = compare_interpreters(bytes(tflite_bytes), tok, seg, labels, metric, regression, jobs=jobs)
    return {"metric": metric, "examples": int(tok.shape[0]), "models": models, "tflm_vs_tflite": agreement}


def arena_report(tflite_bytes: bytes, *, preprocessor: EmbBertPreprocessor | None = None) -> dict[str, Any]:
    """`embbert convert`'s arena report of the model, as a dict: the exact smallest TFLM arena on the
    host (`min_arena_bytes`, bisected to 16 bytes), the recommended arena of a 32-bit board, the total
    footprint, the fit on each board (`boards`), MACs and host latency. The tokenizer tables count in the
    board fit when the preprocessor is known."""
    read_graph(tflite_bytes)
    pre = preprocessor or getattr(tflite_bytes, "preprocessor", None)
    info = getattr(tflite_bytes, "info", None) or {}
    report = measure_arena(bytes(tflite_bytes), info=info,
                           tokenizer_bytes=table_bytes(pre.tokenizer.directory) if pre is not None else None)
    config = getattr(tflite_bytes, "config", None)
    if config is not None:
        report["config"] = {"preset": config.preset}
        report["max_length"] = config.max_length
    if isinstance(tflite_bytes, TFLiteModel):
        tflite_bytes.arena = report
    return report


def export(tflite_bytes: bytes, preprocessor: EmbBertPreprocessor | None = None, *, target: str = "arduino",
           out: str | os.PathLike, label_names: Sequence[str] | None = None, arena_bytes: int | None = None,
           name: str = "embbert") -> list[Path]:
    """Write the TFLM package of `target` ("sources", "arduino", "platformio", "esp-idf", "cmake") into the
    folder `out` (atomically; an earlier export there is replaced) and return the written paths: exactly
    `embbert export`'s package (model array, settings, op resolver, tokenizer tables, the hand-written
    C/C++ sources shipped in the package). The arena is the report's recommended one unless `arena_bytes`
    is given (never below the measured minimum). `label_names` default to the model's; `name` is the
    source name the generated files quote."""
    if target not in TARGETS:
        raise EmbBertError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise EmbBertError(f"name must be a plain folder name, got {name!r}")
    graph = read_graph(tflite_bytes)
    pre = preprocessor or getattr(tflite_bytes, "preprocessor", None)
    if pre is None:
        raise EmbBertError("give the preprocessor (the model's EmbBertPreprocessor) for bytes not made by embbert.convert")
    config = getattr(tflite_bytes, "config", None) or pre.config
    if config is None:
        raise EmbBertError("the preprocessor knows no model config: load it with EmbBertPreprocessor.from_preset")
    outputs = int(np.prod(graph.tensors[graph.outputs[0]].shape))
    labels = tuple(label_names) if label_names is not None else (
        config.label_names if config.num_labels == outputs else ())
    if labels and len(labels) != outputs:
        raise EmbBertError(f"{len(labels)} label names for a model with {outputs} outputs")
    config = config.replace(num_labels=outputs, label_names=labels, max_length=pre.sequence_length,
                            tokenizer=layout.TOKENIZER_DIR, data_dir=None)
    report = getattr(tflite_bytes, "arena", None) or arena_report(tflite_bytes, preprocessor=pre)
    info = getattr(tflite_bytes, "info", None) or {}
    with tempfile.TemporaryDirectory(prefix="embbert-export-") as tmp:
        run = Path(tmp) / name
        run.mkdir()
        config.save(run)
        pre.tokenizer.save_to_preset(run)
        data = bytes(tflite_bytes)
        atomic_write_bytes(run / layout.INT8_MODEL, data)
        atomic_write_text(run / layout.INT8_SHA256, f"{hashlib.sha256(data).hexdigest()}  {layout.INT8_MODEL}\n")
        if info:
            atomic_write_text(run / layout.TENSOR_NAMES, json.dumps(info, indent=1) + "\n")
        atomic_write_text(run / layout.ARENA_JSON, json.dumps({**report, "run": name}, indent=2) + "\n")
        return export_micro_app(run, out, target=target, arena_bytes=arena_bytes)


__all__ = ["TFLiteModel", "convert", "check", "arena_report", "export", "MAX_CALIBRATION"]
