"""Read .npz members without loading them whole: stored members are read row by row, compressed ones streamed.

``np.load(file.npz)[key]`` decompresses and copies the whole member into memory, so calibrating on an
archive costs memory in the number of samples. ``np.savez`` stores members uncompressed (ZIP_STORED): their
bytes sit contiguously in the file, after the zip local header and the ``.npy`` header, so row i is one
positioned read at a known offset (:class:`StoredArray`; ``.memmap()`` maps the whole member).
``np.savez_compressed`` deflates them: :class:`CompressedMember` decompresses the member front to back
and hands out rows, re-opening the member only when asked for an earlier row (the pipeline reads sorted
indices, so a pass decompresses each member once).
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from quant.core.errors import QuantError

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zipfile's structFileHeader (30 bytes)
_CHUNK = 1 << 20  # bytes read from a compressed member per step when skipping forward


def open_npz(path: Path) -> dict[str, "Member"]:
    """Every ``.npy`` member of the archive by key, as a :class:`Member` (the header read, not the data)."""
    members: dict[str, Member] = {}
    shared = _SharedArchive(path)
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[: -len(".npy")]
            if info.flag_bits & 0x1:
                raise ValueError(f"member '{key}' is encrypted")
            with archive.open(info) as stream:
                shape, fortran, dtype, header_size = _read_header(stream, key)
            members[key] = Member(path, info, shape, fortran, dtype, header_size, shared)
    return members


class _SharedArchive:
    """One open ZipFile for reading many small members (one key per sample) without re-reading the
    archive's directory for each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._zip: zipfile.ZipFile | None = None

    def open(self, info: zipfile.ZipInfo):
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip.open(info)

    def __del__(self) -> None:
        if getattr(self, "_zip", None) is not None:
            self._zip.close()


class Member:
    """One member of an .npz archive: ``open()`` gives a row-indexable array that does not load the data
    (a :class:`StoredArray` when stored, a :class:`CompressedMember` when deflated); ``read()`` the whole array."""

    def __init__(self, path: Path, info: zipfile.ZipInfo, shape, fortran: bool, dtype: np.dtype,
                 header_size: int, shared: _SharedArchive) -> None:
        self.path, self.info, self.shape, self.fortran, self.dtype = path, info, shape, fortran, dtype
        self.header_size = header_size
        self._shared = shared

    @property
    def stored(self) -> bool:
        return self.info.compress_type == zipfile.ZIP_STORED

    def open(self):
        if self.stored:
            offset = _data_offset(self.path, self.info, self.header_size)
            return StoredArray(self.path, offset, self.shape, self.fortran, self.dtype)
        return CompressedMember(self.path, self.info.filename, self.shape, self.fortran, self.dtype)

    def read(self) -> np.ndarray:
        with self._shared.open(self.info) as stream:
            return np.lib.format.read_array(stream, allow_pickle=False)


def _read_header(stream, key: str) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(stream)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(stream)
    else:  # pragma: no cover - read_magic already refuses unknown versions
        raise ValueError(f"member '{key}' has .npy format version {version}")
    if dtype.hasobject:
        raise ValueError(f"member '{key}' holds Python objects (pickled), which are not loaded")
    return tuple(shape), fortran, dtype, stream.tell()


def _data_offset(path: Path, info: zipfile.ZipInfo, header_size: int) -> int:
    """Where a stored member's array data starts in the archive file."""
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
    if fields[0] != b"PK\x03\x04":
        raise ValueError(f"member '{info.filename}' has a damaged zip header")
    name_length, extra_length = fields[-2], fields[-1]
    return info.header_offset + _LOCAL_HEADER.size + name_length + extra_length + header_size


class StoredArray:
    """An uncompressed array at ``offset`` in a file (an .npy file, or a stored .npz member).

    ``array[i]`` reads row i with one positioned read (a copy): memory holds one row, and unlike a
    memory map no file pages accumulate in the process's resident set over a pass. ``memmap()`` maps it.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> None:
        self.path, self.offset, self.shape, self.dtype = Path(path), offset, tuple(shape), dtype
        self.ndim = len(self.shape)
        self.fortran = fortran and self.ndim > 1
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        size = int(np.prod(self.shape, dtype=np.int64)) * dtype.itemsize
        if offset + size > self.path.stat().st_size:
            raise ValueError(f"'{self.path.name}' is truncated: its data needs {size} bytes")
        self._fd: int | None = None

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def memmap(self):
        if 0 in self.shape:
            return np.zeros(self.shape, self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=self.shape,
                         order="F" if self.fortran else "C")

    def __array__(self, dtype=None, copy=None):
        array = np.array(self.memmap())
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, index):
        if self.fortran or not self.shape or not isinstance(index, (int, np.integer)):
            return self.memmap()[index]
        index = int(index)
        if index < 0:
            index += self.shape[0]
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} out of range for {self.shape[0]} rows")
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        data = os.pread(self._fd, self.row_bytes, self.offset + index * self.row_bytes)
        if len(data) != self.row_bytes:
            raise QuantError(f"'{self.path}' was truncated while being read", hint="do not modify the data during a run")
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:]).copy()

    def __del__(self) -> None:
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except OSError:  # pragma: no cover
                pass


class CompressedMember:
    """Rows of a deflated .npy member, decompressed in order; ``member[i]`` is row i (a copy)."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], fortran: bool, dtype: np.dtype) -> None:
        self.path, self.name, self.shape, self.dtype = path, name, shape, dtype
        self.ndim = len(shape)
        self._fortran = fortran and self.ndim > 1
        self._row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize
        self._archive = None
        self._stream = None
        self._next = 0  # the row the stream is positioned at

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d member")
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        """The whole member (for small columns such as labels)."""
        with zipfile.ZipFile(self.path) as archive, archive.open(self.name) as stream:
            array = np.lib.format.read_array(stream, allow_pickle=False)
        return array if dtype is None else array.astype(dtype)

    def __getitem__(self, index):
        if self._fortran or not isinstance(index, (int, np.integer)):
            return np.asarray(self)[index]
        index = int(index)
        if index < 0:
            index += self.shape[0]
        if not 0 <= index < self.shape[0]:
            raise IndexError(f"row {index} out of range for {self.shape[0]} rows")
        if self._stream is None or index < self._next:
            self._reopen()
        self._skip((index - self._next) * self._row_bytes)
        data = self._stream.read(self._row_bytes)
        if len(data) != self._row_bytes:
            raise QuantError(f"the .npz member '{self.name}' in '{self.path}' is truncated",
                             hint="write the archive again with numpy.savez / savez_compressed")
        self._next = index + 1
        return np.frombuffer(data, self.dtype).reshape(self.shape[1:]).copy()

    def _reopen(self) -> None:
        self.close()
        self._archive = zipfile.ZipFile(self.path)
        self._stream = self._archive.open(self.name)
        _read_header(self._stream, self.name)
        self._next = 0

    def _skip(self, count: int) -> None:
        while count > 0:
            step = self._stream.read(min(count, _CHUNK))
            if not step:
                break
            count -= len(step)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._archive.close()
        self._stream = self._archive = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

