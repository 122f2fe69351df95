"""Ray tasks for quant: calibration shards and independent evaluations, with exact, ordered merges.

Why Ray and not a scheduler of our own: ML teams already run Ray clusters, Ray retries a task whose
worker died (``max_retries``), cancels tasks on Ctrl-C, and moves large values through its object store
once (``ray.put``) instead of once per task.

What must be shared: workers read ``--data`` by path, so a path must name the same files on every node
(a shared file system or the same image); in-memory data from the Python API travels through the object
store. A worker that cannot read the data ends the command with one ``Error:`` line naming the node.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from quant.core.errors import QuantError
from quant.core.lazy import require

MAX_RETRIES = 3  # Ray re-runs a task this many times when its worker process dies
FAULT_MARKER_ENV = "QUANT_RAY_FAULT_MARKER"
FAULT_KILLS_ENV = "QUANT_RAY_FAULT_KILLS"
"""Testing aid: with QUANT_RAY_FAULT_MARKER set to a file path, a task that starts while the file holds
fewer than QUANT_RAY_FAULT_KILLS (default 1) bytes appends one byte and kills its own worker process
with SIGKILL (a worker lost mid-task); Ray then retries the task on a new worker."""


@dataclass(frozen=True)
class RayOptions:
    """Where and how finely to spread work.

    address: a Ray cluster to connect to ("host:port", "auto" or "ray://..."); None starts a local one.
    shards: calibration shards: a count, or explicit shard sizes (which must add up to the samples);
        None: two per CPU of the cluster. Results never depend on it.
    num_cpus: CPUs of a local cluster (None: all of this machine's).
    """

    address: str | None = None
    shards: int | tuple[int, ...] | None = None
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        shards = self.shards
        if isinstance(shards, (list, tuple)):
            object.__setattr__(self, "shards", tuple(int(s) for s in shards))
            if not shards or any(s < 1 for s in self.shards):
                raise QuantError(f"Ray shard sizes must be >= 1, got {list(shards)}", hint="e.g. shards=(100, 28)")
        elif shards is not None and (not isinstance(shards, int) or shards < 1):
            raise QuantError(f"--ray-shards must be an integer >= 1, got {shards!r}", hint="e.g. --ray-shards 8")
        if self.num_cpus is not None and self.num_cpus < 1:
            raise QuantError(f"a local Ray cluster needs at least 1 CPU, got {self.num_cpus}")


def as_options(value) -> RayOptions | None:
    """``ray=`` of the Python API: None/False (no Ray), True or "local", an address, or RayOptions."""
    if value is None or value is False:
        return None
    if value is True or value == "local":
        return RayOptions()
    if isinstance(value, str):
        return RayOptions(address=value)
    if isinstance(value, RayOptions):
        return value
    raise QuantError(f"ray= takes True, an address string or RayOptions, got {type(value).__name__}",
                     hint="e.g. quant.calibrate(model, data, ray='auto')")


class RayCluster:
    """A connection to a Ray cluster for the length of a ``with`` block (started locally if no address).

    ``gpus_per_task``: GPUs each task and actor asks for (1 for ``--device cuda``); a cluster without GPUs
    is then refused when the block starts, before any work is submitted."""

    def __init__(self, options: RayOptions, gpus_per_task: int = 0) -> None:
        self.options = options
        self.gpus_per_task = gpus_per_task
        self._started = False

    def __enter__(self) -> "RayCluster":
        ray = require("ray")
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level="ERROR")
            if self.options.address:
                _check_reachable(self.options.address)
                kwargs["address"] = self.options.address
            else:
                kwargs["address"] = "local"
                if self.options.num_cpus:
                    kwargs["num_cpus"] = self.options.num_cpus
            faults = {k: os.environ[k] for k in (FAULT_MARKER_ENV, FAULT_KILLS_ENV) if k in os.environ}
            if faults:  # reach workers of a cluster started elsewhere too
                kwargs["runtime_env"] = {"env_vars": faults}
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
                where = self.options.address or "a local cluster"
                raise QuantError(f"cannot start or reach the Ray cluster ({where}): {str(exc).splitlines()[0]}",
                                 hint="start one with 'ray start --head', or give --ray without an address "
                                      "for a local cluster") from None
            except BaseException:  # Ctrl-C while a local cluster starts: stop what was started of it
                ray.shutdown()
                raise
            self._started = True
        try:
            self._check_gpus()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _check_gpus(self) -> None:
        if self.gpus_per_task and self.gpus < self.gpus_per_task:
            where = self.options.address or "the local cluster"
            raise QuantError(f"--device cuda with --ray: the Ray cluster ({where}) has no GPUs "
                             f"({self.cpus} CPUs, {self.gpus} GPUs); each worker needs one",
                             hint="start the nodes with their GPUs (ray start ... --num-gpus N), or use --device cpu "
                                  "or ort with --ray")

    def __exit__(self, *exc_info) -> None:
        if self._started:
            require("ray").shutdown()

    @property
    def cpus(self) -> int:
        return max(1, int(require("ray").cluster_resources().get("CPU", 1)))

    @property
    def gpus(self) -> int:
        return int(require("ray").cluster_resources().get("GPU", 0))

    @property
    def workers(self) -> int:
        """How many tasks or actors run at once: one per CPU, or one per GPU when each needs a GPU."""
        return min(self.cpus, self.gpus // self.gpus_per_task) if self.gpus_per_task else self.cpus

    def put(self, value):
        """Put a value in the object store once; pass the reference to ``map`` instead of the value."""
        return require("ray").put(value)

    def map(self, function: Callable, calls: Sequence[tuple], what: Callable[[int], str],
            on_done: Callable[[int], None] | None = None) -> list:
        """``[function(*call) for call in calls]`` as Ray tasks, results in the order of ``calls``.

        ``what(i)`` names call i in errors. A task whose worker dies is retried by Ray (MAX_RETRIES);
        one that fails for good raises QuantError; Ctrl-C cancels every task.
        """
        ray = require("ray")
        remote = ray.remote(num_cpus=1, num_gpus=self.gpus_per_task, max_retries=MAX_RETRIES,
                            retry_exceptions=False)(_run_task)
        return self.drive(len(calls), lambda i: remote.remote(function, *calls[i]), what, on_done)

    def drive(self, count: int, submit: Callable[[int], object], what: Callable[[int], str],
              on_done: Callable[[int], None] | None = None, window: int | None = None,
              release: Callable[[int], None] | None = None, cancel: Callable[[], None] | None = None) -> list:
        """Results of ``submit(i)`` (an ObjectRef) for i < count, in order; at most ``window`` in flight.

        ``release(i)`` runs when call i is done (before the next is submitted); ``cancel()`` on failure
        or Ctrl-C, after the submitted tasks were cancelled.
        """
        ray = require("ray")
        refs: list = []
        index: dict = {}
        interrupted: list = []
        previous = None
        if threading.current_thread() is threading.main_thread():
            # Ctrl-C is taken between waits, not inside Ray's native calls (which it can leave broken).
            previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))

        def launch() -> object:
            ref = submit(len(refs))
            index[ref] = len(refs)
            refs.append(ref)
            return ref

        try:
            in_flight = [launch() for _ in range(count if window is None else min(window, count))]
            while in_flight:
                ready, in_flight = ray.wait(in_flight, num_returns=1, timeout=0.5)
                if interrupted:
                    raise KeyboardInterrupt
                for ref in ready:
                    _get(ray, ref, what(index[ref]))  # fail at the first call that failed for good
                    if release is not None:
                        release(index[ref])
                    if on_done is not None:
                        on_done(index[ref])
                    if len(refs) < count:
                        in_flight.append(launch())
            return [_get(ray, ref, what(i)) for i, ref in enumerate(refs)]
        except BaseException:
            for ref in refs:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # an actor task (no force), already finished, or the cluster is gone  # noqa: BLE001
                    try:
                        ray.cancel(ref)
                    except Exception:  # noqa: BLE001
                        pass
            if cancel is not None:
                cancel()
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not minutes, when a host:port address has nothing listening (Ray retries for long)."""
    import socket

    host, sep, port = address.rpartition(":")
    if address.startswith("ray://") or not sep or not port.isdigit():
        return  # "auto", a Ray Client address, or a form Ray itself resolves
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise QuantError(f"cannot start or reach the Ray cluster ({address}): {exc.strerror or exc}",
                         hint="start one with 'ray start --head' and pass the address it prints, or give --ray "
                              "without an address for a local cluster") from None


def _run_task(function: Callable, *args):
    """Runs on the worker: the optional fault injection, then the task."""
    _inject_fault()
    return _on_worker(function, *args)


def _inject_fault() -> None:
    marker = os.environ.get(FAULT_MARKER_ENV)
    if marker:
        fd = os.open(marker, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
        try:
            kill = os.fstat(fd).st_size < int(os.environ.get(FAULT_KILLS_ENV, "1"))
            if kill:
                os.write(fd, b"k")
        finally:
            os.close(fd)
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)


def _on_worker(function: Callable, *args):
    try:
        return function(*args)
    except QuantError as exc:  # say where it happened: a path may exist on the driver but not on a worker
        import socket

        hint = exc.hint
        if _about_files(exc.message):  # only then: a model the converter refuses is not a storage problem
            hint = (hint + "; " if hint else "") + ("Ray workers read --data by path: it must be on storage every "
                                                    "node sees (docs/cluster.md)")
        raise QuantError(f"on Ray worker {socket.gethostname()}: {exc.message}", hint=hint) from None


def _about_files(message: str) -> bool:
    """Whether a worker's error is about reading files (what differs between nodes when storage is not shared)."""
    text = message.lower()
    return any(word in text for word in ("no such file", "not found", "does not exist", "cannot read", "cannot open",
                                         "cannot access", "permission denied", "not a file", "not a folder"))


def _get(ray, ref, what: str):
    exceptions = ray.exceptions
    try:
        return ray.get(ref)
    except exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, QuantError):
            raise QuantError(cause.message, hint=cause.hint) from None
        raise QuantError(f"{what} failed on a Ray worker: {type(cause or exc).__name__}: "
                         f"{str(cause or exc).splitlines()[0] if str(cause or exc) else ''}",
                         hint="this is a bug in quant or the model; run without --ray to see the traceback") from None
    except (exceptions.WorkerCrashedError, exceptions.RayActorError):
        raise QuantError(f"the Ray worker running {what} died {MAX_RETRIES + 1} times",
                         hint="check the nodes' memory and the workers' logs ('ray logs')") from None
    except exceptions.TaskCancelledError:
        raise KeyboardInterrupt from None
    except exceptions.RayError as exc:
        raise QuantError(f"{what} failed on the Ray cluster: {type(exc).__name__}: {str(exc).splitlines()[0]}",
                         hint="check the cluster's state ('ray status') and the workers' logs") from None


