"""Reading a .tflite FlatBuffer without TensorFlow: operators, tensors, layers, MACs.

Used by `convert` (the TFLM checks), `check` (input tensors by name), `arena` (largest
tensors, MACs per inference), `planner` and `export`. The FlatBuffer is read through the
TFLite schema's generated Python bindings that the pinned `tflite-micro` wheel ships
(`tflite_micro/tensorflow/lite/micro/python/schema_py_generated.py`): the object API
(`ModelT.InitFromPackedBuf`), nothing parsed by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embbert.core.errors import EmbBertError

DTYPE_BYTES = {
    "float32": 4, "float16": 2, "int32": 4, "uint8": 1, "int64": 8, "bool": 1, "int16": 2,
    "int8": 1, "float64": 8, "uint64": 8, "uint32": 4, "uint16": 2, "bfloat16": 2,
}
FLOAT_TYPES = frozenset({"float32", "float16", "float64", "bfloat16", "complex64", "complex128",
                         "float8_e4m3fn", "float8_e5m2"})


def schema():
    """The TFLite schema bindings of the tflite-micro wheel (no TensorFlow import)."""
    # lazy: 0.17 s of generated bindings, and `embbert --help` imports this module (through export)
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def _str(x) -> str:
    if x is None:
        return ""
    return x.decode("utf-8", "replace") if isinstance(x, (bytes, bytearray)) else str(x)


def _lst(x) -> list:
    return [] if x is None else [int(v) for v in x] if not isinstance(x, list) else list(x)


@dataclass
class Tensor:
    index: int
    name: str
    dtype: str
    shape: list[int]
    shape_signature: list[int]
    constant: bool
    scale: list[float] = field(default_factory=list)
    zero_point: list[int] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape or [1])) * DTYPE_BYTES.get(self.dtype, 4)

    @property
    def layer(self) -> str:
        return layer_of(self.name)


@dataclass
class Op:
    index: int
    name: str  # builtin name, or "CUSTOM(<code>)"
    custom: bool
    inputs: list[int]
    outputs: list[int]


@dataclass
class Graph:
    ops: list[Op]
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    data: bytes = b""  # the FlatBuffer it was read from

    @property
    def op_names(self) -> list[str]:
        """Operator names in first-use order."""
        out: list[str] = []
        for op in self.ops:
            if op.name not in out:
                out.append(op.name)
        return out

    def input_index(self, role: str) -> int:
        """Position (in the subgraph's input list) of the input whose name contains `role`."""
        hits = [pos for pos, t in enumerate(self.inputs) if role in self.tensors[t].name]
        if len(hits) != 1:
            names = [self.tensors[t].name for t in self.inputs]
            raise EmbBertError(f"the model has {'no' if not hits else 'several'} input named like {role!r} "
                               f"(inputs: {names})")
        return hits[0]


def read_graph(data: bytes) -> Graph:
    """Parse the first subgraph of a .tflite FlatBuffer (EmbBertError if it is not one)."""
    s = schema()
    if not isinstance(data, (bytes, bytearray)) or len(data) < 8:
        raise EmbBertError("the .tflite data is empty or truncated")
    if bytes(data[4:8]) != b"TFL3":
        raise EmbBertError("not a TFLite FlatBuffer (file identifier 'TFL3' missing): corrupt .tflite?")
    try:
        model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as exc:  # flatbuffers raises assorted errors on junk
        raise EmbBertError(f"corrupt .tflite FlatBuffer ({type(exc).__name__}: {exc})") from None
    if not model.subgraphs:
        raise EmbBertError("the .tflite model has no subgraph")
    builtin = _enum_names(s.BuiltinOperator)
    types = _enum_names(s.TensorType)
    codes: list[tuple[str, bool]] = []
    for oc in model.operatorCodes or []:
        code = max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0))
        if code == s.BuiltinOperator.CUSTOM:
            codes.append((f"CUSTOM({_str(oc.customCode)})", True))
        else:
            codes.append((builtin.get(code, f"UNKNOWN_{code}"), False))
    buffers = model.buffers or []
    sub = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sub.tensors or []):
        buf = buffers[t.buffer] if t.buffer is not None and 0 <= t.buffer < len(buffers) else None
        constant = buf is not None and ((buf.data is not None and len(buf.data) > 0) or bool(buf.size))
        q = t.quantization
        scale = [float(v) for v in (q.scale if q is not None and q.scale is not None else [])]
        zp = [int(v) for v in (q.zeroPoint if q is not None and q.zeroPoint is not None else [])]
        shape = [int(v) for v in (t.shape if t.shape is not None else [])]
        sig = [int(v) for v in (t.shapeSignature if t.shapeSignature is not None else shape)]
        tensors.append(Tensor(i, _str(t.name), types.get(int(t.type), str(t.type)).lower(), shape, sig,
                              bool(constant), scale, zp))
    ops = []
    for i, op in enumerate(sub.operators or []):
        if op.opcodeIndex >= len(codes):
            raise EmbBertError(f"corrupt .tflite: operator {i} has opcode index {op.opcodeIndex} out of range")
        name, custom = codes[op.opcodeIndex]
        ops.append(Op(i, name, custom, [int(v) for v in _lst(op.inputs)], [int(v) for v in _lst(op.outputs)]))
    return Graph(ops, tensors, [int(v) for v in _lst(sub.inputs)], [int(v) for v in _lst(sub.outputs)], bytes(data))


