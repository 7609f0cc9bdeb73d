"""Argument types and the parser class every command uses (one-line errors, exit code 2)."""
from __future__ import annotations

import argparse
import os

from .config import TrainConfig
from .errors import UsageError


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        program, _, command = self.prog.partition(" ")  # "embbert: error: bench fuzz: ...", as every other error
        self.exit(2, f"{program}: error: {command + ': ' if command else ''}{message} (see {self.prog} --help)\n")

    def add_argument(self, *args, **kwargs):  # type: ignore[override]
        """argparse's add_argument; also remembers the option's `dest` for `given_options`."""
        action = super().add_argument(*args, **kwargs)
        self.__dict__.setdefault("option_dests", []).append(action.dest)
        return action

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        """Also records which options the command line gave (`given_options`), defaults aside.

        Public argparse only: the arguments are parsed a second time onto a namespace that already
        holds a marker for every option of this parser; argparse leaves an attribute that exists
        alone unless the command line sets it ("defaults are applied only to attributes not already
        present"), so an option still holding the marker was not given. A sub-command's parser does
        the same for its own options and hands its set up through the namespace.
        """
        namespace, extras = super().parse_known_args(args, namespace)
        dests = [d for d in self.__dict__.get("option_dests", ()) if d not in ("help", argparse.SUPPRESS)]
        probe = argparse.Namespace(**{d: _NOT_GIVEN for d in dests})
        probe, _ = super().parse_known_args(args, probe)
        given = {d for d in dests if getattr(probe, d, _NOT_GIVEN) is not _NOT_GIVEN}
        namespace.given_options = frozenset(getattr(namespace, "given_options", frozenset())
                                            | getattr(probe, "given_options", frozenset()) | given)
        return namespace, extras


#: The marker of an option the command line did not give (see `OneLineParser.parse_known_args`).
_NOT_GIVEN = object()


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


def add_recipe_arguments(p: argparse.ArgumentParser, recipe, *, why_lr: str = "", seed: bool = True) -> None:
    """--epochs, --qat-epochs, --learning-rate, --qat-learning-rate, --batch-size and (`seed`) --seed with the
    defaults of a `TrainConfig` recipe (`core.config.PAPER_RECIPE` or `QUICK_RECIPE`); a command with a list
    of seeds of its own leaves --seed out."""
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
    if seed:
        p.add_argument("--seed", type=non_negative_int, default=recipe.seed,
                       help=f"random seed, >= 0 (default {recipe.seed})")


def recipe_from_args(args, **extra):
    """The `TrainConfig` of the flags `add_recipe_arguments` declared (plus `extra` settings)."""
    return TrainConfig(epochs=args.epochs, qat_epochs=args.qat_epochs, learning_rate=args.learning_rate,
                       qat_learning_rate=args.qat_learning_rate, batch_size=args.batch_size, seed=args.seed, **extra)
