"""RESULTS.md is written by several scripts; each replaces only its own section."""
from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADER = "# Benchmark results\n\nRegenerate all of it with `bash benchmarks/run_all.sh` (about an hour here).\n"


def write_section(marker: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section starting with ``marker`` (a '## ' heading prefix) by ``text``, or append it."""
    existing = path.read_text() if path.exists() else HEADER
    if marker in existing:
        head, rest = existing.split(marker, 1)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        existing = head.rstrip() + "\n\n" + text.rstrip() + "\n" + tail
    else:
        existing = existing.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.write_text(existing)
