"""ONNX shape, indexing, creation, resize and Q/DQ operators for quant's executor (registered into ``OPS``)."""
from __future__ import annotations

import numpy as np

from quant.backends.torch.ops import OPS, Unsupported, _align, _dtype, _ints, _torch_pad, op, torch

F = torch.nn.functional
_SMALL = 4096  # integer tensors up to this size that are made from shapes stay on the CPU


@op("Shape")
def _shape(attrs, ctx):
    def run(x):
        dims = list(x.shape)
        start, end = attrs.get("start", 0), attrs.get("end")
        return torch.tensor(dims[slice(start, end)], dtype=torch.int64)  # on the CPU: no wait for the device
    return run


@op("Size")
def _size(attrs, ctx):
    return lambda x: torch.tensor(x.numel(), dtype=torch.int64)


@op("Constant")
def _constant(attrs, ctx):
    for key in ("value_float", "value_int"):
        if key in attrs:
            value = torch.tensor(attrs[key], dtype=torch.float32 if key == "value_float" else torch.int64)
            return lambda: value
    for key in ("value_floats", "value_ints"):
        if key in attrs:
            value = torch.tensor(list(attrs[key]), dtype=torch.float32 if key == "value_floats" else torch.int64)
            return lambda: value
    if "value" in attrs:
        value = torch.from_numpy(np.array(attrs["value"]))
        return lambda: value
    raise Unsupported("Constant without a value, value_float(s) or value_int(s) attribute")


@op("ConstantOfShape")
def _constant_of_shape(attrs, ctx):
    fill = attrs.get("value")
    fill = np.zeros(1, np.float32) if fill is None else np.asarray(fill).reshape(-1)

    def run(shape):
        dims = _ints(shape)
        value = torch.from_numpy(fill.copy())
        size = int(np.prod(dims, dtype=np.int64))
        device = "cpu" if (not value.is_floating_point() and size <= _SMALL) else ctx.device()
        return torch.full(dims, value.item(), dtype=value.dtype, device=device)
    return run


@op("Range")
def _range(attrs, ctx):
    def run(start, limit, delta):
        start, limit, delta = _align(start, limit, delta)
        if start.device.type != "cpu":
            start, limit, delta = start.cpu(), limit.cpu(), delta.cpu()
        return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype)
    return run


@op("Reshape")
def _reshape(attrs, ctx):
    def run(x, shape):
        dims = _ints(shape)
        if not attrs.get("allowzero", 0):
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return x.reshape(dims)
    return run


@op("Flatten")
def _flatten(attrs, ctx):
    def run(x):
        axis = attrs["axis"] + x.dim() if attrs["axis"] < 0 else attrs["axis"]  # in [-rank, rank]
        outer = int(np.prod(x.shape[:axis], dtype=np.int64))
        return x.reshape(outer, int(np.prod(x.shape[axis:], dtype=np.int64)))
    return run


@op("Transpose")
def _transpose(attrs, ctx):
    def run(x):
        perm = attrs.get("perm") or list(reversed(range(x.dim())))
        return x.permute(*perm)
    return run


@op("Squeeze")
def _squeeze(attrs, ctx):
    def run(x, axes=None):
        chosen = _ints(axes) if axes is not None else attrs.get("axes")
        if chosen is None:
            return x.reshape([n for n in x.shape if n != 1])
        dims = {a % x.dim() for a in chosen}
        return x.reshape([n for i, n in enumerate(x.shape) if i not in dims])
    return run


@op("Unsqueeze")
def _unsqueeze(attrs, ctx):
    def run(x, axes=None):
        chosen = _ints(axes) if axes is not None else list(attrs["axes"])
        rank = x.dim() + len(chosen)
        dims = sorted(a % rank for a in chosen)
        shape = list(x.shape)
        for d in dims:
            shape.insert(d, 1)
        return x.reshape(shape)
    return run


@op("Concat")
def _concat(attrs, ctx):
    def run(*xs):
        xs = _align(*[x for x in xs if x is not None])
        return torch.cat(xs, attrs["axis"] % xs[0].dim() if xs[0].dim() else 0)
    return run


