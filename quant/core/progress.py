"""Progress that a user sees at once, on a terminal (a tqdm bar) and in a CI log (a line per step).

tqdm hides itself when stderr is not a terminal, so a long run in CI said nothing for minutes; a
:class:`LineProgress` writes ``"<what>: 3/13 evaluations, 1.2 s"`` lines instead (about 20 per run, the
first when the first step is done, and the last), flushed so a log shows them as they happen. Both are on
stderr: results stay on stdout. The first line waits for the first step so that bad input found by it (a
metric returning NaN) is still the one ``Error:`` line on stderr; a terminal's bar is drawn at once and
erased when it closes.
"""
from __future__ import annotations

import sys
import time


class LineProgress:
    """The tqdm methods the pipeline uses (update, set_description, close), as one stderr line per step."""

    def __init__(self, total: int | None, description: str, unit: str, lines: int = 20, stream=None) -> None:
        self.total, self.description, self.unit = total, description, unit
        self.count, self._stream, self._start = 0, stream, time.perf_counter()
        self._every = max(1, -(-total // lines)) if total else 1

    def _write(self) -> None:
        stream = self._stream or sys.stderr
        of = f"/{self.total}" if self.total else ""
        stream.write(f"{self.description}: {self.count}{of} {self.unit}, {time.perf_counter() - self._start:.1f} s\n")
        stream.flush()

    def update(self, n: int = 1) -> None:
        before, self.count = self.count, self.count + n
        if before == 0 or self.count // self._every != before // self._every or (self.total and self.count == self.total):
            self._write()

    def set_description(self, description: str) -> None:
        self.description = description

    def close(self) -> None:
        return None


def progress(total: int | None, description: str, unit: str, stream=None):
    """A tqdm bar on a terminal (shown at once, 0/total), else a LineProgress; None without tqdm on a terminal."""
    stream = stream or sys.stderr
    if not (hasattr(stream, "isatty") and stream.isatty()):
        return LineProgress(total, description, unit, stream=stream)
    try:
        from tqdm import tqdm
    except ImportError:
        return LineProgress(total, description, unit, stream=stream)
    bar = tqdm(total=total, desc=description, unit=unit.rstrip("s") or unit, file=stream, leave=False,
               dynamic_ncols=True, mininterval=0)
    bar.refresh()  # drawn now, before the first evaluation ends
    return bar
