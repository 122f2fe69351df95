"""Lazy imports of heavy optional dependencies, with a version floor and an install hint."""
from __future__ import annotations

import importlib
from types import ModuleType

from quant.core.errors import QuantError

_INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime",
    "onnx": "pip install onnx",
    "datasets": "pip install 'quant-trt[hf]'",
    "pyarrow": "pip install 'quant-trt[hf]'",
    "tensorrt": "pip install 'quant-trt[tensorrt]'",
    "torch": "pip install 'quant-trt[torch]'",
    "PIL": "pip install pillow",
    "sklearn": "pip install scikit-learn",
    "tqdm": "pip install tqdm",
    "openvino": "pip install 'quant-trt[openvino]'",
}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require(name: str, min_version: str | None = None) -> ModuleType:
    """Import ``name`` at the point of use; raise a QuantError with an install hint if it is missing."""
    top = name.split(".")[0]
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        hint = _INSTALL_HINTS.get(top, f"pip install {top}")
        raise QuantError(f"this step needs the Python package '{top}', which is not installed ({exc})",
                         hint=f"install it with: {hint}") from None
    if min_version is not None:
        version = getattr(importlib.import_module(top), "__version__", "0")
        if _version_tuple(version) < _version_tuple(min_version):
            raise QuantError(f"'{top}' {version} is too old; quant needs {top} >= {min_version}",
                             hint=f"upgrade it with: {_INSTALL_HINTS.get(top, 'pip install -U ' + top)}")
    return module
