"""Watch streams of object changes, as the Kubernetes watch API delivers them, across processes.

A :class:`Watch` is an unbounded queue of :class:`WatchEvent` (``ADDED``/``MODIFIED``/``DELETED``
with a snapshot of the object after the change; for ``DELETED`` the last state, carrying the
deletion's resourceVersion). Follows the shape of client-go ``tools/watch`` and apimachinery
``pkg/watch/watch.go``.

Every store instance has one :class:`WatchHub`. It hands each change, in strictly increasing
resourceVersion order and exactly once, to every open watch, from two sources:

- writes made through the same store are published right after their COMMIT (no delay);
- writes made by any other connection -- another process, or another store on the same file --
  are read from the change log (:mod:`.changelog`) by one poller thread per hub, which checks
  ``PRAGMA data_version`` every ``poll_interval`` seconds (10 ms by default: one cheap pragma;
  the log is read only when the file changed, and only its new rows) and is idle while no watch
  is open.

When a local write finds that the log has rows it has not published yet (another process wrote
in between), it publishes those first, so order never depends on which source is faster. Each
watch also remembers the newest resourceVersion it has passed, so a replay (``since=``) and the
live stream join without a gap or a duplicate. A watch that falls behind the compacted log (it
cannot, short of a stalled poller) ends with :class:`localflow.errors.Gone` from :meth:`Watch.get`,
as the API server ends such a watch with a 410 ERROR event.
"""
from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from localflow.dbconn import connect

from .changelog import gone, rows_since

__all__ = ["WatchEvent", "Watch", "WatchHub", "ADDED", "MODIFIED", "DELETED", "POLLER_THREAD_NAME"]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
POLLER_THREAD_NAME = "localflow-watch-poller"

