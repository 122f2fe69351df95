"""NumPy sources: a .npy array, an .npz archive (one array per key), or a folder of .npy files (one per key)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from quant.core.errors import QuantError
from quant.datasets.base import DataSource


class ArraySource(DataSource):
    """Arrays of equal length N along axis 0; sample i is row i of each."""

    def __init__(self, arrays: dict[str, np.ndarray], description: str) -> None:
        lengths = {key: int(np.shape(a)[0]) if np.ndim(a) else -1 for key, a in arrays.items()}
        if any(n < 0 for n in lengths.values()):
            raise QuantError(f"{description}: every array needs a sample axis, got scalars for "
                             f"{[k for k, n in lengths.items() if n < 0]}", hint="store arrays shaped [N, ...]")
        if len(set(lengths.values())) > 1:
            raise QuantError(f"{description}: arrays have different numbers of samples {lengths}",
                             hint="store the same number of rows for every input and the labels")
        self.arrays = arrays
        self.description = description
        self._length = next(iter(lengths.values()), 0)

    def __len__(self) -> int:
        return self._length

    @property
    def keys(self) -> list[str]:
        return list(self.arrays)

    def sample(self, index: int) -> dict[str, np.ndarray]:
        return {key: np.asarray(array[index]) for key, array in self.arrays.items()}

    def column(self, key: str) -> np.ndarray | None:
        return np.asarray(self.arrays[key]) if key in self.arrays else None


class NpyFile:
    """A .npy file: ``open()`` gives a row reader (:class:`quant.datasets.npz.StoredArray`), ``read()`` loads it."""

    def __init__(self, path: Path) -> None:
        from quant.datasets.npz import _read_header

        self.path = path
        with open(path, "rb") as stream:
            self.shape, self.fortran, self.dtype, self.offset = _read_header(stream, path.name)

    def open(self):
        from quant.datasets.npz import StoredArray

        return StoredArray(self.path, self.offset, self.shape, self.fortran, self.dtype)

    def read(self) -> np.ndarray:
        return np.load(self.path, allow_pickle=False)


def open_arrays(path: Path) -> DataSource:
    """A .npy file, an .npz archive or a folder of .npy files, read lazily (see :mod:`quant.datasets.npz`).

    Keys named ``<name>_<index>`` (``x_0000``, ``x_0001``, ...) hold one sample each (shapes may differ):
    they become the key ``<name>``, sample i from ``<name>_<i>``.
    """
    from quant.datasets.keyed import KeyedSamplesSource, sample_groups

    try:
        if path.is_dir():
            members = {f.stem: NpyFile(f) for f in sorted(path.glob("*.npy"))}
        elif path.suffix == ".npy":
            members = {"input": NpyFile(path)}
        else:
            from quant.datasets.npz import open_npz

            members = open_npz(path)
        groups = sample_groups(list(members))
        if groups:
            try:
                return KeyedSamplesSource(members, groups, f"{path}")
            except QuantError as keyed_error:  # keys like meta_1, meta_2 beside arrays of N rows: plain rows
                try:
                    return ArraySource({key: member.open() for key, member in members.items()}, f"{path}")
                except QuantError:
                    raise keyed_error from None
        arrays = {key: member.open() for key, member in members.items()}
    except QuantError:
        raise
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, BadZipFile, TokenError, SyntaxError ...
        raise QuantError(f"cannot read NumPy data from '{path}': {exc}",
                         hint="save arrays with numpy.save / numpy.savez (no pickled objects)") from None
    return ArraySource(arrays, f"{path}")
