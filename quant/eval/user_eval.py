"""User evaluation functions: ``--eval-fn FILE.py:FUNCTION`` (``eval_fn=`` in the Python API) scores a whole model.

A metric (quant.eval.user_metric) sees one batch of outputs at a time, computed from the held-out inputs as
they are. An evaluation function drives the model itself, as NNCF's ``validation_fn`` and Neural
Compressor's ``eval_fn`` do, so it can carry state between calls (a recurrent model streamed frame by frame,
as deployed), run NMS and a mAP, or a perplexity::

    def evaluate(run, data):                 # called once per model: FP32, INT8, each candidate of a search
        ...
        return 0.93                          # one score, or {"mAP": 0.41, "recall": 0.7} (named scores)
    evaluate.higher_is_better = True         # or False (an error rate), or {"mAP": True, "wer": False}

``run(feeds)`` runs the model being scored (FP32 or an INT8 variant) once and returns its outputs as a list
of arrays, in the model's output order (``run.output_names``). ``feeds`` is a dict ``{input name: array}``
with a batch axis, a single array for a one-input model, or a list in ``run.input_names`` order; float
arrays are cast to the input's float type. ``run.model`` is "FP32" or "INT8"; ``run.calls`` counts the calls.

``data`` (:class:`EvalData`) is the held-out data quant scores metrics on: the samples of ``--data`` (all of
them in file order; ``--num-samples N`` draws a seeded subset, still in file order), with the same input
mapping and preprocessing. ``data.samples()`` yields ``(feeds, label)`` one sample at a time (each array
with a batch axis of 1), ``data.batches()`` yields ``(feeds, labels)`` in ``--batch-size`` batches,
``data.labels`` is the labels array (None without labels), ``data.indices`` the sample numbers in the data
source, ``len(data)`` the sample count, ``data.column(key)`` any other key of the data (ground-truth boxes
stored in the .npz beside the images: a list, one array per sample), ``data.keys`` the keys there are. Streaming functions should not combine with ``--num-samples``.

Whatever the function does wrong is bad input, one ``Error:`` line and exit code 2 (see
quant.eval.user_metric, whose loader and checks this module reuses): a missing function, a signature that
cannot take ``(run, data)``, a return value that is not a finite number or a dict of them, an exception
or ``sys.exit()`` inside it. Ctrl-C stays an interrupt (exit 130).
"""
from __future__ import annotations

import shlex

import inspect
import math
from typing import Callable, Iterator

import numpy as np

from quant.core.errors import QuantError
from quant.eval.scoring import Metric
from quant.eval.user_metric import _describe, _failure, _number, load_function

WHAT = "evaluation function"
SIGNATURE = "evaluate(run, data) -> number or {name: number}"
HINT = f"an evaluation function is {SIGNATURE}; run(feeds) returns the model's outputs"
BASIS = "the user's evaluation function, which ran the model itself"


class EvalData:
    """The held-out data handed to an evaluation function (see the module docstring)."""

    def __init__(self, heldout) -> None:
        self._heldout = heldout
        self.labels = heldout.labels
        self.indices = np.asarray([i for indices, _ in heldout.batches for i in indices], dtype=np.int64)
        self.input_names = list(heldout.batches[0][1]) if heldout.batches else []
        self.output_names = list(heldout.output_names)
        self.description = heldout.description
        self._positions = {int(index): position for position, index in enumerate(self.indices)}

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        return f"EvalData({len(self)} samples, inputs {self.input_names}, labels {self.labels is not None})"

    def _labels_of(self, indices):
        if self.labels is None:
            return None
        return self.labels[np.asarray(indices)]

    @property
    def keys(self) -> list[str]:
        """Every key of the data source: the model's inputs, labels and anything else stored beside them."""
        source = self._heldout.source
        return list(getattr(source, "keys", []) or []) if source is not None else list(self.input_names)

    def column(self, key: str) -> list[np.ndarray]:
        """Key ``key`` of every held-out sample, in order (e.g. ground-truth boxes stored beside the images in an
        .npz); a list, since samples may differ in shape."""
        source = self._heldout.source
        if source is None or key not in self.keys:
            raise QuantError(f"the held-out data has no key '{key}' (keys: {', '.join(map(str, self.keys))})",
                             hint="store it in the --data file beside the model's inputs")
        return [np.asarray(source.sample(int(index))[key]) for index in self.indices]

    def batches(self) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray | None]]:
        """``(feeds, labels)`` per held-out batch, in file order (labels None without labels)."""
        for indices, feeds in self._heldout.batches:
            yield {name: array.copy() for name, array in feeds.items()}, self._labels_of(indices)

    def __iter__(self):
        return self.batches()

    def samples(self) -> Iterator[tuple[dict[str, np.ndarray], object]]:
        """``(feeds, label)`` per sample, in file order; each array keeps a batch axis of 1."""
        for indices, feeds in self._heldout.batches:
            for row, index in enumerate(indices):
                label = None if self.labels is None else self.labels[index]
                yield {name: array[row:row + 1].copy() for name, array in feeds.items()}, label


