"""Bad inputs for --ray with --device: each ends in one 'Error:' line, exit code 2, nothing written, and fails
before any cluster is reached (the address below has nothing listening: reaching it would be another error)."""
from __future__ import annotations

import socket
from pathlib import Path

from bad_inputs.cases import CALIBRATION, HELDOUT, MODEL, Case


def _closed_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def cuda_index_with_ray(d: Path):
    return ["calibrate", MODEL, "--data", CALIBRATION, "--output", d / "out", "--device", "cuda:1",
            "--ray", _closed_address()]


def cuda_index_with_ray_eval(d: Path):
    return ["eval", MODEL, MODEL, "--data", HELDOUT, "--device", "cuda:3", "--ray", _closed_address()]


def device_typo_with_ray(d: Path):
    return ["sensitivity", MODEL, "--calibration", d / "missing", "--data", HELDOUT, "--device", "gpu",
            "--ray", _closed_address()]


CASES = [
    Case("cuda_index_with_ray", cuda_index_with_ray, "--device cuda:1 with --ray: Ray gives each worker one GPU"),
    Case("cuda_index_with_ray_eval", cuda_index_with_ray_eval, "--device cuda:3 with --ray"),
    Case("device_typo_with_ray", device_typo_with_ray, "--device 'gpu' is not a device"),
]


def cuda_sensitivity_on_a_driver_without_gpu(d: Path):
    """Only where this machine has no CUDA GPU (see test_bad_inputs_ray.py): the driver's own part needs one."""
    return ["sensitivity", MODEL, "--calibration", d / "missing", "--data", HELDOUT, "--device", "cuda",
            "--ray", _closed_address()]


NO_GPU_CASES = [
    Case("cuda_sensitivity_on_a_driver_without_gpu", cuda_sensitivity_on_a_driver_without_gpu,
         "with --ray, this process still runs the FP32 reference"),
]