# ---------------------------------------------------------------------------------------------- calibration

def shard_bounds(count: int, shards: int | tuple[int, ...]) -> list[tuple[int, int]]:
    """[start, stop) ranges over ``count`` samples: ``shards`` near-equal parts, or the given sizes."""
    if isinstance(shards, tuple):
        if sum(shards) != count:
            raise QuantError(f"Ray shard sizes {list(shards)} add up to {sum(shards)}, but {count} samples are used",
                             hint="give sizes that add up to the number of samples, or a shard count")
        sizes = list(shards)
    else:
        parts = max(1, min(shards, count))
        sizes = [count // parts + (1 if i < count % parts else 0) for i in range(parts)]
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + size))
        start += size
    return bounds


def worker_device(kind: str | None) -> str | None:
    """The torch device of this worker for ``kind`` ('cpu', 'cuda'; None: ONNX Runtime). 'cuda' is cuda:0,
    the GPU Ray assigned to this task or actor (Ray sets CUDA_VISIBLE_DEVICES to it)."""
    from quant.pipeline.execution import local_device

    return local_device(kind)


def collect_shard(model, data, preprocess, split, indices, inputs, mapping, tensors, bins, batch_size,
                  memory_budget_mb, device=None):
    """One shard of the collection pass (runs on a worker): the FP32 model over ``indices``.

    ``model``: the model with the collected tensors as outputs (ONNX Runtime) or as it is (``device``, a
    worker device kind: the torch backend reads any tensor by name). Returns (CollectionResult, where it ran)."""
    from quant.collect import collect
    from quant.datasets import iter_batches, open_source
    from quant.pipeline.calibration import collection_batching

    source = open_source(data, preprocess, split)
    device = worker_device(device)
    auto, size = collection_batching(batch_size, memory_budget_mb, device)
    batches = iter_batches(source, indices, inputs, mapping, auto or size)
    if device is not None:
        from quant.backends.torch import pipeline as torch_backend

        return torch_backend.collect(model, device, batches, tensors, bins, len(indices), False, auto)
    from quant.backends.onnxruntime import OrtRunner

    runner = OrtRunner(model, mode="fp32", spin=False, threads=1)
    return collect(runner, batches, tensors, bins=bins, progress=False, batch_size=auto), "ONNX Runtime (CPU)"


