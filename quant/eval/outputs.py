"""Which model output a metric scores, and on which axis its classes lie.

A model can have several outputs (features then logits, a class map and a box regression, ...). Scoring
output 0 silently gives wrong numbers, so every metric names the output it scores:

* labels (top-k) score a 2-D output ``[N, C]``: the one whose C equals the label range (max label + 1),
  else the one output with C > max label; several candidates are refused with their names.
* the class axis is 1 (``[N, C]`` scores and ``[N, C, H, W]`` class maps alike), or ``--class-axis``; a 3-D
  output (``[N, C, L]`` or sequence logits ``[N, T, C]``) has none unless its values are probabilities over
  one axis, and an axis of one value (a binary logit ``[N, 1]``) scores no agreement (100% whatever the model).
* argmax agreement is only meaningful for class scores. An output counts as class scores when labels
  score it, the user named it (``--output-name`` / ``metric@output``), its name reads as class scores
  (logit, prob, score, softmax, cls, class, conf), or its values are probabilities over the class axis
  (non-negative, summing to 1). Anything else (embeddings, box regressions, features) gets "n/a" with
  the reason, never a number that looks like accuracy.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError

CLASS_NAME = re.compile(r"logit|prob|score|softmax|cls|class|conf", re.IGNORECASE)
SCORES_FLAG = "--output-name NAME (or METRIC@NAME)"


def shape_text(shape: Sequence[int]) -> str:
    """'[N, 10]': the batch axis as N, the rest as numbers."""
    return "[" + ", ".join(["N"] + [str(d) for d in list(shape)[1:]]) + "]"


def find_output(names: Sequence[str], requested: str, what: str) -> int:
    """Index of the output ``requested``; a QuantError naming the outputs when there is none."""
    if requested in names:
        return list(names).index(requested)
    raise QuantError(f"{what}: the model has no output '{requested}' (its outputs: {', '.join(names)})",
                     hint="name one of the model's outputs with --output-name or METRIC@OUTPUT")


def class_axis(shape: Sequence[int], requested: int | None = None, sample: np.ndarray | None = None) -> int | None:
    """The class axis of an output of this shape: ``requested`` (may be negative), else 1; None for [N].

    A rank-3 output is [N, C, L] (a 1-D class map) or [N, T, C] (sequence logits): the axis whose values are
    probabilities (of ``sample``, one FP32 batch) when exactly one of axes 1 and 2 has them, else None
    (see :func:`ambiguous_axis_note`): argmax over the time steps is no class agreement."""
    rank = len(shape)
    if requested is not None:
        axis = requested + rank if requested < 0 else requested
        if not 1 <= axis < rank:
            raise QuantError(f"--class-axis {requested} does not fit an output of shape {shape_text(shape)}",
                             hint="the class axis is 1 for [N, C] scores and [N, C, H, W] class maps")
        return axis
    if rank == 3:
        values = None if sample is None else np.asarray(sample, np.float64)
        fits = [] if values is None else [a for a in (1, 2) if _probabilities(values, a)]
        return fits[0] if len(fits) == 1 else None
    return 1 if rank >= 2 else None


def ambiguous_axis_note(name: str, shape: Sequence[int]) -> str:
    return (f"output '{name}' {shape_text(shape)} may hold classes on axis 1 ([N, C, L]) or on axis 2 ([N, T, C], "
            f"sequence logits): pass --class-axis 1 or 2 to score class agreement")


def _probabilities(values: np.ndarray, axis: int) -> bool:
    return bool(values.size and values.shape[axis] >= 2 and np.all(values >= 0)
                and np.allclose(values.sum(axis=axis), 1.0, atol=1e-3))


def holds_integers(sample) -> bool:
    """True for an output of integers (class indices from an ArgMax, counts, a mask): never class scores."""
    return np.asarray(sample).dtype.kind in "biu"


def integer_output_error(what: str, name: str) -> QuantError:
    return QuantError(f"{what}: output '{name}' holds integers (class indices, counts or a mask), not class scores: "
                      "its argmax means nothing", hint="score the float output they come from (METRIC@OUTPUT or "
                                                       "--output-name), or gate class indices with a module:function metric")


def label_output(names: Sequence[str], shapes: Sequence[Sequence[int]], labels: np.ndarray,
                 requested: str | None = None, reference: Sequence | None = None) -> tuple[int, str]:
    """(index, why) of the output that labels score: 2-D [N, C] with C > max label, never an integer output
    (of ``reference``, one FP32 batch, when given)."""
    top = int(np.max(labels)) if np.size(labels) else 0
    integer = {i for i, r in enumerate(reference or ()) if holds_integers(r)}
    if requested is not None:
        index = find_output(names, requested, "labels")
        if index in integer:
            raise integer_output_error("labels", requested)
        shape = shapes[index]
        if len(shape) != 2 or shape[1] <= top:
            raise QuantError(f"labels need a classification output [N, classes] with more than {top} classes; output "
                             f"'{requested}' has shape {shape_text(shape)}",
                             hint="name the output that holds the class scores with --output-name")
        return index, "named by the user"
    fitting = [i for i, s in enumerate(shapes) if len(s) == 2 and s[1] > top and i not in integer]
    exact = [i for i in fitting if shapes[i][1] == top + 1]
    if len(exact) == 1:
        reason = "the only output [N, C] whose C matches the labels 0..%d" % top
        return exact[0], reason if len(fitting) > 1 else "the only output [N, C] that fits the labels"
    if len(fitting) == 1:
        return fitting[0], "the only output [N, C] that fits the labels"
    two_d = [i for i, s in enumerate(shapes) if len(s) == 2 and i not in integer]
    if not fitting and len(two_d) == 1:
        i = two_d[0]
        first = int(np.flatnonzero(np.asarray(labels).reshape(-1) >= shapes[i][1])[0])
        raise QuantError(f"labels range 0..{top} does not fit the {shapes[i][1]} classes of output '{names[i]}' "
                         f"{shape_text(shapes[i])} (first: sample {first})",
                         hint="pass integer class indices 0..classes-1 as labels")
    if not fitting:
        described = ", ".join(f"'{n}' {shape_text(s)}" + (" of integers" if i in integer else "")
                              for i, (n, s) in enumerate(zip(names, shapes)))
        raise QuantError(f"labels (0..{top}) need a classification output [N, classes] with more than {top} classes; "
                         f"the model's outputs are {described}",
                         hint="pass integer class indices as labels, or drop --labels to compare outputs only")
    candidates = ", ".join(f"'{names[i]}' {shape_text(shapes[i])}" for i in (exact or fitting))
    raise QuantError(f"several outputs could hold the class scores the labels refer to: {candidates}",
                     hint=f"name one with {SCORES_FLAG}, e.g. --output-name {names[(exact or fitting)[-1]]}")


def class_scores_reason(name: str, sample: np.ndarray, axis: int | None) -> str | None:
    """Why an output looks like class scores from its name or values, or None (then agreement is n/a)."""
    if axis is None or sample.ndim < 2 or sample.shape[axis] < 2 or holds_integers(sample):
        return None
    if CLASS_NAME.search(name):
        return f"its name '{name}' reads as class scores"
    if _probabilities(np.asarray(sample, np.float64), axis):
        return f"its values are probabilities over axis {axis}"
    return None


def single_class_note(name: str, shape: Sequence[int], axis: int | None) -> str | None:
    """Why argmax agreement on ``axis`` cannot fail (one value on it: a binary logit [N, 1]), else None."""
    if axis is None or shape[axis] >= 2:
        return None
    return (f"output '{name}' {shape_text(shape)} has {shape[axis]} value on axis {axis}: its argmax agreement would "
            "be 100% whatever the model does")


def not_class_scores_note(name: str, shape: Sequence[int], axis: int | None) -> str:
    if axis is None and len(shape) == 3:
        return ambiguous_axis_note(name, shape)
    if axis is None or len(shape) < 2:
        return f"output '{name}' {shape_text(shape)} has no class axis"
    if single_class_note(name, shape, axis):
        return single_class_note(name, shape, axis) + " (SQNR scores it)"
    return (f"output '{name}' {shape_text(shape)} is not known to hold class scores (an embedding or a regression?): "
            f"name it (--output-name {name}, or --metric agreement@{name} in gate) to score class agreement on axis "
            f"{axis}")


def argmax_agreement(reference: np.ndarray, candidate: np.ndarray, axis: int) -> tuple[int, int]:
    """(positions where both argmax over ``axis`` agree, positions): per sample for [N, C], per pixel for maps.

    Positions where both models give every class the same score (padded time steps or pixels: all zero in FP32
    and INT8) are not counted: both argmaxes are the first index by convention, an 'agreement' that says nothing
    (see :func:`tied_positions`). Where only one of them ties, the deployed decisions can differ: counted."""
    ref, cand = np.asarray(reference), np.asarray(candidate)
    counted = ~_tied(ref, axis) | ~_tied(cand, axis)
    agree = int(np.sum((ref.argmax(axis) == cand.argmax(axis)) & counted))
    return agree, int(counted.sum())


def tied_positions(reference: np.ndarray, candidate: np.ndarray, axis: int) -> int:
    """How many positions :func:`argmax_agreement` leaves out: both models score every class alike there."""
    return int(np.sum(_tied(np.asarray(reference), axis) & _tied(np.asarray(candidate), axis)))


def _tied(values: np.ndarray, axis: int) -> np.ndarray:
    """Positions where every score on ``axis`` is the same (no class stands out)."""
    return values.max(axis) == values.min(axis)
