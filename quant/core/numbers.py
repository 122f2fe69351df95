"""Numbers as quant prints them: rounded, but never to a value they are not where that value matters."""
from __future__ import annotations

import math
from typing import Iterable


TOLERANCE = 1e-12  # the gate's: a drop within this of its bound meets it (sums of floats differ in the last bits)


def shown(value: float, bounds: Iterable[float] = (), digits: int = 4) -> str:
    """``value`` with ``digits`` decimals, and more where those would print it equal to one of ``bounds`` that it
    is not: a gate's bound ('drop 0.0000 > max 0.0' for a drop of 3e-05), 100% for 99.995% (one miss in 20,000
    shown as '100.00%'), 0 for a drop of 0.003 pp. Never '-0.00' for a value that rounds to zero; inf and nan
    as such."""
    if value is None or not math.isfinite(value):
        return str(value)
    bounds = [b for b in bounds if b is not None]
    value = next((b for b in bounds if abs(value - b) <= TOLERANCE), value)  # float noise at the bound is the bound

    def equal_to_a_bound(text: str) -> bool:
        return any(value != b and float(text) == b for b in bounds)

    text = f"{value:.{digits}f}"
    for more in range(digits + 1, 17):
        if not equal_to_a_bound(text):
            break
        text = f"{value:.{more}f}"
    if equal_to_a_bound(text):
        text = repr(float(value))
    return text.lstrip("-") if float(text) == 0 else text


def infinite_text(value) -> str | None:
    """'inf' or '-inf' for an infinite number (an SQNR where INT8 equals FP32), else None: strict JSON writes the
    number as null, and this text goes beside it as ``<key>_infinite``."""
    if value is None or not isinstance(value, (int, float)) or not math.isinf(value):
        return None
    return "inf" if value > 0 else "-inf"


def with_infinities(entry: dict, keys) -> dict:
    """``entry`` plus ``<key>_infinite`` ('inf' / '-inf', else None) for each of ``keys``: strict JSON writes an
    infinite number as null, the same as an undefined one, and a reader must be able to tell them apart."""
    return {**entry, **{f"{key}_infinite": infinite_text(entry.get(key)) for key in keys}}


def json_number(entry: dict, key: str, spec: str = ".4g") -> str:
    """``entry[key]`` read back from quant's JSON, as the CLI printed it: 'inf' / '-inf' where ``<key>_infinite``
    says so (the number was written as null), 'n/a' where it is undefined."""
    if entry.get(f"{key}_infinite") in ("inf", "-inf"):
        return entry[f"{key}_infinite"]
    value = entry.get(key)
    return "n/a" if value is None else format(value, spec)


def sqnr_shown(entry: dict, spec: str = ".2f") -> str:
    """The SQNR of an eval.json entry (an output, a worst sample): 'inf' where INT8 equals FP32's output."""
    return json_number(entry, "sqnr_db", spec)


def percent(value: float, digits: int = 2) -> str:
    """A percentage (0..100) to ``digits`` decimals that shows 100 or 0 only when it is exactly that."""
    return shown(value, (0.0, 100.0), digits)
