"""Untrusted text (tensor, node, file names from a model or a path) made safe to show on one line."""
from __future__ import annotations

import unicodedata

_BREAKS = frozenset("\u0085\u2028\u2029")  # line breaks for str.splitlines besides the control characters


def is_unsafe_char(char: str) -> bool:
    """A control character (line breaks, NUL, ESC, DEL, C1), a Unicode line/paragraph separator, or a lone surrogate."""
    return unicodedata.category(char) in ("Cc", "Cs") or char in _BREAKS


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with every unsafe character written as a Python escape (``\\n``, ``\\x1b``, ``\\u2028``), so it
    stays on one line and cannot drive a terminal; cut to ``limit`` characters with '...' when given."""
    text = str(text)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 3, 0)] + "..."
    if not any(is_unsafe_char(c) for c in text):
        return text
    return "".join(ascii(c)[1:-1] if is_unsafe_char(c) else c for c in text)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_field(text) -> str:
    """A CSV text field a spreadsheet cannot run as a formula: a leading apostrophe before '=', '+', '-', '@',
    tab or CR (OWASP), control characters as escapes (one record per line). Quoting is the csv module's job."""
    text = printable(str(text))
    return "'" + text if text.startswith(_FORMULA_START) else text


def _xml_char(char: str) -> bool:
    """A character XML 1.0 can hold (its Char production): tab, line feed, carriage return and the rest of
    Unicode except the other C0 controls, surrogates and U+FFFE/U+FFFF."""
    code = ord(char)
    return (code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD
            or 0x10000 <= code <= 0x10FFFF)


def xml_text(text: str) -> str:
    """``text`` with every character XML 1.0 cannot hold, even as a character reference, written as a Python
    escape (``\\x0b``, ``\\ufffe``), so the document stays well-formed."""
    text = str(text)
    if all(_xml_char(c) for c in text):
        return text
    return "".join(c if _xml_char(c) else ascii(c)[1:-1] for c in text)


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """'1 layer', '2 layers' (``plural`` where adding an s is wrong)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"
