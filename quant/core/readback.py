"""Reading back the JSON files quant wrote (or that a user edited): checked before use.

A file quant reads back may have been edited, truncated, or written by another version: wrong types,
missing keys, null, a list instead of an object, 1e999 (parsed as inf), invalid UTF-8. Each reader
states the shape of the fields it uses (``SPEC``s below) and :func:`read_json` checks it, so a bad
file is one ``Error:`` line naming the file and the field, never a TypeError from deep inside.

Spec language (plain Python values):

* ``str``, ``bool``, ``int`` (not bool), ``NUMBER`` (finite int or float, not bool), ``ANY``;
* ``INFINITY``: the string 'inf' or '-inf' (``<key>_infinite`` beside a number JSON wrote as null);
* ``Optional(spec)``: the spec or null;
* ``{"key": spec, "key?": spec}``: an object with these keys (``?``: may be missing); other keys are ignored;
* ``[spec]``: a list of items of the spec; ``MapOf(spec)``: an object whose values all match the spec;
* ``OneOf(spec, spec)``: either.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from quant.core.errors import QuantError

MAX_INT = 2**53  # beyond this a JSON integer is not something quant wrote (counts, sizes, versions)


class _Number:
    def __repr__(self) -> str:
        return "a finite number"


class _Any:
    def __repr__(self) -> str:
        return "anything"


class _Infinity:
    def __repr__(self) -> str:
        return "'inf' or '-inf'"


NUMBER, ANY, INFINITY = _Number(), _Any(), _Infinity()


@dataclass(frozen=True)
class Optional:
    spec: object


@dataclass(frozen=True)
class MapOf:
    spec: object


@dataclass(frozen=True)
class OneOf:
    first: object
    second: object


def describe(value) -> str:
    """A short description of a JSON value for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"{text if len(text) <= 24 else text[:21] + '...'} (a number)"
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def expected(spec) -> str:
    if spec is str:
        return "a string"
    if spec is bool:
        return "true or false"
    if spec is int:
        return "an integer"
    if isinstance(spec, Optional):
        return f"{expected(spec.spec)} or null"
    if isinstance(spec, OneOf):
        return f"{expected(spec.first)} or {expected(spec.second)}"
    if isinstance(spec, (dict, MapOf)):
        return "an object"
    if isinstance(spec, list):
        return "a list"
    return repr(spec)


class FieldError(Exception):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where, self.message = where, message


def _join(where: str, key) -> str:
    if isinstance(key, int):
        return f"{where}[{key}]"
    key = str(key)
    simple = key.replace("_", "").replace("-", "").isalnum()
    return (f"{where}.{key}" if where else key) if simple else f"{where}[{json.dumps(key)}]"


