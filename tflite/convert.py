"""`embbert convert`: the QAT model of a run directory -> full-int8 `.tflite` for TFLM.

* `convert_run(run_dir)`: the QAT model's deployable graph (batch 1, static L) is
  converted with a representative dataset from the task's train split (it covers
  any tensor QAT did not) to `model_int8.tflite` (int32 `token_ids`/`segment_ids`
  inputs, int8 logits, int8 activations and weights, int32 biases); the float
  model's deployable graph is converted without optimisation to
  `model_float32.tflite` for comparison.
* `validate_for_tflm(data)`: what a microcontroller needs — every operator in
  `TFLM_INT8_OPS`, no custom op, no float tensor, no dynamic shape, every
  activation int8 (integer tensors only when derived from the int32 inputs).
  A violation raises `EmbBertError` naming the operator or tensor and its layer.

Files are written to a temporary name and renamed (never half-written); the int8
model is validated before anything is written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np

from embbert.core import layout
from embbert.core.config import DEFAULTS, EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.core.files import atomic_write_bytes, atomic_write_text

from embbert.datasets.pipeline import encoded_split
from embbert.keras_model.forms import DEFAULT, DeployForm

from .arena import recommended_arena
from .graph import FLOAT_TYPES, Graph, macs, op_layer, read_graph, schema
from .planner import offline_plan, schedule_ops
from .probe import minimal_arena
from .runtime import captured_stderr


#: Operators with an int8 kernel in TensorFlow Lite Micro (../shared/reference/deployment.md).
TFLM_INT8_OPS = frozenset({
    "FULLY_CONNECTED", "BATCH_MATMUL", "GATHER", "EMBEDDING_LOOKUP", "SOFTMAX", "MEAN", "RSQRT", "ADD",
    "SUB", "MUL", "SQUARED_DIFFERENCE", "TANH", "LOGISTIC", "HARD_SWISH", "CONV_2D", "DEPTHWISE_CONV_2D",
    "RESHAPE", "TRANSPOSE", "STRIDED_SLICE", "CONCATENATION", "DIV", "RELU", "PACK", "UNPACK",
    "EXPAND_DIMS", "PAD",
    "SUM",  # int8 through QuantizedMeanOrSum (tflite-micro kernels/reduce_common.cc, EvalSumHelper)
})
#: Operators that may produce integer (int32/bool) tensors from integer inputs (index / mask arithmetic).
_INT_OPS = frozenset({"GATHER", "RESHAPE", "STRIDED_SLICE", "EXPAND_DIMS", "PACK", "UNPACK", "CONCATENATION",
                      "TRANSPOSE", "ADD", "SUB", "MUL", "PAD"})
_NOTES = {
    "GELU": "no TFLM kernel; use an activation TFLM has (SiLU = x*LOGISTIC(x), RELU, TANH, HARD_SWISH)",
    "SELECT": "no TFLM kernel (Keras 3 Embedding produces it); gather the table directly",
    "SELECT_V2": "no TFLM kernel; gather the table directly",
    "REDUCE_PROD": "no TFLM kernel (a dynamic batch dimension produces it); build the model with batch 1",
    "SHAPE": "dynamic shapes are not supported by TFLM; build the model with batch 1 and a static length",
    "FILL": "dynamic shapes are not supported by TFLM; build the model with batch 1 and a static length",
    "SQRT": "float-only in TFLM; use RSQRT",
    "EXP": "float-only in TFLM",
    "NEG": "float-only in TFLM",
    "DEQUANTIZE": "a float island in the graph (e.g. Keras 3 LayerNormalization)",
    "QUANTIZE": "a float island in the graph",
}


def _where(graph: Graph, tensor_index: int) -> str:
    t = graph.tensors[tensor_index]
    return f"tensor {t.name.split(';')[0]!r} (layer {t.layer})"


def validate_for_tflm(tflite_bytes: bytes) -> list[str]:
    """Operators of the model (first-use order) if TFLM can run it as a full-int8 model, else EmbBertError."""
    graph = read_graph(tflite_bytes)
    # 1. operators: builtin, with a TFLM int8 kernel
    for op in graph.ops:
        if op.custom:
            raise EmbBertError(f"operator {op.name} (layer {op_layer(graph, op)}) is a custom op; "
                               "TFLM runs builtin operators only")
        if op.name not in TFLM_INT8_OPS:
            note = _NOTES.get(op.name, "not in the list of TFLM int8 kernels")
            raise EmbBertError(f"operator {op.name} (layer {op_layer(graph, op)}) is not supported by TFLM: {note}")
    # 2. tensors: static shapes, no float
    for t in graph.tensors:
        if any(d < 0 for d in t.shape_signature):
            raise EmbBertError(f"{_where(graph, t.index)} has a dynamic shape {t.shape_signature}; "
                               "TFLM needs static shapes (batch 1, fixed length)")
        if t.dtype in FLOAT_TYPES:
            raise EmbBertError(f"{_where(graph, t.index)} is {t.dtype}; a full-int8 model has no float tensor")
    # 3. dtypes of the inputs, output and activations
    for pos, idx in enumerate(graph.inputs):
        t = graph.tensors[idx]
        if t.dtype != "int32":
            raise EmbBertError(f"input {t.name!r} is {t.dtype}; expected int32 token/segment ids")
    for idx in graph.outputs:
        t = graph.tensors[idx]
        if t.dtype != "int8":
            raise EmbBertError(f"output {_where(graph, idx)} is {t.dtype}; expected int8 logits")
    integer_ok = set(graph.inputs)  # non-constant integer tensors derived from the inputs
    for op in graph.ops:
        for idx in op.outputs:
            t = graph.tensors[idx]
            if t.dtype == "int8":
                if not t.scale:
                    raise EmbBertError(f"{_where(graph, idx)} is int8 without quantisation parameters")
                continue
            if t.dtype in ("int32", "bool"):
                sources = [i for i in op.inputs if i >= 0 and not graph.tensors[i].constant]
                if op.name in _INT_OPS and sources and all(i in integer_ok for i in sources):
                    integer_ok.add(idx)
                    continue
                raise EmbBertError(f"{_where(graph, idx)} (output of {op.name}) is {t.dtype}: only index or mask "
                                   "tensors derived from the int32 inputs may be integer; activations must be int8")
            raise EmbBertError(f"{_where(graph, idx)} (output of {op.name}) is {t.dtype}; activations must be int8")
    # 4. weights int8, biases int32
    for op in graph.ops:
        for pos, idx in enumerate(op.inputs):
            if idx < 0:
                continue
            t = graph.tensors[idx]
            if not t.constant:
                continue
            if op.name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and pos == 1 and t.dtype != "int8":
                raise EmbBertError(f"weights {_where(graph, idx)} of {op.name} are {t.dtype}; expected int8")
            if op.name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D") and pos == 2 and t.dtype != "int32":
                raise EmbBertError(f"bias {_where(graph, idx)} of {op.name} is {t.dtype}; expected int32")
    return graph.op_names


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def _converter_error(exc: Exception, log: list[str]) -> str:
    text = "\n".join([str(exc)] + log)
    errors = [m.group(1).strip() for m in re.finditer(r"error: (.*)", text)]
    first = errors[0] if errors else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return first[:400]


def _convert(converter, what: str) -> bytes:
    absl = logging.getLogger("absl")
    tf_log = logging.getLogger("tensorflow")
    levels = (absl.level, tf_log.level)
    absl.setLevel(logging.ERROR)
    tf_log.setLevel(logging.ERROR)
    try:
        with captured_stderr() as log:
            try:
                data = converter.convert()
            except Exception as exc:  # noqa: BLE001 - converter raises assorted errors
                err = exc
            else:
                err = None
    finally:
        absl.setLevel(levels[0])
        tf_log.setLevel(levels[1])
    if err is not None:
        raise EmbBertError(f"conversion of the {what} failed: {_converter_error(err, log)}")
    return bytes(data)


def convert_keras(deploy_model, representative=None) -> bytes:
    """TFLite conversion of a deployable Keras model: full int8 with `representative`, else float32."""
    from embbert.keras_model._tf import tf  # lazy: TensorFlow

    conv = tf.lite.TFLiteConverter.from_keras_model(deploy_model)
    if representative is not None:
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_output_type = tf.int8  # the inputs are int32 ids already
        return _convert(conv, "int8 model")
    return _convert(conv, "float32 model")


QUERY_BLOCKS = 4  # tried from L >= 128, where the L x L scores make the peak (docs/memory.md)
CONSTANT_POSITIONS_UP_TO = 128  # the position constant is tried up to this L (at L=256 it saved 224 B of arena)


def build_int8(qat, config: EmbBertConfig, representative, form: DeployForm) -> tuple[bytes, dict]:
    """Convert, validate and finalise one deployed int8 graph in `form`: (bytes, info)."""
    from embbert.keras_model.model import build_deploy_model  # lazy: TensorFlow

    deploy = build_deploy_model(qat, config, form=form)
    raw = convert_keras(deploy, representative)
    validate_for_tflm(raw)  # on the named graph: messages name tensors and layers
    schedule = None
    if form.schedule:
        raw, schedule = reorder_ops(raw)
    data, info = finalize_model(raw, plan=False, strip_names=form.strip_names)
    if form.offline_plan:
        # Measured, not simulated: TFLM's arena with and without the offline plan; the smaller one is kept.
        planned, pinfo = finalize_model(raw, plan=True, strip_names=form.strip_names)
        without, with_plan = minimal_arena(data), minimal_arena(planned)
        pinfo["plan"].update(tflm_min_arena_without_plan=without, tflm_min_arena_with_plan=with_plan,
                             written=with_plan < without)
        if with_plan < without:
            data, info = planned, pinfo
        else:
            info["plan"] = pinfo["plan"]
    if schedule is not None:
        info["schedule"] = schedule
    info["options"] = form.record()
    return data, info


def _measure(data: bytes, info: dict) -> tuple[int, int, int]:
    """(MACs, recommended arena, minimal arena) of a candidate; recorded in info["arena"]."""
    graph = read_graph(data)
    minimum = minimal_arena(data)
    recommended = recommended_arena(minimum, graph)
    info["arena"] = {"min_arena_bytes": minimum, "recommended_arena_bytes": recommended}
    return macs(graph)["total"], recommended, minimum


def _smallest_arena(candidates: list[tuple[bytes, dict]]) -> tuple[bytes, dict]:
    """The candidate with the smallest recommended arena (then the fewest MACs, then the fewest bytes)."""
    if len(candidates) == 1:
        return candidates[0]
    rows = [(_measure(d, i), len(d), d, i) for d, i in candidates]
    best = min(rows, key=lambda r: (r[0][1], r[0][0], r[1]))
    return best[2], best[3]


def _budget_choice(candidates: list[tuple[bytes, dict]], budget: int) -> tuple[bytes, dict]:
    """The candidate whose recommended arena fits `budget`: exact forms (`DeployForm.exact`) first, then the
    fewest MACs, then the smallest arena; else EmbBertError naming the smallest reachable arena."""
    rows = []
    for data, info in candidates:
        m, recommended, minimum = _measure(data, info)
        info["arena"]["budget_bytes"] = budget
        rows.append((m, recommended, minimum, data, info))
    fitting = sorted((r for r in rows if r[1] <= budget), key=lambda r: (not DeployForm.from_record(r[4]["options"]).exact, r[0], r[1]))
    if not fitting:
        best = min(rows, key=lambda r: r[1])
        raise EmbBertError(f"no graph fits an arena budget of {budget} bytes: the smallest reachable recommended "
                           f"arena is {best[1]} bytes (minimum {best[2]} + margin {best[1] - best[2]}, form "
                           f"{DeployForm.from_record(best[4]['options']).label()}); shorten --max-length or raise the budget")
    return fitting[0][3], fitting[0][4]


def convert_qat(qat, config: EmbBertConfig, token_ids, segment_ids, *, form: DeployForm = DEFAULT,
                arena_budget: int | None = None) -> tuple[bytes, dict]:
    """The deployed full-int8 FlatBuffer of a QAT classifier: (bytes, info). What `embbert convert` and
    `embbert.convert` both run.

    `token_ids`/`segment_ids` (int32 [N, L]) are the representative examples (one per calibration
    step). Without a budget, both forms of the causal convolution are converted and the one with the
    smaller recommended arena is kept. `arena_budget` (bytes): the same candidates, and from L=128
    also with the attention in QUERY_BLOCKS query blocks, up to L=128 also with the position
    constant (neither bit-identical: used only when no exact graph fits), are measured; the exact one
    with the fewest MACs whose recommended arena (minimum + margin) fits is kept, or EmbBertError names
    the smallest reachable arena. `info` holds the tensor names, the memory plan and the form (`options`)."""
    if arena_budget is not None and arena_budget < 1:
        raise EmbBertError(f"arena budget must be a positive number of bytes, got {arena_budget}")
    tok = np.asarray(token_ids, dtype=np.int32)
    seg = np.asarray(segment_ids, dtype=np.int32)
    if tok.ndim != 2 or tok.shape != seg.shape or tok.shape[0] < 1:
        raise EmbBertError(f"representative data: token_ids {tok.shape} and segment_ids {seg.shape} must both be "
                           "[N, L] with N >= 1")
    if tok.shape[1] != config.max_length:
        raise EmbBertError(f"representative data has length {tok.shape[1]}, the model {config.max_length}")

    def representative():
        for i in range(tok.shape[0]):
            yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

    # The two forms of the causal convolution trade CMSIS-NN scratch for a padded buffer: which one
    # needs less arena depends on where the peak is, so both are converted and measured.
    tries = [form]
    if form.transposed_keys:
        tries.append(form.but(causal_valid=not form.causal_valid))
        # Not bit-identical (docs/memory.md): only when a budget asks for them, and only if nothing exact fits.
        if arena_budget is not None and config.max_length >= 128 and form.query_blocks == 1:
            tries += [f.but(query_blocks=QUERY_BLOCKS) for f in list(tries)]
        if arena_budget is not None and config.max_length <= CONSTANT_POSITIONS_UP_TO and not form.constant_positions:
            # the (L, d) position constant: one L x d buffer less where the embedder holds the peak, for
            # L x d - (L + d) x r more bytes of flash
            tries += [f.but(constant_positions=True) for f in list(tries)]
    if arena_budget is None:
        return _smallest_arena([build_int8(qat, config, representative, o) for o in tries])
    return _budget_choice([build_int8(qat, config, representative, o) for o in tries], arena_budget)


def convert_float(model, config: EmbBertConfig, form: DeployForm) -> bytes:
    """The float32 FlatBuffer of a float classifier's deployed graph in the same form (for comparison)."""
    from embbert.keras_model.model import build_deploy_model  # lazy: TensorFlow

    return convert_keras(build_deploy_model(model, config, form=form))