class ModelRun:
    """``run(feeds) -> [outputs]``: the model being scored, called by the user's function (checked)."""

    def __init__(self, runner, data: EvalData, model: str, spec: str) -> None:
        self._runner, self._spec = runner, spec
        self.model = model
        self.input_names, self.output_names = list(data.input_names), list(data.output_names)
        first = next(iter(data._heldout.batches), (None, {}))[1]
        self._dtypes = {name: np.asarray(array).dtype for name, array in first.items()}
        self.calls = 0

    def __repr__(self) -> str:
        return f"run({self.model}: inputs {self.input_names} -> outputs {self.output_names})"

    def _feeds(self, feeds) -> dict[str, np.ndarray]:
        if isinstance(feeds, np.ndarray) or (not isinstance(feeds, (dict, list, tuple)) and hasattr(feeds, "__array__")):
            if len(self.input_names) != 1:
                raise self._error(f"passed one array to a model with inputs {', '.join(self.input_names)}",
                                  "pass a dict {input name: array}")
            feeds = {self.input_names[0]: feeds}
        elif isinstance(feeds, (list, tuple)):
            if len(feeds) != len(self.input_names):
                raise self._error(f"passed {len(feeds)} arrays to a model with inputs {', '.join(self.input_names)}",
                                  "pass one array per input, in run.input_names order, or a dict")
            feeds = dict(zip(self.input_names, feeds))
        elif not isinstance(feeds, dict):
            raise self._error(f"passed {_describe(feeds)}", "pass a dict {input name: array}")
        missing = [n for n in self.input_names if n not in feeds]
        unknown = [str(n) for n in feeds if n not in self.input_names]
        if missing or unknown:
            said = (f"gave no array for input(s) {', '.join(map(repr, missing))}" if missing else "") + \
                   ("; " if missing and unknown else "") + \
                   (f"gave unknown input(s) {', '.join(map(repr, unknown))}" if unknown else "")
            raise self._error(said, f"the model's inputs are {', '.join(self.input_names)}")
        checked = {}
        for name in self.input_names:
            try:
                array = np.asarray(feeds[name])
            except Exception as exc:
                raise self._error(f"gave input '{name}' a value that is not an array ({type(exc).__name__})",
                                  "pass NumPy arrays") from None
            want = self._dtypes.get(name)
            if want is not None and array.dtype != want and array.dtype.kind == want.kind == "f":
                array = array.astype(want)  # np.zeros() is float64; the model takes float32
            checked[name] = array
        return checked

    def _error(self, said: str, hint: str) -> QuantError:
        return QuantError(f"{WHAT} '{self._spec}' called run() on the {self.model} model and {said}", hint=hint)

    def __call__(self, feeds) -> list[np.ndarray]:
        checked = self._feeds(feeds)
        self.calls += 1
        try:
            return list(self._runner.run(checked, self.output_names))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the runtime refused these feeds (shape, type): the user's input
            shapes = ", ".join(f"{n} {list(a.shape)} {a.dtype}" for n, a in checked.items())
            text = exc.message if isinstance(exc, QuantError) else str(exc) or type(exc).__name__
            raise self._error(f"the runtime refused the feeds ({shapes}): {text.splitlines()[0][:300]}",
                              "feed arrays with a batch axis and the model's input shapes and types") from None


