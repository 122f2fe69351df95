"""Emulated INT8 for sensitivity and fallback: one converted FP32 graph, Q/DQ switched per layer.

Sensitivity and fallback score dozens to hundreds of Q/DQ variants of one model (every layer alone, all
but one ...). Converting each variant's ONNX graph again costs 1-2 s on ResNet-50, more than running it
on a GPU; so the FP32 graph is converted once, and the Q/DQ pairs that ``quant.qdq.build_qdq_model``
would insert are applied in place: each (consumer node, input index) the plan rewires gets
``clip(round_half_even(x / scale), -128, 127) * scale`` on its input, and each
quantized weight is replaced by its Q -> DQ value, computed once in NumPy as ONNX Runtime computes it
(both through the executor's ``input_hooks``, keyed by ONNX node name and input index).
The arithmetic is that of the Q/DQ model run by ONNX Runtime with graph optimizations off (--runtime
emulate); a layer kept in float, and the residual Add fused into it, get none of it, exactly as
``build_qdq_model(keep_float=...)`` leaves them out.
"""
from __future__ import annotations

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require

torch = require("torch")

from quant.backends.torch.convert import dequantize_array, quantize_array  # noqa: E402
from quant.backends.torch.runner import TorchRunner  # noqa: E402


def fake_quantize(x, scale):
    """Symmetric INT8 QuantizeLinear -> DequantizeLinear (zero point 0) in float32, per tensor.

    A float16 tensor gets the scale rounded to float16 (what its Q/DQ model stores), the arithmetic in float32 and
    the result cast back, as ONNX Runtime computes a float16 QuantizeLinear/DequantizeLinear.
    """
    if x.dtype == torch.float32:
        return torch.clamp(torch.round(x / scale), -128.0, 127.0) * scale
    scale = scale.to(x.dtype).to(torch.float32)
    return (torch.clamp(torch.round(x.to(torch.float32) / scale), -128.0, 127.0) * scale).to(x.dtype)


class QdqSwitch:
    """A TorchRunner of the FP32 model whose Q/DQ pairs follow ``set_float(keep_float)``."""

    def __init__(self, runner: TorchRunner, plan, activation_amax: dict[str, float],
                 weight_amax: dict[str, np.ndarray], model) -> None:
        from quant.core.onnx_model import initializers, to_array
        from quant.qdq.insert import scale_from_amax

        self.runner = runner
        self.plan = plan
        nodes = {node.name: node for node in model.graph.node}
        constants = initializers(model)
        device = runner.device
        graph = runner.module
        self._float_nodes: frozenset[str] = frozenset()
        # node -> [(ONNX input index, kind, value)]; kind "act": a scale to fake-quantize with, "arg": a new tensor
        self._inputs: dict[str, list[tuple[int, str, object]]] = {}
        for tensor, consumers in plan.consumers.items():
            scale = torch.tensor(float(scale_from_amax(activation_amax[tensor])), dtype=torch.float32, device=device)
            for node_name, index in consumers:
                self._check(nodes, node_name)
                self._inputs.setdefault(node_name, []).append((index, "act", scale))
        for layer in plan.layers:
            if layer.weight is None:
                continue
            node = nodes[layer.node]
            self._check(nodes, layer.node)
            spec = layer.weight
            original = to_array(constants[spec.tensor])
            weight = original.astype(np.float32)
            scale = scale_from_amax(weight_amax[spec.tensor])
            if original.dtype != np.float32:  # a float16 model's Q/DQ stores its scales in float16
                scale = np.asarray(scale).astype(original.dtype).astype(np.float32)
            zero = np.zeros(np.shape(scale), np.int8)
            quantized = dequantize_array(quantize_array(weight, scale, zero, spec.axis), scale, zero, spec.axis)
            value = torch.from_numpy(np.ascontiguousarray(quantized.astype(original.dtype))).to(device)
            self._inputs.setdefault(layer.node, []).append((list(node.input).index(spec.tensor), "arg", value))
        for node_name in self._inputs:
            graph.input_hooks[node_name] = self._hook(node_name)
        self.output_names = runner.output_names
        self.set_float(frozenset())

    def _check(self, nodes, node_name: str) -> None:
        if node_name not in nodes or not any(step.name == node_name for step in self.runner.module.steps):
            raise QuantError(f"the PyTorch backend has no node '{node_name}'", hint="use --device ort")

    def _hook(self, node_name: str):
        entries = self._inputs[node_name]

        def hook(args):
            if node_name in self._float_nodes:
                return args
            args = list(args)
            for index, kind, value in entries:
                args[index] = fake_quantize(args[index], value) if kind == "act" else value
            return args

        return hook

    def set_float(self, keep_float: frozenset) -> "QdqSwitch":
        """Layers in ``keep_float`` (and the residual Adds fused into them) run in float from now on."""
        layers = set(keep_float)
        self._float_nodes = frozenset(layers | {r["node"] for r in self.plan.residuals if r["layer"] in layers})
        self.variant = frozenset(layers)  # which variant this one object runs now (callers that memoize check it)
        return self

    def run(self, feeds, outputs=None):
        return self.runner.run(feeds, outputs)

    def close(self) -> None:
        for node_name in self._inputs:
            self.runner.module.input_hooks.pop(node_name, None)
