"""The one exception type the CLI turns into a one-line error."""


class EmbBertError(Exception):
    """A user-facing error: the CLI prints `embbert: error: <message>` and exits non-zero."""

    exit_code = 1


class UsageError(EmbBertError):
    """Bad arguments or values (exit code 2, like argparse)."""

    exit_code = 2


class Interrupted(EmbBertError):
    """Ctrl-C after a command has written something it can resume from (exit 130, like a plain interrupt)."""

    exit_code = 130