# (resourceVersion, type, JSON body, decoded object or None)
Row = tuple


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED``; ``object`` the object dict
    (a private copy per watch)."""

    type: str
    object: dict

    @property
    def resource_version(self) -> str:
        """The change's resourceVersion (the object's ``metadata.resourceVersion``)."""
        return str(self.object.get("metadata", {}).get("resourceVersion", ""))


_CLOSED = object()


class Watch:
    """A stream of :class:`WatchEvent`. ``get(timeout)`` returns the next event or ``None`` on
    timeout or when closed; iterating yields events until :meth:`close`. Usable as a context manager.
    ``start_rv``: changes up to this resourceVersion are not delivered.
    """

    def __init__(self, predicate: Callable[[dict], bool], on_close: Callable[["Watch"], None] | None = None, start_rv: int = 0):
        self._predicate = predicate
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = threading.Event()
        self._on_close = on_close
        self._rv = int(start_rv)
        self._error: Exception | None = None

    @property
    def closed(self) -> bool:
        """True after :meth:`close` (or after the watch expired, see :meth:`get`)."""
        return self._closed.is_set()

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion this watch has passed (delivered or filtered out): a new
        watch opened with ``since=`` this value continues exactly where this one is."""
        return str(self._rv)

    def _offer(self, rv: int, type_: str, body: str, obj: dict) -> None:
        if rv <= self._rv:
            return  # already seen (replay and live stream overlap)
        self._rv = rv
        if self._closed.is_set():
            return
        try:
            wanted = self._predicate(obj)
        except Exception:  # a broken filter must not break the writer
            wanted = False
        if wanted:
            # queued as the logged JSON text (shared by every watch, several times smaller than the
            # decoded object), decoded by the reader: a slow reader's backlog stays small and the
            # writer, holding the store's lock, decodes nothing per watch
            self._queue.put((type_, body))

    def _expire(self, err: Exception) -> None:
        """End the stream with ``err`` (raised by :meth:`get` once the queue is drained)."""
        self._error = err
        self._closed.set()
        self._queue.put(_CLOSED)

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        """Next event, waiting up to ``timeout`` seconds (``None``: until one arrives or the watch
        is closed). Returns ``None`` on timeout or once closed and drained. Raises
        :class:`localflow.errors.Gone` when the watch expired (relist and watch again)."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._queue.put(_CLOSED)  # keep later get() calls returning at once
            if self._error is not None:
                raise self._error
            return None
        return WatchEvent(item[0], json.loads(item[1]))

    def drain(self) -> list[WatchEvent]:
        """Every event queued now, without waiting (raises like :meth:`get` when expired and empty)."""
        out = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return out
            if item is _CLOSED:
                self._queue.put(_CLOSED)
                if self._error is not None and not out:
                    raise self._error
                return out
            out.append(WatchEvent(item[0], json.loads(item[1])))

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


# fill(since, until) -> log rows (rv, type, body) with since < rv < until, oldest first
Fill = Callable[[int, int], list]


class WatchHub:
    """The open watches of one store and the poller that tails the change log for them.

    ``db_path``: the SQLite file to tail (``None``: in-process publishing only).
    ``poll_interval``: seconds between ``PRAGMA data_version`` checks while a watch is open.
    """

    def __init__(self, db_path: str | None = None, poll_interval: float = 0.01):
        self._lock = threading.Lock()
        self._watches: list[Watch] = []
        self._seen = 0  # newest resourceVersion handed to every open watch
        self._db_path = db_path
        self._interval = poll_interval
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    @property
    def active(self) -> bool:
        """True while at least one watch is open."""
        return bool(self._watches)

    def open(self, predicate: Callable[[dict], bool], start_rv: int = 0, replay: Callable[[], Iterable] | None = None) -> Watch:
        """A new watch receiving the objects ``predicate`` accepts with resourceVersion >
        ``start_rv``. ``replay()`` (called under the hub's lock, so no change can slip between it
        and the live stream) yields the log rows ``(rv, type, body)`` after ``start_rv``."""
        w = Watch(predicate, on_close=self._remove, start_rv=start_rv)
        with self._lock:
            for rv, type_, body in replay() if replay else ():
                w._offer(rv, type_, body, json.loads(body))
            if not self._watches:
                self._seen = w._rv  # nobody needed the older rows; this watch has all before it
            elif w._rv < self._seen:  # cannot happen when replay read to the end; stay exact anyway
                w._rv = self._seen
            self._watches.append(w)
            self._start_poller()
        return w

    def _remove(self, w: Watch) -> None:
        with self._lock:
            if w in self._watches:
                self._watches.remove(w)

    def publish(self, rows: list[Row], fill: Fill) -> None:
        """Deliver committed changes ``rows`` (rv ascending) to every open watch, after any older
        logged change not delivered yet (read with ``fill``). Rows already delivered are skipped."""
        with self._lock:
            if not self._watches:
                if rows:
                    self._seen = max(self._seen, rows[-1][0])
                return
            for row in rows:
                if row[0] <= self._seen:
                    continue
                if row[0] > self._seen + 1:
                    self._fill_gap(row[0], fill)
                self._deliver(row)

    def _fill_gap(self, until: int, fill: Fill) -> None:
        while self._seen < until - 1:
            got = fill(self._seen, until)
            if not got or got[0][0] != self._seen + 1:
                break
            for row in got:
                self._deliver(row)
        if self._seen < until - 1:  # those changes were compacted away before anyone read them
            lost = self._seen
            for w in [w for w in self._watches if w._rv < until - 1]:
                w._expire(gone(max(w._rv, lost), until - 1))
                self._watches.remove(w)
            self._seen = until - 1

    def _deliver(self, row: Row) -> None:
        rv, type_, body = row[0], row[1], row[2]
        obj = row[3] if len(row) > 3 and row[3] is not None else json.loads(body)
        for w in self._watches:
            w._offer(rv, type_, body, obj)
        self._seen = rv

    # ------------------------------------------------------------------ poller

    def _start_poller(self) -> None:
        """Start (or wake) the one poller thread; called with the lock held."""
        if self._db_path is None or self._stop.is_set():
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._poll_loop, name=POLLER_THREAD_NAME, daemon=True)
            self._thread.start()
        self._wake.set()

    def _poll_loop(self) -> None:
        conn = connect(self._db_path)
        try:
            last_version = None
            while not self._stop.is_set():
                if not self._watches:  # idle until a watch opens: no polling cost without watches
                    self._wake.wait()
                    self._wake.clear()
                    last_version = None
                    continue
                (version,) = conn.execute("PRAGMA data_version").fetchone()
                if version != last_version:
                    last_version = version
                    self._poll_once(conn)
                self._stop.wait(self._interval)
        finally:
            conn.close()

    def _poll_once(self, conn) -> None:
        def fill(since: int, until: int) -> list:
            return rows_since(conn, since, until)

        while not self._stop.is_set():
            with self._lock:
                since = self._seen
            rows = rows_since(conn, since)
            if rows:
                self.publish(rows, fill)
            if len(rows) < 1000:
                return

    def close_all(self) -> None:
        """Close every open watch and stop the poller (store shutdown)."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            watches = list(self._watches)
        for w in watches:
            w.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
