"""Deadlines and a small pool of daemon threads, so a hung source costs at most its timeout."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from adapters.contract import SourceUnavailable

T = TypeVar("T")


class Deadline:
    """The moment an answer is due; each blocking step is given only what is left of it."""

    __slots__ = ("at", "timeout")

    def __init__(self, timeout: float) -> None:
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not (math.isfinite(timeout) and timeout > 0)
        ):
            raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
        self.timeout = float(timeout)
        self.at = time.monotonic() + self.timeout

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.at - time.monotonic())

    def check(self) -> float:
        """Seconds left, or SourceUnavailable: no new step starts once the deadline has passed."""
        left = self.remaining()
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> SourceUnavailable:
        """The one reason every adapter gives for a deadline that passed."""
        return SourceUnavailable(f"timed out after {self.timeout:g} s")


class _Job:
    """One call handed to a worker thread, and what it produced."""

    __slots__ = ("deadline", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[[Deadline], Any], deadline: Deadline) -> None:
        self.fn = fn
        self.deadline = deadline
        self.done = threading.Event()
        self.result: Any = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.deadline.check()
            self.result = self.fn(self.deadline)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()


class Runner:
    """Runs blocking source calls on at most ``size`` daemon threads; the caller stops waiting
    at its deadline.

    Daemon threads, unlike those of ``concurrent.futures``, never hold up interpreter exit when
    a source leaves one blocked for good, and at most ``size`` can ever be blocked at once.
    """

    def __init__(self, name: str, size: int) -> None:
        self._name = name
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def run(self, fn: Callable[[Deadline], T], deadline: Deadline) -> T:
        """``fn(deadline)``'s result or exception, or SourceUnavailable once the deadline passes."""
        job = _Job(fn, deadline)
        with self._lock:
            if self._closed:
                raise SourceUnavailable("adapter is closed")
            self._jobs.put(job)
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._size:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        if not job.done.wait(deadline.remaining()):
            raise deadline.error()
        if job.error is not None:
            raise job.error
        return job.result

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job.run()
            self._idle.release()

    def close(self) -> None:
        """Let the threads finish what they hold and stop; idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
