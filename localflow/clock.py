"""Injectable clocks: every timestamp and timeout in localflow comes from a :class:`Clock`.

Controllers and the scheduler take a clock argument instead of reading time globally (as kwok's
stages do), so tests can drive deadlines, TTLs and backoff with :class:`FakeClock` and never sleep.
"""
from __future__ import annotations

import datetime as _dt
import threading
import time


class Clock:
    """Wall-clock time in seconds since the epoch, plus a monotonic timer and a sleep.

    ``now()`` -> float seconds (UTC epoch); ``monotonic()`` -> float seconds; ``sleep(s)``;
    ``rfc3339()`` -> ``2026-01-02T03:04:05Z`` as Kubernetes writes timestamps.
    """

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        """Wait on ``event`` for at most ``seconds``; True when the event was set."""
        return event.wait(seconds)

    def rfc3339(self, t: float | None = None) -> str:
        return rfc3339(self.now() if t is None else t)

    def on_advance(self, callback) -> "callable":
        """Call ``callback()`` (no arguments) whenever this clock jumps forward; returns a function
        that unsubscribes it. Real time flows by itself, so this clock never calls it: waiters
        block with :meth:`timeout_until` instead. :class:`FakeClock` calls it after each
        :meth:`FakeClock.advance`, so a waiter on due work (the controller manager's delay queue)
        wakes when a test moves time."""
        return lambda: None

    def timeout_until(self, deadline: float | None) -> float | None:
        """Real seconds to block until :meth:`monotonic` reaches ``deadline`` (>= 0), or ``None``
        to block until woken (no deadline, or a :class:`FakeClock`, whose time only moves with
        ``advance`` -- subscribe with :meth:`on_advance` to be woken then)."""
        if deadline is None:
            return None
        return max(0.0, deadline - self.monotonic())


class FakeClock(Clock):
    """A clock that only moves when told: ``advance(seconds)``.

    ``sleep`` advances the clock instead of blocking, so backoff and deadlines resolve instantly.
    ``advance`` calls every :meth:`on_advance` subscriber afterwards (outside the clock's lock),
    so threads waiting for due work on this clock wake at once.
    """

    def __init__(self, start: float = 1_767_225_600.0):  # 2026-01-01T00:00:00Z
        self._t = float(start)
        self._lock = threading.Lock()
        self._listeners: list = []

    def now(self) -> float:
        with self._lock:
            return self._t

    def monotonic(self) -> float:
        return self.now()

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._t += seconds
            listeners = list(self._listeners)
        for callback in listeners:
            callback()

    def on_advance(self, callback) -> "callable":
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def timeout_until(self, deadline: float | None) -> float | None:
        if deadline is not None and deadline <= self.now():
            return 0.0
        return None  # only advance() moves this clock: wait to be woken by it

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(seconds)

    def wait(self, event: threading.Event, seconds: float | None) -> bool:
        if event.is_set():
            return True
        if seconds is not None:
            self.advance(seconds)
        return event.is_set()


def rfc3339(t: float) -> str:
    """Format epoch seconds as RFC 3339 UTC with second precision, the Kubernetes timestamp form."""
    return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(ts: str | None) -> float | None:
    """Epoch seconds of a Kubernetes timestamp (``2026-01-01T00:00:00Z``, as :func:`rfc3339` writes
    it); None for an empty or malformed one."""
    if not ts:
        return None
    try:
        return _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


SYSTEM_CLOCK = Clock()
