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


def open_arrays(path: Path) -> ArraySource:
    try:
        if path.is_dir():
            files = sorted(path.glob("*.npy"))
            arrays = {f.stem: np.load(f, mmap_mode="r", allow_pickle=False) for f in files}
        elif path.suffix == ".npy":
            arrays = {"input": np.load(path, mmap_mode="r", allow_pickle=False)}
        else:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, BadZipFile, TokenError, SyntaxError ...
        raise QuantError(f"cannot read NumPy data from '{path}': {exc}",
                         hint="save arrays with numpy.save / numpy.savez (no pickled objects)") from None
    return ArraySource(arrays, f"{path}")
