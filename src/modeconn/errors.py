"""The one exception type users see: a one-line message saying what is wrong and what to do."""


class ModeconnError(Exception):
    """A user-facing error; the CLI prints its message on one line and exits non-zero."""
