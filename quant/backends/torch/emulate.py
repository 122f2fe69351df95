"""Emulated INT8 for sensitivity and fallback: one converted FP32 graph, Q/DQ switched per layer.

Sensitivity and fallback score dozens to hundreds of Q/DQ variants of one model (every layer alone, all
but one ...). Converting each variant's ONNX graph again costs 1-2 s on ResNet-50, more than running it
on a GPU; so the FP32 graph is converted once, and the Q/DQ pairs that ``quant.qdq.build_qdq_model``
would insert are applied in place: each (consumer node, input index) the plan rewires gets
``clip(round_half_even(x / scale), -128, 127) * scale`` on its input (a forward pre-hook), and each
quantized weight is swapped for its Q -> DQ value, computed once in NumPy as ONNX Runtime computes it.
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
    """Symmetric INT8 QuantizeLinear -> DequantizeLinear (zero point 0) in float32, per tensor."""
    return torch.clamp(torch.round(x / scale), -128.0, 127.0) * scale


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
        self._float_nodes: frozenset[str] = frozenset()
        # module name -> [(arg position, kind, value, node)]; kind "act": a scale, "arg": a replacement tensor
        self._inputs: dict[str, list[tuple[int, str, object, str]]] = {}
        self._weights: list[tuple[object, str, object, object]] = []  # (parameter, node, float value, quantized)
        for tensor, consumers in plan.consumers.items():
            scale = torch.tensor(float(scale_from_amax(activation_amax[tensor])), dtype=torch.float32, device=device)
            for node_name, index in consumers:
                module_name, position = self._position(nodes[node_name], index)
                self._inputs.setdefault(module_name, []).append((position, "act", scale, node_name))
        for layer in plan.layers:
            if layer.weight is None:
                continue
            node = nodes[layer.node]
            spec = layer.weight
            weight = to_array(constants[spec.tensor]).astype(np.float32)
            scale = scale_from_amax(weight_amax[spec.tensor])
            zero = np.zeros(np.shape(scale), np.int8)
            quantized = dequantize_array(quantize_array(weight, scale, zero, spec.axis), scale, zero, spec.axis)
            index = list(node.input).index(spec.tensor)
            module_name, position = self._position(node, index, allow_baked=True)
            if position is not None:
                value = torch.from_numpy(quantized).to(device)
                self._inputs.setdefault(module_name, []).append((position, "arg", value, layer.node))
            else:
                self._weights.append(self._baked(module_name, node, weight, quantized))
        self._handles = [runner.module.get_submodule(name).register_forward_pre_hook(self._hook(name))
                         for name in self._inputs]
        self.output_names = runner.output_names
        self.set_float(frozenset())

    def _position(self, node, index: int, allow_baked: bool = False):
        producers = self.runner.converted.producers
        if node.output[0] not in producers:
            raise QuantError(f"the PyTorch backend has no module for node '{node.name}'", hint="use --device ort")
        module_name = producers[node.output[0]][0]
        mapping = self.runner.module.get_submodule(module_name).onnx_mapping
        tensor = node.input[index]
        inputs = list(mapping.inputs)
        if list(node.input[: len(inputs)]) == inputs:
            return module_name, index if index < len(inputs) else None
        if tensor in inputs and inputs.count(tensor) == 1:
            return module_name, inputs.index(tensor)
        if allow_baked:
            return module_name, None
        raise QuantError(f"the PyTorch backend cannot place the Q/DQ of input {index} of node '{node.name}'",
                         hint="use --device ort")

    def _baked(self, module_name: str, node, weight: np.ndarray, quantized: np.ndarray):
        """A weight onnx2torch moved into the module (Conv: as is; Gemm -> Linear: transposed, times alpha)."""
        module = self.runner.module.get_submodule(module_name)
        parameter = getattr(module, "weight", None)
        if parameter is None:
            raise QuantError(f"the PyTorch backend cannot find the weight of node '{node.name}'", hint="use --device ort")
        if node.op_type == "Gemm":
            attrs = {a.name: a for a in node.attribute}
            alpha = np.float32(attrs["alpha"].f) if "alpha" in attrs else np.float32(1.0)
            trans_b = bool(attrs["transB"].i) if "transB" in attrs else False
            weight, quantized = ((w if trans_b else w.T) * alpha for w in (weight, quantized))
        if tuple(parameter.shape) != weight.shape:
            raise QuantError(f"the PyTorch backend cannot match the weight of node '{node.name}'", hint="use --device ort")
        device = parameter.device
        return (parameter, node.name, torch.from_numpy(np.ascontiguousarray(weight)).to(device),
                torch.from_numpy(np.ascontiguousarray(quantized)).to(device))

    def _hook(self, module_name: str):
        entries = self._inputs[module_name]

        def hook(_module, args):
            args = list(args)
            for position, kind, value, node in entries:
                if node in self._float_nodes:
                    continue
                args[position] = fake_quantize(args[position], value) if kind == "act" else value
            return tuple(args)

        return hook

    def set_float(self, keep_float: frozenset) -> "QdqSwitch":
        """Layers in ``keep_float`` (and the residual Adds fused into them) run in float from now on."""
        layers = set(keep_float)
        self._float_nodes = frozenset(layers | {r["node"] for r in self.plan.residuals if r["layer"] in layers})
        with torch.no_grad():
            for parameter, node, float_value, quantized in self._weights:
                parameter.copy_(float_value if node in layers else quantized)
        return self

    def run(self, feeds, outputs=None):
        return self.runner.run(feeds, outputs)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self.set_float(frozenset(layer.node for layer in self.plan.layers))
