"""argparse ``type=`` validators: a bad number is refused when the command line is parsed, before any work.

Each returns a function that argparse calls with the option's text; a bad value raises
``argparse.ArgumentTypeError``, which the Parser turns into ``Error: argument --seed: ...`` and
``Hint: see 'quant calibrate --help'`` (exit code 2).
"""
from __future__ import annotations

import argparse
import math
from typing import Callable

from quant.core.config import MAX_BINS, MAX_SEED, check_trt_version
from quant.core.errors import QuantError

MAX_COUNT = 2**31 - 1  # samples, batch sizes, layers: beyond this the number is a typo


def _parse_int(text: str) -> int:
    text = text.strip()
    if not text.lstrip("+-").isdigit() or not text.isascii():
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'")
    return int(text)


def _parse_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got '{text}'")
    return value


def integer(low: int | None = None, high: int | None = None, name: str = "integer") -> Callable[[str], int]:
    """An integer in [low, high] (either bound may be None)."""

    def parse(text: str) -> int:
        value = _parse_int(text)
        if (low is not None and value < low) or (high is not None and value > high):
            if high == MAX_COUNT and low is not None and value < low:
                raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
            if high is None:
                raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
            if low is None:
                raise argparse.ArgumentTypeError(f"must be an integer <= {high}, got {value}")
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {value}")
        return value

    parse.__name__ = name
    return parse


def number(low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False,
           name: str = "number") -> Callable[[str], float]:
    """A finite number in the interval given by low/high (open ends where asked)."""

    def parse(text: str) -> float:
        value = _parse_float(text)
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if below or above:
            left = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
            right = "" if high is None else f"{high:g}" + (")" if high_open else "]")
            if low is None:
                where = f"{'<' if high_open else '<='} {high:g}"
            elif high is None:
                where = f"{'>' if low_open else '>='} {low:g}"
            else:
                where = f"in {left}, {right}"
            raise argparse.ArgumentTypeError(f"must be a number {where}, got {text}")
        return value

    parse.__name__ = name
    return parse


def count(low: int = 1, name: str = "count") -> Callable[[str], int]:
    return integer(low, MAX_COUNT, name)


def seed(text: str) -> int:
    return integer(0, MAX_SEED, "seed")(text)


def bins(text: str) -> int:
    value = integer(256, MAX_BINS, "bins")(text)
    if value & (value - 1):
        raise argparse.ArgumentTypeError(f"must be a power of two from 256 to {MAX_BINS}, got {value}")
    return value


def percentile(text: str) -> float:
    return number(0.0, 100.0, low_open=True, name="percentile")(text)


def trt_version(text: str) -> str:
    try:
        return check_trt_version(text.strip())
    except QuantError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a TensorRT version: write MAJOR.MINOR.PATCH, e.g. 10.3.0 or 8.6.1") from None


def int_list(low: int = 1, high: int = MAX_COUNT, name: str = "list") -> Callable[[str], tuple[int, ...]]:
    """Comma-separated integers in [low, high], at least one."""

    def parse(text: str) -> tuple[int, ...]:
        parts = [p for p in text.split(",") if p.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'")
        try:
            values = tuple(_parse_int(p) for p in parts)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None
        bad = [v for v in values if not low <= v <= high]
        if bad:
            raise argparse.ArgumentTypeError(f"each value must be an integer from {low} to {high}, got {bad[0]}")
        return values

    parse.__name__ = name
    return parse


def metric(text: str) -> str:
    """A metric name: topK with K >= 1, a built-in name, or MODULE:FUNCTION / FILE.py:FUNCTION (loaded later)."""
    import re

    from quant.eval.scoring import split_output

    base = split_output(text)[0]
    match = re.fullmatch(r"top(\d+)", base)
    if match and not 1 <= int(match.group(1)) <= 1000:
        raise argparse.ArgumentTypeError(f"top-k needs k from 1 to 1000, got '{text}'")
    if ":" in base:
        source, _, attribute = base.rpartition(":")
        if not source or not attribute:
            raise argparse.ArgumentTypeError(f"'{text}' is not MODULE:FUNCTION or FILE.py:FUNCTION")
    return text
