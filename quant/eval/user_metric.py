"""User metrics: ``module:function`` or ``path/to/file.py:function``, checked on load and on every batch.

The function is called once per held-out batch::

    def metric(outputs, labels):                  # outputs: list of arrays, one per model output
        return float(accuracy)                    # the batch's mean, or a (sum, count) pair

    def metric(outputs, labels, fp32_outputs):    # optional third parameter (no default, or named
        ...                                       # fp32_outputs): the FP32 model's outputs for the same
                                                  # batch (when FP32 itself is scored: its own outputs)

``labels`` is the batch's labels (None without labels). Set ``metric.higher_is_better = False`` for an
error rate. Whatever the function does wrong is the user's input, not quant's bug: a value that is not a
finite number, a failure on import or on a batch, even ``sys.exit()`` inside it, is one ``Error:`` line
(exit code 2). Ctrl-C inside it stays an interrupt.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from quant.core.errors import QuantError

SIGNATURE = "function(outputs: list of arrays, labels[, fp32_outputs]) -> number or (sum, count)"
HINT = f"a metric is {SIGNATURE}, one call per batch"


def _failure(spec: str, when: str, exc: BaseException, what: str = "metric", hint: str = HINT) -> QuantError:
    """The one Error line for a user function that raised or called sys.exit() (``what``: its kind)."""
    if isinstance(exc, SystemExit):
        return QuantError(f"{what} '{spec}' called sys.exit({exc.code!r}) {when}; a {what} must return a value, "
                          "not end the program", hint=hint)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return QuantError(f"{what} '{spec}' failed {when}: {type(exc).__name__}: {text[:300]}".rstrip(": "), hint=hint)


def load_function(spec: str, what: str = "metric", hint: str = HINT, flag: str = "--metric",
                  parameters: str = "(outputs, labels)") -> Callable:
    """The callable named by ``module:function`` or ``path/to/file.py:function`` (QuantError otherwise).

    ``what``/``hint``/``flag``/``parameters`` word the errors for the kind of function loaded (a metric, an
    evaluation function: see quant.eval.user_eval)."""
    source, sep, attribute = spec.rpartition(":")
    if not sep or not source or not attribute:
        raise QuantError(f"cannot load {what} '{spec}': it is not MODULE:FUNCTION or FILE.py:FUNCTION",
                         hint=f"e.g. {flag} my_metrics:accuracy or {flag} ./metrics.py:accuracy" if what == "metric"
                         else f"e.g. {flag} ./file.py:function")
    is_file = source.endswith(".py") or "/" in source or os.sep in source
    try:
        module = _load_file(source, spec, what) if is_file else _import(source, spec, what, flag)
    except QuantError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SyntaxError, any error raised by the module's code, SystemExit
        error = _failure(spec, "on import", exc, what, hint)
        raise QuantError(error.message.replace(f"{what} '{spec}' ", f"cannot load {what} '{spec}': its module ", 1),
                         hint=error.hint) from None
    function = getattr(module, attribute, None)
    if function is None:
        raise QuantError(f"cannot load {what} '{spec}': '{source}' has no function '{attribute}'",
                         hint=f"define {attribute}{parameters} in {source}")
    if not callable(function):
        raise QuantError(f"cannot load {what} '{spec}': '{attribute}' in '{source}' is not a function (it is "
                         f"{_describe(function)})", hint=hint)
    return function


def _load_file(source: str, spec: str, what: str = "metric"):
    path = Path(source)
    if not path.is_file():
        from quant.core.oserrors import check_regular_input

        check_regular_input(path, f"the {what} file")  # --eval-fn <(cat f.py):f exists, as a pipe
        raise QuantError(f"cannot load {what} '{spec}': the file '{source}' does not exist", hint="check the path before the ':'")
    name = f"quant_user_metric_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise QuantError(f"cannot load {what} '{spec}': '{source}' is not a Python file", hint="name a .py file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import(source: str, spec: str, what: str = "metric", flag: str = "--metric"):
    """Import a module by name; a module in the current folder is found under the console script too."""
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        top = source.split(".")[0]
        if exc.name not in (top, source):
            raise  # the module was found but imports something missing: report that
        cwd = os.getcwd()
        if cwd in sys.path or not (Path(cwd, f"{top}.py").is_file() or Path(cwd, top, "__init__.py").is_file()):
            raise QuantError(f"cannot load {what} '{spec}': no module named '{source}' (on the Python path or in the current "
                             "folder)", hint=f"give the file instead: {flag} path/to/file.py:function") from None
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(source)
    finally:
        sys.path.remove(cwd)


REFERENCE_NAMES = {"fp32_outputs", "fp32", "reference"}


def takes_reference(function: Callable) -> bool:
    """Whether the function wants the FP32 outputs: a third positional parameter that has no default, or
    is named fp32_outputs / fp32 / reference (``numpy.mean(a, axis=None, dtype=None)`` does not)."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: the documented two arguments
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 3:
        return False
    third = positional[2]
    return third.default is inspect.Parameter.empty or third.name in REFERENCE_NAMES


def _number(value) -> float | None:
    """A finite float from a number, a NumPy scalar or a one-element array; None otherwise."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        return None
    try:
        array = np.asarray(value)
    except Exception:
        return None
    if array.size != 1 or array.dtype.kind not in "iuf":
        return None
    try:
        return float(array.reshape(()))
    except (TypeError, ValueError, OverflowError):
        return None


def _describe(value) -> str:
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, np.ndarray):
        return f"an array of shape {list(value.shape)} ({value.dtype})"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def batch_value(spec: str, function: Callable, with_reference: bool, outputs, labels, reference) -> tuple[float, float]:
    """(sum, count) of one batch from the user's function, checked."""
    try:
        value = function(outputs, labels, reference) if with_reference else function(outputs, labels)
    except QuantError:
        raise
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _failure(spec, "on a batch", exc) from None
    samples = len(outputs[0]) if outputs and np.ndim(outputs[0]) else 1
    if isinstance(value, tuple) and len(value) == 2:
        total, count = _number(value[0]), _number(value[1])
        if total is None or count is None:
            raise QuantError(f"metric '{spec}' returned a pair ({_describe(value[0])}, {_describe(value[1])}); "
                             "a (sum, count) pair holds two numbers", hint=HINT)
    else:
        total = _number(value)
        if total is None:
            raise QuantError(f"metric '{spec}' returned {_describe(value)}; it must return one number (the batch's "
                             "mean) or a (sum, count) pair", hint=HINT)
        total, count = total * samples, float(samples)
    if not (math.isfinite(total) and math.isfinite(count)):
        raise QuantError(f"metric '{spec}' returned {_describe(value)} on a batch: not a finite value",
                         hint="a metric must give a finite number on every batch: check it for 0/0")
    if count <= 0:
        raise QuantError(f"metric '{spec}' returned a count of {count:g}; the count of a (sum, count) pair must be > 0",
                         hint=HINT)
    return total, count
