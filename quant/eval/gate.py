"""The accuracy gate: pass or fail on one or more metrics, each with its own bound (drop or minimum value).

Units (the same in eval.json and gate.json): top-k and agreement in percent of samples (0..100), an absolute
drop of them in percentage points ("pp"), a relative drop in "% of FP32", SQNR in dB, cosine unitless.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from quant.core.errors import QuantError
from quant.core.io import to_jsonable
from quant.core.numbers import TOLERANCE, infinite_text, shown
from quant.core.text import xml_text
from quant.eval.scoring import Metric

from quant.schemas import FORMAT_VERSION, schema_id

SCHEMA = schema_id("gate")


def drop_unit(unit: str, relative: bool) -> str:
    """The unit of a drop: 'pp' for a percent metric, '% of FP32' when relative, else the metric's unit."""
    if relative:
        return "% of FP32"
    return "pp" if unit == "%" else unit


@dataclass
class CheckResult:
    """One gated metric: its values, the bound and the verdict. Truthy when it passes."""

    metric: str
    unit: str
    fp32: float
    int8: float
    drop: float
    passed: bool
    criterion: str
    max_drop: float | None = None
    relative: bool = False
    min_value: float | None = None
    output: str | None = None
    class_axis: int | None = None
    basis: str = ""
    seconds: float = 0.0  # scoring this metric from the cached FP32 and INT8 outputs (the runs are in GateResult)
    source: str = "metric"  # or "evaluation function": a --eval-fn function that ran each model itself

    def __bool__(self) -> bool:
        return self.passed

    @property
    def label(self) -> str:
        return f"{self.metric}@{self.output}" if self.output else self.metric

    def to_json(self) -> dict:
        return {"metric": self.metric, "output": self.output, "class_axis": self.class_axis, "basis": self.basis,
                "unit": self.unit, "fp32": self.fp32, "int8": self.int8, "int8_infinite": infinite_text(self.int8),
                "drop": self.drop,
                "drop_unit": drop_unit(self.unit, self.relative), "max_drop": self.max_drop, "relative": self.relative,
                "min_value": self.min_value, "passed": self.passed, "criterion": self.criterion,
                "seconds": self.seconds, "source": self.source}

    def format_line(self, runtime: str, samples: int) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict}: {self.label} FP32 {format_value(self.fp32, self.unit)}, INT8 "
                f"{format_value(self.int8, self.unit, self.fp32)} "
                f"({runtime}, {samples} samples); {self.criterion}")


def format_value(value: float, unit: str, other: float | None = None) -> str:
    """'98.1481%', '31.2000 dB'; 'inf dB' as eval prints a noiseless SQNR; n/a for no value (FP32's SQNR).
    With ``other`` (FP32's value), INT8's gets the digits that tell them apart (cosine 1.0000 vs 0.99997)."""
    if value is None or math.isnan(value):
        return "n/a"
    other = other if other is not None and math.isfinite(other) else None
    if unit == "%":  # never 100% or 0% unless exactly
        return f"{shown(value, [other, 0.0, 100.0])}%"
    return shown(value, [other]) + (f" {unit}" if unit else "")


def _pair(value: dict) -> str:
    """'FP32 98.8889%, INT8 99.0741%' for a reported (not gated) metric."""
    return (f"FP32 {format_value(value['fp32'], value['unit'])}, "
            f"INT8 {format_value(value['int8'], value['unit'], value['fp32'])}")


