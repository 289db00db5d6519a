"""The writers' lock: one writer at a time per database directory, a bounded wait, and a message
naming the process that holds it.

Writers take an exclusive ``flock`` on ``<dir>/catalog.lock`` and write their pid and command
line into it, so a writer that waited ``lock_timeout`` seconds in vain can say who is in the way.
Readers never take the lock: catalog.json is replaced atomically, so a reader always sees one
whole version. The repair on open takes it only if it is free at that moment (``try_locked``).
The kernel drops the lock when its holder dies; a stale pid in the file is harmless.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from kryptondb.errors import FileError, StorageError
from kryptondb.files import open_regular

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one process per database directory
    fcntl = None

LOCK = "catalog.lock"


@contextmanager
def locked(root: Path, timeout: float) -> Iterator[None]:
    """Hold the writer lock, waiting at most ``timeout`` seconds for another writer; then
    StorageError naming the holder (nothing was changed)."""
    fd = _open_lock(root)
    try:
        _acquire(fd, root, timeout)
        _record_holder(fd)
        try:
            yield
        finally:
            with suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        with suppress(OSError):  # after a commit, nothing may report a failed write
            os.close(fd)  # releases the lock


@contextmanager
def try_locked(root: Path) -> Iterator[bool]:
    """Hold the writer lock if it is free right now (True), else do not wait (False)."""
    try:
        fd = _open_lock(root)
    except StorageError:
        yield False
        return
    try:
        got = fcntl is None or _try_flock(fd)
        yield got
    finally:
        os.close(fd)


def holder(root: Path) -> str:
    """Who holds the lock: as its holder wrote it, else as the kernel tells (Linux)."""
    with suppress(OSError, FileError):
        with open_regular(root / LOCK, "lock file") as f:
            text = f.read(4096).decode("utf-8", "replace").strip()
        if text:
            return text
    pids = _kernel_holders(root / LOCK)
    if pids:
        return ", ".join(f"pid {pid}, running {_command(pid)!r}" for pid in pids)
    return "a process that did not record itself"


def _kernel_holders(path: Path) -> list[int]:
    """The pids /proc/locks lists as holding a flock on ``path`` (empty where unknown)."""
    try:
        inode = os.stat(path).st_ino
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read(1 << 20).splitlines()
    except OSError:
        return []
    pids = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] \
                == str(inode) and fields[4].isdigit():  # "->" lines (waiters) have no match
            pids.append(int(fields[4]))
    return pids


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read(1000).replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def _open_lock(root: Path) -> int:
    path = root / LOCK
    flags = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
    except OSError as first:
        with suppress(OSError):  # a read-only directory: locking still works, recording not
            return os.open(path, os.O_RDONLY | flags)
        raise StorageError(f"cannot take the writer lock {path}: {first.strerror or first}; "
                           "nothing was changed") from None


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


def _acquire(fd: int, root: Path, timeout: float) -> None:
    if fcntl is None:
        return
    deadline, delay = time.monotonic() + timeout, 0.005
    while not _try_flock(fd):
        left = deadline - time.monotonic()
        if left <= 0:
            raise StorageError(
                f"database {root} is being written by another process ({holder(root)}); "
                f"waited {timeout:g} s for its lock; nothing was changed. Retry when it is "
                "done, or wait longer with kryptondb.connect(..., limits={'lock_timeout': "
                "seconds}) or KRYPTON_LOCK_TIMEOUT")
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


def _record_holder(fd: int) -> None:
    """pid, command line and start time, for the message of a writer that waits in vain."""
    since = datetime.now(timezone.utc).isoformat(timespec="seconds")
    command = " ".join([os.path.basename(sys.executable), *sys.argv])[:1000]
    text = f"pid {os.getpid()}, running {command!r}, writing since {since}\n"
    with suppress(OSError):  # a full disk must not stop the write that follows
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text.encode())
