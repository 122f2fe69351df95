"""Data sources: random access to samples (dicts of arrays without the batch axis) and optional labels."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from quant.core.errors import QuantError


class DataSource:
    """A sequence of samples. ``sample(i)`` returns ``{key: array}`` without the batch axis."""

    description: str = ""
    feeds_may_have_batch_axis: bool = False  # a sample shaped [1, ...] like the model input is one sample
    synthetic_keys: tuple[str, ...] = ()  # keys quant named itself (an image folder's 'input'): no note when used

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def keys(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample(self, index: int) -> dict[str, np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def column(self, key: str) -> np.ndarray | None:
        """A whole scalar column (e.g. labels) as an array, or None if the source has no such column."""
        return None


@dataclass(frozen=True)
class InputSpec:
    """What the model expects of one input: name, numpy dtype and shape (None or a string for free dims)."""

    name: str
    dtype: np.dtype
    shape: tuple


def resolve_input_map(inputs: Sequence[InputSpec], source: DataSource, input_map: dict[str, str] | None,
                      exclude: Sequence[str] = ()) -> dict[str, str]:
    """Map every model input name to a key of the source, or explain what is wrong."""
    keys = [k for k in source.keys if k not in exclude]
    mapping: dict[str, str] = {}
    input_map = dict(input_map or {})
    unknown = [name for name in input_map if name not in {spec.name for spec in inputs}]
    if unknown:
        raise QuantError(f"--input-map names {unknown}, which the model does not have as inputs",
                         hint=f"the model's inputs are: {', '.join(s.name for s in inputs)}")
    for spec in inputs:
        if spec.name in input_map:
            key = input_map[spec.name]
        elif spec.name in keys:
            key = spec.name
        elif len(inputs) == 1 and len(keys) == 1:
            key = keys[0]
            if not input_map and key not in getattr(source, "synthetic_keys", ()):
                from quant.core.notes import note

                note(f"data key '{key}' feeds model input '{spec.name}' (the only array and the only input)")
        else:
            raise QuantError(
                f"the data has no array for model input '{spec.name}' (data keys: {', '.join(keys) or 'none'})",
                hint=f"name the arrays after the model inputs or pass --input-map {spec.name}=<key>")
        if key not in source.keys:
            raise QuantError(f"--input-map points '{spec.name}' at '{key}', which is not in the data",
                             hint=f"the data's keys are: {', '.join(source.keys)}")
        mapping[spec.name] = key
    return mapping


def _check_sample(spec: InputSpec, value: np.ndarray, key: str, batch_axis: bool = False) -> np.ndarray:
    value = np.asarray(value)
    if batch_axis and value.ndim == len(spec.shape) and value.ndim and value.shape[0] == 1:
        value = value[0]  # one sample saved as a model feed, with its batch axis of 1
    if value.ndim + 1 != len(spec.shape):
        raise QuantError(
            f"model input '{spec.name}' has rank {len(spec.shape)} (shape {_fmt_shape(spec.shape)}), but "
            f"samples of '{key}' have shape {tuple(value.shape)} (rank {value.ndim + 1} with the batch axis)",
            hint="give one sample per row of the array, shaped like the model input without its batch axis")
    for axis, (want, got) in enumerate(zip(spec.shape[1:], value.shape), start=1):
        if isinstance(want, int) and want > 0 and want != got:
            raise QuantError(
                f"model input '{spec.name}' expects size {want} on axis {axis} (shape {_fmt_shape(spec.shape)}), "
                f"but samples of '{key}' have shape {tuple(value.shape)}",
                hint=_layout_hint(spec.shape[1:], value.shape)
                or "resize the data (for image folders: --resize H,W) to the model's input size")
    if value.dtype != spec.dtype:
        same_kind = (value.dtype.kind in "f" and spec.dtype.kind == "f") or (
            value.dtype.kind in "iu" and spec.dtype.kind in "iu")
        if not same_kind:
            raise QuantError(
                f"model input '{spec.name}' is {spec.dtype}, but the data '{key}' is {value.dtype}",
                hint=f"convert the data to {spec.dtype} (images: the preprocessing spec's dtype)")
        value = value.astype(spec.dtype)
    return value


def _layout_hint(want: tuple, got: tuple) -> str | None:
    """The fix when a sample is the model's image shape with its channels on the other side (HWC vs CHW), else None."""
    if len(want) != 3 or not all(isinstance(d, int) and d > 0 for d in want):
        return None
    if tuple(got) == (want[1], want[2], want[0]):  # the data is HWC, the model takes CHW
        return ("the samples are channels-last (NHWC) and the model takes NCHW: transpose the arrays "
                "(np.transpose(x, (0, 3, 1, 2))), or for an image folder drop --layout NHWC (NCHW is the default)")
    if tuple(got) == (want[2], want[0], want[1]):  # the data is CHW, the model takes HWC
        return ("the samples are channels-first (NCHW) and the model takes NHWC: for an image folder pass --layout "
                "NHWC, transpose arrays (np.transpose(x, (0, 2, 3, 1)))")
    for axis in (0, 2):  # grayscale for a colour model, or the other way round
        if len(got) == 3 and {want[axis], got[axis]} == {1, 3} and all(
                w == g for i, (w, g) in enumerate(zip(want, got)) if i != axis):
            return (f"the model takes {want[axis]} channel(s), the samples have {got[axis]}: for an image folder "
                    f"use --color {'L' if want[axis] == 1 else 'RGB (or BGR)'}")
    return None


