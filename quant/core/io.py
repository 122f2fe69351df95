"""Atomic outputs: a folder or file appears complete or not at all; inputs are never touched."""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from quant.core.errors import QuantError

MARKERS = ("quant.json", "summary.json")  # files that show a folder was written by quant


def _is_replaceable(path: Path) -> bool:
    if not path.exists():
        return True
    if not path.is_dir():
        return False
    entries = list(path.iterdir())
    return not entries or any((path / marker).exists() for marker in MARKERS)


def check_output_dir(path: str | Path, protect: tuple[Path, ...] = ()) -> None:
    """Fail fast, before expensive work, if ``path`` cannot be written as an output folder (writes nothing).

    ``path`` may not exist yet, may be empty, or may hold an earlier quant output (replaced); anything
    else is refused. Paths in ``protect`` (the inputs) may not lie inside ``path``.
    """
    path = Path(path)
    target = path.resolve()
    for item in protect:
        item = Path(item).resolve()
        if item == target or target in item.parents:
            raise QuantError(f"the output folder '{path}' contains the input '{item.name}'; refusing to replace it",
                             hint="choose an output folder that does not hold the model or the data")
    if not _is_replaceable(path):
        raise QuantError(f"the output '{path}' exists and was not written by quant; refusing to overwrite it",
                         hint="choose a new or empty output folder")
    existing = target.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise QuantError(f"cannot write to the output folder '{path}': '{existing}' is not a writable folder",
                         hint="choose a folder you can write to (--output)")


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename (see check_output_dir)."""
    check_output_dir(path, protect)
    target = Path(path).resolve()
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))
    except OSError as exc:
        raise QuantError(f"cannot write to the output folder '{path}': {exc.strerror or exc}",
                         hint="choose a folder you can write to (--output)") from None
    try:
        yield staging
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(target, old)
        os.rename(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_file_atomic(path: str | Path, data: bytes | str) -> None:
    """Write a file via a temporary name in the same folder and a rename."""
    path = Path(path)
    mode = "w" if isinstance(data, str) else "wb"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise QuantError(f"cannot write '{path}': {exc.strerror or exc}", hint="choose a path you can write to") from None
    try:
        with os.fdopen(fd, mode) as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def to_jsonable(value):
    """Replace NaN/Inf by None (strict JSON) and numpy scalars/arrays by Python values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps(value) -> str:
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False, allow_nan=False) + "\n"
