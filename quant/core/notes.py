"""One-line notes on stderr for choices quant made that a user should know about (never on stdout)."""
from __future__ import annotations

import sys


def note(text: str) -> None:
    """Print ``note: text`` on stderr, e.g. which data array fed which model input."""
    sys.stderr.write(f"note: {text}\n")
    sys.stderr.flush()
