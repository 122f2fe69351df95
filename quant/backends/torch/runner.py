"""Run an ONNX graph with PyTorch (CUDA or CPU), reading any tensor by its ONNX name.

FP32 work runs in IEEE float32: PyTorch's default lets cuDNN and cuBLAS use TF32 on NVIDIA GPUs (10-bit
mantissa), which would make the "FP32" reference and the collected ranges differ from ONNX Runtime's.
``ieee_fp32`` switches TF32 off around each forward pass and restores the caller's settings after.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.lazy import require

torch = require("torch")

from quant.backends.torch.convert import Converted, convert  # noqa: E402  (after torch, which it needs)

PRECISION_NOTE = "IEEE float32 (TF32 off for matmul and convolutions)"


def parse_device(text: str | None) -> str | None:
    """'ort' (or None) -> None (ONNX Runtime); 'cpu', 'cuda', 'cuda:N' -> a checked torch device string."""
    from quant.backends.torch import device_name

    if text is None or text == "ort":
        return None
    name = device_name(text)
    if name == "cpu":
        return "cpu"
    index = name.partition(":")[2] or "0"
    if not torch.cuda.is_available():
        raise QuantError(f"--device {text}: this torch ({torch.__version__}) sees no CUDA GPU",
                         hint="use --device cpu or ort, or install a CUDA build of torch")
    if int(index) >= torch.cuda.device_count():
        raise QuantError(f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) are visible",
                         hint=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return f"cuda:{index}"


@contextlib.contextmanager
def ieee_fp32():
    """TF32 off for cuBLAS and cuDNN inside the block; the caller's settings are restored after.

    Uses the flags the caller uses: the legacy ``allow_tf32`` ones, or (where the caller set the newer
    ``fp32_precision`` API, which torch will not let one mix with the legacy flags) ``fp32_precision = 'ieee'``.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    try:
        saved = (matmul.allow_tf32, cudnn.allow_tf32)
        legacy = True
    except RuntimeError:  # "mix of the legacy and new APIs": the caller uses fp32_precision
        saved = (matmul.fp32_precision, cudnn.conv.fp32_precision)
        legacy = False
    if legacy:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
    else:
        matmul.fp32_precision = cudnn.conv.fp32_precision = "ieee"
    try:
        yield
    finally:
        if legacy:
            matmul.allow_tf32, cudnn.allow_tf32 = saved
        else:
            matmul.fp32_precision, cudnn.conv.fp32_precision = saved


def describe(device: str) -> str:
    if device.startswith("cuda"):
        return f"PyTorch {torch.__version__} on {device} ({torch.cuda.get_device_name(device)}), {PRECISION_NOTE}"
    return f"PyTorch {torch.__version__} on the CPU, {PRECISION_NOTE}"


class TorchRunner:
    """Runs an ONNX model (normalized ModelProto) converted to torch, on ``device``.

    Same interface as OrtRunner (``run``, ``output_names``), plus ``forward`` with taps: callbacks that
    receive a tensor on the device, by ONNX name, while the graph runs (for histograms on the device).
    """

    def __init__(self, model, device: str = "cpu", converted: Converted | None = None) -> None:
        self.device = torch.device(device)
        self.converted = converted or convert(model)
        self.module = self.converted.module.to(self.device).eval()
        self.input_names = list(self.converted.inputs)
        self.output_names = [o.name for o in model.graph.output]
        from quant.core.onnx_model import initializers, to_array

        self._constants = initializers(model)
        self._to_array = to_array
        self.description = describe(device)
        self.cache_inputs = False  # keep fed arrays on the device, by identity (for data scored many times)
        self._cache: dict[int, tuple[np.ndarray, object]] = {}

    def to_device(self, feeds: dict[str, np.ndarray]) -> dict:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise QuantError(f"the model input(s) {missing} were not fed", hint="check --input-map and the data keys")
        out = {}
        for name in self.input_names:
            array = feeds[name]
            hit = self._cache.get(id(array)) if self.cache_inputs else None
            if hit is not None and hit[0] is array:
                out[name] = hit[1]
                continue
            out[name] = torch.from_numpy(np.ascontiguousarray(array)).to(self.device)
            if self.cache_inputs:
                self._cache[id(array)] = (array, out[name])
        return out

    def forward(self, feeds: dict[str, np.ndarray], taps: dict[str, Callable]) -> None:
        """Run one batch; ``taps[name](tensor)`` is called with each named tensor as soon as it exists."""
        inputs = self.to_device(feeds)
        for name in taps:
            if name not in inputs and not self.module.readable(name):
                raise QuantError(f"the PyTorch backend cannot read tensor '{name}' (no node produces it)",
                                 hint="use --device ort for this model")
        try:
            with torch.inference_mode(), ieee_fp32():
                self.module.execute(inputs, taps)
        except QuantError:
            raise
        except RuntimeError as exc:  # torch raises RuntimeError for shape/dtype mismatches and device errors
            shapes = ", ".join(f"{k}{list(v.shape)} {v.dtype}" for k, v in feeds.items())
            raise QuantError(f"PyTorch failed on a batch ({shapes}): {str(exc).splitlines()[0]}",
                             hint="check that the data matches the model's inputs, or use --device ort") from None

    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        names = list(outputs) if outputs else self.output_names
        got: dict[str, np.ndarray] = {}
        wanted = [n for n in names if n not in self._constants]

        def keep(name):
            def tap(tensor):
                got[name] = tensor.detach().to("cpu").numpy()
            return tap

        self.forward(feeds, {name: keep(name) for name in wanted})
        out = []
        for name in names:
            if name in self._constants:
                out.append(self._to_array(self._constants[name]))
            elif name in feeds and name not in got:
                out.append(np.asarray(feeds[name]))
            else:
                out.append(got[name])
        return out
