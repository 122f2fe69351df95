"""Labels as people have them: class indices, one-hot rows, [N, 1] columns, integral floats, text and CSV
files, Hugging Face ClassLabel columns; all become one class index (or, for user metrics, string) per sample.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

import numpy as np

from quant.core.errors import QuantError
from quant.core.oserrors import check_regular_input
from quant.datasets.base import DataSource

LABEL_KEYS = ("label", "labels")
LABEL_FILES = (".npy", ".txt", ".csv")
FILENAME_COLUMNS = ("filename", "file", "path", "image")


def label_keys(source: DataSource, input_names: Sequence[str] = ()) -> list[str]:
    """Keys of the source that hold labels (never fed to the model): 'label'/'labels' and ClassLabel columns."""
    keys = [k for k in LABEL_KEYS if k in source.keys]
    keys += [k for k in getattr(source, "class_label_columns", ()) if k not in keys]
    return [k for k in keys if k not in set(input_names)]


def default_label_key(source: DataSource, input_names: Sequence[str]) -> str | None:
    """The column used when --labels is not given: 'label'/'labels', else the one ClassLabel column."""
    named = [k for k in LABEL_KEYS if k in source.keys and k not in set(input_names)]
    if named:
        return named[0]
    classes = [k for k in getattr(source, "class_label_columns", ()) if k not in set(input_names)]
    return classes[0] if len(classes) == 1 else None


def read_label_file(path: Path, source: DataSource) -> np.ndarray:
    """A .npy array, a .txt file (one label per line) or a .csv file (a 'label' column; with a filename
    column the rows are matched to an image folder's files by name)."""
    if not path.exists():
        raise QuantError(f"labels file '{path}' does not exist", hint="pass a .npy/.txt/.csv file or a column of the data")
    check_regular_input(path, "labels file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        text = path.read_text(encoding="utf-8-sig")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise QuantError(f"cannot read labels '{path}': {exc}",
                         hint="save labels with numpy.save, or one label per line as text") from None
    if suffix == ".txt":
        lines = text.splitlines()
        while lines and not lines[-1].strip():
            lines.pop()
        if any(not line.strip() for line in lines):
            line = next(i for i, line in enumerate(lines, 1) if not line.strip())
            raise QuantError(f"labels file '{path}' has an empty line {line}", hint="write one label per line")
        return _parse([line.strip() for line in lines])
    return _read_csv(path, text, source)


def _read_csv(path: Path, text: str, source: DataSource) -> np.ndarray:
    rows = [row for row in csv.reader(text.splitlines()) if row]
    if not rows:
        raise QuantError(f"labels file '{path}' is empty", hint="write a header 'label' (or 'filename,label') and rows")
    header = [h.strip().lower() for h in rows[0]]
    if "label" not in header:
        raise QuantError(f"labels file '{path}' has no 'label' column (header: {', '.join(rows[0])})",
                         hint="start the CSV with a header line 'label' or 'filename,label'")
    column = header.index("label")
    body = rows[1:]
    short = next((i for i, row in enumerate(body, 2) if len(row) <= column), None)
    if short is not None:
        raise QuantError(f"labels file '{path}' line {short} has no label", hint="give every row a label")
    values = [row[column].strip() for row in body]
    name_column = next((header.index(c) for c in FILENAME_COLUMNS if c in header), None)
    if name_column is None:
        return _parse(values)
    files = getattr(source, "files", None)
    if files is None:
        raise QuantError(f"labels file '{path}' matches rows by file name, but the data {source.description} has "
                         "no files", hint="drop the filename column and list the labels in the data's order")
    by_name = {}
    for row, value in zip(body, values):
        by_name[row[name_column].strip().replace("\\", "/")] = value
    root = Path(getattr(source, "root", "."))
    ordered = []
    for file in files:
        relative = Path(file).relative_to(root).as_posix() if root in Path(file).parents else Path(file).name
        value = by_name.get(relative, by_name.get(Path(file).name))
        if value is None:
            raise QuantError(f"labels file '{path}' has no row for '{relative}'",
                             hint="give one row per image (its path relative to the folder, or its file name)")
        ordered.append(value)
    return _parse(ordered)


def _parse(values: list[str]) -> np.ndarray:
    for kind in (int, float):
        try:
            return np.asarray([kind(v) for v in values])
        except ValueError:
            continue
    return np.asarray(values)


def normalize_labels(array, name: str, integer: bool, classes: Sequence[str] | None = None) -> np.ndarray:
    """One label per sample: [N] class indices (int64), or strings for user metrics when not ``integer``.

    [N, 1] is squeezed; one-hot rows [N, C] become their index; integral floats become ints; class names
    become indices when the data has named classes (an image folder's sub-folders).
    """
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    elif array.ndim == 2 and array.dtype.kind in "iufb" and array.shape[1] > 1:
        values = array.astype(np.float64)
        one_hot = np.all((values == 0) | (values == 1), axis=1) & (values.sum(axis=1) == 1)
        if not one_hot.all():
            row = int(np.argmin(one_hot))
            raise QuantError(f"labels '{name}' are [N, {array.shape[1]}] rows but row {row} is not one-hot "
                             f"({_row(values[row])})", hint="give one class index per sample, or one-hot rows "
                             "(a single 1, zeros elsewhere)")
        array = values.argmax(axis=1)
    if array.dtype.kind in "US" and classes:
        index = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in array if str(v) not in index})
        if unknown:
            raise QuantError(f"labels '{name}' name classes {unknown[:3]} that the data does not have",
                             hint=f"the data's classes are: {', '.join(classes)}")
        array = np.asarray([index[str(v)] for v in array], np.int64)
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        integral = finite & (array == np.round(array))
        if not integral.all():
            bad = array[np.argmin(integral)]
            raise QuantError(f"labels '{name}' hold a non-integer class id {bad:g}",
                             hint="give class indices (0, 1, 2, ...): float labels must be whole numbers")
        array = array.astype(np.int64)
    if array.ndim != 1 or array.dtype.kind not in ("iub" if integer else "iubUS"):
        kind = "integer (class index)" if integer else "integer or string"
        raise QuantError(f"labels '{name}' must be a 1-D {kind} array, got shape {list(array.shape)} {array.dtype}",
                         hint="store one label per sample" + (" as a class index" if integer else ""))
    if integer:
        _check_class_range(array, name, len(classes) if classes else None)
    return array.astype(np.int64) if array.dtype.kind in "iub" else array


