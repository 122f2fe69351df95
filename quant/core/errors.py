"""The two exception families: user errors (exit code 2, one line, no traceback) and everything else."""
from __future__ import annotations


class QuantError(Exception):
    """A problem with the user's input: a bad file, flag or data.

    The CLI prints ``Error: <message>`` and, when given, ``Hint: <hint>`` on stderr and exits with
    code 2, without a traceback. Anything that is not a ``QuantError`` is a bug and keeps its
    traceback.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class NotCalibratedError(QuantError):
    """A calibrator's learned values were read before ``fit`` was called."""


class NonFiniteError(QuantError):
    """A tensor contained NaN or Inf during calibration."""


def refuse_repeated(values, flag: str, what: str) -> None:
    """A list option that names one thing twice (``--batch 1,1``, ``--shape x:.. --shape x:..``) is refused: the
    second would silently replace the first, or measure and print the same thing twice."""
    seen = set()
    for value in values:
        if value in seen:
            raise QuantError(f"{flag} gives {what} {value!r} twice", hint=f"give each {what} once")
        seen.add(value)
