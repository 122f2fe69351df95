"""Mixed-precision fallback: greedily return the most sensitive layers to float until the gate holds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from quant.core.io import to_jsonable
from quant.core.numbers import shown, with_infinities
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
    evaluations: int = 0  # full held-out evaluations
    naive: dict = field(default_factory=dict)
    output: str | None = None  # the output the metric scored (None: a user metric given every output)
    output_basis: str = ""
    unit: str = ""
    relative: bool = False
    screen_evaluations: int = 0  # evaluations on the screening subset (bisect search)
    budget: dict = field(default_factory=dict)  # the documented bound on both counts (bisect search)
    quantized_layers: int | None = None  # how many layers the calibration quantizes (all of them in float: FP32)

    def __bool__(self) -> bool:
        return self.passed

    def to_json(self) -> dict:
        from quant.eval.gate import drop_unit
        from quant.schemas import stamp

        return to_jsonable(stamp("fallback", {"passed": self.passed, "metric": self.metric, "output": self.output,
                "output_basis": self.output_basis, "unit": self.unit, "drop_unit": drop_unit(self.unit, self.relative),
                **with_infinities({"fp32": self.fp32}, ("fp32",)), "criterion": self.criterion,
                "float_layers": self.float_layers,
                "path": [with_infinities(step, ("value", "drop")) for step in self.path], "evaluations": self.evaluations,
                "screen_evaluations": self.screen_evaluations, "evaluation_budget": self.budget,
                "naive_first_last": self.naive}))

    def format_text(self) -> str:
        lines = [f"{self.metric} scored output '{self.output}' ({self.output_basis})"] if self.output else []
        lines.append(f"{'step':>4} {'float layers':>12} {'scored on':>12} {'value':>10} {'drop':>9}  change")
        for step in self.path:
            drop = "-" if step["drop"] != step["drop"] else shown(step["drop"], [0.0])  # NaN: no FP32 value (SQNR)
            scored = f"{'subset' if step.get('data') == 'subset' else 'all'} {step.get('samples') or ''}".strip()
            lines.append(f"{step['step']:>4} {len(step['float_layers']):>12} {scored:>12} {step['value']:>10.4f} "
                         f"{drop:>9}  {step['action']}")
        verdict = "meets" if self.passed else "does NOT meet"
        screened = f" + {self.screen_evaluations} on the screening subset" if self.screen_evaluations else ""
        lines.append(f"{len(self.float_layers)} layer(s) in float {verdict} the bound ({self.criterion}); "
                     f"{self.evaluations} evaluations{screened}")
        if self.float_layers and len(self.float_layers) == self.quantized_layers:
            lines.append(f"note: that is every layer the calibration quantizes ({self.quantized_layers}): no weighted "
                         "layer is left in INT8")
        if self.naive:
            lines.append("naive search: " + ", ".join(f"{k} needs {v if v is not None else 'no N'} layers"
                                                      for k, v in self.naive.items()))
        return "\n".join(lines)


def fallback(heldout: HeldOut, metric: Metric, ranking: Sequence[str], make_runner: Callable[[frozenset], object],
             max_drop: float | None, relative: bool = False, min_value: float | None = None,
             max_float: int | None = None, progress=None, log: Callable[[str], None] | None = None,
             score_many: Callable[[Sequence[frozenset]], list[float]] | None = None) -> FallbackResult:
    """Greedy search, then pruning.

    ``ranking`` lists layers most sensitive first. Each step returns the next layer to float; when that does
    not improve the metric, the remaining layers are re-ranked by trying each one on top of the current
    float set. When no single layer helps (a plateau: several layers are each enough to break the model),
    blocks of 2, 4, 8 ... next-ranked layers are tried until one helps. Once the bound holds, layers are
    returned to INT8 one by one (last added first) wherever the bound still holds without them.

    ``score_many`` evaluates independent keep-float sets (the re-ranking trials) at once, e.g. as Ray
    tasks; the search makes the same choices either way.
    """
    fp32 = heldout.fp32_score(metric)
    evaluations = 0
    cache: dict[frozenset, float] = {}

    def evaluate_many(float_sets: Sequence[Sequence[str]]) -> list[float]:
        nonlocal evaluations
        keys = [frozenset(f) for f in float_sets]
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        if score_many is not None and len(todo) > 1:
            values = score_many(todo)
        else:
            values = [heldout.score(make_runner(key), metric) for key in todo]
        for key, new in zip(todo, values):
            cache[key] = new
        evaluations += len(todo)
        if progress is not None and todo:
            progress.update(len(todo))
        return [cache[k] for k in keys]

    def evaluate(float_set: Sequence[str]) -> float:
        return evaluate_many([float_set])[0]

    def better(a: float, b: float) -> bool:
        return a > b if metric.higher_is_better else a < b

    def record(action: str) -> None:
        passed, drop, _ = decide(metric, fp32, value, max_drop, relative, min_value)
        path.append({"step": len(path), "float_layers": list(float_set), "value": value, "drop": drop,
                     "passed": passed, "action": action, "samples": getattr(heldout, "samples", None)})
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
            trials = dict(zip(remaining, evaluate_many([float_set + [layer] for layer in remaining])))
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


SCREEN_MIN_SAMPLES = 64
"""Held-out sets up to twice this size are searched on in full; larger ones are screened on a subset."""
SCREEN_FRACTION = 4
"""The screening subset is every k-th batch, about 1/SCREEN_FRACTION of the held-out samples (>= SCREEN_MIN_SAMPLES)."""


def screening_subset(heldout: HeldOut) -> HeldOut | None:
    """Every k-th batch of ``heldout`` (deterministic, spread over the whole set), or None when it is small."""
    samples = heldout.samples
    if samples <= 2 * SCREEN_MIN_SAMPLES or len(heldout.batches) < 2:
        return None
    wanted = max(SCREEN_MIN_SAMPLES, -(-samples // SCREEN_FRACTION))
    per_batch = samples / len(heldout.batches)
    stride = max(1, int(len(heldout.batches) // max(1, round(wanted / per_batch))))
    if stride == 1:
        return None
    picked = range(0, len(heldout.batches), stride)
    return HeldOut([heldout.batches[i] for i in picked], [heldout.reference[i] for i in picked], heldout.labels,
                   heldout.output_names, f"{heldout.description} (every {stride}th batch)")


def evaluation_budget(layers: int, added: dict[str, int]) -> dict[str, int]:
    """Upper bounds on the evaluations :func:`bisect_fallback` makes over ``layers`` candidates, given how many
    layers its bisection rounds added on each data set (``added``: {"screen": a, "full": b}; pruned ones count).

    Per added layer: a galloping search plus a bisection over at most ``layers`` prefixes (at most
    2 bit_length(layers) evaluations), the new set's own evaluation, and one pruning trial (with
    ``prune``); per data set, all-INT8 and all-float once; on the full set, also the confirmation of the
    screened result.
    """
    steps = 2 * layers.bit_length() + 2
    screen = added.get("screen")
    full = 3 + added.get("full", 0) * steps
    return {"screen": 0 if screen is None else 2 + screen * steps, "full": full}


def bisect_fallback(heldout: HeldOut, metric: Metric, ranking: Sequence[str], make_runner: Callable[[frozenset], object],
                    max_drop: float | None, relative: bool = False, min_value: float | None = None,
                    max_float: int | None = None, screen: HeldOut | None = None,
                    log: Callable[[str], None] | None = None, clock: Callable[[], float] | None = None,
                    prune: bool = False, refine_rounds: int | None = None) -> FallbackResult:
    """Bounded search: bisection over the ranking, on a screening subset, confirmed on the full held-out set.

    Invariant: ``float ∪ candidates`` meets the bound (at the start, all layers in float: FP32). Each round
    finds the shortest prefix of ``candidates`` (most sensitive first) that meets the bound together with
    the layers already chosen, keeps its last layer in float and drops the rest of the list after it. The
    first round bisects (about log2(n) evaluations, however badly the ranking places the layer); later
    rounds gallop down from the end of the list (1, 2, 4 ... layers back), so a model where every layer
    matters costs about 2 evaluations per layer, and a sparse one at most twice the bisection. When the
    metric is monotone (more layers in float never hurt), every layer chosen is needed: without it the set
    is contained in one that missed. ``prune=True`` also tries each chosen layer back in INT8 (for metrics
    that are not monotone; one evaluation per layer). All of this runs on
    ``screen`` (a subset of the held-out data) when given; the result is then evaluated on the full set,
    and when it misses there the same rounds continue on the full set. Every choice depends only on the
    metric values, so the search is deterministic. ``log`` gets one line per step (evaluations, seconds).

    ``refine_rounds``: at most this many rounds after the first on each data set (None: no limit); where
    the limit stops them, every remaining candidate stays in float too (the invariant set, which meets the
    bound there): a bound on the cost of a model where many layers matter (about 2 evaluations per round),
    at the price of maybe more float layers than needed.
    """
    import time

    clock = clock or time.perf_counter
    start = clock()
    sets = {"full": heldout, "screen": screen if screen is not None else heldout}
    fp32 = {name: data.fp32_score(metric) for name, data in sets.items()}
    counts = {"full": 0, "screen": 0}
    caches: dict[str, dict[frozenset, float]] = {"full": {}, "screen": {}}
    screened = screen is not None

    def evaluate(float_set, on: str) -> float:
        on = on if screened else "full"
        key = frozenset(float_set)
        if key not in caches[on]:
            counts[on] += 1
            caches[on][key] = sets[on].score(make_runner(key), metric)
        return caches[on][key]

    def passes(float_set, on: str) -> bool:
        on = on if screened else "full"
        return decide(metric, fp32[on], evaluate(float_set, on), max_drop, relative, min_value)[0]

    path: list[dict] = []

    def record(float_set, on: str, action: str, step: bool = True) -> None:
        """A step of the path (and a log line); ``step=False``: a bisection probe, logged only."""
        on = on if screened else "full"
        value = evaluate(float_set, on)
        passed, drop, _ = decide(metric, fp32[on], value, max_drop, relative, min_value)
        if step:
            path.append({"step": len(path), "float_layers": list(float_set), "value": value, "drop": drop,
                         "passed": passed, "action": action, "data": "subset" if on == "screen" else "full",
                         "samples": getattr(sets[on], "samples", None)})
        if log is not None:
            where = f"subset of {sets[on].samples}" if on == "screen" else f"all {sets[on].samples}"
            spent = f"{counts['screen']} subset + {counts['full']} full" if screened else f"{counts['full']}"
            label = f"step {path[-1]['step']}" if step else "probe"
            log(f"fallback {label}: {len(float_set)} layer(s) in float, {metric.name} {value:.4f} "
                f"on {where} samples ({'meets' if passed else 'misses'} the bound; {action}); "
                f"evaluations {spent}; {clock() - start:.1f} s")

    limit = len(ranking) if max_float is None else min(max_float, len(ranking))
    chosen: list[str] = []
    added = {"screen": 0, "full": 0} if screened else {"full": 0}
    record(chosen, "full", "all layers INT8")
    if not passes(chosen, "full"):
        for on in ("screen", "full") if screened else ("full",):
            before = len(path)
            chosen = _rounds(chosen, [n for n in ranking if n not in chosen], on, passes, record, limit, refine_rounds)
            added[on] = sum(step["action"].startswith("+ ") for step in path[before:])
            if prune and passes(chosen, on):
                chosen = _prune(chosen, on, passes, record)
            if on == "screen":
                record(chosen, "full", "confirm on the full held-out set")
                if passes(chosen, "full"):
                    break
    value = evaluate(chosen, "full")
    passed, _, criterion = decide(metric, fp32["full"], value, max_drop, relative, min_value)
    float_layers = [{"node": name, "score": None} for name in chosen]
    if float_layers:
        float_layers[-1]["score"] = value
    result = FallbackResult(passed, float_layers, path, fp32["full"], metric.name, criterion, counts["full"])
    result.screen_evaluations = counts["screen"]
    result.budget = evaluation_budget(len(ranking), added)
    return result


def _rounds(chosen, candidates, on, passes, record, limit, refine_rounds=None):
    """Add layers until ``chosen`` meets the bound on ``on``: one search over ``candidates`` per layer (after
    the first round, at most ``refine_rounds`` more; then the remaining candidates all at once)."""
    chosen = list(chosen)
    first = True
    rounds = 0
    while not passes(chosen, on) and candidates and len(chosen) < limit:  # chosen: evaluated by its step
        if first and not passes(chosen + candidates, on):  # not even with every candidate in float
            record(chosen + candidates, on, f"the bound is not met even with all {len(candidates)} candidates in float")
            break
        if not first and refine_rounds is not None and rounds >= refine_rounds:
            if len(chosen) + len(candidates) <= limit:
                chosen += candidates
                record(chosen, on, f"+ the {len(candidates)} remaining candidate(s) (refinement stopped after "
                       f"{refine_rounds} round(s): this set met the bound in the search)")
            break
        rounds += 0 if first else 1
        low, high = 0, len(candidates)  # prefix `low` misses, prefix `high` meets the bound

        def probe(size):
            meets = passes(chosen + candidates[:size], on)
            record(chosen + candidates[:size], on, f"bisection: the first {size} of {len(candidates)} candidates "
                   "in float", step=False)
            return meets

        if not first:  # gallop down from the end: 1 probe (+ the new set itself) per round when every layer matters
            step = 1
            while high - step > low:
                if not probe(high - step):
                    low = high - step
                    break
                high, step = high - step, 2 * step
        while high - low > 1:
            middle = (low + high) // 2
            if probe(middle):
                high = middle
            else:
                low = middle
        layer = candidates[high - 1]
        chosen.append(layer)
        candidates = candidates[: high - 1]
        first = False
        record(chosen, on, f"+ {layer} (the shortest prefix of the ranking that meets the bound ends here)")
    return chosen


def _prune(chosen, on, passes, record):
    """Return each chosen layer to INT8 (first chosen first) where the bound still holds without it."""
    for layer in list(chosen):
        trial = [name for name in chosen if name != layer]
        if len(chosen) > 1 and passes(trial, on):
            chosen = trial
            record(chosen, on, f"- {layer} (back to INT8: the bound holds without it)")
    return chosen
