"""A QuantError raised on a Ray worker names the worker; the shared-storage hint comes only with file errors."""
import pytest

from quant.core.errors import QuantError
from quant.distributed.ray_cluster import _on_worker


def _raise(message, hint):
    raise QuantError(message, hint=hint)


def test_a_model_the_worker_cannot_convert_keeps_its_own_hint():
    with pytest.raises(QuantError) as info:
        _on_worker(_raise, "the PyTorch backend has no implementation of the ONNX op Hardmax (node 'h', opset 17)",
                   "run it on ONNX Runtime: --device ort")
    assert info.value.message.startswith("on Ray worker ") and "Hardmax" in info.value.message
    assert info.value.hint == "run it on ONNX Runtime: --device ort"  # not told to move the data


def test_a_file_the_worker_cannot_read_gets_the_shared_storage_hint():
    with pytest.raises(QuantError) as info:
        _on_worker(_raise, "cannot read '/data/cal.npz': No such file or directory", None)
    assert "storage every node sees" in info.value.hint
