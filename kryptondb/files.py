"""Opening files: only regular files are read, and opening one never blocks.

A FIFO blocks open() until a writer comes, /dev/zero never ends, a directory or a socket is no
file at all. Every path a user hands KryptonDB (images, videos, ONNX models and their external
data, checkpoints, scripts) and every database file is opened here: the path is stat'ed first
(following symlinks, so a link to a device is the device; a device is never opened), then opened
with O_NONBLOCK, so even a FIFO swapped in meanwhile cannot block, and the open file is checked
again with fstat before a byte is read.

>>> import os
>>> open_regular(os.devnull, "model file")
Traceback (most recent call last):
kryptondb.errors.FileError: model file '/dev/null' is a character device, not a regular file
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from kryptondb.errors import FileError
from kryptondb.limits import check_size

_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a plain file")


def user_path(path, what: str, error: type[FileError] = FileError) -> str:
    """``path`` (a str, bytes or os.PathLike) as a str; anything else is ``error`` naming what
    was given instead of a path."""
    try:
        return os.fsdecode(os.fspath(path))
    except TypeError:
        raise error(f"{what}: expected a path, got {type(path).__name__} {path!r:.60}") from None


def _why(exc: OSError | ValueError) -> str:
    """What went wrong, as the OS says it ("Permission denied"), else the exception's text."""
    return getattr(exc, "strerror", None) or str(exc)


def _require_regular(st: os.stat_result, shown: str, what: str, error: type) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {shown!r} is {_kind(st.st_mode)}, not a regular file")


def check_regular(path: str | os.PathLike, what: str,
                  error: type[FileError] = FileError) -> os.stat_result:
    """The stat of ``path`` if it is a regular file (after symlinks), else ``error`` saying
    what it is; ``what`` names the file's role in the message ("image file", ...)."""
    shown = user_path(path, what, error)
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        raise error(f"{what} {shown!r} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"cannot read {what} {shown!r}: {_why(exc)}") from None
    _require_regular(st, shown, what, error)
    return st


def open_regular(path: str | os.PathLike, what: str,
                 error: type[FileError] = FileError) -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file; see the module docstring."""
    shown = user_path(path, what, error)
    check_regular(shown, what, error)
    try:
        fd = os.open(shown, os.O_RDONLY | _NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise error(f"cannot read {what} {shown!r}: {_why(exc)}") from None
    try:
        _require_regular(os.fstat(fd), shown, what, error)
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def writable_file(path, what: str, error: type[FileError] = FileError) -> str:
    """``path`` as a str if a file may be written there: its folder exists, and it does not
    exist yet or is a regular file (after symlinks). A FIFO would block or refuse the writer, a
    device swallow it, a directory fail late; each is ``error`` naming it, before any work."""
    shown = user_path(path, what, error)
    try:
        st = os.stat(shown)
    except FileNotFoundError:
        st = None
    except (OSError, ValueError) as exc:
        raise error(f"cannot write {what} {shown!r}: {_why(exc)}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else _kind(st.st_mode)
        raise error(f"cannot write {what} {shown!r}: it is {kind}, not a regular file")
    folder = os.path.dirname(os.path.abspath(shown))
    if not os.path.isdir(folder):
        what_is = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise error(f"cannot write {what} {shown!r}: folder {folder!r} {what_is}")
    return shown


def output_folder(path, what: str = "output folder", error: type[FileError] = FileError,
                  create: bool = True) -> str:
    """``path`` as a str, created if missing (unless not ``create``); an existing file, FIFO or
    device there is ``error`` naming it."""
    shown = user_path(path, what, error)
    if not create and not os.path.exists(shown):
        return shown
    try:
        os.makedirs(shown, exist_ok=True)
    except FileExistsError:
        raise error(f"cannot use {shown!r} as the {what}: it is "
                    f"{_kind(os.stat(shown).st_mode)}, not a folder") from None
    except (OSError, ValueError) as exc:
        raise error(f"cannot use {shown!r} as the {what}: {_why(exc)}") from None
    return shown


def read_regular(path: str | os.PathLike, what: str, limit: str | None = None,
                 error: type[FileError] = FileError) -> bytes:
    """The whole file, refusing one over the named limit (kryptondb.limits) before reading."""
    shown = os.fspath(path)
    with open_regular(shown, what, error) as f:
        if limit is not None:
            check_size(os.fstat(f.fileno()).st_size, limit, f"{what} {shown!r}", error)
        try:
            return f.read()
        except OSError as exc:
            raise error(f"cannot read {what} {shown!r}: {_why(exc)}") from None


def read_script(path: str | os.PathLike) -> str:
    """A KQL script's text (``kryptondb -f``, the shell's ``.read``): a regular file only, so a
    FIFO or a device is an error at once, not a hang; UTF-8, an editor's BOM dropped."""
    try:
        return read_regular(path, "script").decode("utf-8-sig")
    except FileError as exc:
        raise FileError(f"cannot read script {os.fspath(path)}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise FileError(f"cannot read script {os.fspath(path)}: it is not UTF-8 text "
                        f"({exc})") from None