def _fmt_shape(shape: tuple) -> str:
    return "[" + ", ".join(str(d) if isinstance(d, int) and d > 0 else "?" for d in shape) + "]"


def iter_batches(source: DataSource, indices: Sequence[int], inputs: Sequence[InputSpec],
                 mapping: dict[str, str], batch_size: "int | Callable[[], int]",
                 ) -> Iterator[tuple[list[int], dict[str, np.ndarray]]]:
    """Yield ``(indices, feeds)`` batches; consecutive samples whose shapes differ go in separate batches.

    ``batch_size`` may be a callable, asked again at the start of every batch (adaptive batching).
    """
    requested = batch_size if callable(batch_size) else (lambda: batch_size)
    if requested() < 1:
        raise QuantError(f"--batch-size must be >= 1, got {requested()}")
    fixed = [spec.shape[0] for spec in inputs if spec.shape and isinstance(spec.shape[0], int) and spec.shape[0] > 0]
    cap = min(fixed) if fixed else None  # a model exported with a fixed batch size takes exactly that many

    def size() -> int:  # a fixed batch axis takes exactly its size, whatever the (adaptive) request
        return requested() if cap is None else cap

    pending: list[tuple[int, dict[str, np.ndarray]]] = []
    batch_axis = bool(getattr(source, "feeds_may_have_batch_axis", False))

    def flush():
        if cap is not None and cap > 1 and len(pending) != cap:  # the runtime would fail with a cryptic shape error
            raise QuantError(f"the model's batch axis is fixed to {cap}, but samples {pending[0][0]}..{pending[-1][0]} "
                             f"make a batch of {len(pending)} ({len(indices)} samples, or a change of sample shape, "
                             f"is not a multiple of {cap})",
                             hint=f"use a multiple of {cap} samples (--num-samples), or export the model with a "
                                  "dynamic batch axis")
        feeds = {name: np.stack([s[name] for _, s in pending]) for name in mapping}
        return [i for i, _ in pending], feeds

    for index in indices:
        raw = source.sample(int(index))
        sample = {spec.name: _check_sample(spec, raw[mapping[spec.name]], mapping[spec.name], batch_axis)
                  for spec in inputs}
        if pending and any(pending[0][1][n].shape != sample[n].shape for n in sample):
            yield flush()
            pending = []
        pending.append((int(index), sample))
        if len(pending) >= size():
            yield flush()
            pending = []
    if pending:
        yield flush()


def select(count: int, num_samples: int | None, seed: int) -> np.ndarray:
    """Indices of the samples to use: all, or ``num_samples`` drawn without replacement (seeded), sorted."""
    if count == 0:
        raise QuantError("the data source is empty", hint="point --data at a file or folder with samples")
    if num_samples is not None and num_samples > count:
        from quant.core.notes import note

        note(f"--num-samples {num_samples} is more than the {count} samples of the data: all {count} are used")
    if num_samples is None or num_samples >= count:
        return np.arange(count)
    if num_samples < 1:
        raise QuantError(f"--num-samples must be >= 1, got {num_samples}")
    return np.sort(np.random.default_rng(seed).choice(count, size=num_samples, replace=False))
