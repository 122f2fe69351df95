"""Matplotlib figures (Agg backend, PNG bytes). No maths here beyond what is plotted.

Names from the model are drawn as plain text: ``parse_math=False`` (a name like '$x^$' or '\\alpha' is not
mathtext) with TeX off whatever the user's matplotlibrc says, and control characters shown as escapes.
"""
from __future__ import annotations

import functools
import io

import numpy as np

from quant.core.lazy import require
from quant.report.escape import plot_text


PLAIN = {"parse_math": False}  # Text properties for any text that comes from a model


def _pyplot():
    matplotlib = require("matplotlib")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot")


def _plain(function):
    """Run a plot with TeX off (names are not TeX, whatever the user's matplotlibrc says), not mutating rcParams."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with require("matplotlib").rc_context({"text.usetex": False}):
            return function(*args, **kwargs)
    return wrapper


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


WIDTH = 10  # inches, every figure: the HTML shows each at the page's width, so they line up


COLORS = {"minmax": "tab:red", "percentile": "tab:orange", "entropy": "tab:green", "mse": "tab:blue"}


@_plain
def histogram_plot(name: str, edges: np.ndarray, counts: np.ndarray, thresholds: dict[str, float]) -> bytes:
    """|x| histogram (log counts) with each method's threshold as a vertical line."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(WIDTH, 3.2))
    extent = int(np.flatnonzero(counts)[-1]) + 1 if np.any(counts) else 1
    step = max(1, extent // 256)  # show at most ~256 bars
    merged = np.add.reduceat(counts[:extent], np.arange(0, extent, step))
    axis.bar(edges[:extent:step], np.maximum(merged, 0.5), width=(edges[1] - edges[0]) * step, align="edge",
             color="0.6", log=True)
    for method, value in thresholds.items():
        axis.axvline(value, color=COLORS.get(method, "black"), linestyle="--", linewidth=1.2, label=f"{method} {value:.3g}")
    axis.set_xlabel("|x|")
    axis.set_ylabel("count (log)")
    shown = plot_text(name)
    axis.set_title(shown if len(shown) < 70 else "..." + shown[-67:], fontsize=9, **PLAIN)
    axis.legend(fontsize=7)
    return _png(figure)


@_plain
def sensitivity_plot(layers: list[dict], metric: str) -> bytes:
    plt = _pyplot()
    shown = [plot_text(l["node"]) for l in layers]
    names = [n if len(n) < 40 else "..." + n[-37:] for n in shown]
    figure, (left, right) = plt.subplots(1, 2, figsize=(WIDTH, 0.35 * len(layers) + 1.5), sharey=True)
    y = np.arange(len(layers))
    def values(key):
        return [np.nan if l[key] is None else l[key] for l in layers]

    left.barh(y - 0.2, values("recovery"), height=0.4, color="tab:green", label="gained by keeping only it in float")
    left.barh(y + 0.2, values("harm"), height=0.4, color="tab:red", label="lost by quantizing only it")
    left.axvline(0, color="black", linewidth=0.8)
    left.set_yticks(y, names, fontsize=7, **PLAIN)
    left.invert_yaxis()
    left.set_xlabel(f"{plot_text(metric)} change", **PLAIN)
    left.legend(fontsize=7)
    right.barh(y, values("local_sqnr_db"), color="tab:blue")
    right.set_xlabel("one-pass local SQNR (dB)")
    return _png(figure)


@_plain
def fallback_plot(path: list[dict], metric: str, fp32: float) -> bytes:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(WIDTH, 3.2))
    steps = [p["step"] for p in path]
    axis.plot(steps, [np.nan if p["value"] is None else p["value"] for p in path], marker="o", label="INT8 with fallback")
    if fp32 is not None:
        axis.axhline(fp32, color="black", linestyle=":", label="FP32")
    axis.set_xlabel("layers returned to float")
    axis.set_ylabel(plot_text(metric), **PLAIN)
    axis.legend(fontsize=8)
    return _png(figure)