def convert_run(run_dir, *, max_calibration: int = DEFAULTS.max_calibration, float32: bool = True, form: DeployForm = DEFAULT,
                arena_budget: int | None = None) -> dict[str, Any]:
    """Write RUN_DIR/model_int8.tflite (validated for TFLM) and RUN_DIR/model_float32.tflite.

    The QAT model of the run, calibrated on at most `max_calibration` examples of the task's train
    split (a seeded sample), goes through `convert_qat` (the graph candidates and the budget rule)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory from `embbert train`)")
    config = EmbBertConfig.load(run_dir)
    from embbert.keras_model.model import load_model  # lazy: TensorFlow

    if not (run_dir / layout.QAT_WEIGHTS).is_file():
        raise EmbBertError(f"{run_dir}: no QAT model ({layout.QAT_WEIGHTS}); run `embbert train` first")
    if max_calibration < 1:
        raise EmbBertError(f"max calibration examples must be >= 1, got {max_calibration}")
    if arena_budget is not None and arena_budget < 1:
        raise EmbBertError(f"arena budget must be a positive number of bytes, got {arena_budget}")
    tok, seg, _, _ = encoded_split(run_dir, config, "train", max_calibration)
    qat = load_model(run_dir, qat=True, config=config)
    int8, info = convert_qat(qat, config, tok, seg, form=form, arena_budget=arena_budget)
    form = DeployForm.from_record(info["options"])
    ops = read_graph(int8).op_names
    float_bytes = None
    if float32:
        float_bytes = convert_float(load_model(run_dir, qat=False, config=config), config, form)
    atomic_write_bytes(run_dir / layout.INT8_MODEL, int8)
    atomic_write_bytes(run_dir / layout.INT8_SHA256, f"{hashlib.sha256(int8).hexdigest()}  {layout.INT8_MODEL}\n".encode())
    atomic_write_text(run_dir / layout.TENSOR_NAMES, json.dumps(info, indent=1) + "\n")
    if float_bytes is not None:
        atomic_write_bytes(run_dir / layout.FLOAT_MODEL, float_bytes)
    graph = read_graph(int8)
    out = graph.tensors[graph.outputs[0]]
    return {
        "int8_model": str(run_dir / layout.INT8_MODEL),
        "float32_model": str(run_dir / layout.FLOAT_MODEL) if float_bytes is not None else None,
        "int8_bytes": len(int8),
        "float32_bytes": len(float_bytes) if float_bytes is not None else None,
        "ops": ops,
        "graph_options": info["options"],
        "memory_plan": info.get("plan"),
        "budget": info.get("arena") if arena_budget is not None else None,
        "candidates_measured": info.get("arena"),
        "calibration_examples": int(tok.shape[0]),
        "inputs": {graph.tensors[i].name: {"dtype": graph.tensors[i].dtype, "shape": graph.tensors[i].shape}
                   for i in graph.inputs},
        "output": {"name": out.name, "dtype": out.dtype, "shape": out.shape,
                   "scale": out.scale[0] if out.scale else None,
                   "zero_point": out.zero_point[0] if out.zero_point else None},
    }


def tensor_names(run_dir) -> dict[int, str]:
    """Converter names of the deployed model's tensors (the FlatBuffer itself has them stripped)."""
    path = Path(run_dir) / layout.TENSOR_NAMES
    try:
        return {int(k): v for k, v in json.loads(path.read_text())["names"].items()}
    except (OSError, ValueError, KeyError):
        return {}


