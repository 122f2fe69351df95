"""Reading histograms.npz back safely: every array's header is checked before its data is read.

An .npz is a zip of .npy files, and a small file can declare (or inflate to) gigabytes. So each member's
.npy header (dtype, shape) is read first and checked against what a histogram can be; only then is the
data read, exactly as many bytes as declared. The histograms must also be what quant writes: counts
non-negative integers summing to the number of values, statistics finite and consistent with the
exponent of the dyadic grid, no count above max|x|. A file that fails any check is one QuantError that
names the tensor and the problem; nothing is allocated beyond what the checked headers declare.
"""
from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib

import numpy as np

from quant.core.errors import QuantError
from quant.core.text import printable

MAX_BINS = 1 << 24  # 128 MiB of counts for one tensor; quant writes 4096 by default
MAX_TOTAL_BYTES = 1 << 31  # all counts together (e.g. 65,536 tensors of 4,096 bins)
MAX_NAMES_BYTES = 1 << 26
MAX_COUNT = 1 << 62
_EMPTY = -10**6  # the exponent written for a histogram that saw only zeros (or nothing)
_READ_ERRORS = (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError, ValueError,
                struct.error, UnicodeDecodeError, OverflowError, SyntaxError, TypeError,
                tokenize.TokenError)  # numpy parses a damaged .npy header with tokenize
HINT = "pass a folder written by 'quant calibrate', or calibrate again"


class _Npz:
    """The members of an .npz, read header first."""

    def __init__(self, archive: zipfile.ZipFile, path):
        self.archive, self.path = archive, path
        self.members = set(archive.namelist())

    def fail(self, problem: str) -> QuantError:
        return QuantError(f"'{self.path}' is not a valid histograms.npz: {problem}", hint=HINT)

    def read(self, key: str, kinds: str, shape: tuple[int, ...] | None = None, max_bytes: int | None = None,
             what: str = "") -> np.ndarray:
        member = key + ".npy"
        label = what or key
        if member not in self.members:
            raise self.fail(f"{label}: the array '{key}' is missing")
        with self.archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                declared, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version in ((2, 0), (3, 0)):
                declared, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise self.fail(f"{label}: unknown .npy version {version}")
            if dtype.hasobject or dtype.kind not in kinds:
                raise self.fail(f"{label}: '{key}' has dtype {dtype}, expected {_kinds(kinds)}")
            if shape is not None and tuple(declared) != shape:
                raise self.fail(f"{label}: '{key}' has shape {tuple(declared)}, expected {shape}")
            if len(declared) != 1:
                raise self.fail(f"{label}: '{key}' has shape {tuple(declared)}, expected one axis")
            size = int(declared[0]) * dtype.itemsize
            if max_bytes is not None and size > max_bytes:
                raise self.fail(f"{label}: '{key}' declares {size} bytes, more than the {max_bytes} allowed")
            data = handle.read(size)
            if len(data) != size:
                raise self.fail(f"{label}: '{key}' is truncated ({len(data)} of {size} bytes)")
            if handle.read(1):  # also makes zipfile check the CRC
                raise self.fail(f"{label}: '{key}' holds more data than its header declares")
        return np.frombuffer(data, dtype=dtype).copy()


def _kinds(kinds: str) -> str:
    return " or ".join({"i": "signed integers", "u": "unsigned integers", "f": "floats", "U": "strings"}[k] for k in kinds)


