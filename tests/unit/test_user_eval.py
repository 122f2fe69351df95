"""quant.eval.user_eval without a model: what run() accepts, how returns are checked, directions, caching."""
import numpy as np
import pytest

from quant.core.errors import QuantError
from quant.eval.heldout import HeldOut
from quant.eval.user_eval import EvalData, EvalFunction, eval_score


class Doubler:
    """A runner: y = 2 x, and counts its runs."""

    def __init__(self):
        self.runs = 0

    def run(self, feeds, names=None):
        self.runs += 1
        return [2 * feeds["x"]]


def heldout(labels=True):
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    batches = [([0, 1, 2], {"x": x[:3]}), ([3, 4], {"x": x[3:]})]
    return HeldOut(batches, [], np.array([0, 1, 0, 1, 1]) if labels else None, ["y"], "five samples")


def test_data_samples_in_order_with_batch_axis_and_labels():
    data = EvalData(heldout())
    samples = list(data.samples())
    assert len(data) == 5 and list(data.indices) == [0, 1, 2, 3, 4]
    assert [f["x"].shape for f, _ in samples] == [(1, 2)] * 5 and [int(l) for _, l in samples] == [0, 1, 0, 1, 1]
    assert samples[3][0]["x"].tolist() == [[6.0, 7.0]]
    (first, labels), _ = list(data.batches())
    assert first["x"].shape == (3, 2) and labels.tolist() == [0, 1, 0]
    first["x"][:] = -1  # the user's copy: the held-out data is unchanged
    assert next(data.batches())[0]["x"][0, 1] == 1.0


def test_run_accepts_a_dict_an_array_or_a_list_and_casts_float64():
    seen = []

    def evaluate(run, data):
        a = run({"x": np.ones((1, 2))})[0]  # float64 in: cast to the input's float32
        b = run(np.ones((1, 2), np.float32))[0]
        c = run([np.ones((1, 2), np.float32)])[0]
        seen.extend([a.dtype, b.tolist(), c.tolist(), run.calls, run.model, run.output_names])
        return 1.0

    assert EvalFunction(evaluate).scores(Doubler(), heldout(), "INT8") == {None: 1.0}
    assert seen == [np.float32, [[2.0, 2.0]], [[2.0, 2.0]], 3, "INT8", ["y"]]


@pytest.mark.parametrize("feeds,message", [
    ({"image": np.ones((1, 2))}, "gave no array for input(s) 'x'; gave unknown input(s) 'image'"),
    ([np.ones((1, 2)), np.ones((1, 2))], "passed 2 arrays to a model with inputs x"),
    ("x", "passed the string 'x'"),
])
def test_run_refuses_wrong_feeds_naming_the_function(feeds, message):
    def evaluate(run, data):
        return float(run(feeds)[0].sum())

    with pytest.raises(QuantError, match="evaluation function 'evaluate' called run\\(\\) on the FP32 model and "):
        EvalFunction(evaluate).scores(Doubler(), heldout(), "FP32")
    with pytest.raises(QuantError) as caught:
        EvalFunction(evaluate).scores(Doubler(), heldout(), "FP32")
    assert message in caught.value.message


@pytest.mark.parametrize("value,message", [
    ("0.9", "returned the string '0.9' on the INT8 model"),
    (None, "returned None on the INT8 model"),
    (True, "returned bool True"),
    (np.array([1.0, 2.0]), "returned an array of shape [2] (float64)"),
    (float("inf"), "returned inf on the INT8 model: not a finite value"),
    ({"a": float("nan")}, "returned nan as score 'a' on the INT8 model: not a finite value"),
    ({}, "returned an empty dict"),
    ({"a@b": 1.0}, "returned a dict with the key 'a@b'"),
])
def test_returns_that_are_not_finite_numbers_are_refused(value, message):
    with pytest.raises(QuantError) as caught:
        EvalFunction(lambda run, data: value).scores(Doubler(), heldout(), "INT8")
    assert message in caught.value.message


def test_signature_and_direction_are_checked_on_load():
    with pytest.raises(QuantError, match=r"takes \(run\); it is called as evaluate\(run, data\)"):
        EvalFunction(lambda run: 1.0)

    def wrong(run, data):
        return 1.0

    wrong.higher_is_better = "yes"
    with pytest.raises(QuantError, match="higher_is_better must be True, False or a dict"):
        EvalFunction(wrong)


def test_named_scores_directions_and_one_call_per_model():
    calls = []

    def evaluate(run, data):
        calls.append(run.model)
        return {"accuracy": 90.0 if run.model == "INT8" else 95.0, "wer": 12.0 if run.model == "INT8" else 10.0}

    evaluate.higher_is_better = {"wer": False}
    functions = {}
    accuracy, wer = eval_score((evaluate, "accuracy"), functions=functions), eval_score((evaluate, "wer"),
                                                                                      functions=functions)
    fp32_runner, int8_runner = Doubler(), Doubler()
    data = heldout()
    data.fp32_runner = fp32_runner
    assert accuracy.higher_is_better and not wer.higher_is_better
    assert (data.fp32_score(accuracy), data.score(int8_runner, accuracy)) == (95.0, 90.0)
    assert (data.fp32_score(wer), data.score(int8_runner, wer)) == (10.0, 12.0)
    assert calls == ["FP32", "INT8"]  # the second score of each model comes from the same call
    assert accuracy.drop(95.0, 90.0) == 5.0 and wer.drop(10.0, 12.0) == 2.0  # both: INT8 is worse
    with pytest.raises(QuantError, match="returned no score 'f1' on the FP32 model"):
        eval_score((evaluate, "f1")).evaluate(fp32_runner, data, "FP32")