def check(value, spec, where: str = "") -> None:
    """Raise FieldError naming the first field of ``value`` that does not match ``spec``."""
    if spec is ANY:
        return
    if isinstance(spec, Optional):
        if value is not None:
            check(value, spec.spec, where)
        return
    if isinstance(spec, OneOf):
        try:
            check(value, spec.first, where)
        except FieldError:
            try:
                check(value, spec.second, where)
            except FieldError as exc:
                if exc.where != where:
                    raise
                raise FieldError(where, f"must be {expected(spec)}, got {describe(value)}") from None
        return
    bad = FieldError(where, f"must be {expected(spec)}, got {describe(value)}")
    if spec is str:
        if not isinstance(value, str):
            raise bad
    elif spec is bool:
        if not isinstance(value, bool):
            raise bad
    elif spec is int:
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
            raise bad
    elif spec is INFINITY:
        if value not in ("inf", "-inf"):
            raise bad
    elif spec is NUMBER:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        if isinstance(value, float) and not math.isfinite(value) or isinstance(value, int) and abs(value) > MAX_INT:
            raise FieldError(where, f"must be {expected(spec)}, got {describe(value)}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise bad
        for index, item in enumerate(value):
            check(item, spec[0], _join(where, index))
    elif isinstance(spec, MapOf):
        if not isinstance(value, dict):
            raise bad
        for key, item in value.items():
            check(item, spec.spec, _join(where, key))
    elif isinstance(spec, dict):
        if not isinstance(value, dict):
            raise bad
        for key, item_spec in spec.items():
            name, optional = (key[:-1], True) if key.endswith("?") else (key, False)
            if name not in value:
                if optional:
                    continue
                raise FieldError(_join(where, name), "is missing")
            check(value[name], item_spec, _join(where, name))
    else:  # pragma: no cover - a spec written wrong is a bug
        raise TypeError(f"bad spec {spec!r}")


def _reject_constant(token: str):
    raise ValueError(f"{token} is not valid JSON")


def parse_json(path: str | Path, what: str, hint: str):
    """The JSON value in ``path`` (strict UTF-8, strict JSON: no NaN/Infinity tokens)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise QuantError(f"cannot read {what} '{path}': {exc.strerror or exc}", hint=hint) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuantError(f"{what} '{path}' is not UTF-8 text (byte {exc.start})", hint=hint) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise QuantError(f"{what} '{path}' is nested too deeply to be a file quant reads", hint=hint) from None
    except ValueError as exc:
        raise QuantError(f"{what} '{path}' is not valid JSON: {exc}", hint=hint) from None


def read_json(path: str | Path, spec, what: str, hint: str):
    """Parse ``path`` and check it against ``spec``; a mismatch is a QuantError naming the file and field."""
    value = parse_json(path, what, hint)
    validate(value, spec, path, what, hint)
    return value


def validate(value, spec, path, what: str, hint: str) -> None:
    try:
        check(value, spec)
    except FieldError as exc:
        field = f"field '{exc.where}'" if exc.where else "the top level"
        raise QuantError(f"{what} '{path}' is malformed: {field} {exc.message}", hint=hint) from None


# What each reader uses of each file. Other keys may be there or not.

REWRITE = "write it again with quant (or restore the file quant wrote)"

MANIFEST_SPEC = {  # quant.json, as recalibrate, build, report, sensitivity and fallback read it
    "model": {"path": Optional(str), "sha256": str, "opset": Optional(int)},
    "config": {},  # an object; checked field by field by CalibrationConfig.from_json
    "method": Optional(str),
    "data": {"input_shapes?": MapOf([[int]])},
    "parameters?": ANY,
    "layers": [ANY],
    "residual_adds": [ANY],
    "unquantized": [{"node": str, "reason": str}],
    "activations?": MapOf({"amax": NUMBER, "absmax?": Optional(NUMBER)}),
}

EVAL_SPEC = {  # eval.json, as report reads it
    "runtime": {"int8": ANY},
    "samples": ANY,
    "task?": MapOf({"output": ANY, "fp32": Optional(NUMBER), "int8": Optional(NUMBER), "drop": Optional(NUMBER)}),
    "outputs": MapOf({"agreement": Optional(NUMBER), "class_axis": ANY, "shape?": ANY, "cosine": Optional(NUMBER),
                      "sqnr_db": Optional(NUMBER), "sqnr_db_infinite?": Optional(INFINITY),
                      "max_abs_error": Optional(NUMBER)}),
    "user_evaluation?": [{"function": str, "score": Optional(str), "higher_is_better": bool, "fp32": NUMBER,
                          "int8": NUMBER, "drop": NUMBER}],
}

GATE_SPEC = {  # gate.json, as report reads it
    "error?": Optional({"message": ANY}),
    "checks?": [{"passed": bool, "metric": ANY, "output": ANY, "fp32": Optional(NUMBER), "int8": Optional(NUMBER),
                 "int8_infinite?": Optional(INFINITY), "unit": ANY, "criterion": ANY}],
}

SENSITIVITY_SPEC = {  # sensitivity.json, as report and fallback read it
    "metric": str,
    "fp32": Optional(NUMBER),
    "fp32_infinite?": Optional(INFINITY),
    "all_quantized": Optional(NUMBER),
    "all_quantized_infinite?": Optional(INFINITY),
    "rank_correlation_one_pass_vs_exhaustive": Optional(NUMBER),
    "layers": [{"node": str, "only_this": Optional(NUMBER), "all_but_this": Optional(NUMBER),
                "local_sqnr_db": Optional(NUMBER), "recovery": Optional(NUMBER), "harm": Optional(NUMBER),
                **{f"{key}_infinite?": Optional(INFINITY)
                   for key in ("only_this", "all_but_this", "local_sqnr_db", "recovery", "harm")}}],
}

RANKING_SPEC = {"metric": str, "layers": [{"node": str}], "calibration?": {"path": str, "quant_json_sha256": str}}  # sensitivity.json, as fallback reuses its ranking

FALLBACK_SPEC = {  # fallback.json, as report reads it
    "criterion": str,
    "passed": bool,
    "metric": str,
    "fp32": Optional(NUMBER),
    "fp32_infinite?": Optional(INFINITY),
    "float_layers": [ANY],
    "evaluations": ANY,
    "path": [{"step": NUMBER, "value": Optional(NUMBER), "drop": Optional(NUMBER), "action": str,
              "value_infinite?": Optional(INFINITY), "drop_infinite?": Optional(INFINITY)}],
    "naive_first_last?": Optional(MapOf(Optional(int))),
}


def read_quant_json(path: str | Path) -> dict:
    """quant.json of a calibration folder, checked (the config is checked by CalibrationConfig)."""
    return read_json(path, MANIFEST_SPEC, "the manifest", hint="calibrate again: quant.json is quant's own record")


def read_report_input(path: str | Path, spec) -> dict:
    """eval.json, gate.json, sensitivity.json or fallback.json, checked."""
    return read_json(path, spec, Path(path).name, hint=REWRITE)
