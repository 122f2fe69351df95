"""The fallback search on a synthetic model whose metric is known for every set of float layers."""
from quant.eval.fallback import fallback, naive_first_last
from quant.eval.scoring import Metric


class FakeHeldOut:
    """score() returns error(float set); FP32 (everything float) has error 0."""

    def __init__(self, error):
        self.error = error

    def fp32_score(self, metric):
        return 0.0

    def score(self, runner, metric):
        return self.error(runner)


ERROR_RATE = Metric(name="error", higher_is_better=False)
LAYERS = [f"L{i}" for i in range(8)]


def test_plateau_two_layers_needed_together_then_pruned():
    # The model is broken (error 1) unless both L3 and L6 are in float; each alone does nothing.
    def error(float_set):
        return 0.0 if {"L3", "L6"} <= float_set else 1.0

    outcome = fallback(FakeHeldOut(error), ERROR_RATE, LAYERS, lambda keep: keep, max_drop=0.01)
    assert outcome.passed
    assert {layer["node"] for layer in outcome.float_layers} == {"L3", "L6"}
    assert any("at once" in step["action"] for step in outcome.path)


def test_greedy_follows_the_ranking_and_stops_at_the_bound():
    cost = {"L0": 0.05, "L1": 0.3, "L2": 0.02, "L5": 0.2}

    def error(float_set):
        return sum(v for k, v in cost.items() if k not in float_set)

    ranking = ["L1", "L5", "L0", "L2", "L3", "L4", "L6", "L7"]
    outcome = fallback(FakeHeldOut(error), ERROR_RATE, ranking, lambda keep: keep, max_drop=0.1)
    assert outcome.passed and [l["node"] for l in outcome.float_layers] == ["L1", "L5"]
    naive = naive_first_last(FakeHeldOut(error), ERROR_RATE, LAYERS, lambda keep: keep, max_drop=0.1)
    assert naive == {"first_n": 6, "last_n": 7}  # the last 7 leave only L0 (0.05) in INT8


def test_impossible_bound_is_reported_not_met():
    outcome = fallback(FakeHeldOut(lambda s: 1.0 if len(s) < 8 else 0.5), ERROR_RATE, LAYERS, lambda k: k,
                       max_drop=0.1)
    assert not outcome.passed and "> max" in outcome.criterion
