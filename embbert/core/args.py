"""Argument types and the parser class every command uses (one-line errors, exit code 2)."""
from __future__ import annotations

import argparse
import os

from .errors import UsageError


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        program, _, command = self.prog.partition(" ")  # "embbert: error: bench fuzz: ...", as every other error
        self.exit(2, f"{program}: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """Also records which options the command line gave (`given_options`), defaults aside."""
        self._given: set[str] = set()
        namespace, extras = super().parse_known_args(args, namespace)
        namespace.given_options = frozenset(getattr(namespace, "given_options", frozenset()) | self._given)
        return namespace, extras

    def _get_values(self, action, arg_strings):
        # argparse calls this for every argument present on the command line (never for a default)
        getattr(self, "_given", set()).add(action.dest)
        return super()._get_values(action, arg_strings)


def given_options(args) -> frozenset:
    """The `dest` names of the options written on the command line (not left at their defaults)."""
    return getattr(args, "given_options", frozenset())


def _number(cast, valid, expected: str):
    """An argparse type: `cast` the text and check it, else a one-line 'expected ...' error."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not valid(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    parse.__name__ = expected.replace(" ", "_")
    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0 and v != float("inf"), "a positive number")
non_negative_float = _number(float, lambda v: 0 <= v < float("inf"), "a number >= 0")


def check_tf_config() -> dict:
    """$TF_CONFIG for `--strategy multi-worker`: a cluster of workers and this process's place in it."""
    import json

    text = os.environ.get("TF_CONFIG")
    if not text:
        raise UsageError("--strategy multi-worker needs $TF_CONFIG (cluster and task; see docs/training.md)")
    try:
        conf = json.loads(text)
        workers = conf["cluster"]["worker"]
        kind, index = conf["task"]["type"], conf["task"]["index"]
    except (ValueError, KeyError, TypeError):
        raise UsageError('$TF_CONFIG: expected JSON {"cluster": {"worker": ["host:port", ...]}, '
                         '"task": {"type": "worker", "index": i}}') from None
    if not isinstance(workers, list) or not workers or not all(isinstance(w, str) and ":" in w for w in workers):
        raise UsageError("$TF_CONFIG: cluster.worker must be a non-empty list of \"host:port\" strings")
    if kind != "worker" or not isinstance(index, int) or not 0 <= index < len(workers):
        raise UsageError(f"$TF_CONFIG: task must be {{\"type\": \"worker\", \"index\": 0..{len(workers) - 1}}}, "
                         f"got type {kind!r} index {index!r}")
    return conf


def add_recipe_arguments(p: argparse.ArgumentParser, recipe, *, why_lr: str = "") -> None:
    """--epochs, --qat-epochs, --learning-rate, --qat-learning-rate, --batch-size, --seed with the
    defaults of a `TrainConfig` recipe (`core.config.PAPER_RECIPE` or `QUICK_RECIPE`)."""
    p.add_argument("--epochs", type=positive_int, default=recipe.epochs,
                   help=f"float epochs, >= 1 (default {recipe.epochs})")
    p.add_argument("--qat-epochs", type=non_negative_int, default=recipe.qat_epochs,
                   help=f"quantisation-aware epochs (default {recipe.qat_epochs})")
    p.add_argument("--learning-rate", type=positive_float, default=recipe.learning_rate,
                   help=f"float AdamW learning rate (default {recipe.learning_rate:g}{why_lr})")
    p.add_argument("--qat-learning-rate", type=positive_float, default=recipe.qat_learning_rate,
                   help=f"QAT learning rate (default {recipe.qat_learning_rate:g})")
    p.add_argument("--batch-size", type=positive_int, default=recipe.batch_size,
                   help=f"batch size (default {recipe.batch_size})")
    p.add_argument("--seed", type=non_negative_int, default=recipe.seed, help=f"random seed, >= 0 (default {recipe.seed})")


def recipe_from_args(args, **extra):
    """The `TrainConfig` of the flags `add_recipe_arguments` declared (plus `extra` settings)."""
    from .config import TrainConfig

    return TrainConfig(epochs=args.epochs, qat_epochs=args.qat_epochs, learning_rate=args.learning_rate,
                       qat_learning_rate=args.qat_learning_rate, batch_size=args.batch_size, seed=args.seed, **extra)
