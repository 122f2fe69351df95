"""Private temporary folders (ONNX Runtime's optimized graphs, serialized models) that a killed run
does not leave behind for good: each holds a lock while its process lives, and the next quant run
removes those whose process is gone."""
from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
import weakref
from pathlib import Path

from quant.core.ownership import is_dead_lock, lock_file

LOCK = ".quant-lock"
LOCK_PREFIX = "quant temporary folder"
PREFIXES = ("quant-ort-", "quant-ov-")
EMPTY_AGE_S = 3600.0  # an empty folder of ours without a lock (older quant versions) is removed after an hour

_cleaned: set[str] = set()


class TemporaryFolder:
    """Like tempfile.TemporaryDirectory (``.name``, ``.cleanup()``, removed when collected or at exit)."""

    def __init__(self, prefix: str) -> None:
        if prefix not in _cleaned:
            _cleaned.add(prefix)
            remove_stale(prefix)
        while True:
            self.name = tempfile.mkdtemp(prefix=prefix)  # 0700: private to this user, not an output
            try:
                fd = lock_file(Path(self.name) / LOCK, f"{LOCK_PREFIX} pid {os.getpid()}\n")
                break
            except FileNotFoundError:  # removed by another run as stale in the instant before the lock
                continue
        self._finalizer = weakref.finalize(self, _remove, self.name, fd)

    def cleanup(self) -> None:
        self._finalizer()

    def __enter__(self) -> str:
        return self.name

    def __exit__(self, *exc) -> None:
        self.cleanup()


def _remove(name: str, fd: int) -> None:
    shutil.rmtree(name, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.close(fd)


def remove_stale(prefix: str, folder: str | None = None) -> list[str]:
    """Remove this user's ``prefix*`` folders in the temp folder whose process has ended. Returns their names."""
    folder = folder or tempfile.gettempdir()
    removed = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(prefix)]
    except OSError:
        return removed
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue
            if is_dead_lock(Path(entry.path) / LOCK, LOCK_PREFIX):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif not os.listdir(entry.path) and time.time() - info.st_mtime > EMPTY_AGE_S:
                os.rmdir(entry.path)  # only ever removes an empty folder
            else:
                continue
        except OSError:
            continue
        removed.append(entry.name)
    return removed
