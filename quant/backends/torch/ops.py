"""ONNX operators as torch functions, for quant's own ONNX executor (``quant.backends.torch.graph``).

Each entry of ``OPS`` takes the node's attributes (defaults filled in from ``onnx.defs``) and a ``Context``
and returns ``run(*inputs) -> tensor or tuple``; a missing optional input arrives as None. Semantics follow
the ONNX operator specs at opset >= 13 (the executor raises older models to 13 first, as ``normalize`` does).

Small integer tensors (shapes, axes, indices computed from ``Shape``) stay on the CPU so that reading them as
Python ints never waits for the GPU; ``_align`` moves such a tensor to the device of the data it meets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from quant.core.lazy import require

torch = require("torch")
F = torch.nn.functional



@dataclass
class Context:
    op: str  # the node's op type
    node: str  # the node's name, for error messages
    outputs: int  # how many outputs the node names (trailing empty names dropped)
    device: Callable[[], object]  # the module's device, for ops that create tensors


class Unsupported(Exception):
    """A node this executor does not implement (op, attribute value or input kind)."""


def _dtype(onnx_type: int):
    """The torch dtype of an ONNX TensorProto data type (through NumPy's)."""
    import numpy as np
    from onnx import helper

    return torch.from_numpy(np.zeros(0, helper.tensor_dtype_to_np_dtype(onnx_type))).dtype


def _ints(tensor) -> list[int]:
    return [int(v) for v in tensor.reshape(-1).tolist()]


def _align(*tensors):
    """The tensors, CPU ones moved to the device of the first one that is not on the CPU."""
    device = next((t.device for t in tensors if t is not None and t.device.type != "cpu"), None)
    if device is None:
        return tensors
    return tuple(t.to(device) if t is not None and t.device.type == "cpu" else t for t in tensors)


def _in_float32(run: Callable) -> Callable:
    """``run`` computing float16 tensors in float32, its result rounded back to float16: what ONNX Runtime's CPU
    provider does for MatMul/Gemm/Conv (it has no float16 kernels for them and inserts Casts), so a float16 model
    emulates alike on every device (cuDNN/cuBLAS float16 kernels differ: 11% of the INT8 error's energy measured)."""
    def wrapped(*args):
        if not any(isinstance(a, torch.Tensor) and a.dtype == torch.float16 for a in args):
            return run(*args)
        widened = [a.float() if isinstance(a, torch.Tensor) and a.dtype == torch.float16 else a for a in args]
        return run(*widened).half()
    return wrapped


OPS: dict[str, Callable] = {}


def op(*names: str):
    def register(make):
        for name in names:
            OPS[name] = make
        return make
    return register


# ------------------------------------------------------------------ element-wise
_UNARY = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Erf": torch.erf, "Exp": torch.exp,
          "Log": torch.log, "Sqrt": torch.sqrt, "Abs": torch.abs, "Neg": torch.neg, "Reciprocal": torch.reciprocal,
          "Floor": torch.floor, "Ceil": torch.ceil, "Round": torch.round, "Sign": torch.sign, "Sin": torch.sin,
          "Cos": torch.cos, "Not": torch.logical_not, "Softsign": F.softsign, "Softplus": F.softplus,
          "Mish": F.mish, "IsNaN": torch.isnan, "Identity": lambda x: x, "Tan": torch.tan, "Atan": torch.atan}
for _name, _fn in _UNARY.items():
    OPS[_name] = (lambda fn: lambda attrs, ctx: fn)(_fn)


def _binary(fn):
    def make(attrs, ctx):
        def run(a, b):
            return fn(*_align(a, b))
        return run
    return make


for _name, _fn in {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Equal": torch.eq, "Less": torch.lt,
                   "Greater": torch.gt, "LessOrEqual": torch.le, "GreaterOrEqual": torch.ge, "And": torch.logical_and,
                   "Or": torch.logical_or, "Xor": torch.logical_xor}.items():
    OPS[_name] = _binary(_fn)


@op("Div")
def _div(attrs, ctx):
    def run(a, b):
        a, b = _align(a, b)
        if a.is_floating_point():
            return a / b
        return torch.div(a, b, rounding_mode="trunc")  # integer division truncates (C semantics, as ORT)
    return run


@op("Mod")
def _mod(attrs, ctx):
    def run(a, b):
        a, b = _align(a, b)
        return torch.fmod(a, b) if attrs["fmod"] else torch.remainder(a, b)
    return run


