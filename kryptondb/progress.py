"""A dependency-free progress bar for long statements: silent for the first second, then a
bar with rate and ETA on a terminal (plain periodic lines when not a terminal)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager

INTERRUPTED = threading.Event()  # Ctrl-C seen while a statement ran (see interruptible)


@contextmanager
def interruptible():
    """Run a statement so that Ctrl-C stops it even if the KeyboardInterrupt it raises is lost
    on the way (seen, rarely, while worker threads ran a scan): the interrupt is also recorded,
    and the next progress update raises it again. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_interrupt(signum, frame):
        INTERRUPTED.set()
        raise KeyboardInterrupt

    INTERRUPTED.clear()
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        INTERRUPTED.clear()


class ProgressBar:
    def __init__(self, total: int, label: str, stream=None, delay: float = 1.0):
        self.total, self.label = max(0, int(total)), label
        self.stream = stream or sys.stderr
        self.delay, self.start, self.done = delay, time.perf_counter(), 0
        self.shown, self._last = False, 0.0
        self._printed = -1  # the count the last line showed
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, n: int = 1) -> None:
        if INTERRUPTED.is_set():
            raise KeyboardInterrupt
        self.done += n
        now = time.perf_counter()
        if now - self.start < self.delay or now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last, self.shown, self._printed = now, True, self.done
        self.stream.write(("\r" if self.tty else "") + self._line(now) + ("" if self.tty else "\n"))
        self.stream.flush()

    def _line(self, now: float) -> str:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if not self.total:
            return f"{self.label}: {self.done} done, {rate:.1f}/s, {elapsed:.0f}s"
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return (f"{self.label} [{bar}] {self.done}/{self.total} {100 * frac:3.0f}% "
                f"{rate:.1f}/s eta {eta:.0f}s")

    def close(self) -> None:
        """The final count, unless the last line already showed it (a total known or not:
        a video's frame count is not known up front)."""
        if not self.shown:
            return
        if self.done == self._printed:  # on a terminal, only end the line
            self.stream.write("\n" if self.tty else "")
        else:
            end = self._line(time.perf_counter())
            self.stream.write(("\r" + end + "\n") if self.tty else end + "\n")
        self.stream.flush()


class Silent:
    """A progress bar that shows nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def silent(total: int, label: str) -> Silent:
    """A bar factory like ``ProgressBar``'s, for work nobody watches."""
    return Silent()