def collect_on_ray(execution, model, data, preprocess, split, indices, inputs, mapping, tensors,
                   config, progress: bool = False):
    """The collection pass as Ray tasks over contiguous shards of ``indices``; merged in shard order.

    ``execution``: a :class:`quant.pipeline.execution.Execution` with Ray options (and the workers' device).
    Returns (CollectionResult, where it ran: the workers' description, each distinct one once)."""
    from quant.collect import merge_collections

    if isinstance(data, (str, Path)):
        data = str(Path(data).resolve())  # workers may start in another folder
    with execution.cluster() as cluster:
        bounds = shard_bounds(len(indices), execution.ray.shards or 2 * cluster.workers)
        model_ref, data_ref = cluster.put(model), cluster.put(data)
        calls = [(model_ref, data_ref, preprocess, split, [int(i) for i in indices[a:b]], inputs,
                  mapping, list(tensors), config.bins, config.batch_size, config.memory_budget_mb,
                  execution.worker_device) for a, b in bounds]
        bar = _bar(len(indices), progress)
        try:
            parts = cluster.map(collect_shard, calls, lambda i: f"calibration shard {i + 1}/{len(bounds)} (samples "
                                                        f"{int(indices[bounds[i][0]])}..{int(indices[bounds[i][1] - 1])})",
                                on_done=(lambda i: bar.update(bounds[i][1] - bounds[i][0])) if bar else None)
        finally:
            if bar is not None:
                bar.close()
    return merge_collections([part for part, _ in parts], tensors), "; ".join(dict.fromkeys(w for _, w in parts))