# --------------------------------------------------------------------------
# the deployed FlatBuffer: offline memory plan, names stripped
# --------------------------------------------------------------------------
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"  # micro_allocation_info.cc, kOfflineMemAllocMetadata


def _pack(model) -> bytes:
    """Serialise a schema ModelT with every byte vector (weight buffers) 16-byte aligned, as the
    converter leaves them (int32 biases and int8 weights are read in place by TFLM)."""
    class AlignedBuilder(flatbuffers.Builder):
        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802, N803 - flatbuffers' names
            return super().StartVector(elemSize, numElems, max(alignment, 16) if elemSize == 1 else alignment)

    builder = AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def reorder_ops(tflite_bytes: bytes) -> tuple[bytes, dict]:
    """The FlatBuffer with its operators in the order of `planner.schedule_ops` (the same operators
    and tensors, another topological order: outputs bit-identical), or unchanged where that order
    does not lower the live-bytes lower bound. Returns the bytes and the scheduler's figures."""
    graph = read_graph(tflite_bytes)
    order, info = schedule_ops(graph)
    if info["live_lower_bound_after"] >= info["live_lower_bound_before"]:
        return tflite_bytes, {**info, "written": False}
    model = schema().ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    sub = model.subgraphs[0]
    sub.operators = [sub.operators[i] for i in order]
    data = _pack(model)
    read_graph(data)
    return data, {**info, "written": True}


