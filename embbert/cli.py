"""The `embbert` console command: the top of the package (it imports every stage, nothing imports it).

Each stage's package adds its own sub-commands through a `register(subparsers)`
function (its `cli` module), so the command tree follows the folder path:
datasets -> keras_model -> tflite -> micro_app; `run` and `bench` (this package) use
every stage. Heavy imports (TensorFlow) happen only inside the command functions, so
`embbert --help` is instant.

Errors: every `EmbBertError` becomes one line on stderr and a non-zero exit;
argument errors exit with 2; nothing prints a traceback unless EMBBERT_DEBUG=1.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import sys
import threading
from typing import Sequence

from embbert import __version__, bench, run, tune
from embbert.core.args import OneLineParser
from embbert.core.errors import EmbBertError
from embbert.datasets import cli as datasets_cli
from embbert.keras_model import cli as keras_model_cli
from embbert.tflite import cli as tflite_cli

#: What contributes sub-commands, in the order of the data path.
COMMAND_MODULES = (
    datasets_cli,  # data list, tokenizer train/encode
    keras_model_cli,  # model summary, pretrain, train
    tflite_cli,  # convert, check, export
    bench,  # bench ...
    run,  # run (the whole path)
    tune,  # tune (the best model for a board)
)


#: TensorFlow start-up lines on stderr that say nothing about the run (no GPU, oneDNN, absl init).
TF_NOISE = re.compile(
    r"absl::InitializeLog|oneDNN custom operations|cudart_stub|cuda_platform|cuInit|"
    r"cuda_(blas|dnn|fft)|computation placer|TF-TRT|rebuild TensorFlow with|"
    r"AVX|tensorflow/core/util/port|Statistics for quantized inputs|oneDNN supports DT_INT64|"
    r"^\s*$"
)


@contextlib.contextmanager
def filtered_stderr(pattern: re.Pattern = TF_NOISE):
    """Pass the C-level stderr (fd 2) through a filter that drops TensorFlow's start-up noise.

    Live: every other line goes straight on to the real stderr. Every descriptor and file
    object the helper thread uses is opened here, before the thread starts, so a command
    that ends at once cannot close them under it; the thread itself never raises (a closed
    or broken stderr only stops the copying, the pipe is still drained).
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:  # no fd 2 to filter
        yield
        return
    try:
        read_end, write_end = os.pipe()
        src = os.fdopen(read_end, "rb")
        dst = os.fdopen(os.dup(saved), "wb", buffering=0)
    except OSError:
        os.close(saved)
        yield
        return

    def pump() -> None:
        writable = True
        try:
            for line in src:
                if writable and not pattern.search(line.decode("utf-8", "replace")):
                    try:
                        dst.write(line)
                    except (OSError, ValueError):  # stderr closed or broken: keep draining, say nothing
                        writable = False
        except BaseException:  # noqa: BLE001 - a helper thread must never print a traceback
            pass
        finally:
            for f in (src, dst):
                with contextlib.suppress(BaseException):
                    f.close()

    os.dup2(write_end, 2)
    os.close(write_end)
    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end (unless a child holds it): the pump sees EOF
        os.close(saved)
        thread.join(timeout=10)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="embbert",
        description=(
            "EmbBERT-Micro: train a tiny BERT-style text classifier with quantisation-aware "
            "training, convert it to a full-int8 .tflite, check it with TFLite and TFLM, and "
            "export a TensorFlow Lite Micro application."
        ),
        epilog="Stages: data/tokenizer -> pretrain -> train -> convert -> check -> export; "
        "`embbert run` does the whole path. `embbert <command> --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"embbert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=OneLineParser)
    sub.required = True
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _stdout_closed() -> bool:
    """True when stdout is a pipe or socket whose reader has gone (`embbert ... | head`)."""
    try:
        import select

        fd = sys.__stdout__.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        return any(ev & select.POLLERR for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush does not report the broken pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError):
        pass


#: Exit status of a command whose reader closed stdout (128 + SIGPIPE, as a shell reports it).
EXIT_CLOSED_STDOUT = 141


def _closed_stdout() -> bool:
    """True when the command was started with its stdout closed (`embbert ... >&-`): Python then has no
    sys.stdout, and the next file the command opened would take descriptor 1."""
    return sys.stdout is None


#: What to do about an operating-system error, by errno (the error's own text says what went wrong).
OS_REMEDY = {
    errno.ENOSPC: "free some space (or write elsewhere) and run the command again",
    errno.EDQUOT: "free some space (or write elsewhere) and run the command again",
    errno.EACCES: "check its permissions, or choose a path you can use",
    errno.EPERM: "check its permissions, or choose a path you can use",
    errno.EROFS: "the file system is read-only: choose another path",
    errno.EISDIR: "give a file path, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EEXIST: "a part of the path is in the way: choose another path",
    errno.ENOENT: "check the path",
}


def describe_error(exc: BaseException) -> str | None:
    """One line for an error that no check turned into an `EmbBertError` (None: no better words than its type).

    An operating-system error names its file (both files of a rename) and what to do; a decoding
    error says which bytes; the caller adds the file where it knows it."""
    if isinstance(exc, OSError) and exc.errno is not None:
        what = exc.strerror or os.strerror(exc.errno)
        files = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        remedy = OS_REMEDY.get(exc.errno)
        where = files or "standard output or an output file"
        return f"{where}: {what}" + (f"; {remedy}" if remedy else "")
    if isinstance(exc, UnicodeDecodeError):
        return (f"an input file is not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
                "save it as UTF-8")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    debug = os.environ.get("EMBBERT_DEBUG") == "1"
    if _closed_stdout():
        print("embbert: error: standard output is closed (>&-); redirect it to a file or to /dev/null instead",
              file=sys.stderr)
        return 1
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        with filtered_stderr():
            result = args.func(args)
            try:
                sys.stdout.flush()
            except OSError as exc:
                if isinstance(exc, BrokenPipeError):
                    raise
                _silence_stdout()  # what is still buffered must not fail again at exit
                raise EmbBertError(f"cannot write to standard output: {exc.strerror or exc}; "
                                   "redirect it to a file on a device with space, or to /dev/null") from None
    except EmbBertError as exc:
        print(f"embbert: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("embbert: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if _stdout_closed():  # the reader of our output went away: end quietly
            _silence_stdout()
            return EXIT_CLOSED_STDOUT
        if debug:
            raise
        print("embbert: error: unexpected BrokenPipeError (EMBBERT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - the CLI promises no traceback
        if debug:
            raise
        described = describe_error(exc)
        if described is not None:
            if isinstance(exc, OSError) and exc.filename is None:
                _silence_stdout()  # a failed write to stdout: the exit's own flush must not add a second line
            print(f"embbert: error: {described}", file=sys.stderr)
            return 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"embbert: error: unexpected {type(exc).__name__}: {first} (EMBBERT_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
    return int(result or 0)


__all__ = ["main", "build_parser", "describe_error"]
