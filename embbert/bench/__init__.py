"""`embbert bench`: every benchmark of the project, one entry point.

* `accuracy`    (accuracy.py)    train, quantise, convert and check the TinyNLP and GLUE tasks;
* `train-speed` (train_speed.py) float vs QAT training steps per second;
* `memory`      (memory.py)      bytes and arena of the deployed graph, lever by lever;
* `footprint`, `fuzz` (footprint.py) Cortex-M4 flash of the C parts; libFuzzer on the tokenizer;
* `latency`     (latency.py)     instructions per operator and per inference on an emulated Cortex-M4;
* `arch`        (arch.py)        EmbBERT and the baseline architectures: metric, memory, MACs, Pareto front;
* `record`      (record.py)      the benchmark of record (docs/results.md): every local task, pretrained and scratch;
* `curves`      (curves.py)      learning curves, pretrained start vs scratch.
"""
from __future__ import annotations

from . import accuracy, arch, curves, footprint, latency, memory, record, train_speed


def register(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks (record, accuracy, arch, curves, train-speed, memory, footprint, fuzz, latency)",
                       description="Benchmarks. Results go to an output folder of the benchmark; the project's docs/ "
                       "only when named explicitly (--docs-dir docs).")
    bsub = b.add_subparsers(dest="bench_command", metavar="<benchmark>", parser_class=type(b))
    bsub.required = True
    for module in (record, accuracy, arch, curves, train_speed, memory, footprint, latency):
        module.register(bsub)


__all__ = ["register"]
