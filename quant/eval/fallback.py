"""Mixed-precision fallback: greedily return the most sensitive layers to float until the gate holds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from quant.core.io import to_jsonable
from quant.eval.gate import decide
from quant.eval.heldout import HeldOut
from quant.eval.scoring import Metric


@dataclass
class FallbackResult:
    passed: bool
    float_layers: list[dict]  # [{"node", "score"}] in the order they were returned to float
    path: list[dict]  # every step: {"step", "float_layers", "value", "drop", "passed", "action"}
    fp32: float
    metric: str
    criterion: str
    evaluations: int = 0
    naive: dict = field(default_factory=dict)
    output: str | None = None  # the output the metric scored (None: a user metric given every output)
    output_basis: str = ""
    unit: str = ""
    relative: bool = False

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        from quant.eval.gate import drop_unit
        from quant.schemas import stamp

        return to_jsonable(stamp("fallback", {"passed": self.passed, "metric": self.metric, "output": self.output,
                "output_basis": self.output_basis, "unit": self.unit, "drop_unit": drop_unit(self.unit, self.relative),
                "fp32": self.fp32, "criterion": self.criterion,
                "float_layers": self.float_layers, "path": self.path, "evaluations": self.evaluations,
                "naive_first_last": self.naive}))

    def format_text(self) -> str:
        lines = [f"{self.metric} scored output '{self.output}' ({self.output_basis})"] if self.output else []
        lines.append(f"{'step':>4} {'float layers':>12} {'value':>10} {'drop':>9}  change")
        for step in self.path:
            drop = "-" if step["drop"] != step["drop"] else f"{step['drop']:.4f}"  # NaN: a metric without FP32 value
            lines.append(f"{step['step']:>4} {len(step['float_layers']):>12} {step['value']:>10.4f} "
                         f"{drop:>9}  {step['action']}")
        verdict = "meets" if self.passed else "does NOT meet"
        lines.append(f"{len(self.float_layers)} layer(s) in float {verdict} the bound ({self.criterion}); "
                     f"{self.evaluations} evaluations")
        if self.naive:
            lines.append("naive search: " + ", ".join(f"{k} needs {v if v is not None else 'no N'} layers"
                                                      for k, v in self.naive.items()))
        return "\n".join(lines)


def fallback(heldout: HeldOut, metric: Metric, ranking: Sequence[str], make_runner: Callable[[frozenset], object],
             max_drop: float | None, relative: bool = False, min_value: float | None = None,
             max_float: int | None = None, progress=None, log: Callable[[str], None] | None = None) -> FallbackResult:
    """Greedy search, then pruning.

    ``ranking`` lists layers most sensitive first. Each step returns the next layer to float; when that does
    not improve the metric, the remaining layers are re-ranked by trying each one on top of the current
    float set. When no single layer helps (a plateau: several layers are each enough to break the model),
    blocks of 2, 4, 8 ... next-ranked layers are tried until one helps. Once the bound holds, layers are
    returned to INT8 one by one (last added first) wherever the bound still holds without them.
    """
    fp32 = heldout.fp32_score(metric)
    evaluations = 0
    cache: dict[frozenset, float] = {}

    def evaluate(float_set: Sequence[str]) -> float:
        nonlocal evaluations
        key = frozenset(float_set)
        if key not in cache:
            evaluations += 1
            if progress is not None:
                progress.update(1)
            cache[key] = heldout.score(make_runner(key), metric)
        return cache[key]

    def better(a: float, b: float) -> bool:
        return a > b if metric.higher_is_better else a < b

    def record(action: str) -> None:
        passed, drop, _ = decide(metric, fp32, value, max_drop, relative, min_value)
        path.append({"step": len(path), "float_layers": list(float_set), "value": value, "drop": drop,
                     "passed": passed, "action": action})
        if log is not None:
            log(f"step {path[-1]['step']}: {len(float_set)} float, {metric.name} {value:.4f} ({action})")

    float_set: list[str] = []
    path: list[dict] = []
    value = evaluate(float_set)
    record("all layers INT8")
    remaining = list(ranking)
    limit = len(remaining) if max_float is None else min(max_float, len(remaining))

    def holds() -> bool:
        return decide(metric, fp32, value, max_drop, relative, min_value)[0]

    while not holds() and remaining and len(float_set) < limit:
        added = [remaining[0]]
        new_value = evaluate(float_set + added)
        action = f"+ {added[0]}"
        if not better(new_value, value):
            trials = {layer: evaluate(float_set + [layer]) for layer in remaining}
            remaining = sorted(remaining, key=lambda layer: trials[layer], reverse=metric.higher_is_better)
            added, new_value = [remaining[0]], trials[remaining[0]]
            action = f"+ {added[0]} (re-ranked {len(remaining)} layers: the next in rank did not help)"
            size = 2
            while not better(new_value, value) and size <= len(remaining) and len(float_set) + size <= limit:
                added = remaining[:size]
                new_value = evaluate(float_set + added)
                action = f"+ {len(added)} layers at once (no single layer helped)"
                size *= 2
        for layer in added:
            remaining.remove(layer)
        float_set += added
        value = new_value
        record(action)
    if holds():
        for layer in list(reversed(float_set)):
            trial = [name for name in float_set if name != layer]
            trial_value = evaluate(trial)
            if decide(metric, fp32, trial_value, max_drop, relative, min_value)[0]:
                float_set, value = trial, trial_value
                record(f"- {layer} (back to INT8: the bound holds without it)")
    passed, _, criterion = decide(metric, fp32, value, max_drop, relative, min_value)
    chosen = [{"node": name, "score": cache[frozenset(float_set[: i + 1])] if frozenset(float_set[: i + 1]) in cache
               else None} for i, name in enumerate(float_set)]
    return FallbackResult(passed, chosen, path, fp32, metric.name, criterion, evaluations)


def naive_first_last(heldout: HeldOut, metric: Metric, layers: Sequence[str], make_runner: Callable[[frozenset], object],
                     max_drop: float | None, relative: bool = False, min_value: float | None = None,
                     progress=None) -> dict:
    """Smallest N for which keeping the first N (or the last N) layers in float meets the bound."""
    fp32 = heldout.fp32_score(metric)
    out = {}
    for name, pick in (("first_n", lambda n: layers[:n]), ("last_n", lambda n: layers[len(layers) - n:])):
        out[name] = None
        for n in range(0, len(layers) + 1):
            value = heldout.score(make_runner(frozenset(pick(n))), metric)
            if progress is not None:
                progress.update(1)
            if decide(metric, fp32, value, max_drop, relative, min_value)[0]:
                out[name] = n
                break
    return out
