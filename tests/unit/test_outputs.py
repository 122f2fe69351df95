"""Which output labels score, the class axis and when argmax agreement means something (numpy only)."""
import numpy as np
import pytest

from quant.core.errors import QuantError
from quant.eval.outputs import argmax_agreement, class_axis, class_scores_reason, label_output
from quant.eval.scoring import get_metric

LABELS = np.arange(10) % 10  # classes 0..9


def test_labels_pick_the_output_whose_classes_match():
    index, why = label_output(["features", "logits"], [(4, 32), (4, 10)], LABELS)
    assert index == 1 and "matches the labels 0..9" in why
    assert label_output(["logits"], [(4, 1000)], LABELS)[0] == 0  # the only output that fits
    assert label_output(["a", "b"], [(4, 32), (4, 10)], LABELS, requested="a") == (0, "named by the user")


def test_ambiguous_or_unfit_outputs_are_refused_with_their_names():
    with pytest.raises(QuantError, match="several outputs could hold the class scores.*'a' \\[N, 32\\].*'b' \\[N, 20\\]") as info:
        label_output(["a", "b"], [(4, 32), (4, 20)], LABELS)
    assert "--output-name" in info.value.hint
    with pytest.raises(QuantError, match="does not fit the 5 classes of output 'y'"):
        label_output(["y"], [(4, 5)], LABELS)
    with pytest.raises(QuantError, match="has no output 'z' \\(its outputs: a, b\\)"):
        label_output(["a", "b"], [(4, 10), (4, 10)], LABELS, requested="z")


def test_class_axis_is_1_for_scores_and_maps_and_can_be_set():
    assert class_axis((8, 10)) == 1 and class_axis((8, 2, 5, 7)) == 1 and class_axis((8,)) is None
    assert class_axis((8, 2, 5, 7), -1) == 3
    with pytest.raises(QuantError, match="--class-axis 0 does not fit"):
        class_axis((8, 10), 0)


def test_per_pixel_agreement_on_a_class_map():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((3, 2, 5, 7))
    cand = ref + rng.standard_normal(ref.shape) * 0.3
    agree, positions = argmax_agreement(ref, cand, 1)
    assert positions == 3 * 5 * 7 and agree == int(np.sum(ref.argmax(1) == cand.argmax(1)))
    assert argmax_agreement(ref, cand, 3)[1] == 3 * 2 * 5  # the last axis counts other positions


def test_class_scores_from_the_name_or_probabilities_only():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 6))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert "name" in class_scores_reason("cls_logits", logits, 1)
    assert "probabilities over axis 1" in class_scores_reason("out", probabilities, 1)
    assert class_scores_reason("embedding", logits, 1) is None  # no evidence: agreement would mean nothing
    assert class_scores_reason("boxes", rng.standard_normal((4, 4, 3, 3)), 1) is None


def test_metrics_resolve_and_name_their_output():
    ref = [np.zeros((4, 32)), np.eye(10)[:4]]
    top1 = get_metric("top1")
    top1.resolve(["features", "logits"], ref, LABELS)
    assert top1.output_name == "logits" and top1.axis == 1 and top1.label == "top1@logits"
    sqnr = get_metric("sqnr@features")
    sqnr.resolve(["features", "logits"], ref, None)
    assert sqnr.output_index == 0 and "named by the user" in sqnr.description
    with pytest.raises(QuantError, match="does not know which output to score"):
        get_metric("cosine").resolve(["features", "logits"], ref, None)
    # a module:function metric can name one output too: it then receives only that one
    user = get_metric("numpy:mean@logits")  # numpy.mean(outputs, labels=None): the mean of what it receives
    user.resolve(["features", "logits"], ref, None)
    assert user.output == "logits" and user.output_index == 1
    state = user.start()
    user.update(state, [np.full((4, 32), 5.0), np.full((4, 10), 2.0)], ref, None)
    assert user.finish(state) == pytest.approx(2.0)