def _check_class_range(array: np.ndarray, name: str, classes: int | None) -> None:
    """Class indices lie in [0, classes): refuse a negative one, one that does not fit int64 (a uint64 that
    would wrap to a negative), or one past the data's own classes, naming the first such sample."""
    if not array.size or array.dtype.kind not in "iu":
        return
    if array.dtype.kind == "u" and array.dtype.itemsize == 8:
        big = np.flatnonzero(array > np.iinfo(np.int64).max)
        if big.size:
            raise QuantError(f"labels '{name}': sample {int(big[0])} has class {int(array[big[0]])}, which is not a "
                             "class index", hint="pass class indices 0..classes-1 as labels")
    negative = np.flatnonzero(array < 0)
    if negative.size:
        raise QuantError(f"labels '{name}': sample {int(negative[0])} has the negative class {int(array[negative[0]])} "
                         f"({negative.size} of {array.size} samples)", hint="pass class indices 0..classes-1 as labels; a -1 "
                         "'unknown' label cannot be scored: drop those samples")
    if classes is not None:
        beyond = np.flatnonzero(array >= classes)
        if beyond.size:
            raise QuantError(f"labels '{name}': sample {int(beyond[0])} has class {int(array[beyond[0]])}, but the "
                             f"data has {classes} classes", hint=f"pass class indices 0..{classes - 1} as labels")


def _row(values: np.ndarray) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:6])
    return f"[{shown}{', ...' if len(values) > 6 else ''}]"
