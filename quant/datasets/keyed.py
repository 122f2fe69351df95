"""One array per sample, the way people store ragged data with NumPy: keys ``x_0000``, ``x_0001``, ...

An .npz archive (or a folder of .npy files) whose keys are ``<name>_<index>`` holds sample ``index`` of
``<name>`` in each; samples may have different shapes (text lines of varying width). Other keys (e.g.
``label`` of shape [N]) are read row by row as usual. Batching is the pipeline's: consecutive samples of
one shape share a batch, as for image folders and parquet files.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.datasets.base import DataSource

_SAMPLE_KEY = re.compile(r"^(?P<name>.+?)_(?P<index>\d+)$")
_MIN_GROUP = 2


def sample_groups(keys: Sequence[str]) -> dict[str, list[str]]:
    """``{name: [key of sample 0, key of sample 1, ...]}`` for keys ``<name>_<index>`` (2 or more per name).

    Indices are sorted by value (``x_2`` before ``x_10``); they need not start at 0 nor be contiguous.
    """
    found: dict[str, list[tuple[int, str]]] = {}
    for key in keys:
        match = _SAMPLE_KEY.match(key)
        if match:
            found.setdefault(match["name"], []).append((int(match["index"]), key))
    groups = {}
    for name, items in found.items():
        if len(items) < _MIN_GROUP:
            continue
        items.sort()
        indices = [i for i, _ in items]
        if len(set(indices)) != len(indices):
            duplicate = next(k for (i, k), (j, _) in zip(items[1:], items) if i == j)
            raise QuantError(f"the data has two keys for sample {int(_SAMPLE_KEY.match(duplicate)['index'])} of "
                             f"'{name}' (e.g. '{duplicate}')", hint="give each sample one key <name>_<index>")
        groups[name] = [k for _, k in items]
    return groups


class KeyedSamplesSource(DataSource):
    """Samples stored one per key; ``members`` maps keys to objects with ``shape``, ``open()`` and ``read()``."""

    feeds_may_have_batch_axis = True  # x_0000 saved as a model feed [1, ...] is one sample

    def __init__(self, members: dict, groups: dict[str, list[str]], description: str) -> None:
        counts = {name: len(keys) for name, keys in groups.items()}
        if len(set(counts.values())) > 1:
            raise QuantError(f"{description}: the per-sample keys have different numbers of samples {counts}",
                             hint="store one <name>_<index> key per sample for every name")
        grouped = {k for keys in groups.values() for k in keys}
        self._length = next(iter(counts.values()))
        first_name, first_keys = next(iter(groups.items()))
        first_indices = [int(_SAMPLE_KEY.match(k)["index"]) for k in first_keys]
        for name, keys in groups.items():
            if [int(_SAMPLE_KEY.match(k)["index"]) for k in keys] != first_indices:
                raise QuantError(f"{description}: '{name}' and '{first_name}' have samples of different indices",
                                 hint="store the same indices <name>_<index> for every name")
        self.rows = {}
        for key in members:
            if key in grouped:
                continue
            if key in groups:
                raise QuantError(f"{description}: '{key}' is both a key and the name of per-sample keys {key}_<index>",
                                 hint="rename one of them")
            shape = tuple(members[key].shape)
            if not shape or shape[0] != self._length:
                raise QuantError(f"{description}: '{key}' has {shape[0] if shape else 'no'} rows, but there are "
                                 f"{self._length} samples ({first_keys[0]}, ...)",
                                 hint="store one row per sample, or one <name>_<index> key per sample")
            self.rows[key] = members[key].open()
        self.members = members
        self.groups = groups
        self.description = f"{description} ({self._length} samples stored one per key)"

    def __len__(self) -> int:
        return self._length

    @property
    def keys(self) -> list[str]:
        return list(self.groups) + list(self.rows)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        out = {name: self.members[keys[index]].read() for name, keys in self.groups.items()}
        out.update({key: np.asarray(array[index]) for key, array in self.rows.items()})
        return out

    def column(self, key: str) -> np.ndarray | None:
        if key in self.rows:
            return np.asarray(self.rows[key])
        if key in self.groups:
            values = [self.members[k].read() for k in self.groups[key]]
            if all(v.size == 1 for v in values):
                return np.asarray([v.reshape(()) for v in values])
        return None

    def as_rows(self) -> DataSource:
        """The same keys read as plain arrays [N, ...] (when the model's inputs are named like x_0, x_1)."""
        from quant.datasets.arrays import ArraySource

        return ArraySource({key: member.open() for key, member in self.members.items()}, self.description)


def fit_to_inputs(source: DataSource, inputs: Sequence, input_map: dict[str, str] | None = None) -> DataSource:
    """The source read the way the model's inputs (InputSpecs) need it.

    Per-sample keys are read as plain rows when the model's inputs are themselves named ``<name>_<index>``
    (e.g. ``input_1``, ``input_2``) or ``input_map`` points at such keys; sources with a ``fit_to_inputs``
    method (feeds) decide for themselves.
    """
    names = [(input_map or {}).get(getattr(spec, "name", spec), getattr(spec, "name", spec)) for spec in inputs]
    if isinstance(source, KeyedSamplesSource) and all(n in source.members for n in names):
        return source.as_rows()
    fit = getattr(source, "fit_to_inputs", None)
    return fit(inputs) if callable(fit) else source
