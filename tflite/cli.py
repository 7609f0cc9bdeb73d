"""Sub-commands `convert`, `check` (and `export`, from tflite/export.py)."""
from __future__ import annotations

import json
from pathlib import Path

from embbert.core import layout
from embbert.core.args import positive_int
from embbert.core.config import DEFAULTS
from embbert.datasets.loading import check_task_data, data_dir_arg


DATA_DIR_HELP = ("data directory in hub layout (default: the one recorded in RUN_DIR/config.json, else "
                 "$EMBBERT_DATA_DIR); a new one is checked (the task's split files are there) and only then "
                 "recorded in config.json")


def _preflight(args, needed: tuple[str, ...]) -> None:
    """Check RUN_DIR and the data directory before TensorFlow is imported; record a new --data-dir."""
    from embbert.core import preflight
    from embbert.core.errors import UsageError

    config = preflight.run_dir(args.run_dir, needed)
    if args.data_dir is not None:
        data_dir = data_dir_arg(args.data_dir)
        check_task_data(config.task, data_dir)  # the task's splits are there: validated before anything is recorded
        if data_dir != config.data_dir:
            config.replace(data_dir=data_dir).save(args.run_dir)  # atomic; the documented record of --data-dir
    elif config.data_dir and not Path(config.data_dir).is_dir():
        raise UsageError(f"{args.run_dir}/config.json: recorded data directory {config.data_dir} not found; "
                         "give --data-dir")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert",
        help="QAT model -> full-int8 model_int8.tflite (+ model_float32.tflite), TFLM checks, arena report",
        description=(
            "Convert the QAT model of RUN_DIR (deployable graph: batch 1, static length) to a full-int8 "
            "RUN_DIR/model_int8.tflite, calibrated on the task's train split; refuse it unless every operator "
            "has a TFLM int8 kernel and no tensor is float or dynamic. Also writes RUN_DIR/model_float32.tflite "
            "and, unless --no-arena, the arena report (RUN_DIR/arena_report.json/.md/.png: exact minimal TFLM "
            "arena, recommended arena, board fit) that `embbert export` needs."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `embbert train`")
    p.add_argument("--max-calibration", type=positive_int, default=DEFAULTS.max_calibration, metavar="N",
                   help=f"representative examples from the train split (default {DEFAULTS.max_calibration})")
    p.add_argument("--arena-budget", type=positive_int, default=None, metavar="BYTES",
                   help="RAM for the tensor arena: keep the graph options (fewest MACs first) whose recommended "
                   "arena fits, or fail naming the smallest reachable arena")
    p.add_argument("--no-arena", action="store_true", help="skip the arena report")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.set_defaults(func=cmd_convert)

    c = subparsers.add_parser(
        "check",
        help="accuracy of float / QAT / int8 TFLite / int8 TFLM on the test split -> check.json",
        description=(
            "Evaluate on the task's test split the float Keras model, the QAT Keras model, the int8 model in the "
            "TFLite interpreter (reference kernels) and in the TFLM interpreter; report the agreement of TFLM "
            "with TFLite and the largest logit difference in LSB. Writes RUN_DIR/check.json. "
            "The arena report is written by `embbert convert` (or here with --arena)."
        ),
    )
    c.add_argument("run_dir", metavar="RUN_DIR", help="run directory with model_int8.tflite")
    c.add_argument("--max-examples", type=positive_int, default=None, metavar="N",
                   help="use at most N test examples")
    c.add_argument("--jobs", type=positive_int, default=None, metavar="N",
                   help="worker processes for the TFLite and TFLM interpreters (default: every usable CPU; "
                   "1: all in this process). A set that would take both interpreters under a few seconds "
                   "stays in this process; the figures are identical whatever N, only the time changes. "
                   "Measured on a shared 2-core machine: the same CPU time, wall time 1.46x shorter on 5,000 "
                   "IMDb texts (L=256), none on emotion's 2,000 under a rising load (docs/conversion.md)")
    c.add_argument("--arena", action="store_true", help="also (re)write the arena report")
    c.add_argument("--json", action="store_true", help="print the report as JSON")
    c.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    c.set_defaults(func=cmd_check)

    from embbert.tflite.export import register_export

    register_export(subparsers)


def cmd_convert(args) -> int:
    _preflight(args, (layout.QAT_WEIGHTS,))
    from embbert.tflite.convert import convert_run

    summary = convert_run(args.run_dir, max_calibration=args.max_calibration,
                          arena_budget=getattr(args, "arena_budget", None))
    if not args.no_arena:
        from embbert.tflite.arena import arena_report

        arena = arena_report(args.run_dir)
        summary["arena"] = {k: arena[k] for k in ("min_arena_bytes", "recommended_arena_bytes", "margin_bytes",
                                                  "total_footprint_bytes", "macs", "host_latency_ms")}
        summary["arena"]["boards"] = {b["name"]: b["fits"] for b in arena["boards"]}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"wrote {summary['int8_model']} ({summary['int8_bytes']} bytes)")
    if summary["float32_model"]:
        print(f"wrote {summary['float32_model']} ({summary['float32_bytes']} bytes)")
    print(f"ops ({len(summary['ops'])}): {', '.join(summary['ops'])}; TFLM checks passed")
    if "arena" in summary:
        a = summary["arena"]
        fits = ", ".join(f"{k} {'fits' if v else 'does NOT fit'}" for k, v in a["boards"].items())
        print(f"arena: minimum {a['min_arena_bytes']} bytes, recommended {a['recommended_arena_bytes']} "
              f"(margin {a['margin_bytes']}); footprint {a['total_footprint_bytes']} bytes; {fits}")
        print(f"wrote {Path(args.run_dir) / layout.ARENA_JSON}, .md, .png")
    if summary.get("budget"):
        b = summary["budget"]
        print(f"arena budget {b['budget_bytes']} bytes: kept graph options with a recommended arena of "
              f"{b['recommended_arena_bytes']} bytes")
    return 0


def cmd_check(args) -> int:
    _preflight(args, (layout.INT8_MODEL,))
    from embbert.tflite.check import check_run, format_table

    report = check_run(args.run_dir, max_examples=args.max_examples, jobs=args.jobs)
    if args.arena:
        from embbert.tflite.arena import arena_report

        report["arena"] = {k: v for k, v in arena_report(args.run_dir).items()
                           if k in ("min_arena_bytes", "recommended_arena_bytes", "total_footprint_bytes")}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
        print(f"wrote {Path(args.run_dir) / layout.CHECK}")
    return 0