@op("Pow")
def _pow(attrs, ctx):
    def run(x, y):
        if y.numel() == 1 and y.device.type == "cpu":  # a scalar exponent: torch special-cases 2, 0.5 ... as ORT
            exponent = y.reshape(()).item()
            return torch.pow(x, exponent).to(x.dtype)
        x, y = _align(x, y)
        return torch.pow(x, y).to(x.dtype)
    return run


@op("Max", "Min", "Sum", "Mean")
def _variadic(attrs, ctx):
    combine = {"Max": torch.maximum, "Min": torch.minimum}.get(ctx.op, torch.add)

    def run(*xs):
        xs = _align(*xs)
        out = xs[0]
        for x in xs[1:]:
            out = combine(out, x)
        return out / len(xs) if ctx.op == "Mean" else out
    return run


@op("Where")
def _where(attrs, ctx):
    def run(cond, a, b):
        return torch.where(*_align(cond, a, b))
    return run


@op("Clip")
def _clip(attrs, ctx):
    def run(x, low=None, high=None):
        x, low, high = _align(x, low, high)
        if low is not None:
            x = torch.maximum(x, low.to(x.dtype))
        if high is not None:
            x = torch.minimum(x, high.to(x.dtype))
        return x
    return run


@op("Cast")
def _cast(attrs, ctx):
    dtype = _dtype(attrs["to"])
    return lambda x: x.to(dtype)


@op("CastLike")
def _cast_like(attrs, ctx):
    return lambda x, like: x.to(like.dtype)


@op("HardSigmoid")
def _hard_sigmoid(attrs, ctx):
    alpha, beta = attrs["alpha"], attrs["beta"]
    return lambda x: torch.clamp(x * alpha + beta, 0.0, 1.0)


@op("HardSwish")
def _hard_swish(attrs, ctx):
    return lambda x: x * torch.clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


@op("LeakyRelu")
def _leaky_relu(attrs, ctx):
    return lambda x: F.leaky_relu(x, attrs["alpha"])


@op("Elu")
def _elu(attrs, ctx):
    return lambda x: F.elu(x, attrs["alpha"])


@op("Selu")
def _selu(attrs, ctx):
    alpha, gamma = attrs["alpha"], attrs["gamma"]
    return lambda x: gamma * torch.where(x > 0, x, alpha * (torch.exp(x) - 1))


@op("Celu")
def _celu(attrs, ctx):
    return lambda x: F.celu(x, attrs["alpha"])


@op("ThresholdedRelu")
def _thresholded_relu(attrs, ctx):
    return lambda x: torch.where(x > attrs["alpha"], x, torch.zeros_like(x))


@op("PRelu")
def _prelu(attrs, ctx):
    def run(x, slope):
        x, slope = _align(x, slope)
        return torch.where(x < 0, x * slope, x)
    return run


@op("Gelu")
def _gelu(attrs, ctx):
    approximate = attrs.get("approximate", "none")
    return lambda x: F.gelu(x, approximate=approximate)


@op("Softmax", "LogSoftmax")
def _softmax(attrs, ctx):
    axis = attrs["axis"]
    fn = torch.softmax if ctx.op == "Softmax" else torch.log_softmax
    return lambda x: fn(x, axis)


# ------------------------------------------------------------------ linear algebra and convolution
@op("MatMul")
def _matmul(attrs, ctx):
    def run(a, b):
        return torch.matmul(*_align(a, b))
    return _in_float32(run)


@op("Gemm")
def _gemm(attrs, ctx):
    alpha, beta, trans_a, trans_b = attrs["alpha"], attrs["beta"], attrs["transA"], attrs["transB"]

    def run(a, b, c=None):
        a, b, c = _align(a, b, c)
        a = a.t() if trans_a else a
        if alpha == 1.0 and beta == 1.0 and (c is None or c.dim() <= 1):
            return F.linear(a, b if trans_b else b.t(), c)  # one cuBLAS call with the bias
        y = torch.matmul(a, b.t() if trans_b else b)
        if alpha != 1.0:
            y = y * alpha
        if c is not None:
            y = y + (c * beta if beta != 1.0 else c)
        return y
    return _in_float32(run)