def _open(path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise QuantError(f"cannot read histograms from '{path}': the file does not exist", hint=HINT) from None
    except _READ_ERRORS as exc:
        raise QuantError(f"cannot read histograms from '{path}': {printable(str(exc), 200)}", hint=HINT) from None


def histogram_names(path) -> list[str]:
    """The tensor names a histograms.npz holds (reads only the names array)."""
    with _open(path) as archive:
        try:
            return _names(_Npz(archive, path))
        except _READ_ERRORS as exc:
            raise QuantError(f"cannot read histograms from '{path}': {printable(str(exc), 200)}", hint=HINT) from None


def _names(npz: _Npz) -> list[str]:
    names = [str(n) for n in npz.read("names", "U", max_bytes=MAX_NAMES_BYTES, what="the tensor names")]
    if len(names) * 3 > len(npz.members):
        raise npz.fail(f"it names {len(names)} tensors but holds only {len(npz.members)} arrays")
    seen = set()
    for name in names:
        if name in seen:
            raise npz.fail(f"tensor '{printable(name, 120)}' is listed twice")
        seen.add(name)
    return names


def read_histograms(path, names=None, bins: int | None = None) -> dict:
    """{tensor: Histogram} for ``names`` (default: every tensor in the file), each validated.

    ``bins``: the number of bins quant.json records; a histogram of another size is refused.
    """
    from quant.core.histogram import Histogram

    with _open(path) as archive:
        npz = _Npz(archive, path)
        try:
            stored = _names(npz)
            index = {name: i for i, name in enumerate(stored)}
            wanted = stored if names is None else list(dict.fromkeys(names))
            for name in wanted:
                if name not in index:
                    raise npz.fail(f"it has no histogram for tensor '{printable(name, 120)}' (listed in quant.json)")
            budget, out = MAX_TOTAL_BYTES, {}
            for name in wanted:
                fields = _read_one(npz, index[name], printable(name, 120), bins, budget)
                budget -= fields["counts"].nbytes
                out[name] = Histogram(**fields)
            return out
        except _READ_ERRORS as exc:
            raise QuantError(f"cannot read histograms from '{path}': {printable(str(exc), 200)}", hint=HINT) from None


def _read_one(npz: _Npz, i: int, name: str, expected_bins: int | None, budget: int) -> dict:
    what = f"tensor '{name}'"
    meta = npz.read(f"{i}.meta", "iu", shape=(3,), what=what)
    stats = npz.read(f"{i}.stats", "f", shape=(3,), what=what)
    bins, exponent, count = (int(v) for v in meta)
    if bins < 2 or bins > MAX_BINS or bins & (bins - 1):
        raise npz.fail(f"{what} declares {bins} bins: a histogram has a power of two from 2 to {MAX_BINS}")
    if expected_bins is not None and bins != expected_bins:
        raise npz.fail(f"{what} has {bins} bins but quant.json records --bins {expected_bins}")
    if bins * 8 > budget:
        raise npz.fail(f"{what}: the histograms declare more than {MAX_TOTAL_BYTES} bytes of counts in all")
    if not 0 <= count < MAX_COUNT:
        raise npz.fail(f"{what} declares {count} values")
    absmax, low, high = (float(v) for v in stats)
    counts = npz.read(f"{i}.counts", "iu", shape=(bins,), what=what)
    if counts.dtype.kind == "u" and counts.size and counts.max() > MAX_COUNT:
        raise npz.fail(f"{what} has a count above {MAX_COUNT}")
    counts = counts.astype(np.int64)
    if counts.size and counts.min() < 0:
        raise npz.fail(f"{what} has a negative count ({int(counts.min())})")
    if counts.size and counts.max() > count:
        raise npz.fail(f"{what} has a bin count above its {count} values")
    if abs(float(counts.sum(dtype=np.float64)) - count) > 0.5 + 1e-9 * count or int(counts.sum()) != count:
        raise npz.fail(f"{what}: its counts sum to {float(counts.sum(dtype=np.float64)):.0f}, not its {count} values")
    exponent = _check_stats(npz, what, counts, bins, exponent, count, absmax, low, high)
    return {"bins": bins, "counts": counts, "exponent": exponent, "count": count, "absmax": absmax, "min": low,
            "max": high}


def _check_stats(npz, what, counts, bins, exponent, count, absmax, low, high) -> int | None:
    """The exponent (None: only zeros or nothing), after checking the statistics agree with the counts."""
    if count == 0:
        if exponent != _EMPTY or absmax != 0.0 or low != math.inf or high != -math.inf:
            raise npz.fail(f"{what} saw no values but records statistics {absmax!r}, {low!r}, {high!r} "
                           f"(exponent {exponent})")
        return None
    if not all(math.isfinite(v) for v in (absmax, low, high)):
        raise npz.fail(f"{what} has non-finite statistics (max|x| {absmax!r}, min {low!r}, max {high!r})")
    if low > high or absmax != max(-low, high):
        raise npz.fail(f"{what}: max|x| {absmax!r} does not match min {low!r} and max {high!r}")
    if absmax == 0.0:
        if exponent != _EMPTY:
            raise npz.fail(f"{what} saw only zeros but records exponent {exponent}")
        return None
    if exponent != int(np.frexp(absmax)[1]):
        raise npz.fail(f"{what} records exponent {exponent}, but max|x| {absmax!r} needs {int(np.frexp(absmax)[1])}")
    top = int(np.ldexp(absmax, (bins.bit_length() - 1) - exponent))  # the bin of max|x| (exact: a power-of-two scaling)
    if counts[top] == 0 or counts[top + 1:].any():
        raise npz.fail(f"{what}: its counts do not end in the bin of max|x| {absmax!r}")
    return exponent