def check_signature(spec: str, function: Callable) -> None:
    """Refuse a function that cannot be called as ``function(run, data)``."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a builtin without a signature: it is called as documented
    try:
        signature.bind(object(), object())
    except TypeError:
        raise QuantError(f"{WHAT} '{spec}' takes {signature}; it is called as evaluate(run, data)",
                         hint=HINT) from None


class EvalFunction:
    """A loaded evaluation function; ``scores(runner, data, model)`` is its checked result as {name: value}.

    The last result is kept, so several gated scores of one function cost one call per model."""

    def __init__(self, spec, higher_is_better=None) -> None:
        if callable(spec) and not isinstance(spec, str):
            function, name = spec, getattr(spec, "__name__", "evaluate")
        elif isinstance(spec, str):
            function, name = load_function(spec, WHAT, HINT, "--eval-fn", "(run, data)"), spec
        else:
            raise QuantError(f"an evaluation function is FILE.py:FUNCTION, MODULE:FUNCTION or a callable, got "
                             f"{type(spec).__name__}", hint=HINT)
        check_signature(name, function)
        self.function, self.name, self.is_spec = function, name, isinstance(spec, str)
        self.direction = getattr(function, "higher_is_better", None) if higher_is_better is None else higher_is_better
        if self.direction is not None and not isinstance(self.direction, (bool, np.bool_, dict)):
            raise QuantError(f"{WHAT} '{name}': higher_is_better must be True, False or a dict of them per score, "
                             f"got {self.direction!r:.40}", hint="set evaluate.higher_is_better = False for an error rate")
        self._last: list[tuple[object, dict]] = []  # the last two (runner, scores): FP32 and the INT8 candidate

    def higher_is_better(self, key: str | None) -> bool:
        if isinstance(self.direction, dict):
            value = self.direction.get(key, True)
            if not isinstance(value, (bool, np.bool_)):
                raise QuantError(f"{WHAT} '{self.name}': higher_is_better[{key!r}] must be True or False, got "
                                 f"{value!r:.40}", hint="set evaluate.higher_is_better = {'score': False}")
            return bool(value)
        return True if self.direction is None else bool(self.direction)

    def scores(self, runner, heldout, model: str) -> dict[str | None, float]:
        """The function's scores of ``runner``: ``{None: value}`` for one number, else ``{name: value}``."""
        # one runner object may run several variants in turn (quant.backends.ort_switch): its variant is part of the key
        key = (runner, getattr(runner, "variant", None))
        for (seen, variant), result in self._last:
            if seen is key[0] and variant == key[1]:
                return result
        data = EvalData(heldout)
        try:
            value = self.function(ModelRun(runner, data, model, self.name), data)
        except (QuantError, KeyboardInterrupt):
            raise
        except BaseException as exc:
            raise _failure(self.name, f"on the {model} model", exc, WHAT, HINT) from None
        result = self._check(value, model)
        self._last = self._last[-1:] + [(key, result)]
        return result

    def _check(self, value, model: str) -> dict[str | None, float]:
        if isinstance(value, dict):
            if not value:
                raise QuantError(f"{WHAT} '{self.name}' returned an empty dict on the {model} model", hint=HINT)
            result = {}
            for key, item in value.items():
                if not isinstance(key, str) or not key or any(c in key for c in "/\\:@"):
                    raise QuantError(f"{WHAT} '{self.name}' returned a dict with the key {key!r:.40}; score names are "
                                     "non-empty strings without / \\ : @", hint=HINT)
                result[key] = self._finite(item, f"score '{key}'", model)
            return result
        return {None: self._finite(value, "", model)}

    def _finite(self, value, what: str, model: str) -> float:
        number = _number(value)
        if number is None:
            raise QuantError(f"{WHAT} '{self.name}' returned {_describe(value)}" + (f" as {what}" if what else "") +
                             f" on the {model} model; it must return one number or a dict of named numbers", hint=HINT)
        if not math.isfinite(number):
            raise QuantError(f"{WHAT} '{self.name}' returned {number}" + (f" as {what}" if what else "") +
                             f" on the {model} model: not a finite value",
                             hint="an evaluation function must give a finite score: check it for 0/0")
        return number


