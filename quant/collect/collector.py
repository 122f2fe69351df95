"""The collection pass: one FP32 run per batch, every requested tensor folded into its Histogram.

Activations are never kept: each batch's outputs are histogrammed and dropped, so memory is
O(tensors x bins) plus one batch, whatever the number of samples.
"""
from __future__ import annotations

import hashlib
import queue
import sys
import threading
from dataclasses import dataclass, field
from typing import Iterable, Protocol, Sequence

import numpy as np

from quant.core.errors import NonFiniteError, QuantError
from quant.core.histogram import DEFAULT_BINS, Histogram


class Runner(Protocol):
    def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]: ...


class AutoBatchSize:
    """Batch size that keeps one batch's activations within a memory budget (results do not depend on it).

    Starts at 1; after each batch, the bytes the model returned per sample set the next size.
    """

    def __init__(self, budget_bytes: int, maximum: int = 64) -> None:
        self.budget_bytes = budget_bytes
        self.maximum = maximum
        self.size = 1
        self.bytes_per_sample = 0

    def __call__(self) -> int:
        return self.size

    def observe(self, batch_bytes: int, samples: int) -> None:
        self.bytes_per_sample = max(self.bytes_per_sample, -(-batch_bytes // max(samples, 1)))
        self.size = int(min(self.maximum, max(1, self.budget_bytes // max(self.bytes_per_sample, 1))))


@dataclass
class CollectionResult:
    histograms: dict[str, Histogram]
    samples: int = 0
    batches: int = 0
    shapes: dict[str, list[list[int]]] = field(default_factory=dict)  # distinct input shapes seen, per input
    data_hash: str = ""  # order-independent hash of the samples used
    digests: list[bytes] = field(default_factory=list)  # one sha256 per sample (data_hash combines them sorted)


def nonfinite_samples(values, indices: list[int]) -> str:
    """'in the batch of samples 1..39 (first: sample 3)': the first sample whose values are not all finite, where
    the batch axis is known (the batch's indices need not be consecutive: --num-samples draws them); the batch
    alone where ``values`` is None (an activation left on the device)."""
    batch = f"in the batch of samples {indices[0]}..{indices[-1]}"
    if values is None:
        return batch
    array = np.asarray(values)
    if array.ndim and len(array) == len(indices):
        rows = np.flatnonzero(~np.isfinite(array.reshape(len(indices), -1)).all(axis=1))
        if rows.size:
            return f"{batch} (first: sample {indices[int(rows[0])]})"
    return batch


def collect(runner: Runner, batches: Iterable[tuple[list[int], dict[str, np.ndarray]]], tensors: Sequence[str],
            bins: int = DEFAULT_BINS, total: int | None = None, progress: bool = True,
            batch_size: AutoBatchSize | None = None) -> CollectionResult:
    """Histogram every tensor in ``tensors`` (graph inputs are taken from the feeds) over all batches.

    With ``batch_size`` (the AutoBatchSize that ``batches`` asks), each batch's size is reported back.
    """
    histograms = {name: Histogram(bins=bins) for name in tensors}
    result = CollectionResult(histograms)
    sample_digests: list[bytes] = []
    bar = _progress(total, progress)
    ahead = _run_ahead(runner, batches, tensors, batch_size)
    try:
        for indices, feeds, values, _keepalive in ahead:
            for name in tensors:
                try:
                    histograms[name].update(values[name], name=f"tensor '{name}'")
                except NonFiniteError as exc:
                    where = "input" if name in feeds else "activation"
                    raise QuantError(f"{where} '{name}' contains NaN or Inf {nonfinite_samples(values[name], indices)}"
                                     "; calibration needs finite values", hint=exc.hint) from None
            for name, array in feeds.items():
                shape = list(array.shape[1:])
                seen = result.shapes.setdefault(name, [])
                if shape not in seen:
                    seen.append(shape)
            sample_digests += sample_digests_of(feeds, len(indices))
            result.samples += len(indices)
            result.batches += 1
            if bar is not None:
                bar.update(len(indices))
    finally:
        ahead.close()  # joins the worker now, not when the garbage collector gets to the generator
        if bar is not None:
            bar.close()
    if result.samples == 0:
        raise QuantError("no calibration samples were read", hint="point --data at a non-empty data source")
    result.digests = sample_digests
    result.data_hash = combine_digests(sample_digests)
    return result


def sample_digests_of(feeds: dict[str, np.ndarray], rows: int) -> list[bytes]:
    """One sha256 per sample of a batch (over its inputs in name order): what identifies a sample by content."""
    out = []
    for row in range(rows):
        digest = hashlib.sha256()
        for name in sorted(feeds):
            digest.update(np.ascontiguousarray(feeds[name][row]).tobytes())
        out.append(digest.digest())
    return out


def combine_digests(digests: Iterable[bytes]) -> str:
    """The order-independent hash of a set of samples from their per-sample digests."""
    combined = hashlib.sha256()
    for digest in sorted(digests):
        combined.update(digest)
    return combined.hexdigest()


def merge_collections(parts: Sequence[CollectionResult], tensors: Sequence[str]) -> CollectionResult:
    """One CollectionResult from the results of consecutive shards, equal to one pass over all of them.

    Histograms merge exactly (dyadic grid); input shapes keep the order in which the shards saw them.
    """
    histograms = {name: parts[0].histograms[name].copy() for name in tensors}
    merged = CollectionResult(histograms)
    for index, part in enumerate(parts):
        if index:
            for name in tensors:
                histograms[name] = histograms[name].merge(part.histograms[name])
        merged.samples += part.samples
        merged.batches += part.batches
        merged.digests += part.digests
        for name, shapes in part.shapes.items():
            seen = merged.shapes.setdefault(name, [])
            seen += [shape for shape in shapes if shape not in seen]
    merged.data_hash = combine_digests(merged.digests)
    return merged


def _run_ahead(runner: Runner, batches, tensors: Sequence[str], batch_size: AutoBatchSize | None):
    """Yield (indices, feeds, values, keepalive) while a worker thread reads and runs the next batch.

    ONNX Runtime and NumPy release the GIL, so reading data and the forward pass of batch k+1 overlap the
    histograms of batch k. At most two batches of activations are alive. The order of batches is kept
    (and the histograms would not depend on it anyway).

    However the consumer stops (end of data, an error such as NaN in a batch, Ctrl-C), the worker is told
    to stop and joined before this generator finishes: a thread left inside ONNX Runtime's native run at
    interpreter exit is killed by pthread_exit, which aborts the process ("terminate called without an
    active exception", exit 134) after the Error line was already printed.
    """
    slots: queue.Queue = queue.Queue(maxsize=1)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for indices, feeds in batches:
                if stop.is_set():
                    return
                from_run = [name for name in tensors if name not in feeds]
                keepalive = None
                if from_run and hasattr(runner, "run_views"):  # no copy of the activations
                    arrays, keepalive = runner.run_views(feeds, from_run)
                else:
                    arrays = runner.run(feeds, from_run) if from_run else []
                values = dict(zip(from_run, arrays))
                values.update({name: feeds[name] for name in tensors if name in feeds})
                if batch_size is not None:
                    batch_size.observe(sum(values[n].nbytes for n in tensors)
                                       + sum(v.nbytes for v in feeds.values()), len(indices))
                _put(slots, (indices, feeds, values, keepalive), stop)
                if stop.is_set():
                    return
            _put(slots, done, stop)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            _put(slots, exc, stop)

    worker = threading.Thread(target=work, name="quant-collect")
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        try:  # unblock a worker waiting to put
            slots.get_nowait()
        except queue.Empty:
            pass
        _join(worker)


def _join(worker: threading.Thread) -> None:
    """Wait for the worker to finish its current batch; a second Ctrl-C while waiting does not skip the wait."""
    interrupted = None
    while worker.is_alive():
        try:
            worker.join()
        except KeyboardInterrupt as exc:
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def _put(slots: queue.Queue, item, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            slots.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _progress(total: int | None, enabled: bool, what: str = "collecting"):
    """A tqdm bar over samples on stderr (hidden off a terminal), or None when not enabled or without tqdm."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=what, unit="sample", file=sys.stderr, leave=False,
                disable=None, dynamic_ncols=True)