@op("Split")
def _split(attrs, ctx):
    def run(x, split=None):
        axis = attrs["axis"] % x.dim()
        if split is not None:
            sizes = _ints(split)
        elif attrs.get("split"):
            sizes = list(attrs["split"])
        else:
            parts = attrs.get("num_outputs") or ctx.outputs
            size = -(-x.shape[axis] // parts)
            sizes = [min(size, x.shape[axis] - i * size) for i in range(parts)]
        return tuple(torch.split(x, sizes, axis))
    return run


@op("Slice")
def _slice(attrs, ctx):
    """Python's slice.indices clamps starts and ends exactly as the ONNX spec does, for either sign of step."""
    def run(x, starts, ends, axes=None, steps=None):
        starts, ends = _ints(starts), _ints(ends)
        axes = _ints(axes) if axes is not None else list(range(len(starts)))
        steps = _ints(steps) if steps is not None else [1] * len(starts)
        index: list = [slice(None)] * x.dim()
        backwards = []
        for start, end, axis, step in zip(starts, ends, axes, steps):
            if step == 0:
                raise Unsupported("Slice with a step of 0")
            axis %= x.dim()
            first, stop, step = slice(start, end, step).indices(x.shape[axis])
            if step > 0:
                index[axis] = slice(first, max(stop, first), step)
            else:
                backwards.append((axis, torch.arange(first, stop, step, dtype=torch.int64)))
        x = x[tuple(index)]
        for axis, rows in backwards:  # torch indexing has no negative steps
            x = x.index_select(axis, rows.to(x.device))
        return x
    return run


@op("Gather")
def _gather(attrs, ctx):
    def run(x, indices):
        x, indices = _align(x, indices)
        axis = attrs["axis"] % x.dim()
        flat = indices.reshape(-1).to(torch.int64)
        flat = torch.where(flat < 0, flat + x.shape[axis], flat)
        out = x.index_select(axis, flat)
        return out.reshape(tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1:]))
    return run


@op("GatherElements")
def _gather_elements(attrs, ctx):
    def run(x, indices):
        x, indices = _align(x, indices)
        axis = attrs["axis"] % x.dim()
        indices = indices.to(torch.int64)
        return torch.gather(x, axis, torch.where(indices < 0, indices + x.shape[axis], indices))
    return run


@op("Expand")
def _expand(attrs, ctx):
    def run(x, shape):
        return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(_ints(shape))))
    return run


@op("Tile")
def _tile(attrs, ctx):
    return lambda x, repeats: x.repeat(*_ints(repeats)) if x.dim() else x


@op("Pad")
def _pad(attrs, ctx):
    modes = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}

    def run(x, pads, value=None, axes=None):
        numbers = _ints(pads)
        chosen = _ints(axes) if axes is not None else list(range(x.dim()))
        full = [0] * (2 * x.dim())
        half = len(numbers) // 2
        for i, axis in enumerate(chosen):
            full[axis % x.dim()], full[axis % x.dim() + x.dim()] = numbers[i], numbers[i + half]
        mode = modes[attrs["mode"]]
        if mode == "constant":
            fill = 0.0 if value is None or value.numel() == 0 else value.reshape(()).item()
            return F.pad(x, _torch_pad(full), value=fill)
        return F.pad(x, _torch_pad(full)[: 2 * (x.dim() - 2)], mode=mode)  # torch pads spatial axes only here
    return run


@op("Dropout")
def _dropout(attrs, ctx):
    if ctx.outputs > 1:
        raise Unsupported("Dropout with its mask output")
    return lambda x, ratio=None, training=None: x


@op("Einsum")
def _einsum(attrs, ctx):
    return lambda *xs: torch.einsum(attrs["equation"], *_align(*xs))


@op("TopK")
def _topk(attrs, ctx):
    def run(x, k):
        values, indices = torch.topk(x, _ints(k)[0], attrs["axis"], largest=bool(attrs["largest"]), sorted=True)
        return values, indices
    return run


