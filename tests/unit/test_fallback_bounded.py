"""The bounded (bisection) fallback search on synthetic models whose metric is known for every float set."""
import pytest

from quant.eval.fallback import bisect_fallback, evaluation_budget, fallback
from quant.eval.scoring import Metric

ERROR_RATE = Metric(name="error", higher_is_better=False)


class Held:
    """score() = error(float set) (+ offset on a 'subset'); FP32 has error 0. Counts its evaluations."""

    def __init__(self, error, samples=500, offset=0.0):
        self.error, self.samples, self.offset, self.calls = error, samples, offset, 0

    def fp32_score(self, metric):
        return 0.0

    def score(self, runner, metric):
        self.calls += 1
        return self.error(runner) + (self.offset if self.error(runner) > 0 else 0.0)


LAYERS = [f"L{i}" for i in range(70)]


def _search(error, ranking=LAYERS, screen=None, **kw):
    held = Held(error)
    lines = []
    outcome = bisect_fallback(held, ERROR_RATE, ranking, lambda keep: keep, max_drop=0.01, screen=screen,
                              log=lines.append, **kw)
    return outcome, held, lines


def test_culprit_ranked_last_costs_a_bisection_not_seventy_evaluations():
    # One layer (ranked last of 70 by the cheap proxy) breaks the model: the old greedy re-ranking tries
    # every layer one at a time; the bisection finds it in about log2(70) evaluations.
    def error(float_set):
        return 0.0 if "L69" in float_set else 0.5

    outcome, held, lines = _search(error)
    assert outcome.passed and [l["node"] for l in outcome.float_layers] == ["L69"]
    budget = evaluation_budget(70, {"full": 1})
    assert outcome.evaluations == held.calls <= 10 < budget["full"] == 19
    greedy = Held(error)
    assert fallback(greedy, ERROR_RATE, LAYERS, lambda keep: keep, max_drop=0.01).evaluations >= 70
    # a line for every step and every bisection probe: never a long silence
    assert sum(line.startswith("fallback step") for line in lines) == len(outcome.path)
    assert sum(line.startswith("fallback probe") for line in lines) == outcome.evaluations - 3
    assert all("evaluations" in line and line.endswith(" s") for line in lines)


def test_several_needed_layers_are_found_and_extra_ones_pruned():
    cost = {"L3": 0.3, "L40": 0.2, "L41": 0.004, "L66": 0.25}

    def error(float_set):
        return sum(v for k, v in cost.items() if k not in float_set)

    outcome, held, _ = _search(error)
    assert outcome.passed and {l["node"] for l in outcome.float_layers} == {"L3", "L40", "L66"}
    assert outcome.evaluations <= outcome.budget["full"] <= 3 + 3 * 16


def test_plateau_of_two_layers_needed_together():
    def error(float_set):
        return 0.0 if {"L10", "L50"} <= float_set else 1.0

    outcome, _, _ = _search(error)
    assert outcome.passed and {l["node"] for l in outcome.float_layers} == {"L10", "L50"}


def test_screening_subset_spends_full_evaluations_only_to_confirm():
    cost = {"L5": 0.3, "L60": 0.2}

    def error(float_set):
        return sum(v for k, v in cost.items() if k not in float_set)

    screen = Held(error, samples=125)
    outcome, full, lines = _search(error, screen=screen)
    assert outcome.passed and {l["node"] for l in outcome.float_layers} == {"L5", "L60"}
    assert full.calls == outcome.evaluations == 2  # all-INT8 and the confirmation
    assert screen.calls == outcome.screen_evaluations <= outcome.budget["screen"]
    assert "subset of 125 samples" in lines[1] and "confirm on the full" in lines[-1]


def test_screen_too_optimistic_continues_on_the_full_set():
    # On the subset L7 alone looks enough; on the full set L30 is needed as well.
    def full_error(float_set):
        return (0.0 if "L7" in float_set else 0.3) + (0.0 if "L30" in float_set else 0.05)

    def screen_error(float_set):
        return 0.0 if "L7" in float_set else 0.3

    screen = Held(screen_error, samples=125)
    outcome, full, _ = _search(full_error, screen=screen)
    assert outcome.passed and {l["node"] for l in outcome.float_layers} == {"L7", "L30"}
    assert outcome.evaluations <= outcome.budget["full"]


def test_impossible_bound_is_reported_not_met():
    outcome, held, _ = _search(lambda s: 0.5 if len(s) < 70 else 0.02)
    assert not outcome.passed and "> max" in outcome.criterion and held.calls <= 3


def test_choices_are_deterministic():
    cost = {f"L{i}": 0.01 * (i % 7) for i in range(70)}

    def error(float_set):
        return sum(v for k, v in cost.items() if k not in float_set) / 10

    first, _, _ = _search(error)
    second, _, _ = _search(error)
    assert first.to_json() == second.to_json() and first.passed


def test_refine_rounds_bound_a_dense_search_and_keep_the_bound():
    # 15 of the first 16 ranked layers are each needed (L7 is not): unlimited rounds prove each one needed
    # (about 2 evaluations per layer); refine_rounds=0 stops after the bisection and keeps its whole prefix.
    needed = {f"L{i}" for i in range(16)} - {"L7"}

    def error(float_set):
        return 0.02 * len(needed - set(float_set))

    full, full_held, _ = _search(error)
    assert full.passed and {l["node"] for l in full.float_layers} == needed
    bounded, held, lines = _search(error, refine_rounds=0)
    assert bounded.passed and {l["node"] for l in bounded.float_layers} == needed | {"L7"}
    assert held.calls <= 3 + 2 * 7 < full_held.calls
    assert "refinement stopped after 0 round(s)" in lines[-1]
    two, _, _ = _search(error, refine_rounds=2)
    assert two.passed and needed <= {l["node"] for l in two.float_layers} and two.evaluations < full.evaluations
