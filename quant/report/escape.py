"""Escaping of untrusted text (tensor, node, file names; anything read back from a JSON file) per format.

* Markdown (CommonMark / GitHub): names go in code spans whose fence is one backtick longer than the
  longest run of backticks inside (so a backtick cannot close it early), padded with a space where the
  name starts or ends with a backtick; inside a table cell '|' is written '\\|' (GitHub splits cells
  before it parses code spans and reads '\\|' as a literal pipe, code spans included). Other text
  gets every ASCII punctuation character backslash-escaped, so it can open no tag, link, emphasis or
  code span. Line breaks and other control characters are shown as escapes (``\\n``) first: a
  name stays on its line and in its table row.
* CSV: see quant.core.text.csv_field (the csv module quotes; a leading '=', '+', '-', '@', tab or CR gets
  an apostrophe, OWASP's advice against formula injection; the exact names are in the JSON beside it).
* Matplotlib: see :func:`plot_text`.
"""
from __future__ import annotations

import re

from quant.core.text import printable

_PUNCTUATION = re.compile(r"([!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~])")


def md_text(text) -> str:
    """Plain Markdown text showing ``text`` literally (in a table cell too: '|' is escaped like the rest)."""
    return _PUNCTUATION.sub(r"\\\1", printable(str(text)))


def md_code(text, table: bool = False) -> str:
    """A Markdown code span showing ``text`` literally; ``table``: it sits in a pipe-table cell."""
    content = printable(str(text))
    if not content:
        return "(empty)"  # a code span cannot be empty
    longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
    fence = "`" * (longest + 1)
    padded = content.startswith(" ") and content.endswith(" ") and content.strip(" ")
    if content.startswith("`") or content.endswith("`") or padded:
        content = f" {content} "
    if table:
        content = content.replace("|", "\\|")
    return f"{fence}{content}{fence}"


def plot_text(text, limit: int | None = None) -> str:
    """Text for a matplotlib label: on one line; draw it with ``parse_math=False`` (see plots.py)."""
    return printable(str(text), limit)