def _same_pads(auto_pad: str, sizes, kernel, strides, dilations) -> list[int]:
    """ONNX auto_pad SAME_UPPER/SAME_LOWER: output = ceil(input / stride); the odd pixel at the end (UPPER)."""
    begins, ends = [], []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, large = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else large)
        ends.append(large if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def _pads(attrs, x, kernel, strides, dilations) -> list[int]:
    spatial = x.dim() - 2
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(auto_pad, x.shape[2:], kernel, strides, dilations)
    if auto_pad == "VALID":
        return [0] * (2 * spatial)
    return list(attrs.get("pads") or [0] * (2 * spatial))


def _torch_pad(pads: list[int]) -> list[int]:
    """ONNX [b1, b2, ..., e1, e2, ...] -> F.pad's (last axis first) [b_n, e_n, ..., b_1, e_1]."""
    half = len(pads) // 2
    out = []
    for axis in reversed(range(half)):
        out += [pads[axis], pads[axis + half]]
    return out


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@op("Conv")
def _conv(attrs, ctx):
    def run(x, w, b=None):
        x, w, b = _align(x, w, b)
        spatial = x.dim() - 2
        if spatial not in _CONV:
            raise Unsupported(f"Conv over {spatial} spatial axes")
        kernel = list(w.shape[2:])
        strides = list(attrs.get("strides") or [1] * spatial)
        dilations = list(attrs.get("dilations") or [1] * spatial)
        pads = _pads(attrs, x, kernel, strides, dilations)
        if pads[:spatial] == pads[spatial:]:
            padding = pads[:spatial]
        else:
            x, padding = F.pad(x, _torch_pad(pads)), [0] * spatial
        return _CONV[spatial](x, w, b, strides, padding, dilations, attrs["group"])
    return _in_float32(run)


@op("ConvTranspose")
def _conv_transpose(attrs, ctx):
    if attrs.get("output_shape"):
        raise Unsupported("ConvTranspose with output_shape")

    def run(x, w, b=None):
        x, w, b = _align(x, w, b)
        spatial = x.dim() - 2
        if spatial not in _CONV_T:
            raise Unsupported(f"ConvTranspose over {spatial} spatial axes")
        kernel = list(w.shape[2:])
        strides = list(attrs.get("strides") or [1] * spatial)
        dilations = list(attrs.get("dilations") or [1] * spatial)
        extra = list(attrs.get("output_padding") or [0] * spatial)
        auto_pad = attrs.get("auto_pad", "NOTSET")
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):  # output = input * stride
            totals = [s * (n - 1) + e + (k - 1) * d + 1 - n * s
                      for n, k, s, d, e in zip(x.shape[2:], kernel, strides, dilations, extra)]
            first = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in totals]
            pads = first + [t - f for t, f in zip(totals, first)]
        elif auto_pad == "VALID":
            pads = [0] * (2 * spatial)
        else:
            pads = list(attrs.get("pads") or [0] * (2 * spatial))
        y = _CONV_T[spatial](x, w, b, strides, 0, extra, attrs["group"], dilations)
        index = [slice(None), slice(None)] + [slice(pads[i], y.shape[2 + i] - pads[spatial + i]) for i in range(spatial)]
        return y[tuple(index)]
    return _in_float32(run)


def _pool_geometry(attrs, x):
    spatial = x.dim() - 2
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides") or [1] * spatial)
    dilations = list(attrs.get("dilations") or [1] * spatial)
    return spatial, kernel, strides, dilations, _pads(attrs, x, kernel, strides, dilations)


_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


