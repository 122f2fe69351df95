"""ResNet-18- and ResNet-50-shaped ONNX models with random weights (for cost measurements only).

BatchNorm is taken as folded into the convolutions (conv + bias), as exporters do in eval mode.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}_{self.count}"

    def conv(self, x, cin, cout, k, stride=1, relu=True, gain=1.0):
        name = self.name("conv")
        w = self.rng.standard_normal((cout, cin, k, k)).astype(np.float32) * np.float32(gain * np.sqrt(2.0 / (cin * k * k)))
        b = (self.rng.standard_normal(cout) * 0.01).astype(np.float32)
        self.inits += [numpy_helper.from_array(w, f"{name}.weight"), numpy_helper.from_array(b, f"{name}.bias")]
        pad = k // 2
        self.nodes.append(helper.make_node("Conv", [x, f"{name}.weight", f"{name}.bias"], [f"{name}_out"], name=name,
                                           kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
        out = f"{name}_out"
        if relu:
            out = self.relu(out)
        return out

    def relu(self, x):
        name = self.name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [f"{name}_out"], name=name))
        return f"{name}_out"

    def add(self, a, b):
        name = self.name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [f"{name}_out"], name=name))
        return self.relu(f"{name}_out")


def resnet(depth: int, seed: int = 0) -> onnx.ModelProto:
    """ResNet-18 (basic blocks) or ResNet-50 (bottlenecks), input 'input' [N, 3, 224, 224], output 'logits'."""
    blocks = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}[depth]
    bottleneck = depth == 50
    b = _Builder(seed)
    x = b.conv("input", 3, 64, 7, stride=2)
    b.nodes.append(helper.make_node("MaxPool", [x], ["pool0"], name="maxpool", kernel_shape=[3, 3], strides=[2, 2],
                                    pads=[1, 1, 1, 1]))
    x, cin = "pool0", 64
    for stage, count in enumerate(blocks):
        width = 64 * 2 ** stage
        cout = width * (4 if bottleneck else 1)
        for index in range(count):
            stride = 2 if index == 0 and stage > 0 else 1
            if bottleneck:
                y = b.conv(x, cin, width, 1)
                y = b.conv(y, width, width, 3, stride)
                y = b.conv(y, width, cout, 1, relu=False, gain=0.3)
            else:
                y = b.conv(x, cin, width, 3, stride)
                y = b.conv(y, width, cout, 3, relu=False, gain=0.3)
            skip = x if (stride == 1 and cin == cout) else b.conv(x, cin, cout, 1, stride, relu=False)
            x, cin = b.add(y, skip), cout
    b.nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
                helper.make_node("Flatten", ["gap"], ["flat"], name="flatten")]
    w = (b.rng.standard_normal((1000, cin)) * np.sqrt(1.0 / cin)).astype(np.float32)
    b.inits += [numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(np.zeros(1000, np.float32), "fc.bias")]
    b.nodes.append(helper.make_node("Gemm", ["flat", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1))
    graph = helper.make_graph(b.nodes, f"resnet{depth}",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 1000])], b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
