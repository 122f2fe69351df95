"""A conv with few channels that TensorRT's INT8 kernels cannot vectorize stays in float (a speed heuristic).

Rule (quant/qdq/placement.py): fewer than 16 channels on one side (output channels, or input channels per
group) and neither count a multiple of 4 (NC/4HW4, TensorRT's smallest INT8 vector). silero-vad's STFT conv
(1 input channel, 258 outputs) is the suite's case; 3 -> 28, 3 -> 32 and 1 -> 16 stay quantized.
"""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from quant.qdq.placement import plan_qdq


def _conv_model(out_channels, in_channels, group=1, kernel=3):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((out_channels, in_channels // group, kernel, kernel)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=group, pads=[1, 1, 1, 1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", in_channels, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", out_channels, 8, 8])],
        [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("out_channels, in_channels, group, in_float", [
    (258, 1, 1, True),    # silero-vad's STFT conv on the waveform
    (10, 3, 1, True),     # MTCNN P-Net's first conv
    (6, 6, 6, True),      # depthwise, 6 channels: one input channel per group
    (15, 15, 1, True),
    (28, 3, 1, False),    # MTCNN R-Net's first conv: 28 outputs are a multiple of 4
    (32, 3, 1, False),    # the usual first conv
    (16, 1, 1, False),
    (4, 3, 1, False),
    (12, 20, 1, False),
    (20, 20, 20, False),  # depthwise, 20 channels
    (258, 18, 1, False),  # neither side has fewer than 16 channels
])
def test_unaligned_small_convs_stay_in_float(out_channels, in_channels, group, in_float):
    plan = plan_qdq(_conv_model(out_channels, in_channels, group))
    quantized = [layer.node for layer in plan.layers]
    reasons = {e["node"]: e["reason"] for e in plan.excluded}
    if in_float:
        assert quantized == [] and "neither a multiple of 4" in reasons["conv"], reasons
        assert "--include quantizes it" in reasons["conv"]
    else:
        assert quantized == ["conv"] and "conv" not in reasons


def test_include_quantizes_an_unaligned_conv():
    plan = plan_qdq(_conv_model(258, 1), include=["conv"])
    assert [layer.node for layer in plan.layers] == ["conv"]
    assert plan.layers[0].weight.axis == 0 and plan.layers[0].weight.channels == 258
