"""torch modules for what onnx2torch 1.5.15 lacks: Q/DQ as ONNX Runtime computes it, Flatten of any rank."""
from __future__ import annotations

import numpy as np

from quant.core.lazy import require

torch = require("torch")


def _per_axis(param, ndim: int, axis: int):
    if param.dim() == 0 or param.numel() == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


class QuantizeLinear(torch.nn.Module):
    """saturate(round_half_even(x / scale) + zero_point), as ONNX Runtime's CPU kernel (a division, not x * 1/s).

    torch.round rounds half to even; the clamp happens in float before the cast, so out-of-range values
    saturate instead of wrapping. Per-tensor or per-axis scale and zero point.
    """

    def __init__(self, scale, zero_point, axis: int, dtype) -> None:
        super().__init__()
        self.register_buffer("scale", scale.to(torch.float32))
        self.register_buffer("zero_point", zero_point.to(torch.float32))
        self.axis = axis
        self.dtype = dtype
        info = torch.iinfo(dtype)
        self.low, self.high = float(info.min), float(info.max)

    def forward(self, x):
        scale = _per_axis(self.scale, x.dim(), self.axis)
        zero = _per_axis(self.zero_point, x.dim(), self.axis)
        q = torch.round(x.to(torch.float32) / scale) + zero
        return torch.clamp(q, self.low, self.high).to(self.dtype)


class DequantizeLinear(torch.nn.Module):
    """(q - zero_point) * scale in float32, as ONNX Runtime's CPU kernel."""

    def __init__(self, scale, zero_point, axis: int) -> None:
        super().__init__()
        self.register_buffer("scale", scale.to(torch.float32))
        self.register_buffer("zero_point", zero_point.to(torch.int32))
        self.axis = axis

    def forward(self, q):
        scale = _per_axis(self.scale, q.dim(), self.axis)
        zero = _per_axis(self.zero_point, q.dim(), self.axis)
        return (q.to(torch.int32) - zero).to(torch.float32) * scale


class FlattenAnyRank(torch.nn.Module):
    """ONNX Flatten: [prod(shape[:axis]), prod(shape[axis:])] for every input rank, a 1-D input included."""

    def __init__(self, axis: int) -> None:
        super().__init__()
        self.axis = axis

    def forward(self, x):
        axis = self.axis if self.axis >= 0 else self.axis + x.dim()
        outer = int(np.prod(x.shape[:axis], dtype=np.int64))
        inner = int(np.prod(x.shape[axis:], dtype=np.int64))
        return x.reshape(outer, inner)


def register_qdq_converters() -> None:
    """Converters for QuantizeLinear/DequantizeLinear at every opset version ONNX defines for them."""
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    versions = {op: sorted({s.since_version for s in defs.get_all_schemas_with_history()
                            if s.name == op and s.domain == ""}) for op in ("QuantizeLinear", "DequantizeLinear")}
    for op, converter in (("QuantizeLinear", _quantize_converter), ("DequantizeLinear", _dequantize_converter)):
        for version in versions[op]:
            if OperationDescription("", op, version) not in _CONVERTER_REGISTRY:
                add_converter(operation_type=op, version=version)(converter)


def _params(node, graph):
    from onnx2torch.utils.common import OnnxMapping

    names = list(node.input_values)
    for name in names[1:]:
        if name and name not in graph.initializers:
            raise NotImplementedError(f"{node.operation_type} with a computed (non-constant) scale or zero point")
    if node.attributes.get("block_size", 0):
        raise NotImplementedError(f"{node.operation_type} with block_size (blocked quantization)")
    scale = graph.initializers[names[1]].to_torch()
    zero = graph.initializers[names[2]].to_torch() if len(names) > 2 and names[2] else None
    mapping = OnnxMapping(inputs=(names[0],), outputs=tuple(node.output_values))
    return scale, zero, node.attributes.get("axis", 1), mapping


def _quantize_converter(node, graph):
    from onnx2torch.utils.common import OperationConverterResult

    scale, zero, axis, mapping = _params(node, graph)
    dtype = torch.uint8 if zero is None else zero.dtype
    if dtype not in (torch.int8, torch.uint8, torch.int16, torch.uint16, torch.int32):
        raise NotImplementedError(f"QuantizeLinear to {dtype}")
    zero = torch.zeros_like(scale) if zero is None else zero
    return OperationConverterResult(torch_module=QuantizeLinear(scale, zero, axis, dtype), onnx_mapping=mapping)


def _dequantize_converter(node, graph):
    from onnx2torch.utils.common import OperationConverterResult

    scale, zero, axis, mapping = _params(node, graph)
    zero = torch.zeros(scale.shape, dtype=torch.int32) if zero is None else zero
    return OperationConverterResult(torch_module=DequantizeLinear(scale, zero, axis), onnx_mapping=mapping)
