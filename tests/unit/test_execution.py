"""The execution context (device + Ray options): what each Ray worker asks for, and the refusals, checked
without importing torch or ray."""
import subprocess
import sys

import pytest

from quant.core.errors import QuantError
from quant.pipeline.execution import execution


@pytest.mark.parametrize("device, ray, kind, gpus", [
    ("ort", None, None, 0), (None, False, None, 0), ("cpu", None, "cpu", 0), ("ort", True, None, 0),
    ("cpu", "auto", "cpu", 0), ("cuda", "auto", "cuda", 1), ("CUDA:0", "127.0.0.1:6379", "cuda", 1),
])
def test_what_each_worker_runs_on_and_asks_for(device, ray, kind, gpus):
    context = execution(device, ray)
    assert context.worker_device == kind and context.gpus_per_worker == gpus
    assert (context.ray is None) == (ray in (None, False))
    if ray == "127.0.0.1:6379":
        assert context.ray.address == "127.0.0.1:6379"


def test_a_gpu_index_with_ray_is_refused_with_the_fix():
    with pytest.raises(QuantError) as info:
        execution("cuda:2", "auto")
    assert info.value.message == "--device cuda:2 with --ray: Ray gives each worker one GPU of its own (cuda:0 inside it)"
    assert info.value.hint == "use --device cuda"
    assert execution("cuda:2", None).device == "cuda:2"  # without Ray the index is this machine's


def test_a_device_typo_fails_before_ray_options_are_read():
    with pytest.raises(QuantError, match="--device 'gpu' is not a device"):
        execution("gpu", object())  # the bad ray= value is never looked at


def test_without_ray_there_is_no_cluster_and_nothing_heavy_is_imported():
    code = ("import sys; from quant.pipeline.execution import execution; c = execution('cuda', 'auto'); "
            "assert execution('cpu').cluster().__enter__() is None; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
