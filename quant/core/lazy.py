"""Lazy imports of heavy optional dependencies, with a version floor and an install hint."""
from __future__ import annotations

import contextlib
import importlib
import signal
import sys
import threading
from types import ModuleType
from typing import Iterator

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
    "ray": "pip install 'quant-trt[ray]'",
}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


@contextlib.contextmanager
def _signals_seen() -> Iterator[list[int]]:
    """The interrupts (Ctrl-C, SIGTERM, SIGHUP) that arrive inside the block, each still handled as before.

    Native imports can swallow the KeyboardInterrupt their Python code raised and fail with an ImportError
    instead (a Ctrl-C during ``import onnxruntime`` gives "import numpy failed"): that is no missing package."""
    seen: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():  # handlers can only be set there
        for number in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)):
            old = signal.getsignal(number) if number is not None else None
            if callable(old):
                def handler(signum, frame, old=old):
                    seen.append(signum)
                    old(signum, frame)

                previous[number] = old
                signal.signal(number, handler)
    try:
        yield seen
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def require(name: str, min_version: str | None = None) -> ModuleType:
    """Import ``name`` at the point of use; raise a QuantError with an install hint if it is missing."""
    top = name.split(".")[0]
    try:
        if name in sys.modules:
            module = importlib.import_module(name)
        else:
            with _signals_seen() as interrupted:
                try:
                    module = importlib.import_module(name)
                finally:
                    if interrupted:  # the import was interrupted, whatever it raised or swallowed
                        raise KeyboardInterrupt from None
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