def layer_of(tensor_name: str) -> str:
    """The Keras layer path a converter tensor name comes from.

    Names look like `embbert_deploy/quant_encoder_0/attention/MatMul;other/name`:
    the first of the fused names, without the model prefix and the final TF op
    name, at most three levels (`quant_encoder_0/attention`)."""
    first = tensor_name.split(";")[0].strip()
    parts = [p for p in first.split("/") if p]
    if len(parts) <= 1:
        return first or "?"
    if parts[0].startswith(("embbert_", "model", "functional", "serving_default", "StatefulPartitionedCall")):
        parts = parts[1:]
    parts = parts[:-1] if len(parts) > 1 else parts
    return "/".join(parts[:3])


def op_layer(graph: Graph, op: Op) -> str:
    for t in op.outputs + op.inputs:
        if t >= 0 and not graph.tensors[t].constant:
            return graph.tensors[t].layer
    return "?"


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one operator (matrix products and convolutions; 0 for the rest)."""
    def shape(i: int) -> list[int]:
        return graph.tensors[op.inputs[i]].shape if i < len(op.inputs) and op.inputs[i] >= 0 else []

    out = graph.tensors[op.outputs[0]].shape if op.outputs else []
    n_out = int(np.prod(out)) if out else 0
    if op.name == "FULLY_CONNECTED":
        w = shape(1)
        return n_out * (w[-1] if w else 0)
    if op.name == "BATCH_MATMUL":
        a = shape(0)
        # K is the contracted dimension: the last of the left input (adj_x is never set here)
        return n_out * (a[-1] if a else 0)
    if op.name == "DEPTHWISE_CONV_2D":
        w = shape(1)  # [1, kh, kw, out_channels]
        return n_out * (w[1] * w[2] if len(w) == 4 else 0)
    if op.name == "CONV_2D":
        w = shape(1)  # [out_channels, kh, kw, in_channels]
        return n_out * (w[1] * w[2] * w[3] if len(w) == 4 else 0)
    return 0


def macs(graph: Graph) -> dict[str, Any]:
    per_op: dict[str, int] = {}
    for op in graph.ops:
        m = op_macs(graph, op)
        if m:
            per_op[op.name] = per_op.get(op.name, 0) + m
    return {"total": int(sum(per_op.values())), "per_op": per_op}


def batch_matmul_flags(data_or_graph) -> dict[int, tuple[bool, bool]]:
    """(adj_x, adj_y) of every BATCH_MATMUL, by operator index, read from the op options.

    TFLM's BATCH_MATMUL (reference and CMSIS-NN) allocates a persistent transposed copy of the
    right-hand input unless adj_y is set, and of the left-hand input when adj_x is set
    (kernels/batch_matmul.cc, InitializeTemporaries)."""
    data = data_or_graph.data if isinstance(data_or_graph, Graph) else data_or_graph
    s = schema()
    model = s.ModelT.InitFromPackedBuf(bytearray(data), 0)
    graph = read_graph(data)
    out = {}
    for op, raw in zip(graph.ops, model.subgraphs[0].operators or []):
        if op.name == "BATCH_MATMUL":
            opts = raw.builtinOptions
            out[op.index] = (bool(getattr(opts, "adjX", False)), bool(getattr(opts, "adjY", False)))
    return out


@dataclass
class ModelInfo:
    ops: list[str]  # builtin operator names, in first-use order
    inputs: dict[str, dict[str, Any]]  # "token_ids"/"segment_ids" -> details
    output: dict[str, Any]


def read_model_info(data: bytes) -> ModelInfo:
    """Operators, named inputs (with their position) and output of a .tflite FlatBuffer."""
    graph = read_graph(data)
    custom = [op.name for op in graph.ops if op.custom]
    if custom:
        raise EmbBertError(f"the model uses a custom operator ({custom[0]}); only builtin TFLM operators are supported")

    def tensor(index: int) -> dict[str, Any]:
        t = graph.tensors[index]
        return {"index": index, "name": t.name, "shape": list(t.shape), "type": t.dtype,
                "scale": t.scale[0] if t.scale else 0.0, "zero_point": t.zero_point[0] if t.zero_point else 0}

    by_role: dict[str, dict[str, Any]] = {}
    for role in ("token_ids", "segment_ids"):
        position = graph.input_index(role)  # by name, never by order; the C side then uses the position
        by_role[role] = {**tensor(graph.inputs[position]), "position": position}
    if len(graph.outputs) != 1:
        raise EmbBertError("the model must have exactly one output (the logits)")
    return ModelInfo(ops=graph.op_names, inputs=by_role, output=tensor(graph.outputs[0]))


__all__ = ["ModelInfo", "read_model_info", "Graph", "Op", "Tensor", "read_graph", "schema", "layer_of", "op_layer", "macs", "op_macs", "FLOAT_TYPES",
           "batch_matmul_flags"]
