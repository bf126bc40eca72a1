"""A controller work queue: de-duplicating, delaying and rate-limited, on an injected clock.

Follows client-go ``util/workqueue``: ``queue.go`` (the ``dirty``/``processing`` sets: a key
added twice before a worker takes it is processed once; a key added while a worker processes it
is queued again only after :meth:`WorkQueue.done`, so one key is never processed by two workers
at once), ``delaying_queue.go`` (``AddAfter``: a heap of keys by ready time; a key already
waiting keeps the earlier time) and ``rate_limiting_queue.go`` with ``default_rate_limiters.go``
(``AddRateLimited``/``Forget``/``NumRequeues`` over :class:`ItemExponentialFailureRateLimiter`,
5 ms doubling per failure up to 1000 s, the per-item half of ``DefaultControllerRateLimiter``;
its overall 10 qps token bucket is left out: one machine, no API server to protect).

Differences from client-go: delays run on a :class:`localflow.clock.Clock`; there is no
goroutine moving due keys, :meth:`WorkQueue.get` promotes them itself and sleeps until the next
one is due -- with a :class:`~localflow.clock.FakeClock` it sleeps until ``advance()`` wakes it
(:meth:`~localflow.clock.Clock.on_advance`), so tests never wait real backoff time. After
:meth:`WorkQueue.shutdown`, :meth:`WorkQueue.get` returns ``None`` at once instead of draining:
controllers are level-triggered and the next manager's resync finds whatever was left.

Keys are hashable values; the controller manager uses ``(kind, namespace, name)`` tuples.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from typing import Hashable

from localflow.clock import SYSTEM_CLOCK, Clock

__all__ = ["ItemExponentialFailureRateLimiter", "WorkQueue", "DEFAULT_BASE_DELAY", "DEFAULT_MAX_DELAY"]

DEFAULT_BASE_DELAY = 0.005  # seconds: client-go DefaultControllerRateLimiter's 5 ms
DEFAULT_MAX_DELAY = 1000.0  # seconds: and its 1000 s cap


class ItemExponentialFailureRateLimiter:
    """Per-key backoff ``base * 2**failures`` seconds, capped at ``max_delay``, as client-go's
    ``ItemExponentialFailureRateLimiter``: :meth:`when` returns the delay for the next retry and
    counts a failure; :meth:`forget` clears the key's count (call it after a success);
    :meth:`num_requeues` is the current count. Thread-safe."""

    def __init__(self, base_delay: float = DEFAULT_BASE_DELAY, max_delay: float = DEFAULT_MAX_DELAY):
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must be >= 0 seconds")
        self.base_delay = float(base_delay)
        self.max_delay = float(max_delay)
        self._failures: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def when(self, key: Hashable) -> float:
        """Seconds to wait before retrying ``key``; counts one more failure."""
        with self._lock:
            exp = self._failures.get(key, 0)
            self._failures[key] = exp + 1
        if exp > 64:  # 2**64 * 5 ms is far beyond any cap; avoid float overflow
            return self.max_delay
        return min(self.base_delay * (2 ** exp), self.max_delay)

    def forget(self, key: Hashable) -> None:
        """Stop tracking ``key`` (its next failure waits ``base_delay`` again)."""
        with self._lock:
            self._failures.pop(key, None)

    def num_requeues(self, key: Hashable) -> int:
        """How many failures ``key`` has had since it was last forgotten."""
        with self._lock:
            return self._failures.get(key, 0)


class WorkQueue:
    """De-duplicating, delaying, rate-limited queue of keys (see the module docstring).

    ``clock``: the clock delays run on (default: real time); ``rate_limiter``: backoff for
    :meth:`add_rate_limited` (default: 5 ms doubling to 1000 s). All methods are thread-safe.
    """

    def __init__(self, clock: Clock = SYSTEM_CLOCK, rate_limiter: ItemExponentialFailureRateLimiter | None = None):
        self.clock = clock
        self.rate_limiter = rate_limiter or ItemExponentialFailureRateLimiter()
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._waiting: dict = {}  # key -> ready time (clock.monotonic()) of its pending add_after
        self._heap: list = []  # (ready time, seq, key); stale entries skipped lazily
        self._seq = itertools.count()
        self._shutting_down = False
        self._unsubscribe = clock.on_advance(self._wake)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ adding

    def add(self, key: Hashable) -> None:
        """Queue ``key`` now. A key already queued stays queued once; a key being processed is
        queued again after its :meth:`done`. Ignored after :meth:`shutdown`."""
        with self._cond:
            self._add_locked(key)

    def _add_locked(self, key: Hashable) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: Hashable, seconds: float) -> None:
        """Queue ``key`` once ``seconds`` (clock time) have passed; ``<= 0`` adds it now. A key
        already waiting keeps the earlier of its two ready times."""
        if seconds is None or seconds <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutting_down:
                return
            ready = self.clock.monotonic() + float(seconds)
            if key in self._waiting and self._waiting[key] <= ready:
                return
            self._waiting[key] = ready
            heapq.heappush(self._heap, (ready, next(self._seq), key))
            self._cond.notify_all()  # a sleeping get() may now have an earlier wake-up

    def add_rate_limited(self, key: Hashable) -> None:
        """Queue ``key`` after its rate limiter's backoff (one more failure counted)."""
        self.add_after(key, self.rate_limiter.when(key))

    def forget(self, key: Hashable) -> None:
        """Clear ``key``'s failure count (after a success or when giving up on it)."""
        self.rate_limiter.forget(key)

    def num_requeues(self, key: Hashable) -> int:
        """Failures counted for ``key`` since it was last forgotten."""
        return self.rate_limiter.num_requeues(key)

    # ------------------------------------------------------------------ taking

    def _promote_locked(self) -> None:
        now = self.clock.monotonic()
        while self._heap and self._heap[0][0] <= now:
            ready, _, key = heapq.heappop(self._heap)
            if self._waiting.get(key) == ready:
                del self._waiting[key]
                self._add_locked(key)

    def _next_ready_locked(self) -> float | None:
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # superseded by an earlier add_after
        return self._heap[0][0] if self._heap else None

    def get(self, timeout: float | None = None) -> Hashable | None:
        """The next key, marked as processing (call :meth:`done` when finished with it).

        Blocks until a key is ready -- due delayed keys become ready as the clock passes their
        time -- for at most ``timeout`` real seconds (``None``: no limit, ``0``: do not block).
        Returns ``None`` on timeout or once the queue is shut down.
        """
        limit = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._shutting_down:
                    return None
                self._promote_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._processing.add(key)
                    self._dirty.discard(key)
                    return key
                waits = []
                due = self.clock.timeout_until(self._next_ready_locked())
                if due is not None:
                    waits.append(due)
                if limit is not None:
                    left = limit - time.monotonic()
                    if left <= 0:
                        return None
                    waits.append(left)
                if waits and min(waits) <= 0:
                    continue
                self._cond.wait(min(waits) if waits else None)

    def done(self, key: Hashable) -> None:
        """Finish processing ``key``; if it was added meanwhile, it is queued again now."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty and not self._shutting_down:
                self._queue.append(key)
                self._cond.notify()

    # ------------------------------------------------------------------ state

    def __len__(self) -> int:
        """Keys ready to be taken now (delayed keys not yet due are not counted)."""
        with self._cond:
            self._promote_locked()
            return len(self._queue)

    def waiting(self) -> int:
        """Keys waiting for a delay (``add_after``/``add_rate_limited``) to pass."""
        with self._cond:
            self._promote_locked()
            return len(self._waiting)

    def next_ready_in(self) -> float | None:
        """Clock seconds until the next delayed key is due (0 when one is due), ``None`` when none waits."""
        with self._cond:
            ready = self._next_ready_locked()
            return None if ready is None else max(0.0, ready - self.clock.monotonic())

    def processing(self) -> int:
        """Keys taken by :meth:`get` and not yet :meth:`done`."""
        with self._cond:
            return len(self._processing)

    @property
    def shutting_down(self) -> bool:
        """True after :meth:`shutdown`."""
        return self._shutting_down

    def shutdown(self) -> None:
        """Stop the queue: every blocked and later :meth:`get` returns ``None``, adds are
        ignored, delayed keys are dropped. Idempotent."""
        with self._cond:
            self._shutting_down = True
            self._waiting.clear()
            self._heap.clear()
            self._cond.notify_all()
        self._unsubscribe()
