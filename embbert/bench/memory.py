"""`embbert bench memory`: docs/memory.md's lever table, every row measured on a converted graph."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from embbert.core import preflight
from embbert.core import layout
from embbert.core.args import positive_int
from embbert.core.config import EmbBertConfig
from embbert.datasets.pipeline import encoded_split
from embbert.keras_model.forms import PLAIN
from embbert.tflite.graph import macs, read_graph

#: docs/memory.md's rows: the levers added one by one to the plain graph (the operator order last).
_LEVERS = PLAIN.but(transposed_keys=True, first_token_only=True, causal_valid=True, strip_names=True, offline_plan=True)
LEVERS = [
    ("plain graph (training form, batch 1)", PLAIN),
    ("+ context on pre-transposed keys", PLAIN.but(transposed_keys=True)),
    ("+ last layer on token 0", PLAIN.but(transposed_keys=True, first_token_only=True)),
    ("+ causal conv: zero steps (PAD) + VALID k taps", PLAIN.but(transposed_keys=True, first_token_only=True,
                                                                 causal_valid=True)),
    ("+ names stripped", PLAIN.but(transposed_keys=True, first_token_only=True, causal_valid=True, strip_names=True)),
    ("+ offline memory plan (if it pays)", _LEVERS),
    ("+ operators reordered (default graph)", _LEVERS.but(schedule=True)),
    ("+ position path as a constant", _LEVERS.but(schedule=True, constant_positions=True)),
    ("  same, SAME-padded conv", _LEVERS.but(schedule=True, constant_positions=True, causal_valid=False)),
    ("+ attention in 4 query blocks", _LEVERS.but(schedule=True, query_blocks=4)),
    ("  same, SAME-padded conv", _LEVERS.but(schedule=True, query_blocks=4, causal_valid=False)),
]


def lever_table(run_dir, lengths, *, max_calibration: int = 100, out=None) -> list[dict[str, Any]]:
    """docs/memory.md's table: the run's QAT model converted at each length with the levers added one
    by one (each row measured: FlatBuffer bytes, exact minimal arena, its persistent / shared split,
    recommended arena, MACs). Prints one JSON line per row (and appends it to `out`)."""
    from embbert.keras_model.model import load_model  # lazy: TensorFlow
    # lazy: these load TFLM's runtime (0.2 s), and `embbert --help` imports this module
    from embbert.tflite.arena import margin_for, pointer_savings, recommended_arena
    from embbert.tflite.convert import build_int8
    from embbert.tflite.probe import minimal_arena, recorded_allocations

    run_dir = Path(run_dir)
    base = EmbBertConfig.load(run_dir)
    rows = []
    for length in lengths:
        config = dataclasses.replace(base, max_length=int(length))
        tok, seg, _, _ = encoded_split(run_dir, config, "train", max_calibration)

        def rep():
            for i in range(tok.shape[0]):
                yield {"token_ids": tok[i:i + 1], "segment_ids": seg[i:i + 1]}

        qat = load_model(run_dir, qat=True, config=config)
        for label, form in LEVERS:
            data, info = build_int8(qat, config, rep, form)
            graph = read_graph(data)
            minimum = minimal_arena(data)
            rec = recorded_allocations(data, minimum)
            row = {"L": int(length), "lever": label, "model_bytes": len(data), "min_arena_bytes": minimum,
                   "persistent_bytes": rec["persistent_bytes"], "shared_bytes": rec["non_persistent_bytes"],
                   "margin_bytes": margin_for(minimum, graph), "pointer_savings_bytes": pointer_savings(graph),
                   "recommended_arena_bytes": recommended_arena(minimum, graph), "macs": macs(graph)["total"],
                   "plan": info.get("plan")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            if out is not None:
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def _cmd_memory(args) -> int:
    config = preflight.run_dir(args.run_dir, (layout.QAT_WEIGHTS,))
    for length in args.lengths:  # before TensorFlow: a length the preset cannot take
        preflight.max_length(length, config.preset, "--lengths")
    lever_table(args.run_dir, args.lengths, max_calibration=args.max_calibration, out=args.out)
    return 0


def register(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "memory", help="FlatBuffer bytes, exact arena and MACs of a run's graph with each memory lever added",
        description="Convert the run's QAT model at each length with the graph options of docs/memory.md added one "
        "by one; every row is measured (FlatBuffer bytes, exact minimal TFLM arena, persistent/shared split, "
        "recommended arena, MACs). Prints one JSON line per row.")
    p.add_argument("run_dir", help="run directory with a QAT model (`embbert train`)")
    p.add_argument("--lengths", type=positive_int, nargs="+", default=[256, 128, 64], help="sequence lengths (default 256 128 64)")
    p.add_argument("--max-calibration", type=positive_int, default=100, help="calibration examples (default 100)")
    p.add_argument("--out", default=None, help="also append the JSON lines to this file")
    p.set_defaults(func=_cmd_memory)