@op("MaxPool")
def _max_pool(attrs, ctx):
    if ctx.outputs > 1:
        raise Unsupported("MaxPool with its Indices output")

    def run(x):
        spatial, kernel, strides, dilations, pads = _pool_geometry(attrs, x)
        if spatial not in _MAX_POOL:
            raise Unsupported(f"MaxPool over {spatial} spatial axes")
        symmetric = pads[:spatial] == pads[spatial:] and all(p <= k // 2 for p, k in zip(pads, kernel))
        if symmetric:
            padding = pads[:spatial]
        else:
            x, padding = F.pad(x, _torch_pad(pads), value=float("-inf")), [0] * spatial
        return _MAX_POOL[spatial](x, kernel, strides, padding, dilations, ceil_mode=bool(attrs["ceil_mode"]))
    return run


@op("AveragePool")
def _average_pool(attrs, ctx):
    def run(x):
        spatial, kernel, strides, dilations, pads = _pool_geometry(attrs, x)
        if spatial not in _AVG_POOL or any(d != 1 for d in dilations):
            raise Unsupported("AveragePool with dilations or over more than 3 spatial axes")
        ceil = bool(attrs["ceil_mode"])
        include = bool(attrs["count_include_pad"])
        if pads[:spatial] == pads[spatial:] and all(p <= k // 2 for p, k in zip(pads, kernel)) and not ceil:
            return _AVG_POOL[spatial](x, kernel, strides, pads[:spatial], ceil_mode=False, count_include_pad=include)
        if ceil:
            raise Unsupported("AveragePool with ceil_mode and asymmetric or large pads")
        padded = F.pad(x, _torch_pad(pads))
        summed = _AVG_POOL[spatial](padded, kernel, strides, 0)
        if include:
            return summed
        ones = F.pad(torch.ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype, device=x.device), _torch_pad(pads))
        return summed / _AVG_POOL[spatial](ones, kernel, strides, 0)
    return run


@op("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(attrs, ctx):
    def run(x):
        dims = tuple(range(2, x.dim()))
        return x.mean(dims, keepdim=True) if ctx.op == "GlobalAveragePool" else x.amax(dims, keepdim=True)
    return run


@op("BatchNormalization")
def _batch_norm(attrs, ctx):
    if attrs.get("training_mode", 0) or ctx.outputs > 1:
        raise Unsupported("BatchNormalization in training mode")

    def run(x, scale, bias, mean, var):
        x, scale, bias, mean, var = _align(x, scale, bias, mean, var)
        return F.batch_norm(x, mean, var, scale, bias, False, 0.0, attrs["epsilon"])
    return run


@op("InstanceNormalization")
def _instance_norm(attrs, ctx):
    def run(x, scale, bias):
        x, scale, bias = _align(x, scale, bias)
        return F.instance_norm(x, weight=scale, bias=bias, eps=attrs["epsilon"])
    return run


@op("LayerNormalization")
def _layer_norm(attrs, ctx):
    if ctx.outputs > 1:
        raise Unsupported("LayerNormalization with its Mean/InvStdDev outputs")

    def run(x, scale, bias=None):
        x, scale, bias = _align(x, scale, bias)
        axis = attrs["axis"] % x.dim()
        shape = tuple(x.shape[axis:])
        scale = scale.expand(shape)
        bias = bias.expand(shape) if bias is not None else None
        return F.layer_norm(x, shape, scale, bias, attrs["epsilon"])
    return run


# ------------------------------------------------------------------ reductions
_REDUCE = {"ReduceMean": lambda x, d, k: torch.mean(x, d, keepdim=k), "ReduceSum": lambda x, d, k: torch.sum(x, d, keepdim=k),
           "ReduceMax": lambda x, d, k: torch.amax(x, d, keepdim=k), "ReduceMin": lambda x, d, k: torch.amin(x, d, keepdim=k),
           "ReduceProd": lambda x, d, k: _prod(x, d, k), "ReduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, d, keepdim=k)),
           "ReduceL1": lambda x, d, k: torch.sum(x.abs(), d, keepdim=k),
           "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, d, keepdim=k),
           "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, d, keepdim=k)}


def _prod(x, dims, keep):
    for d in sorted(dims, reverse=True):
        x = torch.prod(x, d, keepdim=True)
    return x if keep else x.reshape([n for i, n in enumerate(x.shape) if i not in dims])


@op(*_REDUCE)
def _reduce(attrs, ctx):
    fn, keep = _REDUCE[ctx.op], bool(attrs["keepdims"])

    def run(x, axes=None):
        chosen = attrs.get("axes") if axes is None else _ints(axes)
        if not chosen:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            chosen = list(range(x.dim()))
        dims = sorted({a % x.dim() for a in chosen}) if x.dim() else []
        return fn(x, dims, keep) if dims else x
    return run


@op("ArgMax", "ArgMin")
def _arg(attrs, ctx):
    def run(x):
        axis = attrs["axis"] % x.dim()
        y = x.flip(axis) if attrs["select_last_index"] else x
        index = torch.argmax(y, axis, keepdim=True) if ctx.op == "ArgMax" else torch.argmin(y, axis, keepdim=True)
        if attrs["select_last_index"]:
            index = x.shape[axis] - 1 - index
        return index if attrs["keepdims"] else index.squeeze(axis)
    return run