class EvalScore(Metric):
    """One score of an evaluation function, usable wherever a Metric is (gate, sensitivity, fallback).

    ``whole_model``: HeldOut hands it the runner (not per-batch outputs); see HeldOut.score."""

    whole_model = True

    def __init__(self, function: EvalFunction, key: str | None = None, higher_is_better: bool | None = None) -> None:
        super().__init__(name=function.name if key is None else f"{function.name}@{key}")
        self.function, self.key, self._explicit = function, key, higher_is_better
        self.basis = BASIS
        self.higher_is_better = function.higher_is_better(key) if higher_is_better is None else bool(higher_is_better)

    @property
    def description(self) -> str:
        direction = "higher is better" if self.higher_is_better else "lower is better"
        return f"{self.name} scored by {BASIS} ({direction})"

    def resolve(self, names, reference, labels) -> None:  # the function sees every output itself
        return None

    def update(self, state, outputs, reference, labels):
        raise QuantError(f"{WHAT} '{self.name}' scores a whole model, not batches of outputs",
                         hint="this command does not take --eval-fn")

    def evaluate(self, runner, heldout, model: str) -> float:
        """The score of ``runner`` (the model being scored) on the held-out data."""
        scores = self.function.scores(runner, heldout, model)
        if self.key is None:
            if None in scores:
                return scores[None]
            if len(scores) == 1:  # a dict of one score: that one
                (self.key,) = scores
                self.name = f"{self.function.name}@{self.key}"
                if self._explicit is None:
                    self.higher_is_better = self.function.higher_is_better(self.key)
                return scores[self.key]
            raise QuantError(f"{WHAT} '{self.function.name}' returned {len(scores)} scores "
                             f"({', '.join(map(str, scores))}); name the one to use",
                             hint=f"--eval-fn {shlex.quote(f'{self.function.name}@{next(iter(scores))}')}" if self.function.is_spec
                             else f"pass eval_fn=({self.function.name}, {next(iter(scores))!r})")
        if self.key not in scores:
            found = ", ".join("(one unnamed number)" if k is None else k for k in scores)
            raise QuantError(f"{WHAT} '{self.function.name}' returned no score '{self.key}' on the {model} model "
                             f"(it returned: {found})", hint="name a score the function returns, after '@'")
        return scores[self.key]


def split_spec(spec: str) -> tuple[str, str | None]:
    """``file.py:evaluate@score`` -> ("file.py:evaluate", "score"); no '@score': (spec, None)."""
    base, at, key = spec.rpartition("@")
    if at and base and key and not any(c in key for c in "/\\:"):
        return base, key
    return spec, None


def eval_score(spec, higher_is_better: bool | None = None, functions: dict | None = None) -> EvalScore:
    """An EvalScore from ``FILE.py:FUNCTION[@SCORE]``, ``MODULE:FUNCTION[@SCORE]``, a callable, or a pair
    ``(callable or spec, score name)`` naming one score of a function that returns a dict.

    ``functions``: a cache {spec: EvalFunction} so several scores of one function share its calls."""
    if isinstance(spec, EvalScore):
        return spec
    key = None
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], str):
        spec, key = spec
    elif isinstance(spec, str):
        spec, key = split_spec(spec)
    cache = functions if functions is not None else {}
    identity = spec if isinstance(spec, str) else id(spec)
    if identity not in cache:
        cache[identity] = EvalFunction(spec)
    return EvalScore(cache[identity], key, higher_is_better)


def is_whole_model(metric) -> bool:
    return bool(getattr(metric, "whole_model", False))
