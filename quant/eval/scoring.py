"""Named metrics for gates, sensitivity and fallback: each scores a model's outputs over held-out batches.

A metric keeps a small state over batches (``start``/``update``/``finish``) and reports its value in the
units it is printed in (percent for top-k and agreement, dB for SQNR). ``higher_is_better`` tells which
way a drop goes. User metrics are ``module:function`` or ``file.py:function`` callables taking one batch
``(outputs, labels[, fp32_outputs])`` and returning the batch's mean (or a ``(sum, count)`` pair); set
``function.higher_is_better = False`` for error rates (see quant.eval.user_metric).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from quant.core.errors import QuantError
from quant.eval.metrics import sqnr_db, topk_hits


@dataclass
class Metric:
    name: str
    higher_is_better: bool = True
    needs_labels: bool = False
    unit: str = ""
    has_reference_value: bool = True  # False: FP32 against itself has no finite value (SQNR)

    def start(self) -> list:
        return [0.0, 0.0]

    def update(self, state: list, outputs: list[np.ndarray], reference: list[np.ndarray], labels) -> None:
        raise NotImplementedError

    def finish(self, state: list) -> float:
        return state[0] / state[1] if state[1] else float("nan")

    def drop(self, fp32: float, int8: float, relative: bool = False) -> float:
        """How much worse INT8 is, in the metric's printed units (or percent of FP32 when relative)."""
        worse = (fp32 - int8) if self.higher_is_better else (int8 - fp32)
        if relative:
            return 100.0 * worse / abs(fp32) if fp32 else float("inf") if worse > 0 else 0.0
        return worse


class TopK(Metric):
    def __init__(self, k: int) -> None:
        super().__init__(name="top1" if k == 1 else f"top{k}", needs_labels=True, unit="%")
        self.k = k

    def update(self, state, outputs, reference, labels):
        logits = np.asarray(outputs[0])
        if logits.ndim != 2:
            raise QuantError(f"{self.name} needs a classification output [N, classes], got {list(logits.shape)}",
                             hint="choose --metric agreement, cosine or sqnr, or a module:function metric")
        state[0] += 100.0 * topk_hits(logits, labels, self.k)
        state[1] += len(np.asarray(labels).reshape(-1))


class Agreement(Metric):
    def __init__(self) -> None:
        super().__init__(name="agreement", unit="%")

    def update(self, state, outputs, reference, labels):
        out, ref = np.asarray(outputs[0]), np.asarray(reference[0])
        state[0] += 100.0 * float(np.sum(out.argmax(-1) == ref.argmax(-1)))
        state[1] += int(np.prod(ref.shape[:-1]))


class Cosine(Metric):
    def __init__(self) -> None:
        super().__init__(name="cosine")

    def update(self, state, outputs, reference, labels):
        out = np.asarray(outputs[0], np.float64).reshape(len(outputs[0]), -1)
        ref = np.asarray(reference[0], np.float64).reshape(len(reference[0]), -1)
        norms = np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1)
        cosine = np.where(norms > 0, np.sum(out * ref, axis=1) / np.where(norms > 0, norms, 1), 1.0)
        state[0] += float(cosine.sum())
        state[1] += len(out)


class SQNR(Metric):
    def __init__(self) -> None:
        super().__init__(name="sqnr", unit="dB", has_reference_value=False)

    def update(self, state, outputs, reference, labels):
        for out, ref in zip(outputs, reference):
            ref = np.asarray(ref, np.float64)
            state[0] += float(np.sum(ref * ref))
            state[1] += float(np.sum((np.asarray(out, np.float64) - ref) ** 2))

    def finish(self, state):
        return sqnr_db(state[0], state[1])


class UserMetric(Metric):
    """``function(outputs, labels[, fp32_outputs])`` per batch (see quant.eval.user_metric), checked."""

    def __init__(self, spec: str, function: Callable, higher_is_better: bool) -> None:
        from quant.eval.user_metric import takes_reference

        super().__init__(name=spec, higher_is_better=higher_is_better)
        self.function = function
        self.with_reference = takes_reference(function)

    def update(self, state, outputs, reference, labels):
        from quant.eval.user_metric import batch_value

        total, count = batch_value(self.name, self.function, self.with_reference, outputs, labels, reference)
        state[0] += total
        state[1] += count


def get_metric(spec, higher_is_better: bool | None = None) -> Metric:
    """A Metric, a built-in name (top1, topK, agreement, cosine, sqnr), ``module:function``, or a callable."""
    if isinstance(spec, Metric):
        return spec
    if callable(spec):
        direction = getattr(spec, "higher_is_better", True) if higher_is_better is None else higher_is_better
        return UserMetric(getattr(spec, "__name__", "metric"), spec, bool(direction))
    if not isinstance(spec, str):
        raise QuantError(f"a metric is a name, module:function or a callable, got {type(spec).__name__}")
    match = re.fullmatch(r"top(\d+)", spec)
    if match:
        if not 1 <= int(match.group(1)) <= 1000:
            raise QuantError(f"unknown metric '{spec}': top-k needs k >= 1", hint="e.g. --metric top1 or --metric top5")
        return TopK(int(match.group(1)))
    builtin = {"agreement": Agreement, "cosine": Cosine, "sqnr": SQNR}
    if spec in builtin:
        return builtin[spec]()
    if ":" not in spec:
        raise QuantError(f"unknown metric '{spec}'",
                         hint="use top1, top5, agreement, cosine, sqnr, module:function or file.py:function")
    from quant.eval.user_metric import load_function

    function = load_function(spec)
    direction = getattr(function, "higher_is_better", True) if higher_is_better is None else higher_is_better
    if not isinstance(direction, (bool, np.bool_)):
        raise QuantError(f"metric '{spec}': higher_is_better must be True or False, got {direction!r:.40}",
                         hint="set function.higher_is_better = False for an error rate")
    return UserMetric(spec, function, bool(direction))