def _bar(total: int, enabled: bool):
    if not enabled:
        return None
    import sys

    from tqdm import tqdm

    return tqdm(total=total, desc="collecting on Ray", unit="sample", file=sys.stderr, leave=False, disable=None)


# ---------------------------------------------------------------------------------------------- evaluations

class Evaluator:
    """A Ray actor's state for a search: the calibration, the held-out data (FP32 outputs included) and
    the runner factory with its caches, deserialized once per worker instead of once per evaluation.
    ``device``: the worker device kind (None: ONNX Runtime; 'cpu'; 'cuda': the actor's own GPU)."""

    def __init__(self, result, method: str, runtime: str, heldout, metric, device: str | None = None) -> None:
        from quant.pipeline.evaluation import qdq_runner_factory

        self.make = qdq_runner_factory(result, method, runtime, device or "ort")
        self.heldout, self.metric = heldout, metric

    def score(self, keep_float: frozenset) -> float:
        _inject_fault()
        return _on_worker(lambda: self.heldout.score(self.make(keep_float), self.metric))


def ray_scores(cluster: RayCluster, result, method: str, runtime: str, heldout, metric, progress=None,
               device: str | None = None):
    """``score_many(candidates)`` on a pool of Ray actors (one per CPU of the cluster, or per GPU with
    ``device`` 'cuda'; created at the first call); the calibration and the held-out data go to the object
    store once. An actor whose process dies is restarted and its evaluation retried (MAX_RETRIES)."""
    ray = require("ray")
    refs = (cluster.put(result), cluster.put(heldout))
    actors: list = []

    def score_many(candidates):
        candidates = list(candidates)
        if not actors:
            remote = ray.remote(num_cpus=1, num_gpus=cluster.gpus_per_task, max_restarts=MAX_RETRIES,
                                max_task_retries=MAX_RETRIES)(Evaluator)
            actors.extend(remote.remote(refs[0], method, runtime, refs[1], metric, device)
                          for _ in range(cluster.workers))
        free, owner = list(actors), {}

        def submit(i: int):
            owner[i] = free.pop()
            return owner[i].score.remote(candidates[i])

        def what(i: int) -> str:
            floats = sorted(candidates[i])
            named = ", ".join(floats[:3]) + (" ..." if len(floats) > 3 else "")
            return f"evaluation {i + 1}/{len(candidates)} (float layers: {named or 'none'})"

        def cancel() -> None:
            for actor in actors:
                ray.kill(actor, no_restart=True)
            actors.clear()

        return cluster.drive(len(candidates), submit, what, window=len(actors), release=lambda i: free.append(owner[i]),
                             on_done=(lambda i: progress.update(1)) if progress is not None else None, cancel=cancel)

    return score_many