def finalize_model(tflite_bytes: bytes, *, plan: bool = True, strip_names: bool = True,
                   offsets: list[int] | None = None) -> tuple[bytes, dict]:
    """The deployed FlatBuffer: with `plan`, an `OfflineMemoryAllocation` metadata entry (int32
    [version 0, subgraph 0, n tensors, offset per tensor]) that TFLM's allocator uses instead of its
    own greedy plan; with `strip_names`, every tensor name except the inputs' and outputs' and the
    signature strings removed. `offsets`: a plan of your own (tests). Returns the bytes and
    {"names": {index: name}, "plan": ...}."""
    s = schema()
    graph = read_graph(tflite_bytes)
    model = s.ModelT.InitFromPackedBuf(bytearray(tflite_bytes), 0)
    info: dict[str, Any] = {"names": {str(t.index): t.name for t in graph.tensors}}
    sub = model.subgraphs[0]
    if plan:
        if offsets is None:
            offsets, info["plan"] = offline_plan(graph)
        else:
            info["plan"] = {"given": True}
        values = np.array([0, 0, len(offsets)] + offsets, dtype="<i4").view(np.uint8)
        buf = s.BufferT()
        buf.data = values
        model.buffers = list(model.buffers or []) + [buf]
        meta = s.MetadataT()
        meta.name = OFFLINE_PLAN_METADATA
        meta.buffer = len(model.buffers) - 1
        model.metadata = [m for m in (model.metadata or []) if _name(m.name) != OFFLINE_PLAN_METADATA] + [meta]
    if strip_names:
        keep = set(graph.inputs) | set(graph.outputs)
        for i, t in enumerate(sub.tensors):
            if i not in keep:
                t.name = ""
        sub.name = ""
        model.signatureDefs = None
        model.description = ""
    data = _pack(model)
    read_graph(data)  # still a valid FlatBuffer
    return data, info


def _name(x) -> str:
    return x.decode() if isinstance(x, (bytes, bytearray)) else str(x or "")


__all__ = ["TFLM_INT8_OPS", "build_int8", "convert_qat", "convert_float", "finalize_model", "reorder_ops", "tensor_names",
           "convert_run", "validate_for_tflm", "convert_keras"]
