"""Image preprocessing recorded at calibration (quant.json) and reused by eval, gate, sensitivity and fallback.

Evaluating with other preprocessing than the calibration's (a forgotten --mean/--std) scores a different
task without a word. ``quant calibrate`` records the spec it applied under ``data.preprocess``; the later
commands start from it when they are given the calibration folder (or an INT8 model inside one), print
that they did, and let explicit options win field by field, saying which recorded value they replace.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path

from quant.core.errors import QuantError
from quant.datasets.images import Preprocess

FLAGS = {"resize": "--resize", "color": "--color", "scale": "--scale", "mean": "--mean", "std": "--std",
         "layout": "--layout", "dtype": "--dtype"}


@dataclass(frozen=True)
class PreprocessChoice:
    """The spec to apply to images, whether the user asked for any of it, and what to tell them."""

    spec: Preprocess
    explicit: bool  # some option was given by the user (refused with array data)
    notes: tuple[str, ...] = ()


def describe(spec: Preprocess) -> str:
    size = "original size" if spec.resize is None else f"resize {spec.resize[0]}x{spec.resize[1]}"
    numbers = lambda values: ",".join(f"{v:g}" for v in values)  # noqa: E731
    return (f"{size}, {spec.color}, scale {spec.scale:g}, mean {numbers(spec.mean)}, std {numbers(spec.std)}, "
            f"{spec.layout}, {spec.dtype}")


def recorded_preprocess(where: "str | Path | None") -> tuple[Preprocess | None, Path | None]:
    """The spec recorded in ``where``/quant.json (a calibration folder, or a model file inside one)."""
    if where is None or not isinstance(where, (str, Path)):
        return None, None
    where = Path(where)
    manifest = (where if where.is_dir() else where.parent) / "quant.json"
    if not manifest.is_file():
        return None, None
    try:
        raw = json.loads(manifest.read_text()).get("data", {}).get("preprocess")
    except (OSError, ValueError, AttributeError):
        return None, None  # not ours to judge here; the commands that need quant.json report it
    if not isinstance(raw, dict):
        return None, None
    known = {f.name for f in fields(Preprocess)}
    try:
        values = {k: (tuple(v) if isinstance(v, list) else v) for k, v in raw.items() if k in known}
        return Preprocess(**values), manifest
    except (TypeError, QuantError) as exc:
        raise QuantError(f"the preprocessing recorded in '{manifest}' is damaged: {exc}",
                         hint="pass the preprocessing options explicitly") from None


def choose_preprocess(given: "Preprocess | dict | PreprocessChoice | None",
                      recorded_in: "str | Path | None" = None) -> "PreprocessChoice | None":
    """Combine what the user gave (a full spec, a dict of changed fields, or nothing) with the record.

    Explicit fields win over recorded ones; each recorded value they replace gives a note.
    """
    if isinstance(given, PreprocessChoice):
        return given
    recorded, manifest = recorded_preprocess(recorded_in)
    if given is None:
        if recorded is None:
            return None
        return PreprocessChoice(recorded, False, (f"preprocessing from {manifest} (as calibrated): {describe(recorded)}",))
    if isinstance(given, Preprocess):
        spec, changed = given, {f.name for f in fields(Preprocess) if f.name != "version"}
    else:
        unknown = sorted(set(given) - set(FLAGS))
        if unknown:
            raise QuantError(f"unknown preprocessing fields {unknown}", hint=f"known: {', '.join(FLAGS)}")
        spec = Preprocess(**{**(recorded or Preprocess()).to_dict(), **given})
        changed = set(given)
    if recorded is None:
        return PreprocessChoice(spec, True)
    notes = []
    for name in sorted(changed):
        old, new = getattr(recorded, name), getattr(spec, name)
        if old != new:
            notes.append(f"{FLAGS.get(name, name)} {_value(new)} replaces the calibration's {name} {_value(old)} "
                         f"recorded in {manifest}")
    kept = [name for name in FLAGS if name not in changed]
    if kept:
        notes.append(f"preprocessing from {manifest} for the rest: {describe(spec)}")
    return PreprocessChoice(spec, True, tuple(notes))


def _value(value) -> str:
    if isinstance(value, tuple):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)