@dataclass
class GateResult:
    """Truthy when every gated metric passes. ``reported``: metrics shown but not gated (per output)."""

    checks: list[CheckResult]
    runtime: str = "emulate"
    samples: int = 0
    reported: list[dict] = field(default_factory=list)  # {metric, output, class_axis, unit, fp32, int8}
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def passed(self) -> bool:
        return all(self.checks)

    # the first gated metric, for a single-metric gate's readers
    @property
    def metric(self) -> str:
        return self.checks[0].metric

    @property
    def fp32(self) -> float:
        return self.checks[0].fp32

    @property
    def int8(self) -> float:
        return self.checks[0].int8

    @property
    def drop(self) -> float:
        return self.checks[0].drop

    @property
    def criterion(self) -> str:
        return "; ".join(c.criterion for c in self.checks)

    def to_json(self) -> dict:
        return to_jsonable({"schema": SCHEMA, "format_version": FORMAT_VERSION, "passed": self.passed,
                            "runtime": self.runtime, "samples": self.samples, "seconds": self.seconds,
                            "checks": [c.to_json() for c in self.checks], "reported": self.reported,
                            "notes": self.notes, "error": None})

    def format_text(self) -> str:
        lines = [c.format_line(self.runtime, self.samples) for c in self.checks]
        lines += [f"  {c.metric} scored output '{c.output}'" + (f" on axis {c.class_axis}" if c.class_axis is not None
                                                                 else "") + f" ({c.basis})"
                  for c in self.checks if c.output]
        lines += [f"  {c.metric}: {c.basis}" for c in self.checks if c.source == "evaluation function"]
        for value in self.reported:
            lines.append(f"  reported, not gated: {value['metric']}@{value['output']}: {_pair(value)}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_junit(self) -> str:
        """JUnit XML: one test case per gated metric (with its time); reported metrics are suite properties."""
        failures = sum(not c for c in self.checks)
        suite = ET.Element("testsuite", name="quant.gate", tests=str(len(self.checks)), failures=str(failures),
                           errors="0", skipped="0", time=f"{self.seconds:.3f}")
        properties = ET.SubElement(suite, "properties")
        ET.SubElement(properties, "property", name="runtime", value=self.runtime)
        ET.SubElement(properties, "property", name="samples", value=str(self.samples))
        for value in self.reported:
            text = _pair(value)
            ET.SubElement(properties, "property", name=f"{value['metric']}@{value['output']}", value=text)
        for check in self.checks:
            case = ET.SubElement(suite, "testcase", classname="quant.gate", name=check.label,
                                 time=f"{check.seconds:.3f}")
            ET.SubElement(case, "system-out").text = check.format_line(self.runtime, self.samples)
            if not check:
                ET.SubElement(case, "failure", message=check.criterion, type="AccuracyGate").text = \
                    check.format_line(self.runtime, self.samples)
        return _junit_document(suite)


def _junit_document(suite: ET.Element) -> str:
    root = ET.Element("testsuites", name="quant", tests=suite.get("tests"), failures=suite.get("failures"),
                      errors=suite.get("errors"), time=suite.get("time"))
    root.append(suite)
    for element in root.iter():  # names from the model (a metric's output) may hold characters XML cannot
        element.attrib.update({key: xml_text(value) for key, value in element.attrib.items()})
        element.text = None if element.text is None else xml_text(element.text)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def error_json(message: str, hint: str | None) -> dict:
    """gate.json for a run that stopped on bad input (exit 2): no checks, the error."""
    return {"schema": SCHEMA, "format_version": FORMAT_VERSION, "passed": False, "runtime": None, "samples": 0,
            "seconds": 0.0, "checks": [], "reported": [], "notes": [], "error": {"message": message, "hint": hint}}


def error_junit(message: str, hint: str | None) -> str:
    """JUnit XML for a run that stopped on bad input: one test case with an <error>."""
    suite = ET.Element("testsuite", name="quant.gate", tests="1", failures="0", errors="1", skipped="0", time="0.000")
    case = ET.SubElement(suite, "testcase", classname="quant.gate", name="gate", time="0.000")
    ET.SubElement(case, "error", message=message, type="BadInput").text = message + (f"\nHint: {hint}" if hint else "")
    return _junit_document(suite)


def _check_min_value(metric: Metric, min_value: float | None) -> None:
    """A --min-value that reads as a fraction of a percent metric (0.99 for 99%), or that no INT8 model can reach
    (above 100%, a cosine above 1), would make the gate pass or fail whatever the model does."""
    if min_value is None or not metric.higher_is_better:
        return
    if metric.unit == "%" and (min_value > 100 or 0 < min_value <= 1):
        meant = f"--min-value {min_value * 100:g} for {min_value * 100:g}%" if min_value <= 1 else "a value 0..100"
        raise QuantError(f"--min-value {min_value:g} for {metric.name}: {metric.name} is in percent (0..100), so this "
                         f"bound is {min_value:g}%, " + ("which almost any model meets" if min_value <= 1 else
                                                          "which no model reaches"), hint=f"pass {meant}")
    if metric.name == "cosine" and min_value > 1:
        raise QuantError(f"--min-value {min_value:g} for cosine: a cosine is at most 1, so no model reaches it",
                         hint="pass a value in (0, 1], e.g. --min-value 0.999")


def _check_bound(flag: str, value, metric: Metric, low: float | None = None) -> None:
    """A bound is a finite number (>= low): the CLI's parser checks it; from Python (max_drop=-1, NaN, "1") it
    was compared as given, and a gate that no model can pass (or a TypeError) came out."""
    if value is None:
        return
    number = hasattr(value, "__float__") and not isinstance(value, bool)  # int, float, numpy scalars; not "1"
    if not number or not math.isfinite(float(value)) or (low is not None and float(value) < low):
        where = f" >= {low:g}" if low is not None else ""
        raise QuantError(f"{flag} for {metric.name} must be a finite number{where}, got {value!r:.40}",
                         hint=f"e.g. {flag} 0.5" if low is not None else f"e.g. {flag} 30")


def decide(metric: Metric, fp32: float, int8: float, max_drop: float | None, relative: bool = False,
           min_value: float | None = None) -> tuple[bool, float, str]:
    """(passed, drop, criterion text). ``max_drop`` in the metric's printed units, or % of FP32 if relative."""
    if max_drop is None and min_value is None:
        raise QuantError(f"the gate needs a bound for metric '{metric.name}'",
                         hint="pass --max-drop X (and --relative) or --min-value V after its --metric")
    _check_bound("--max-drop", max_drop, metric, low=0.0)
    _check_bound("--min-value", min_value, metric)
    if max_drop is not None and not metric.has_reference_value:
        raise QuantError(f"'{metric.name}' compares INT8 with FP32 itself, so FP32 has no value to drop from",
                         hint=f"gate it with --min-value, e.g. --metric {metric.name} --min-value 30")
    _check_min_value(metric, min_value)
    drop = metric.drop(fp32, int8, relative) if metric.has_reference_value else float("nan")
    checks, texts = [], []
    if max_drop is not None:
        ok = drop <= max_drop + TOLERANCE
        checks.append(ok)
        unit = drop_unit(metric.unit, relative)
        unit = f" {unit}" if unit else ""
        texts.append(f"drop {shown(drop, [max_drop])}{unit} {'<=' if ok else '>'} max {max_drop + 0.0}{unit}")
    if min_value is not None:
        ok = int8 >= min_value if metric.higher_is_better else int8 <= min_value
        checks.append(ok)
        sign = (">=" if ok else "<") if metric.higher_is_better else ("<=" if ok else ">")
        texts.append(f"INT8 {shown(int8, [min_value])} {sign} {'min' if metric.higher_is_better else 'max'} "
                     f"{min_value + 0.0}")
    return all(checks), drop, "; ".join(texts)
