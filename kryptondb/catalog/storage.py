"""Crash-safe file writes and Arrow IPC files.

Every file the database owns is replaced whole: written to a temp file beside it, fsynced, then
renamed over the target, so a reader (or a process restarted after SIGKILL or power loss) sees the
old file or the new one, never a mix. Tables are Arrow IPC *files* read through a memory map, so
opening a large table costs a footer read, not a copy.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO, Callable

import pyarrow as pa

from kryptondb.errors import StorageError
from kryptondb.files import check_regular

# .<target>.<pid>-<8 hex>.tmp: hidden, never matches a data file's pattern, and the pid lets a
# later open tell a dead writer's leftovers from a live writer's work in progress.
_TEMP_RE = re.compile(r"^\..+\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


def temp_path_for(path: Path) -> Path:
    """A fresh temp name beside ``path``: same directory, so the final rename stays atomic."""
    return path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"


def is_temp_name(name: str) -> bool:
    """Whether a directory entry is an atomic-write temp file (alive or left by a crash)."""
    return _TEMP_RE.match(name) is not None


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename or new entry in ``directory`` durable (the rename lives in the directory)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:  # platforms that cannot open a directory (Windows) have nothing to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FdWriter(io.RawIOBase):
    """A raw writer over a file descriptor: every byte goes out through ``os.write`` (and every
    failure, such as ENOSPC or EFBIG, comes back from it), under a BufferedWriter."""

    def __init__(self, fd: int):
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return os.write(self._fd, data)


def _replace(path: Path, writer: Callable[[BinaryIO], None]) -> os.stat_result:
    """Write a new temp file beside ``path``, fsync it and rename it over ``path``; the new
    file's stat. If anything up to the rename fails, the temp file is removed, the error raised,
    and ``path`` is untouched."""
    tmp = temp_path_for(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        try:
            with io.BufferedWriter(_FdWriter(fd), 1 << 20) as f:
                writer(f)
                f.flush()
                os.fsync(fd)
                st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):  # left for the next open's clean-up
            os.unlink(tmp)
        raise
    return st


def atomic_write(path: str | os.PathLike, writer: Callable[[BinaryIO], None]) -> os.stat_result:
    """Replace ``path`` with what ``writer`` writes, all or nothing; the new file's stat.

    If ``writer``, the flush, the fsync or the rename raises, the temp file is removed and the
    old file is untouched.
    """
    path = Path(path)
    st = _replace(path, writer)
    fsync_dir(path.parent)
    return st


def commit_bytes(path: Path, data: bytes) -> os.stat_result:
    """Replace ``path`` with ``data`` where the rename is a commit: if anything fails before
    the rename, ``path`` is untouched and the error raised; once renamed, nothing raises (like
    SQLite, a failed sync of the directory is not reported as a failed write). The stat of the
    new file."""
    st = _replace(path, lambda f: f.write(data))  # the rename: the point of no return
    with suppress(OSError):
        fsync_dir(path.parent)
    return st


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> os.stat_result:
    """Replace ``path`` with ``data``, all or nothing."""
    return atomic_write(path, lambda f: f.write(data))


def write_arrow(path: str | os.PathLike, table: pa.Table) -> None:
    """Write ``table`` as an Arrow IPC file (random access, memory-mappable), atomically."""

    def write(f: BinaryIO) -> None:
        with pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)

    atomic_write(path, write)


def _open_reader(path: str | os.PathLike) -> pa.ipc.RecordBatchFileReader:
    """The IPC file reader over a memory map; missing or malformed files become StorageError."""
    if not os.path.lexists(path):
        raise StorageError(f"missing Arrow file {path}")
    check_regular(path, "Arrow file", StorageError)  # a FIFO or device would hang or never end
    try:
        return pa.ipc.open_file(pa.memory_map(os.fspath(path), "r"))
    except FileNotFoundError as e:
        raise StorageError(f"missing Arrow file {path}") from e
    except (pa.ArrowException, OSError) as e:
        raise StorageError(f"corrupt or truncated Arrow file {path}: {e}") from e


def read_arrow(path: str | os.PathLike) -> pa.Table:
    """Read an Arrow IPC file zero-copy: the table's buffers point into the memory map.

    Raises StorageError naming ``path`` when the file is missing, truncated or malformed.
    """
    reader = _open_reader(path)
    try:
        table = reader.read_all()
        table.validate()  # cheap structural check; catches lengths that disagree with buffers
    except (pa.ArrowException, OSError) as e:
        raise StorageError(f"corrupt Arrow file {path}: {e}") from e
    return table


def read_arrow_footer(path: str | os.PathLike) -> tuple[pa.Schema, int]:
    """(schema, row count) of an Arrow IPC file without touching its column data."""
    reader = _open_reader(path)
    try:
        rows = sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
    except (pa.ArrowException, OSError) as e:
        raise StorageError(f"corrupt Arrow file {path}: {e}") from e
    return reader.schema, rows


def remove_quietly(item: Path | None) -> None:
    """Remove a data file, or a folder (a model version's) with what it holds; best effort:
    a leftover is garbage that the next open removes."""
    if item is None:
        return
    if item.is_dir() and not item.is_symlink():
        shutil.rmtree(item, ignore_errors=True)
    else:
        with suppress(OSError):
            os.unlink(item)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or we cannot tell: keep its file
    return True


def clean_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Remove temp files whose writer process is gone; returns what was removed.

    A live writer's temp file is kept, so opening a database never breaks another process's
    write in progress.
    """
    directory, removed = Path(directory), []
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        m = _TEMP_RE.match(entry.name)
        if m and int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"])):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed
