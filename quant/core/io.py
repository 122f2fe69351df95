"""Atomic outputs: a folder or file appears complete or not at all; inputs are never touched."""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import math
import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from quant.core.errors import QuantError
from quant.core.oserrors import check_path_text, os_error
from quant.core.ownership import (MANIFEST, XML_MARKER, _write_all, folder_lock, generator, is_dead_lock, lock_file,
                                  read_manifest, register as register_file, register_folder, remove_proven, unproven,
                                  write_manifest, written_by_quant)

STAGING_LOCK = ".quant-staging"  # inside a staging folder, locked while its process lives
STAGING_PREFIX = "quant staging"
SHORT_NAME = 64  # bytes of an output's name kept in its staging name (a name may have 255)


@dataclass(frozen=True)
class WritePolicy:
    """How :func:`write_file_atomic` treats existing files (set by the CLI with :func:`writing`)."""

    force: bool = False  # overwrite an existing file quant cannot prove it wrote (--force)
    register: bool = False  # list written files in their folder's manifest, creating it (folder outputs)


_POLICY: contextvars.ContextVar[WritePolicy] = contextvars.ContextVar("quant_write_policy", default=WritePolicy())


@contextlib.contextmanager
def writing(force: bool = False, register: bool = False) -> Iterator[None]:
    """Within the block, single-file writes use this policy (see :class:`WritePolicy`)."""
    token = _POLICY.set(WritePolicy(force, register))
    try:
        yield
    finally:
        _POLICY.reset(token)


def _stat(path, what: str = "path", follow: bool = True) -> os.stat_result | None:
    """os.stat, None when the path does not exist; other OS errors as one clear line."""
    check_path_text(path, what)
    try:
        return os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise os_error(exc, "access", path) from None


def _inside(child, folder) -> bool:
    child, folder = os.path.realpath(child), os.path.realpath(folder)
    return child == folder or child.startswith(folder.rstrip(os.sep) + os.sep)


def _check_parent(path: Path, shown) -> None:
    """The nearest existing folder above ``path`` must be a folder we can write into."""
    existing = Path(os.path.abspath(path)).parent
    while _stat(existing) is None and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise QuantError(f"cannot write to the output folder '{shown}': '{existing}' is not a folder",
                         hint="choose a folder you can write to (--output)")
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise QuantError(f"cannot write to the output folder '{shown}': '{existing}' is on a read-only file system",
                         hint="choose an output on a writable file system")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise QuantError(f"cannot write to the output folder '{shown}': '{existing}' is not a writable folder",
                         hint="choose a folder you can write to (--output)")


def _short(name: str) -> str:
    if len(os.fsencode(name)) <= SHORT_NAME:
        return name
    return "quant-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:16]


def _refuse_unproven(path, bad: list[str]) -> QuantError:
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    if read_manifest(path) is None:  # e.g. written by a quant without manifests, or copied without hidden files
        hint = (f"choose a new or empty output folder; it has no {MANIFEST}, so quant cannot prove anything in it "
                "is its own (delete it yourself if it holds nothing you need)")
    else:
        hint = (f"choose a new or empty output folder (quant replaces a folder only when its {MANIFEST} lists "
                "every file in it)")
    return QuantError(f"the output folder '{path}' holds '{bad[0]}'{more}, which was not written by quant; "
                      "refusing to replace the folder", hint=hint)


def check_output_dir(path: str | Path, protect: tuple[Path, ...] = ()) -> None:
    """Fail fast, before expensive work, if ``path`` cannot be written as an output folder (writes nothing).

    ``path`` may not exist yet, may be empty, or may hold an earlier quant output whose manifest lists
    every entry with a matching hash (then it is replaced); anything else is refused. ``protect`` are
    the inputs: none may lie inside ``path``, and ``path`` may not lie inside an input folder.
    """
    check_path_text(path, "output folder")
    if not str(path):
        raise QuantError("the output folder is an empty path", hint="name a folder, e.g. --output out")
    info = _stat(path, "output folder")
    target = os.path.realpath(path)
    for item in protect:
        if item is None or _stat(item) is None:
            continue
        if _inside(item, target):
            raise QuantError(f"the output folder '{path}' contains the input '{Path(item).name}'; refusing to "
                             "replace it", hint="choose an output folder that does not hold the model or the data")
        if os.path.isdir(item) and _inside(target, item):
            raise QuantError(f"the output folder '{path}' is inside the input folder '{item}'",
                             hint="write outputs outside the input folders: a folder inside the data would become "
                                  "part of it (a new class of an image folder)")
    if info is not None:
        if not stat.S_ISDIR(info.st_mode):
            raise QuantError(f"the output '{path}' exists and is not a folder; refusing to replace it",
                             hint="choose a new or empty output folder")
        if os.path.ismount(target):
            raise QuantError(f"the output folder '{path}' is a mount point: quant replaces its output folder in one "
                             "rename, which a mount point does not allow", hint=f"write into a new folder inside it, "
                                                                                 f"e.g. --output {Path(path) / 'quant'}")
        try:
            bad = unproven(target)
        except OSError as exc:
            raise os_error(exc, "read the output folder", path) from None
        if bad:
            raise _refuse_unproven(path, bad)
    _check_parent(Path(target), path)


