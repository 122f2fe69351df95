"""Bad inputs found by the lead while merging: options a built-in metric cannot honour."""
from __future__ import annotations

from bad_inputs.cases import HELDOUT, MODEL, Case


def lower_is_better_on_top1(d):
    # top-1 is higher-is-better by definition: the flag was silently ignored and the gate judged as usual
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", "top1", "--lower-is-better", "--max-drop", "1"]


def lower_is_better_on_the_second_gated_metric(d):
    # the flag after a second --metric belongs to that one (sqnr), the first (top1) stays as it is
    return ["gate", MODEL, MODEL, "--data", HELDOUT, "--metric", "top1", "--max-drop", "1", "--metric", "sqnr",
            "--lower-is-better", "--min-value", "30"]


CASES = [
    Case("lower_is_better_on_top1", lower_is_better_on_top1, "--lower-is-better does not apply to the metric 'top1'"),
    Case("lower_is_better_on_the_second_gated_metric", lower_is_better_on_the_second_gated_metric,
         "--lower-is-better does not apply to the metric 'sqnr'"),
]