# ------------------------------------------------------------------ Resize (nearest exactly per the spec, linear via torch)
def _source_index(mode: str, out: int, size: int, scale: float, nearest: str):
    position = torch.arange(out, dtype=torch.float64)
    if mode == "asymmetric":
        x = position / scale
    elif mode == "half_pixel":
        x = (position + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        x = (position + 0.5) / scale - 0.5 if out > 1 else torch.zeros_like(position)
    elif mode == "align_corners":
        x = position * (size - 1) / (out - 1) if out > 1 else torch.zeros_like(position)
    elif mode == "tf_half_pixel_for_nn":
        x = (position + 0.5) / scale
    else:
        raise Unsupported(f"Resize with coordinate_transformation_mode {mode}")
    if nearest == "floor":
        index = torch.floor(x)
    elif nearest == "ceil":
        index = torch.ceil(x)
    elif nearest == "round_prefer_floor":
        index = torch.where(x - torch.floor(x) == 0.5, torch.floor(x), torch.round(x))
    else:  # round_prefer_ceil (the default)
        index = torch.floor(x + 0.5)
    return index.clamp(0, size - 1).to(torch.int64)


@op("Resize", "Upsample")
def _resize(attrs, ctx):
    mode = attrs.get("mode", "nearest")
    transform = attrs.get("coordinate_transformation_mode", "half_pixel")
    nearest = attrs.get("nearest_mode", "round_prefer_ceil")
    if attrs.get("antialias", 0) or attrs.get("axes") or attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("Resize with antialias, axes or keep_aspect_ratio_policy")

    def run(x, roi=None, scales=None, sizes=None):
        if ctx.op == "Upsample":
            scales, roi = roi, None
        dims = list(x.shape)
        if sizes is not None and sizes.numel():
            out = _ints(sizes)
            factors = [o / n for o, n in zip(out, dims)]
        else:
            factors = [float(v) for v in scales.reshape(-1).tolist()]
            out = [int(np.floor(n * f)) for n, f in zip(dims, factors)]
        if factors[0] != 1.0 or factors[1] != 1.0:
            raise Unsupported("Resize of the batch or channel axis")
        if mode == "nearest":
            for axis in range(2, x.dim()):
                if out[axis] != dims[axis]:
                    index = _source_index(transform, out[axis], dims[axis], factors[axis], nearest).to(x.device)
                    x = x.index_select(axis, index)
            return x
        if mode != "linear" or transform not in ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"):
            raise Unsupported(f"Resize mode {mode} with {transform}")
        if transform == "asymmetric" or (transform == "half_pixel" and min(out[2:]) == 1):
            raise Unsupported(f"Resize mode linear with {transform}")
        torch_mode = {3: "linear", 4: "bilinear", 5: "trilinear"}[x.dim()]
        if transform == "align_corners":
            return F.interpolate(x, size=out[2:], mode=torch_mode, align_corners=True)
        if sizes is not None and sizes.numel():
            return F.interpolate(x, size=out[2:], mode=torch_mode, align_corners=False)
        return F.interpolate(x, scale_factor=factors[2:], mode=torch_mode, align_corners=False,
                             recompute_scale_factor=False)
    return run


# ------------------------------------------------------------------ QuantizeLinear / DequantizeLinear as ORT computes them
def _per_axis(param, ndim: int, axis: int):
    if param.dim() == 0 or param.numel() == 1:
        return param.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


_QUANTIZED = (torch.int8, torch.uint8, torch.int16, torch.uint16, torch.int32)


@op("QuantizeLinear")
def _quantize(attrs, ctx):
    """saturate(round_half_even(x / scale) + zero_point): a division (not x * 1/s), clamped in float, then cast."""
    if attrs.get("block_size", 0):
        raise Unsupported("QuantizeLinear with block_size (blocked quantization)")
    axis = attrs.get("axis", 1)

    def run(x, scale, zero=None):
        x, scale, zero = _align(x, scale, zero)
        dtype = torch.uint8 if zero is None else zero.dtype
        if dtype not in _QUANTIZED:
            raise Unsupported(f"QuantizeLinear to {dtype}")
        info = torch.iinfo(dtype)
        s = _per_axis(scale.to(torch.float32), x.dim(), axis)
        q = torch.round(x.to(torch.float32) / s)
        if zero is not None:
            q = q + _per_axis(zero.to(torch.float32), x.dim(), axis)
        return torch.clamp(q, float(info.min), float(info.max)).to(dtype)
    return run


@op("DequantizeLinear")
def _dequantize(attrs, ctx):
    """(q - zero_point) * scale in float32, then in the scale's type."""
    if attrs.get("block_size", 0):
        raise Unsupported("DequantizeLinear with block_size (blocked quantization)")
    axis = attrs.get("axis", 1)

    def run(q, scale, zero=None):
        q, scale, zero = _align(q, scale, zero)
        values = q.to(torch.int32)
        if zero is not None:
            values = values - _per_axis(zero.to(torch.int32), q.dim(), axis)
        out = values.to(torch.float32) * _per_axis(scale.to(torch.float32), q.dim(), axis)
        return out.to(scale.dtype)  # the output has the scale's type (float16 in a float16 Q/DQ model)
    return run


__all__ = ["OPS", "_dtype"]
