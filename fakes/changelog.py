"""The change log: one ``object_log`` row per write, in the writer's transaction, like etcd's history.

Every write of the store (create, update, patch, status, delete, expiry) takes a new global
resourceVersion and appends ``(rv, ADDED|MODIFIED|DELETED, group, kind, namespace, name, time,
object)`` here before COMMIT, so the log and the objects never disagree. A delete takes a new
resourceVersion too and logs the object's last state with it: the tombstone a watch receives as
``DELETED`` (kube-apiserver ``pkg/storage/etcd3/watcher.go`` does the same with the deletion's
revision). Watches replay from any resourceVersion still in the log and tail it (see
:mod:`.watch`).

Compaction (:func:`compact`, run by the store every :attr:`LogLimits.compact_every` writes)
drops the oldest rows beyond a count, byte or age bound and advances ``logCompacted``; asking for
an older resourceVersion raises :class:`localflow.errors.Gone` ("410 Gone ... relist"), as the
API server answers a watch below etcd's compacted revision (``storage.ErrCompacted`` ->
``410 Expired``). Bounds and cost are O(rows removed): ``logBytes`` is kept as a running counter.
"""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from localflow.errors import Gone

__all__ = ["LogLimits", "append", "current_rv", "oldest_rv", "rows_since", "check_resumable", "gone", "compact", "log_stats"]


@dataclass(frozen=True)
class LogLimits:
    """Bounds of the change log. A row is dropped once any bound is exceeded: more than
    ``max_entries`` newer rows, more than ``max_bytes`` bytes of newer bodies, or older than
    ``max_age`` seconds (store clock). ``compact_every``: compaction runs once per that many
    writes of one store instance (amortised: a few row deletions per write), and also once that
    instance logged ``max_bytes / 16`` since its last compaction, so large objects cannot
    overshoot the byte bound by much. ``None`` disables a
    bound. Defaults keep ~10 minutes of history, as the API server's watch cache keeps minutes."""

    max_entries: int | None = 50_000
    max_bytes: int | None = 64 * 2**20
    max_age: float | None = 600.0
    compact_every: int = 256

    def __post_init__(self):
        if self.compact_every < 1:
            raise ValueError("compact_every must be >= 1")


def _counter(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM object_counters WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def current_rv(conn: sqlite3.Connection) -> int:
    """The newest resourceVersion handed out (0 for an empty store)."""
    return _counter(conn, "resourceVersion")


def oldest_rv(conn: sqlite3.Connection) -> int:
    """The oldest resourceVersion a watch can resume from: every change after it is in the log."""
    return _counter(conn, "logCompacted")


def gone(rv: int, oldest: int) -> Gone:
    """The 410 error for a resourceVersion ``rv`` older than ``oldest``."""
    return Gone(f"410 Gone: resourceVersion {rv} is too old (oldest kept: {oldest}); relist")


def check_resumable(conn: sqlite3.Connection, since: int) -> None:
    """Raise :class:`Gone` when changes after ``since`` have been compacted away."""
    oldest = oldest_rv(conn)
    if since < oldest:
        raise gone(since, oldest)


def append(conn: sqlite3.Connection, rv: int, type_: str, grp: str, kind: str, namespace: str, name: str, ts: float, body: str) -> None:
    """Log one write; call inside the write's transaction, with the resourceVersion it took."""
    conn.execute(
        "INSERT INTO object_log (rv, type, grp, kind, namespace, name, ts, size, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (rv, type_, grp, kind, namespace, name, ts, len(body), body),
    )
    conn.execute("UPDATE object_counters SET value = value + ? WHERE name = 'logBytes'", (len(body),))


def rows_since(conn: sqlite3.Connection, since: int, until: int | None = None, limit: int = 1000) -> list[tuple[int, str, str]]:
    """Up to ``limit`` log rows ``(rv, type, body)`` with ``since < rv`` (``< until`` when
    given), oldest first: a range read of the primary key."""
    if until is None:
        return conn.execute("SELECT rv, type, body FROM object_log WHERE rv > ? ORDER BY rv LIMIT ?", (since, limit)).fetchall()
    return conn.execute(
        "SELECT rv, type, body FROM object_log WHERE rv > ? AND rv < ? ORDER BY rv LIMIT ?", (since, until, limit)
    ).fetchall()


def _drop_through(conn: sqlite3.Connection, upto: int) -> int:
    (freed,) = conn.execute("SELECT coalesce(sum(size), 0) FROM object_log WHERE rv <= ?", (upto,)).fetchone()
    cur = conn.execute("DELETE FROM object_log WHERE rv <= ?", (upto,))
    conn.execute("UPDATE object_counters SET value = max(0, value - ?) WHERE name = 'logBytes'", (freed,))
    conn.execute("UPDATE object_counters SET value = max(value, ?) WHERE name = 'logCompacted'", (upto,))
    return cur.rowcount


def compact(conn: sqlite3.Connection, limits: LogLimits, now: float) -> int:
    """Drop the rows beyond ``limits`` (inside a write transaction); returns how many. Reads only
    the rows it drops plus one, never the whole log."""
    newest = current_rv(conn)
    cutoff = oldest_rv(conn)
    if limits.max_entries is not None:
        cutoff = max(cutoff, newest - limits.max_entries)
    if limits.max_age is not None:
        row = conn.execute(
            "SELECT rv FROM object_log WHERE rv > ? AND ts >= ? ORDER BY rv LIMIT 1", (cutoff, now - limits.max_age)
        ).fetchone()
        cutoff = max(cutoff, row[0] - 1 if row else newest)
    removed = _drop_through(conn, cutoff) if cutoff > oldest_rv(conn) else 0
    if limits.max_bytes is not None:
        excess = _counter(conn, "logBytes") - limits.max_bytes
        if excess > 0:
            upto = cutoff
            rows = conn.execute("SELECT rv, size FROM object_log WHERE rv > ? ORDER BY rv", (cutoff,))
            for rv, size in rows:
                upto, excess = rv, excess - size
                if excess <= 0:
                    break
            rows.close()  # reset the statement before deleting from the table it reads
            removed += _drop_through(conn, upto)
    return removed


def log_stats(conn: sqlite3.Connection) -> dict:
    """``{"entries", "bytes", "oldest", "newest"}`` of the log (for tests and benchmarks)."""
    (entries,) = conn.execute("SELECT count(*) FROM object_log").fetchone()
    return {"entries": entries, "bytes": _counter(conn, "logBytes"), "oldest": oldest_rv(conn), "newest": current_rv(conn)}
