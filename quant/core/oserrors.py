"""OS errors as user errors: one line naming the operation, the path and what the system said, plus the fix."""
from __future__ import annotations

import errno
import os

from quant.core.errors import QuantError

# errno -> (what went wrong, the fix); "{op}" and "{path}" are filled in
_KNOWN = {
    errno.ENOSPC: ("cannot {op} '{path}': no space left on the device",
                   "free some disk space, or write to another disk"),
    errno.EDQUOT: ("cannot {op} '{path}': the disk quota is exceeded", "free some space, or write to another disk"),
    errno.EFBIG: ("cannot {op} '{path}': the file is too large for its file system",
                  "write to a file system that allows large files (not FAT32), or raise the file size limit (ulimit -f)"),
    errno.EROFS: ("cannot {op} '{path}': the file system is read-only", "choose an output on a writable file system"),
    errno.EACCES: ("cannot {op} '{path}': permission denied", "choose a path you can write to, or fix its permissions"),
    errno.EPERM: ("cannot {op} '{path}': operation not permitted", "choose a path you can write to"),
    errno.ENAMETOOLONG: ("cannot {op} '{path}': the path or one of its names is too long",
                         "use shorter names (at most 255 bytes per name)"),
    errno.ELOOP: ("cannot {op} '{path}': too many levels of symbolic links (a symlink loop)",
                  "fix or remove the symbolic link"),
    errno.EISDIR: ("cannot {op} '{path}': it is a folder", "name a file, e.g. result.json, not a folder"),
    errno.ENOTDIR: ("cannot {op} '{path}': a part of the path is a file, not a folder",
                    "check the path; every part but the last must be a folder"),
    errno.EBUSY: ("cannot {op} '{path}': it is busy (a mount point, or in use)",
                  "write into a new folder inside it, e.g. --output PATH/quant"),
    errno.EXDEV: ("cannot {op} '{path}': it is on another file system than its folder (a mount point?)",
                  "write into a new folder inside it"),
    errno.ENOENT: ("cannot {op} '{path}': no such file or folder", "check the path"),
    errno.EIO: ("cannot {op} '{path}': input/output error from the device", "check the disk, or write elsewhere"),
}


def os_error(exc: OSError, op: str, path) -> QuantError:
    """A QuantError for ``exc`` raised while doing ``op`` ('write', 'read', 'create the folder') on ``path``."""
    path = _printable(path if path is not None else exc.filename)
    known = _KNOWN.get(exc.errno)
    if known:
        message, hint = known
        return QuantError(message.format(op=op, path=path), hint=hint)
    return QuantError(f"cannot {op} '{path}': {exc.strerror or exc}", hint="check the path and its file system")


def null_byte_error(path, what: str = "path") -> QuantError:
    return QuantError(f"the {what} '{_printable(path)}' contains a NUL byte", hint="paths cannot contain NUL bytes")


def check_path_text(path, what: str = "path") -> None:
    """Refuse a path the operating system cannot take (a NUL byte) with one clear line."""
    text = os.fsencode(path) if isinstance(path, (str, bytes, os.PathLike)) else b""
    if b"\0" in text:
        raise null_byte_error(path, what)


def _printable(path) -> str:
    text = os.fsdecode(path) if isinstance(path, (bytes, os.PathLike, str)) else str(path)
    return text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def check_regular_input(path, what: str) -> None:
    """A QuantError for an input that exists but is neither a regular file nor a folder: a pipe (``<(cat m.onnx)``),
    a device or a socket can be read once only, so quant would record and check the hash of nothing."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):  # missing, a loop, a NUL byte: the caller's own check says so
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise QuantError(f"{what} '{_printable(path)}' is {kind}, not a file: quant reads its inputs by name, more "
                         "than once (a model or data also for its sha256)",
                         hint="save it to a file first and pass that file")
