"""The accuracy gate: pass or fail on one metric's drop (absolute or relative) or minimum value."""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from quant.core.errors import QuantError
from quant.core.io import to_jsonable
from quant.eval.scoring import Metric


@dataclass
class GateResult:
    """Truthy when the gate passes."""

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
    runtime: str = "emulate"
    samples: int = 0
    others: dict[str, dict] = field(default_factory=dict)  # reported, not gated: name -> {fp32, int8}

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        return to_jsonable({"passed": self.passed, "metric": self.metric, "unit": self.unit, "fp32": self.fp32, "int8": self.int8,
                "drop": self.drop, "drop_unit": "% of FP32" if self.relative else (self.unit or "points"),
                "max_drop": self.max_drop, "relative": self.relative, "min_value": self.min_value,
                "criterion": self.criterion, "runtime": self.runtime, "samples": self.samples, "reported": self.others})

    def format_text(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        unit = f" {self.unit}" if self.unit and self.unit != "%" else ("%" if self.unit == "%" else "")
        fp32 = "n/a" if not math.isfinite(self.fp32) else f"{self.fp32:.4f}{unit}"
        lines = [f"{verdict}: {self.metric} FP32 {fp32}, INT8 {self.int8:.4f}{unit} ({self.runtime}, "
                 f"{self.samples} samples); {self.criterion}"]
        for name, value in self.others.items():
            lines.append(f"  {name}: FP32 {value['fp32']:.4f}, INT8 {value['int8']:.4f}")
        return "\n".join(lines)

    def to_junit(self) -> str:
        """JUnit XML: one test case per metric; only the gated one can fail."""
        suite = ET.Element("testsuite", name="quant.gate", tests=str(1 + len(self.others)),
                           failures="0" if self.passed else "1", errors="0")
        case = ET.SubElement(suite, "testcase", classname="quant.gate", name=self.metric)
        ET.SubElement(case, "system-out").text = self.format_text().splitlines()[0]
        if not self.passed:
            ET.SubElement(case, "failure", message=self.criterion, type="AccuracyGate").text = self.format_text()
        for name, value in self.others.items():
            other = ET.SubElement(suite, "testcase", classname="quant.gate.reported", name=name)
            ET.SubElement(other, "system-out").text = f"FP32 {value['fp32']}, INT8 {value['int8']} (reported, not gated)"
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def decide(metric: Metric, fp32: float, int8: float, max_drop: float | None, relative: bool = False,
           min_value: float | None = None) -> tuple[bool, float, str]:
    """(passed, drop, criterion text). ``max_drop`` in the metric's printed units, or % of FP32 if relative."""
    if max_drop is None and min_value is None:
        raise QuantError("the gate needs a bound", hint="pass --max-drop X (and --relative) or --min-value V")
    if max_drop is not None and not metric.has_reference_value:
        raise QuantError(f"'{metric.name}' compares INT8 with FP32 itself, so FP32 has no value to drop from",
                         hint=f"gate it with --min-value, e.g. --metric {metric.name} --min-value 30")
    drop = metric.drop(fp32, int8, relative) if metric.has_reference_value else float("nan")
    checks, texts = [], []
    if max_drop is not None:
        ok = drop <= max_drop + 1e-12
        checks.append(ok)
        unit = "% of FP32" if relative else (metric.unit or "points").replace("%", "points")
        texts.append(f"drop {drop:.4f} {unit} {'<=' if ok else '>'} max {max_drop} {unit}")
    if min_value is not None:
        ok = int8 >= min_value if metric.higher_is_better else int8 <= min_value
        checks.append(ok)
        sign = (">=" if ok else "<") if metric.higher_is_better else ("<=" if ok else ">")
        texts.append(f"INT8 {int8:.4f} {sign} {'min' if metric.higher_is_better else 'max'} {min_value}")
    return all(checks), drop, "; ".join(texts)