@contextlib.contextmanager
def atomic_output_dir(path: str | Path, protect: tuple[Path, ...] = ()) -> Iterator[Path]:
    """Yield a staging folder beside ``path``; on success it replaces ``path`` in one rename (see check_output_dir).

    The staging folder holds a lock while this process lives, so a later run removes it if the process
    was killed. Saves into one output are serialized by a lock on the parent folder: two concurrent
    saves both succeed (the last one wins). The folder gets a manifest of every file written into it.
    """
    check_output_dir(path, protect)
    target = Path(os.path.realpath(path))
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(parent):
            remove_stale_staging(parent)
            staging, lock = _make_staging(parent, target.name)
    except OSError as exc:
        raise os_error(exc, "create the output folder", path) from None
    try:
        yield staging
        write_manifest(staging, skip=frozenset({STAGING_LOCK}))
        with folder_lock(parent):
            os.unlink(staging / STAGING_LOCK)
            _commit(staging, target, path, protect)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise os_error(exc, "write the output folder", path) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        os.close(lock)


def _make_staging(parent: Path, name: str) -> tuple[Path, int]:
    stem = _short(name)
    while True:
        staging = parent / f".{stem}.tmp-{secrets.token_hex(4)}"
        try:
            os.mkdir(staging, 0o777)  # the umask decides, as for a plain mkdir (mkdtemp would give 0700)
        except FileExistsError:
            continue
        try:
            return staging, lock_file(staging / STAGING_LOCK, f"{STAGING_PREFIX} pid {os.getpid()}\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise


def _commit(staging: Path, target: Path, shown, protect) -> None:
    """Under the parent's lock: check the existing output again, then swap it for the staging folder."""
    info = _stat(target, follow=False)
    if info is None:
        os.rename(staging, target)
        register_folder(target)  # an output inside a quant folder keeps that folder provable
        return
    if not stat.S_ISDIR(info.st_mode):
        raise QuantError(f"the output '{shown}' exists and is not a folder; refusing to replace it",
                         hint="choose a new or empty output folder")
    bad = unproven(target)
    if bad:
        raise _refuse_unproven(shown, bad)
    old = target.with_name(f".{_short(target.name)}.old-{secrets.token_hex(4)}")
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old, target)
        raise
    remove_proven(old)  # only files the manifests prove quant wrote, each hash checked again
    register_folder(target)


def remove_stale_staging(parent: str | Path) -> list[str]:
    """Remove what killed quant processes left in ``parent``: staging folders whose lock no live process
    holds, and replaced outputs (``.NAME.old-*``) as far as their manifests prove them quant's. Call it
    holding the parent's lock. Returns the names removed."""
    removed = []
    uid = os.getuid() if hasattr(os, "getuid") else None
    with os.scandir(parent) as entries:
        for entry in entries:
            if not entry.name.startswith(".") or (".tmp-" not in entry.name and ".old-" not in entry.name):
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
            if ".tmp-" in entry.name and _dead_staging(Path(entry.path)):
                shutil.rmtree(entry.path, ignore_errors=True)
            elif not (".old-" in entry.name and read_manifest(entry.path) is not None and remove_proven(entry.path)):
                continue
            removed.append(entry.name)
    return removed


def _dead_staging(staging: Path) -> bool:
    """A staging folder made by quant (its lock file, under its final or its first name) whose process ended."""
    try:
        names = [n for n in os.listdir(staging) if n == STAGING_LOCK or n.startswith(STAGING_LOCK + ".new-")]
    except OSError:
        return False
    return bool(names) and all(is_dead_lock(staging / name, STAGING_PREFIX) for name in names)


