"""The little Markdown the report uses (paragraphs, bullet lists, pipe tables, code spans, **bold**) as HTML.

It reads what quant.report.escape writes the way CommonMark/GitHub do: backslash escapes of ASCII
punctuation, code spans closed only by a backtick run of the same length, '\\|' as a literal pipe in a
table cell; everything is HTML-escaped, so no name can open a tag.
"""
from __future__ import annotations

import html
import re

_ESCAPABLE = set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _tokens(text: str) -> list[tuple[str, str]]:
    """[(kind, text)] with kind 'text' (literal), 'code' (code span content) or 'bold' (a ** marker)."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _ESCAPABLE:
            out.append(("text", text[i + 1]))
            i += 2
        elif char == "`":
            run = len(text[i:]) - len(text[i:].lstrip("`"))
            j = i + run
            close = None
            while j < n:
                k = text.find("`" * run, j)
                if k < 0:
                    break
                end = k + run
                if (end >= n or text[end] != "`") and (k == 0 or text[k - 1] != "`"):
                    close = k
                    break
                j = end + len(text[end:]) - len(text[end:].lstrip("`"))
            if close is None:
                out.append(("text", "`" * run))
                i += run
            else:
                content = text[i + run:close]
                if len(content) > 1 and content.startswith(" ") and content.endswith(" ") and content.strip(" "):
                    content = content[1:-1]
                out.append(("code", content))
                i = close + run
        elif text.startswith("**", i):
            out.append(("bold", "**"))
            i += 2
        else:
            out.append(("text", char))
            i += 1
    return out


def _inline(text: str) -> str:
    tokens = _tokens(text)
    markers = [i for i, (kind, _) in enumerate(tokens) if kind == "bold"]
    paired = set(markers[: len(markers) // 2 * 2])
    parts, bold = [], False
    for i, (kind, value) in enumerate(tokens):
        if kind == "code":
            parts.append(f"<code>{html.escape(value)}</code>")
        elif kind == "bold" and i in paired:
            parts.append("</b>" if bold else "<b>")
            bold = not bold
        else:
            parts.append(html.escape(value))
    return "".join(parts)


def _cells(row: str) -> list[str]:
    """A pipe-table row's cells: split at unescaped '|', then '\\|' is a literal pipe (GitHub's rule)."""
    body = row.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def to_html(markdown: str) -> str:
    out, table, items = [], [], []

    def flush():
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|[-|\s]+\|", r)]
            cells = [_cells(r) for r in rows]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{_inline(c)}</{'th' if i == 0 else 'td'}>" for c in row) + "</tr>"
                for i, row in enumerate(cells)) + "</table>")
            table.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
        elif line.startswith("- "):
            items.append(line[2:])
        else:
            flush()
            if line.strip():
                out.append(f"<p>{_inline(line)}</p>")
    flush()
    return "\n".join(out)