# ---------------------------------------------------------------------------------------------- evaluation

def run_batches(fp32_model, int8_model, runtime: str, data, preprocess, split, groups, inputs, mapping,
                device: str | None = None):
    """Both models over batches given by their sample indices (runs on a worker); outputs by name, and
    where FP32 ran. ``device``: the worker device kind (None: ONNX Runtime; see worker_device)."""
    from quant.backends.onnxruntime import OrtRunner
    from quant.datasets import iter_batches, open_source
    from quant.pipeline.evaluation import fp32_runner, int8_runner

    source = open_source(data, preprocess, split)
    device = worker_device(device)
    reference = OrtRunner(fp32_model, mode="fp32", threads=1) if device is None else fp32_runner(fp32_model, device)
    candidate = int8_runner(int8_model, runtime, device=device)
    out = []
    for group in groups:  # one group = one batch of one process: same shapes, so iter_batches keeps it whole
        (_, feeds), = list(iter_batches(source, group, inputs, mapping, len(group)))
        out.append((dict(zip(reference.output_names, reference.run(feeds))),
                    dict(zip(candidate.output_names, candidate.run(feeds)))))
    return out, getattr(reference, "description", "")


class ReplayRunner:
    """Returns outputs computed elsewhere, batch after batch, in the order they are asked for."""

    def __init__(self, output_names: list[str], outputs: list[dict], description: str = "") -> None:
        self.output_names = list(output_names)
        self.description = description
        self._outputs = iter(outputs)

    def run(self, feeds, outputs=None):
        values = next(self._outputs)
        return [values[name] for name in (outputs or self.output_names)]


def evaluate_on_ray(execution, fp32_model, int8_model, runtime: str, data, preprocess, split, held,
                    batch_size: int, progress=None):
    """(reference, candidate) ReplayRunners and the batches: both models run as Ray tasks over shards of
    whole batches (the batches one process makes), so every output is the one a single process computes.
    ``execution``: a :class:`quant.pipeline.execution.Execution` with Ray options (and the workers' device)."""
    if isinstance(data, (str, Path)):
        data = str(Path(data).resolve())
    batches = [indices for indices, _ in held.batches(batch_size)]  # the batch boundaries of one process
    with execution.cluster() as cluster:
        shards = shard_bounds(len(batches), execution.ray.shards or 2 * cluster.workers)
        refs = [cluster.put(v) for v in (fp32_model, int8_model, data)]
        calls = [(refs[0], refs[1], runtime, refs[2], preprocess, split, batches[a:b], held.inputs, held.mapping,
                  execution.worker_device) for a, b in shards]
        parts = cluster.map(run_batches, calls, lambda i: f"evaluation shard {i + 1}/{len(shards)}",
                            on_done=(lambda i: progress.update(sum(len(g) for g in batches[slice(*shards[i])])))
                            if progress is not None else None)
    pairs = [pair for part, _ in parts for pair in part]
    names = list(pairs[0][0]) if pairs else []
    where = "; ".join(dict.fromkeys(description for _, description in parts))
    reference = ReplayRunner(names, [r for r, _ in pairs], where)
    candidate = ReplayRunner(list(pairs[0][1]) if pairs else [], [c for _, c in pairs])
    return reference, candidate, [(indices, {}) for indices in batches]