def check_output_file(path: str | Path, inputs=(), force: bool | None = None, what: str = "output") -> None:
    """Fail fast, before expensive work, if the single file ``path`` may not be written (writes nothing).

    Refused: a path that is one of ``inputs`` (the same file, through symlinks and hard links too), a
    path inside an input folder (unless quant's manifest is in it), a folder, and an existing file quant
    cannot prove it wrote (unless ``force``, i.e. --force). Devices and pipes (/dev/stdout) are fine.
    """
    force = _POLICY.get().force if force is None else force
    check_path_text(path, what)
    if not str(path):
        raise QuantError(f"{what} is an empty path", hint="name a file, e.g. result.json")
    if str(path) == "-":  # the Unix habit: it would make a file named '-' in the current folder
        raise QuantError(f"{what} '-' would be a file named '-' (quant does not read '-' as standard output)",
                         hint="name /dev/stdout for standard output, or a file, e.g. result.json")
    info = _stat(path, what)
    for item in inputs:
        if item is None:
            continue
        other = _stat(item)
        if other is None:
            continue
        if info is not None and (info.st_dev, info.st_ino) == (other.st_dev, other.st_ino):
            raise QuantError(f"{what} '{path}' is the input '{item}'; refusing to overwrite it",
                             hint="write the output to another path")
        if stat.S_ISDIR(other.st_mode) and read_manifest(item) is None and _inside(Path(path).parent, item):
            raise QuantError(f"{what} '{path}' is inside the input folder '{item}'",
                             hint="write outputs outside the input folders (a file there would become part of the data)")
    if info is None:
        _check_parent(Path(path), Path(path).parent)
        return
    if stat.S_ISDIR(info.st_mode):
        raise QuantError(f"{what} '{path}' is a folder", hint=f"name a file, e.g. {Path(path) / 'result.json'}")
    if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
        return
    if not stat.S_ISREG(info.st_mode):
        raise QuantError(f"{what} '{path}' is not a regular file", hint="write the output to another path")
    if not force and not written_by_quant(path):
        raise QuantError(f"{what} '{path}' exists and was not written by quant; refusing to overwrite it",
                         hint="choose another path, or pass --force to overwrite it")


def write_file_atomic(path: str | Path, data: bytes | str, force: bool | None = None,
                      register: bool | None = None) -> None:
    """Write a file via a temporary name in the same folder and a rename, refusing to replace a file quant
    did not write (see :func:`check_output_file`). The file gets the mode a plain open() gives (the umask),
    or keeps the mode of the file it replaces. It is listed in its folder's manifest when the folder has
    one (or ``register``), so the folder stays provably quant's."""
    policy = _POLICY.get()
    force = policy.force if force is None else force
    register = policy.register if register is None else register
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    check_output_file(path, force=force)
    info = _stat(path)
    try:
        if info is not None and (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
            with open(path, "wb") as handle:  # /dev/stdout, a pipe: nothing to replace
                handle.write(payload)
            return
        real = Path(os.path.realpath(path)) if os.path.islink(path) else path  # write through a symlink
        real.parent.mkdir(parents=True, exist_ok=True)
        with folder_lock(real.parent):
            if info is not None and not force and not written_by_quant(real):  # changed since the check
                raise QuantError(f"output '{path}' exists and was not written by quant; refusing to overwrite it",
                                 hint="choose another path, or pass --force to overwrite it")
            _replace(real, payload, info)
            if register or read_manifest(real.parent) is not None:
                register_file(real, create=register)
    except OSError as exc:
        raise os_error(exc, "write", path) from None


def temp_file_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in ``path``'s folder, mode 0666 & ~umask as a plain open() gives (mkstemp: 0600)."""
    stem = _short(path.name)
    while True:
        tmp = path.with_name(f".{stem}.tmp-{secrets.token_hex(4)}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def _replace(path: Path, payload: bytes, info: os.stat_result | None) -> None:
    """Write ``payload`` in a locked staging folder beside ``path``, then rename it over ``path``. The caller
    holds the folder's lock; a staging folder a killed run left there is removed first."""
    remove_stale_staging(path.parent)
    staging, lock = _make_staging(path.parent, path.name)
    try:
        tmp = staging / "content"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)  # the umask
        try:
            _write_all(fd, payload)
            if info is not None and stat.S_ISREG(info.st_mode):
                os.chmod(tmp, stat.S_IMODE(info.st_mode))  # replacing a file keeps its mode, as open('w') would
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def json_output(value) -> str:
    """JSON text for a file quant writes on its own: marked with quant's generator (see quant.core.ownership)."""
    value = to_jsonable(value)
    return dumps({"generator": generator(), **value} if isinstance(value, dict) else value)


def xml_output(text: str) -> str:
    """XML text marked with quant's generator comment after the declaration."""
    head, sep, rest = text.partition("?>\n") if text.startswith("<?xml") else ("", "", text)
    return f"{head}{sep}{XML_MARKER} {generator().split(' ', 1)[-1]} -->\n{rest}"

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
