"""Named metrics for gates, sensitivity and fallback: each scores a model's outputs over held-out batches.

A metric keeps a small state over batches (``start``/``update``/``finish``) and reports its value in the
units it is printed in (percent for top-k and agreement, dB for SQNR). ``higher_is_better`` tells which
way a drop goes. User metrics are ``module:function`` or ``file.py:function`` callables taking one batch
``(outputs, labels[, fp32_outputs])`` and returning the batch's mean (or a ``(sum, count)`` pair); set
``function.higher_is_better = False`` for error rates (see quant.eval.user_metric).

Every metric scores one named output (``top1@logits``; see :mod:`quant.eval.outputs` for the defaults):
``resolve`` picks it from the model's output names and the first FP32 batch, and ``description`` says
which output and axis were scored and why.
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Callable

import numpy as np

from quant.core.errors import QuantError
from quant.eval.metrics import SCALAR_COSINE, refuse_trivial_topk, row_cosines, sqnr_db, topk_hits
from quant.eval import outputs as _outputs


@dataclass
class Metric:
    name: str
    higher_is_better: bool = True
    needs_labels: bool = False
    unit: str = ""
    has_reference_value: bool = True  # False: FP32 against itself has no finite value (SQNR)
    output: str | None = None  # the output the user asked for (METRIC@NAME or --output-name)
    class_axis: int | None = None  # the class axis the user asked for (--class-axis)
    output_index: int | None = None  # resolved: the output scored
    output_name: str | None = None
    axis: int | None = None  # resolved class axis (top-k, agreement), else None
    basis: str = ""  # why this output
    shape: str = ""  # of the scored output, e.g. "[N, 10]"

    @property
    def label(self) -> str:
        """'top1@logits' once resolved, else the name."""
        return f"{self.name}@{self.output_name}" if self.output_name is not None else self.name

    @property
    def description(self) -> str:
        """'top1 scored output 'logits' [N, 10] on axis 1 (why)'."""
        if self.output_name is None:
            return f"{self.name} scored every output ({self.basis})" if self.basis else self.name
        axis = f" on axis {self.axis}" if self.axis is not None else ""
        return f"{self.name} scored output '{self.output_name}' {self.shape}{axis} ({self.basis})"

    def resolve(self, names, reference: list, labels) -> None:
        """Choose the output (and class axis) from the output names and one FP32 batch; QuantError if unclear."""
        shapes = [np.shape(r) for r in reference]
        index, self.basis = self._choose(list(names), shapes, reference, labels)
        self.output_index, self.output_name, self.shape = index, names[index], _outputs.shape_text(shapes[index])

    def _choose(self, names, shapes, reference, labels) -> tuple[int, str]:
        if self.output is not None:
            return _outputs.find_output(names, self.output, f"metric '{self.name}'"), "named by the user"
        if len(names) == 1:
            return 0, "the model's only output"
        listed = ", ".join(f"'{n}' {_outputs.shape_text(s)}" for n, s in zip(names, shapes))
        raise QuantError(f"metric '{self.name}' does not know which output to score: the model has {listed}",
                         hint=f"name it with --metric {shlex.quote(f'{self.name}@{names[-1]}')} or --output-name "
                              f"{shlex.quote(names[-1])}")  # quoted: the shell command works as shown

    def _pick(self, arrays: list):
        if self.output_index is None:
            if len(arrays) != 1:
                raise QuantError(f"metric '{self.name}' has no output chosen among {len(arrays)} outputs",
                                 hint="name one with METRIC@OUTPUT")
            return arrays[0]
        return arrays[self.output_index]

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

    def _choose(self, names, shapes, reference, labels):
        if labels is None or np.asarray(labels).dtype.kind not in "iu":
            raise QuantError(f"{self.name} needs integer class labels", hint="pass --labels with class indices")
        self.axis = 1
        index, why = _outputs.label_output(names, shapes, labels, self.output, reference)
        if len(shapes[index]) == 2:
            refuse_trivial_topk(self.k, shapes[index][1], "a k", f"output '{names[index]}'")
        return index, why

    def update(self, state, outputs, reference, labels):
        logits = np.asarray(self._pick(outputs))
        if logits.ndim != 2:
            raise QuantError(f"{self.name} needs a classification output [N, classes], got {list(logits.shape)}",
                             hint="choose --metric agreement, cosine or sqnr, or a module:function metric")
        state[0] += 100.0 * topk_hits(logits, labels, self.k)
        state[1] += len(np.asarray(labels).reshape(-1))


class Agreement(Metric):
    def __init__(self) -> None:
        super().__init__(name="agreement", unit="%")

    def _choose(self, names, shapes, reference, labels):
        """The named output, else the one labels score, else the one output holding class scores."""
        if self.output is not None:
            index, why = _outputs.find_output(names, self.output, "metric 'agreement'"), "named by the user"
        elif labels is not None and np.asarray(labels).dtype.kind in "iu" and _fits_labels(shapes, labels, reference):
            index, why = _outputs.label_output(names, shapes, labels, reference=reference)
            why = f"the output labels score: {why}"
        else:
            axes = [_outputs.class_axis(s, self.class_axis, r) if len(s) > (self.class_axis or 1) else None
                    for s, r in zip(shapes, reference)]
            reasons = [(i, _outputs.class_scores_reason(n, np.asarray(r), a))
                       for i, (n, r, a) in enumerate(zip(names, reference, axes))]
            scores = [(i, why) for i, why in reasons if why]
            if len(scores) == 1:
                index, why = scores[0]
            elif len(names) == 1:
                index, why = 0, "the model's only output"
            else:
                candidates = ", ".join(f"'{names[i]}'" for i, _ in scores) or "none looks like class scores"
                raise QuantError(f"metric 'agreement' does not know which output holds class scores "
                                 f"(outputs: {', '.join(names)}; candidates: {candidates})",
                                 hint=f"name it with --metric agreement@NAME or --output-name NAME")
        if _outputs.holds_integers(reference[index]):
            raise _outputs.integer_output_error("metric 'agreement'", names[index])
        self.axis = _outputs.class_axis(shapes[index], self.class_axis, reference[index])
        if self.axis is None and len(shapes[index]) == 3:
            raise QuantError(f"metric 'agreement': {_outputs.ambiguous_axis_note(names[index], shapes[index])}",
                             hint="e.g. --class-axis 2 for sequence logits [N, T, C]")
        if self.axis is None:
            raise QuantError(f"agreement needs a class axis; output '{names[index]}' has shape "
                             f"{_outputs.shape_text(shapes[index])}", hint="choose --metric cosine or sqnr")
        if _outputs.single_class_note(names[index], shapes[index], self.axis):
            raise QuantError(f"metric 'agreement': {_outputs.single_class_note(names[index], shapes[index], self.axis)}",
                             hint="gate it with --metric cosine or sqnr, or a module:function metric (a sign "
                                  "agreement for a binary logit)")
        return index, why

    def update(self, state, outputs, reference, labels):
        out, ref = np.asarray(self._pick(outputs)), np.asarray(self._pick(reference))
        axis = self.axis if self.axis is not None else _outputs.class_axis(ref.shape, self.class_axis)
        if axis is None:
            raise QuantError(f"agreement needs a class axis; the output has shape {_outputs.shape_text(ref.shape)}",
                             hint="choose --metric cosine or sqnr")
        agree, positions = _outputs.argmax_agreement(ref, out, axis)
        state[0] += 100.0 * agree
        state[1] += positions


def _fits_labels(shapes, labels, reference) -> bool:
    top = int(np.max(labels)) if np.size(labels) else 0
    return any(len(s) == 2 and s[1] > top and not _outputs.holds_integers(r) for s, r in zip(shapes, reference))


class _FloatOutput(Metric):
    """A metric of float values (cosine, SQNR): refused on an integer output, where eval prints n/a."""

    def _choose(self, names, shapes, reference, labels):
        floats = [i for i, r in enumerate(reference) if np.asarray(r).dtype.kind not in "biu"]
        if self.output is None and len(names) > 1 and len(floats) == 1:
            return floats[0], "the model's only float output"
        if self.output is None and len(floats) > 1:  # ambiguous: name the float outputs only
            index, why = super()._choose([names[i] for i in floats], [shapes[i] for i in floats],
                                         [reference[i] for i in floats], labels)
            return floats[index], why
        index, why = super()._choose(names, shapes, reference, labels)
        if np.asarray(reference[index]).dtype.kind in "biu":
            raise QuantError(f"metric '{self.name}': output '{names[index]}' holds integers (class indices, counts or "
                             f"a mask), not scores: its {self.name} is undefined",
                             hint="score a float output (METRIC@OUTPUT), or gate class indices with a "
                                  "module:function metric")
        return index, why

    def _reference(self, reference) -> np.ndarray:
        """The FP32 output scored, as float64; NaN/Inf there leaves the metric undefined: refused, not scored."""
        ref = np.asarray(self._pick(reference), np.float64)
        if not np.isfinite(ref).all():
            raise QuantError(f"metric '{self.name}': the FP32 output '{self.output_name}' is NaN or Inf on held-out "
                             f"data, so its {self.name} is undefined",
                             hint="check the held-out data and its preprocessing: the FP32 model must give finite "
                                  "outputs on it")
        return ref


class Cosine(_FloatOutput):
    def __init__(self) -> None:
        super().__init__(name="cosine")

    def _choose(self, names, shapes, reference, labels):
        index, why = super()._choose(names, shapes, reference, labels)
        if int(np.prod(shapes[index][1:])) == 1:  # [N] or [N, 1]: eval prints n/a
            raise QuantError(f"metric 'cosine': output '{names[index]}' {_outputs.shape_text(shapes[index])} has "
                             + SCALAR_COSINE,
                             hint="gate it with --metric sqnr --min-value DB")
        return index, why

    def update(self, state, outputs, reference, labels):
        out, ref = self._pick(outputs), self._reference(reference)
        out = np.asarray(out, np.float64).reshape(len(out), -1)
        ref = ref.reshape(len(ref), -1)
        state[0] += float(row_cosines(ref, out).sum())  # the cosine eval prints (a NaN INT8 row: NaN)
        state[1] += len(out)


class SQNR(_FloatOutput):
    def __init__(self) -> None:
        super().__init__(name="sqnr", unit="dB", has_reference_value=False)

    def update(self, state, outputs, reference, labels):
        out, ref = self._pick(outputs), self._reference(reference)
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

    def _choose(self, names, shapes, reference, labels):
        if self.output is not None:
            return _outputs.find_output(names, self.output, f"metric '{self.name}'"), "named by the user"
        return 0, "it receives the list of every output"

    def resolve(self, names, reference, labels) -> None:
        super().resolve(names, reference, labels)
        if self.output is None:  # a user function gets every output, as before
            self.output_index = self.output_name = None

    def update(self, state, outputs, reference, labels):
        from quant.eval.user_metric import batch_value

        if self.output_index is not None:
            outputs, reference = [outputs[self.output_index]], [reference[self.output_index]]
        total, count = batch_value(self.name, self.function, self.with_reference, outputs, labels, reference)
        state[0] += total
        state[1] += count


_BUILTIN_AT = re.compile(r"(top[0-9]+|agreement|cosine|sqnr)@(.+)", re.DOTALL)


def split_output(spec: str) -> tuple[str, str | None]:
    """(metric, output or None) of ``METRIC@OUTPUT``. After a built-in metric everything past the first '@' is the
    output, whatever it holds ('logits:0' from tf2onnx, '/head/Gemm_output_0' from torch); after a user metric
    (``file.py:function``, whose path may hold '@') only a last part without '/', '\\' or ':' is."""
    match = _BUILTIN_AT.fullmatch(spec)
    if match:
        return match.group(1), match.group(2)
    base, at, named = spec.rpartition("@")
    if at and base and named and not any(c in named for c in "/\\:"):
        return base, named
    return spec, None


def get_metric(spec, higher_is_better: bool | None = None, output: str | None = None,
               class_axis: int | None = None) -> Metric:
    """A Metric, a built-in name (top1, topK, agreement, cosine, sqnr), ``module:function``, or a callable.

    ``NAME@OUTPUT`` scores that output; else ``output`` (from --output-name); else the default of the metric."""
    if isinstance(spec, Metric):
        return spec
    if isinstance(spec, str):
        spec, named = split_output(spec)
        output = named if named is not None else output
    metric = _get_metric(spec, higher_is_better)
    metric.output = output
    metric.class_axis = class_axis
    return metric


def _get_metric(spec, higher_is_better: bool | None = None) -> Metric:
    metric = _lookup_metric(spec, higher_is_better)
    if higher_is_better is not None and bool(higher_is_better) != metric.higher_is_better:  # built-in: fixed direction
        said, fixed = ("--lower-is-better", "higher") if not higher_is_better else ("--higher-is-better", "lower")
        raise QuantError(f"{said} does not apply to the metric '{spec}': {fixed} is better for it, always",
                         hint=f"drop {said} (it sets the direction of a custom metric or --eval-fn)")
    return metric


def _lookup_metric(spec, higher_is_better: bool | None) -> Metric:
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
