"""Where one command's work runs: the device and the Ray options, checked once (the execution context).

``--device`` picks the backend (ONNX Runtime, or the ONNX graph run with PyTorch on 'cpu' or a GPU) and
``--ray`` spreads the work over a cluster. The two compose: with ``--ray --device cuda`` every Ray task or
actor asks for one GPU and runs on the one Ray gives it (``cuda:0`` inside the worker, whose
CUDA_VISIBLE_DEVICES names that GPU); with ``--ray --device cpu`` they run PyTorch on the CPU, no GPU asked.
Neither torch nor ray is imported here until the work needs it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from quant.core.errors import QuantError


@dataclass(frozen=True)
class Execution:
    """``device``: None (ONNX Runtime), 'cpu', 'cuda' or 'cuda:N', spelled and checked, torch not yet asked;
    ``ray``: :class:`quant.distributed.RayOptions`, or None for one process."""

    device: str | None = None
    ray: object | None = None

    @property
    def worker_device(self) -> str | None:
        """The device a Ray worker runs on, resolved on the worker: None (ONNX Runtime), 'cpu' or 'cuda'."""
        return None if self.device is None else self.device.partition(":")[0]

    @property
    def gpus_per_worker(self) -> int:
        """GPUs each Ray task or actor asks for: 1 with a CUDA device, else 0."""
        return 1 if self.worker_device == "cuda" else 0

    def local_device(self) -> str | None:
        """The checked torch device for work in this process (None: ONNX Runtime); for CUDA this asks torch
        whether this machine has the GPU, so it is called only where this process runs the model."""
        return local_device(self.device)

    def driver_device(self, what: str) -> str | None:
        """``local_device()`` for the part of a command that runs in this process even with Ray (``what``);
        its error says so, since the workers' GPUs do not help there."""
        try:
            return self.local_device()
        except QuantError as exc:
            if self.ray is None:
                raise
            raise QuantError(f"{exc.message}; with --ray, this process still runs {what}",
                             hint="run the command on a node with the device, or use --device cpu or ort "
                                  "with --ray") from None

    def cluster(self):
        """A RayCluster context (it refuses a CUDA device on a cluster without GPUs), or a null context."""
        if self.ray is None:
            return contextlib.nullcontext(None)
        from quant.distributed.ray_cluster import RayCluster

        return RayCluster(self.ray, gpus_per_task=self.gpus_per_worker)


def execution(device: str | None = "ort", ray=None) -> Execution:
    """The checked context for ``device`` ('ort', 'cpu', 'cuda', 'cuda:N') and ``ray`` (see
    quant.distributed.ray_cluster.as_options). A typo in the device fails before torch or ray is imported."""
    name = None
    if device not in (None, "ort"):
        from quant.backends.torch import device_name

        name = device_name(device)
    options = None
    if ray is not None and ray is not False:
        from quant.distributed.ray_cluster import as_options

        options = as_options(ray)
    if options is not None and name is not None and name.startswith("cuda:") and name != "cuda:0":
        raise QuantError(f"--device {device} with --ray: Ray gives each worker one GPU of its own (cuda:0 inside it)",
                         hint="use --device cuda")
    return Execution(name, options)


def local_device(device: str | None) -> str | None:
    """A checked torch device for ``device`` ('cuda', 'cuda:N', 'cpu'), or None for 'ort' (ONNX Runtime)."""
    if device in (None, "ort"):
        return None
    from quant.backends.torch import device_name

    device_name(device)  # a typo fails before torch is imported
    from quant.backends.torch.pipeline import parse_device

    return parse_device(device)
