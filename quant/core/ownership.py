"""What quant can prove it wrote: a manifest of every file in an output folder, with its sha256.

Each folder quant writes holds ``.quant-manifest.json``: the sha256 of every file quant wrote there and
the names of its sub-folders (each with its own manifest). A folder is quant's only when every entry in
it is listed with a matching hash, so a rerun may replace it; anything else in it means refuse. A
``quant.json`` or ``summary.json`` proves nothing (anyone can write one). The manifest is a file of its
own, not a part of ``quant.json``: a file cannot hold its own hash, multi-method folders have no
``quant.json``, and files written later (report, sensitivity, eval.json) are added without touching
the artifacts. Single files written outside such a folder carry a marker in their content instead
(JSON: a top-level ``"generator": "quant ..."``; XML: a ``<!-- generator: quant ... -->`` comment), so
that quant leaves no extra file beside a ``gate.json`` in a CI workspace.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Iterator

MANIFEST = ".quant-manifest.json"
FORMAT = "quant-manifest/1"
GENERATOR_PREFIX = "quant"
XML_MARKER = "<!-- generator: quant"
MAX_MARKED_SIZE = 64 * 2**20  # quant's JSON/XML outputs are small; a larger file is not one of them

try:  # POSIX; elsewhere quant runs without locks
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def generator() -> str:
    from quant import __version__

    return f"{GENERATOR_PREFIX} {__version__}"


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of ``folder``, or None when it has none (or one that is damaged: no proof either way)."""
    path = Path(folder) / MANIFEST
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    files, folders = data.get("files"), data.get("folders")
    if not isinstance(files, dict) or not isinstance(folders, list):
        return None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        return None
    return {"format": FORMAT, "files": dict(files), "folders": [f for f in folders if isinstance(f, str)]}


def _dump(folder: Path, files: dict[str, str], folders: list[str]) -> None:
    text = json.dumps({"format": FORMAT, "tool": generator(), "files": dict(sorted(files.items())),
                       "folders": sorted(set(folders))}, indent=2) + "\n"
    tmp = folder / f"{MANIFEST}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # the umask decides, as for any file
    try:
        _write_all(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, folder / MANIFEST)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_manifest(folder: str | Path, skip: frozenset[str] = frozenset()) -> None:
    """List every file and sub-folder in ``folder`` (recursively) as written by quant: call it on a staging
    folder that only quant wrote into, before it is renamed into place."""
    folder = Path(folder)
    files, folders = {}, []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == MANIFEST or entry.name in skip:
                continue
            if entry.is_dir(follow_symlinks=False):
                write_manifest(entry.path)
                folders.append(entry.name)
            elif entry.is_file(follow_symlinks=False):
                files[entry.name] = sha256_file(entry.path)
    _dump(folder, files, folders)


def unproven(folder: str | Path, skip: frozenset[str] = frozenset()) -> list[str]:
    """Entries of ``folder`` (relative paths) that its manifest does not prove quant wrote, unchanged.

    An empty list means quant may replace the folder. An empty folder needs no manifest.
    """
    folder = Path(folder)
    names = sorted(n for n in os.listdir(folder) if n not in skip)
    manifest = read_manifest(folder)
    if manifest is None:
        return names
    bad = []
    for name in names:
        if name == MANIFEST:
            continue
        path = folder / name
        mode = os.lstat(path).st_mode
        if name in manifest["files"] and stat.S_ISREG(mode):
            if sha256_file(path) == manifest["files"][name]:
                continue
        elif name in manifest["folders"] and stat.S_ISDIR(mode):
            inner = unproven(path)
            if not inner:
                continue
            bad += [f"{name}/{n}" for n in inner]
            continue
        bad.append(name)
    return bad


def remove_proven(folder: str | Path) -> bool:
    """Delete what the manifests prove quant wrote in ``folder`` (each file's hash checked again just before),
    then the emptied folders. Anything else stays. Returns True when the folder is gone."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        with contextlib.suppress(OSError):
            os.rmdir(folder)  # only when empty
        return not os.path.lexists(folder)
    for name, digest in manifest["files"].items():
        path = folder / name
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode) and sha256_file(path) == digest:
                os.unlink(path)
    for name in manifest["folders"]:
        path = folder / name
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(path).st_mode):
                remove_proven(path)
    left = [n for n in os.listdir(folder) if n != MANIFEST]
    if left:
        return False
    with contextlib.suppress(OSError):
        os.unlink(folder / MANIFEST)
        os.rmdir(folder)
    return not os.path.lexists(folder)


def register(path: str | Path, create: bool = False) -> None:
    """Record the file ``path`` (just written by quant) in its folder's manifest, and that folder in the
    manifests above it that exist. Without ``create``, a folder without a manifest gets none."""
    path = Path(path)
    folder = path.parent
    manifest = read_manifest(folder)
    if manifest is None and not create:
        return
    manifest = manifest or {"files": {}, "folders": []}
    manifest["files"][path.name] = sha256_file(path)
    _dump(folder, manifest["files"], manifest["folders"])
    child, parent = folder, folder.parent
    while parent != child:
        above = read_manifest(parent)
        if above is None or child.name in above["folders"]:
            break
        _dump(parent, above["files"], above["folders"] + [child.name])
        child, parent = parent, parent.parent


def has_marker(path: str | Path) -> bool:
    """True when a file carries quant's generator marker (JSON or XML written by quant)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_MARKED_SIZE:
            return False
        with open(path, "rb") as handle:
            head = handle.read(512)
            if XML_MARKER.encode() in head:
                return True
            if not head.lstrip().startswith(b"{"):
                return False
            data = json.loads(head + handle.read())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        return False
    value = data.get("generator") if isinstance(data, dict) else None
    return isinstance(value, str) and value.split(" ")[0] == GENERATOR_PREFIX


def written_by_quant(path: str | Path) -> bool:
    """Can quant prove it wrote the existing file ``path`` (listed in its folder's manifest with the same
    hash, or marked as quant's in its content)?"""
    path = Path(path)
    manifest = read_manifest(path.parent)
    if manifest is not None and path.name in manifest["files"]:
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(path).st_mode) and sha256_file(path) == manifest["files"][path.name]:
                return True
    return has_marker(path)


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself: no lock file is left behind)."""
    fd = None
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open file without waiting; False when a live process holds it."""
    if fcntl is None:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def lock_file(path: Path, text: str) -> int:
    """Create ``path`` holding ``text`` and an exclusive lock kept while the returned descriptor is open.

    The file appears under its name already locked (it is written under a temporary name first), so no
    other process can take it for a dead one's.
    """
    tmp = path.with_name(path.name + f".new-{os.getpid()}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        _write_all(fd, text.encode())
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return fd


def is_dead_lock(path: Path, prefix: str) -> bool:
    """True when ``path`` is a lock file made by :func:`lock_file` (content starts with ``prefix``) whose
    process has ended: quant can prove the folder holding it is its own and abandoned."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        with os.fdopen(os.dup(fd), "rb") as handle:
            if not handle.read(256).decode("utf-8", "replace").startswith(prefix):
                return False
        return try_lock(fd)
    finally:
        os.close(fd)
