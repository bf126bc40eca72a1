"""In-process watch streams of object changes, as the Kubernetes watch API delivers them.

A :class:`Watch` is an unbounded queue of :class:`WatchEvent` (``ADDED``/``MODIFIED``/``DELETED``
with a snapshot of the object after the change; for ``DELETED`` the last state). The store feeds
it after each committed write, in resourceVersion order, without ever blocking the writer (the
queue has no bound; a slow reader only costs memory). Follows the shape of client-go
``tools/watch`` and apimachinery ``pkg/watch/watch.go``.

A watch only sees changes made after it was opened. For the list+watch pattern open the watch
first, then list (or use :meth:`ObjectStore.list_and_watch`): every change after the list is then
in the queue; a change may appear both in the list and as an event, which level-triggered
reconcilers tolerate.
"""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterator

__all__ = ["WatchEvent", "Watch", "WatchHub", "ADDED", "MODIFIED", "DELETED"]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED``; ``object`` the object dict
    (a private copy per watch)."""

    type: str
    object: dict


_CLOSED = object()


class Watch:
    """A stream of :class:`WatchEvent`. ``get(timeout)`` returns the next event or ``None`` on
    timeout or when closed; iterating yields events until :meth:`close`. Usable as a context manager.
    """

    def __init__(self, predicate: Callable[[dict], bool], on_close: Callable[["Watch"], None] | None = None):
        self._predicate = predicate
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed.is_set()

    def _offer(self, type_: str, body: str, obj: dict) -> None:
        if self._closed.is_set():
            return
        try:
            wanted = self._predicate(obj)
        except Exception:  # a broken filter must not break the writer
            wanted = False
        if wanted:
            self._queue.put(WatchEvent(type_, json.loads(body)))

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """Next event, waiting up to ``timeout`` seconds (``None``: until one arrives or the watch
        is closed). Returns ``None`` on timeout or once closed and drained."""
        if self._closed.is_set() and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put(_CLOSED)  # keep later get() calls returning at once
            return None
        return item

    def drain(self) -> list[WatchEvent]:
        """Every event queued now, without waiting."""
        out = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is _CLOSED:
                self._queue.put(_CLOSED)
                return out
            out.append(item)

    def __iter__(self) -> Iterator[WatchEvent]:
        while True:
            ev = self.get()
            if ev is None:
                return
            yield ev

    def close(self) -> None:
        """Stop receiving events; a blocked :meth:`get` returns ``None``. Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._queue.put(_CLOSED)
        if self._on_close:
            self._on_close(self)

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class WatchHub:
    """The set of open watches of one store; :meth:`publish` fans an event out to them."""

    def __init__(self):
        self._lock = threading.Lock()
        self._watches: list[Watch] = []

    def open(self, predicate: Callable[[dict], bool]) -> Watch:
        """A new watch receiving the objects ``predicate`` accepts."""
        w = Watch(predicate, on_close=self._remove)
        with self._lock:
            self._watches.append(w)
        return w

    def _remove(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def publish(self, type_: str, obj: dict) -> None:
        """Deliver ``obj`` (serialised once, decoded per watch) to every interested watch."""
        with self._lock:
            watches = list(self._watches)
        if not watches:
            return
        body = json.dumps(obj)
        for w in watches:
            w._offer(type_, body, obj)

    def close_all(self) -> None:
        """Close every open watch (store shutdown)."""
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.close()
