"""C generation: the seven generated files of a converted run directory (`generated_sources`).

- model_data.h / model_data.cc   the int8 FlatBuffer as an aligned C array
- model_settings.h                L, V, labels, quantisation, arena size, special ids
- embbert_ops.h / embbert_ops.c   registers exactly the model's operators through the
                                  C interface of micro_app/src/embbert_tflm.h; int8 LOGISTIC,
                                  SOFTMAX, MEAN and ADD with the project's kernels
                                  (micro_app/src/embbert_kernels.h, `project_kernel_ops`)
- embbert_tokenizer_tables.h/.c   byte ids, BPE merges, normalisation and character-class
                                  tables (`datasets/tokenizer/ctables.py`)

The file bodies are templates in micro_app/templates/sources/ (`templates.render`); every file starts
with the tokenizer package's GENERATED_HEADER. The run directory's inputs are checked before anything
is generated. No TensorFlow is imported.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from embbert.core import layout
from embbert.core.config import EmbBertConfig
from embbert.core.errors import EmbBertError
from embbert.datasets.tokenizer import (
    CLS_ID, GENERATED_HEADER, MASK_ID, MERGES_FILE, PAD_ID, SEP_ID, UNK_ID, VOCAB_FILE, build_tokenizer_tables,
    tokenizer_sources,
)

from .graph import Graph, ModelInfo, read_graph, read_model_info
from .templates import hand_written, render


def resolver_methods() -> dict[str, str]:
    """Builtin operator -> `MicroMutableOpResolver` method, from the table in micro_app/src/embbert_tflm.cc (its
    owner: `EMBBERT_TFLM_OP(name, Method)`)."""
    shim = hand_written("src/embbert_tflm.cc")
    return {name.upper(): method for name, method in re.findall(r"^EMBBERT_TFLM_OP\((\w+), (Add\w+)\)$", shim, re.M)}


def supported_ops() -> dict[str, str]:
    """Builtin operator name -> registration function (TFLM's stock kernel), as declared in
    micro_app/src/embbert_tflm.h (its owner)."""
    header = hand_written("src/embbert_tflm.h")
    return {fn.upper(): f"embbert_tflm_add_{fn}" for fn in re.findall(r"^int embbert_tflm_add_(\w+)\(void\);", header, re.M)
            if not fn.endswith("_int8")}


def project_kernel_functions() -> dict[str, str]:
    """Builtin operator name -> the registration function with the project's kernel (micro_app/src/embbert_kernels.h)
    for int8 tensors: `embbert_tflm_add_<op>_int8`, as declared in micro_app/src/embbert_tflm.h."""
    header = hand_written("src/embbert_tflm.h")
    return {fn.upper(): f"embbert_tflm_add_{fn}_int8"
            for fn in re.findall(r"^int embbert_tflm_add_(\w+)_int8\(void\);", header, re.M)}


#: The tensors of each operator that must be int8 for the project's kernel: (input positions, output positions).
_INT8_TENSORS = {"LOGISTIC": ((0,), (0,)), "SOFTMAX": ((0,), (0,)), "MEAN": ((0,), (0,)), "ADD": ((0, 1), (0,))}


def project_kernel_ops(graph: Graph) -> list[str]:
    """The model's operators that the packages register with the project's kernels: LOGISTIC, SOFTMAX, MEAN and
    ADD when every instance's data tensors are int8 (the kernels' domain); the others keep TFLM's stock kernel.
    In first-use order."""
    known = project_kernel_functions()
    ok: dict[str, bool] = {}
    for op in graph.ops:
        if op.name not in known or op.name not in _INT8_TENSORS:
            continue
        ins, outs = _INT8_TENSORS[op.name]
        idx = [op.inputs[i] for i in ins if i < len(op.inputs)] + [op.outputs[i] for i in outs if i < len(op.outputs)]
        int8 = len(idx) == len(ins) + len(outs) and all(i >= 0 and graph.tensors[i].dtype == "int8" for i in idx)
        ok[op.name] = ok.get(op.name, True) and int8
    return [name for name in graph.op_names if ok.get(name)]


def model_data_sources(data: bytes, source: str) -> tuple[str, str]:
    """model_data.h / .cc: the FlatBuffer byte for byte, 16 bytes a line."""
    hdr = GENERATED_HEADER.format(source=source)
    lines = ["  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16]) + "," for i in range(0, len(data), 16)]
    return (hdr + render("sources/model_data.h.in"),
            hdr + render("sources/model_data.cc.in", bytes="\n".join(lines), length=len(data)))


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').encode("ascii", "backslashreplace").decode() + '"'


def model_settings_source(config: EmbBertConfig, info: ModelInfo, arena: dict[str, Any],
                          vocab_size: int, source: str, arena_bytes: int | None = None) -> str:
    """model_settings.h; the arena is `arena_bytes` (default: the report's recommended size), rounded up to 16."""
    tok, seg, out = info.inputs["token_ids"], info.inputs["segment_ids"], info.output
    L = config.max_length
    for role, t in (("token_ids", tok), ("segment_ids", seg)):
        if t["type"] != "int32":
            raise EmbBertError(f"input {role} must be int32, the model has {t['type']}")
        if t["shape"] and t["shape"][-1] != L:
            raise EmbBertError(f"input {role} has shape {t['shape']}, config max_length is {L}")
    if out["type"] != "int8":
        raise EmbBertError(f"the output must be int8 (full-int8 model), the model has {out['type']}")
    if out["shape"] and out["shape"][-1] != config.num_labels:
        raise EmbBertError(f"output shape {out['shape']} does not match {config.num_labels} labels")
    names = list(config.label_names) or ([f"label_{i}" for i in range(config.num_labels)]
                                         if config.num_labels > 1 else ["score"])
    if len(names) != config.num_labels:
        raise EmbBertError(f"config has {len(names)} label names for {config.num_labels} labels")
    chosen = int(arena["recommended_arena_bytes"]) if arena_bytes is None else int(arena_bytes)
    host = host_arena_bytes(arena, chosen)
    extra = ", ".join(f"{k}={arena[k]}" for k in ("min_arena_bytes", "pointer_savings_bytes", "margin_bytes",
                                                  "model_bytes") if k in arena)
    origin = "--arena-bytes" if chosen != int(arena["recommended_arena_bytes"]) else "recommended_arena_bytes"
    return GENERATED_HEADER.format(source=source) + render(
        "sources/model_settings.h.in", max_length=L, vocab_size=vocab_size, num_labels=config.num_labels,
        is_regression=1 if config.num_labels == 1 else 0, origin=origin, chosen=chosen,
        recommended=arena["recommended_arena_bytes"], extra=extra, host_arena=(host + 15) // 16 * 16,
        arena=(chosen + 15) // 16 * 16, pad_id=PAD_ID, unk_id=UNK_ID, cls_id=CLS_ID, mask_id=MASK_ID, sep_id=SEP_ID,
        token_ids_input=tok["position"], segment_ids_input=seg["position"],
        token_ids_scale=repr(tok["scale"]), token_ids_zero_point=tok["zero_point"],
        segment_ids_scale=repr(seg["scale"]), segment_ids_zero_point=seg["zero_point"],
        output_scale=repr(out["scale"]), output_zero_point=out["zero_point"],
        label_names=",\n    ".join(_c_string(n) for n in names))


def ops_sources(info: ModelInfo, source: str, project_ops: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """embbert_ops.h/.c: `embbert_register_ops()` registers exactly the model's operators; those in `project_ops`
    (`project_kernel_ops`: int8 LOGISTIC/SOFTMAX/MEAN/ADD) through `embbert_tflm_add_<op>_int8`, the project's
    kernels unless the TFLM side is compiled with -DEMBBERT_STOCK_KERNELS."""
    known = supported_ops()
    missing = [op for op in info.ops if op not in known]
    if missing:
        raise EmbBertError(f"the model uses {', '.join(missing)}, which micro_app/src/embbert_tflm.h does not register; "
                           f"supported: {', '.join(sorted(known))}")
    project = project_kernel_functions()
    hdr = GENERATED_HEADER.format(source=source)

    def call(op: str) -> str:
        if op in project_ops and op in project:
            return f"  if ({project[op]}() != 0) return -1; /* {op}: int8, the project's kernel */"
        return f"  if ({known[op]}() != 0) return -1; /* {op} */"
    calls = "\n".join(call(op) for op in info.ops)
    return (hdr + render("sources/embbert_ops.h.in", num_ops=len(info.ops)),
            hdr + render("sources/embbert_ops.c.in", calls=calls))


def _recorded_sha256(run_dir: Path) -> str:
    path = run_dir / layout.INT8_SHA256
    if not path.is_file():
        raise EmbBertError(f"{path}: missing (no hash recorded at conversion); re-run `embbert convert {run_dir}`")
    fields = path.read_text(encoding="utf-8", errors="replace").split()
    if not fields or len(fields[0]) != 64 or any(c not in "0123456789abcdef" for c in fields[0].lower()):
        raise EmbBertError(f"{path}: not a sha256 line; re-run `embbert convert {run_dir}`")
    return fields[0].lower()


def _read_arena_report(arena_path: Path, model_len: int, arena_bytes: int | None) -> tuple[dict[str, Any], int]:
    """The report, and the arena to export for a 32-bit board: refused below the board's minimum (the
    measured host minimum less the derived 32-bit saving, `arena.pointer_savings`)."""
    try:
        arena = json.loads(arena_path.read_text(encoding="utf-8"))
        recommended, minimum = int(arena["recommended_arena_bytes"]), int(arena["min_arena_bytes"])
        savings = int(arena.get("pointer_savings_bytes", 0))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise EmbBertError(f"{arena_path}: no recommended_arena_bytes / min_arena_bytes; "
                           f"re-run `embbert check {arena_path.parent} --arena`") from None
    if "model_bytes" in arena and arena["model_bytes"] != model_len:
        raise EmbBertError(f"{arena_path}: measured a model of {arena['model_bytes']} bytes, {layout.INT8_MODEL} has "
                           f"{model_len}; re-run `embbert check {arena_path.parent} --arena`")
    if minimum < 16 or not 0 <= savings < minimum:
        raise EmbBertError(f"{arena_path}: min_arena_bytes {minimum} is not a measured TFLM arena; "
                           f"re-run `embbert check {arena_path.parent} --arena`")
    chosen = recommended if arena_bytes is None else int(arena_bytes)
    what = "recommended_arena_bytes in the report" if arena_bytes is None else "--arena-bytes"
    board_minimum = minimum - savings
    if chosen < board_minimum:
        where = f"measured on the host, less {savings} bytes for 32-bit pointers" if savings else "measured"
        raise EmbBertError(f"{what} is {chosen} bytes, below the minimum TFLM arena of {board_minimum} bytes ({where}; "
                           f"{arena_path}): AllocateTensors() would fail on the device")
    return arena, chosen


def host_arena_bytes(arena: dict[str, Any], chosen: int) -> int:
    """The arena of a 64-bit host build of the exported app: never below the measured host minimum."""
    if chosen == int(arena["recommended_arena_bytes"]):
        return int(arena.get("host_arena_bytes", chosen))
    return max(chosen, int(arena["min_arena_bytes"]))  # --arena-bytes: the board's figure, raised to the host's minimum


def generated_sources(run_dir: str | os.PathLike, arena_bytes: int | None = None) -> tuple[dict[str, str], dict]:
    """The seven generated files of RUN_DIR (name -> text) and facts for the manifest. Writes nothing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EmbBertError(f"{run_dir}: not a directory (expected a run directory)")
    config = EmbBertConfig.load(run_dir)
    model_path, arena_path = run_dir / layout.INT8_MODEL, run_dir / layout.ARENA_JSON
    if not model_path.is_file():
        raise EmbBertError(f"{model_path}: missing; run `embbert convert {run_dir}` first")
    if not arena_path.is_file():
        raise EmbBertError(f"{arena_path}: missing; run `embbert convert {run_dir}` (or `embbert check {run_dir} "
                           "--arena`) first")
    data = model_path.read_bytes()
    recorded = _recorded_sha256(run_dir)
    digest = hashlib.sha256(data).hexdigest()
    if digest != recorded:
        raise EmbBertError(f"{model_path}: sha256 {digest[:16]}... differs from the hash recorded at conversion "
                           f"({recorded[:16]}...); the model changed after `embbert convert`: re-run `embbert convert {run_dir}`")
    arena, chosen = _read_arena_report(arena_path, len(data), arena_bytes)
    tok_dir = config.tokenizer_dir(run_dir)
    info = read_model_info(data)
    project_ops = project_kernel_ops(read_graph(data))
    tables = build_tokenizer_tables(tok_dir)
    if tables.vocab_size > config.model.vocab_size:
        # A smaller tokenizer is fine (a small corpus may not fill the preset's table: those rows are unused).
        raise EmbBertError(f"tokenizer has {tables.vocab_size} ids, more than the model's {config.model.vocab_size}")
    source = f"{run_dir.name}/{layout.INT8_MODEL}"
    files: dict[str, str] = {}
    files["model_data.h"], files["model_data.cc"] = model_data_sources(data, source)
    files["model_settings.h"] = model_settings_source(config, info, arena, tables.vocab_size, source, chosen)
    files["embbert_ops.h"], files["embbert_ops.c"] = ops_sources(info, source, project_ops)
    files["embbert_tokenizer_tables.h"], files["embbert_tokenizer_tables.c"] = tokenizer_sources(
        tables, f"{tok_dir.name}/ ({VOCAB_FILE}, {MERGES_FILE})")
    facts = {"run": run_dir.name, "task": config.task, "preset": config.preset, "max_length": config.max_length,
             "labels": list(config.label_names), "model_file": layout.INT8_MODEL, "model_bytes": len(data),
             "model_sha256": digest, "ops": info.ops, "project_kernel_ops": project_ops, "min_arena_bytes": int(arena["min_arena_bytes"]),
             "tensor_arena_bytes": (chosen + 15) // 16 * 16}
    return files, facts


__all__ = ["generated_sources", "model_data_sources", "model_settings_source", "ops_sources", "supported_ops",
           "project_kernel_functions", "project_kernel_ops", "resolver_methods", "host_arena_bytes"]
