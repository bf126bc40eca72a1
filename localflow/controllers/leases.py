"""Controller-manager identities and leases, recorded in the workspace database.

Each :class:`~localflow.controllers.manager.ControllerManager` has an identity ``<pid>-<uuid>``
and a row in the ``controller_managers`` table of the workspace SQLite file (beside the object
store's tables, written through :mod:`localflow.dbconn`): ``id``, ``pid``, ``pid_started``
(the process's start time, against pid reuse), ``host``, ``started``, ``renewed`` and
``duration`` (seconds of the injected clock's epoch time), ``stopped`` (set by a clean stop).
This is the shape of a ``coordination.k8s.io/v1 Lease`` (holderIdentity, renewTime,
leaseDurationSeconds) as client-go ``tools/leaderelection`` renews it, kept out of the object
store so that heartbeats do not fill the change log every watch reads.

A manager is alive (:func:`is_alive`) while its row exists, it has not stopped, its lease was
renewed less than ``duration`` ago, and -- on this host -- its process still runs (a ``kill -9``
frees its objects at once, without waiting for the lease to expire).
"""
from __future__ import annotations

import os
import socket
import sqlite3
import threading
import uuid

import psutil

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.dbconn import connect, immediate, retry_locked

__all__ = ["LeaseTable", "is_alive", "new_identity", "TABLE"]

TABLE = "controller_managers"
_DDL = (
    f'CREATE TABLE IF NOT EXISTS "{TABLE}" ("id" TEXT PRIMARY KEY, "pid" INTEGER NOT NULL,'
    ' "pid_started" REAL NOT NULL, "host" TEXT NOT NULL, "started" REAL NOT NULL, "renewed" REAL NOT NULL,'
    ' "duration" REAL NOT NULL, "stopped" REAL)'
)
_KEEP_STOPPED_S = 7 * 86400.0  # rows of managers stopped or expired this long ago are removed


def new_identity() -> str:
    """A new manager identity: ``<pid>-<12 hex digits of a uuid4>``."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _process_alive(pid: int, started: float) -> bool:
    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(started)) >= 0.5:
            return False  # the pid was reused by another process
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, ValueError):
        return False


def _row_alive(row, now: float) -> bool:
    if row is None:
        return False
    pid, pid_started, host, renewed, duration, stopped = row
    if stopped is not None or renewed + duration < now:
        return False
    return host != socket.gethostname() or _process_alive(pid, pid_started)


_SELECT = f'SELECT pid, pid_started, host, renewed, duration, stopped FROM "{TABLE}" WHERE id = ?'


class LeaseTable:
    """The ``controller_managers`` table of the SQLite file ``db_path``, on ``clock``.

    One connection, guarded by a lock (usable from several threads). Creating it creates the
    table if needed. Methods raise ``sqlite3.Error`` only for a broken database.
    """

    def __init__(self, db_path, clock: Clock = SYSTEM_CLOCK):
        self.db_path = str(db_path)
        self.clock = clock
        self._lock = threading.Lock()
        self._conn = connect(self.db_path)

        def create() -> None:
            with immediate(self._conn):
                self._conn.execute(_DDL)

        retry_locked(create)

    def acquire(self, manager_id: str, duration: float) -> None:
        """Record ``manager_id`` (this process) with a lease of ``duration`` seconds from now;
        removes rows of managers that ended over a week ago."""
        now = self.clock.now()
        me = psutil.Process()
        with self._lock, immediate(self._conn):
            self._conn.execute(
                f'INSERT OR REPLACE INTO "{TABLE}" (id, pid, pid_started, host, started, renewed, duration, stopped)'
                " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (manager_id, me.pid, me.create_time(), socket.gethostname(), now, now, float(duration)),
            )
            self._conn.execute(
                f'DELETE FROM "{TABLE}" WHERE coalesce(stopped, renewed + duration) < ?', (now - _KEEP_STOPPED_S,)
            )

    def renew(self, manager_id: str) -> bool:
        """Move ``manager_id``'s lease to now; False when its row is gone or it was stopped."""
        with self._lock, immediate(self._conn):
            cur = self._conn.execute(
                f'UPDATE "{TABLE}" SET renewed = ? WHERE id = ? AND stopped IS NULL', (self.clock.now(), manager_id)
            )
            return cur.rowcount == 1

    def release(self, manager_id: str) -> None:
        """Mark ``manager_id`` stopped now (a clean stop: its objects may be adopted at once)."""
        with self._lock, immediate(self._conn):
            self._conn.execute(f'UPDATE "{TABLE}" SET stopped = ? WHERE id = ?', (self.clock.now(), manager_id))

    def is_alive(self, manager_id: str) -> bool:
        """True while ``manager_id`` holds an unexpired lease, has not stopped and (on this host)
        its process runs."""
        with self._lock:
            row = self._conn.execute(_SELECT, (manager_id,)).fetchone()
        return _row_alive(row, self.clock.now())

    def record(self, manager_id: str) -> dict | None:
        """The row of ``manager_id`` as a dict (``id``, ``pid``, ``host``, ``started``,
        ``renewed``, ``duration``, ``stopped``, ``alive``), or ``None``."""
        with self._lock:
            row = self._conn.execute(
                f'SELECT id, pid, host, started, renewed, duration, stopped FROM "{TABLE}" WHERE id = ?', (manager_id,)
            ).fetchone()
        if row is None:
            return None
        out = dict(zip(("id", "pid", "host", "started", "renewed", "duration", "stopped"), row))
        out["alive"] = self.is_alive(manager_id)
        return out

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            self._conn.close()


def is_alive(db_path, manager_id: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Whether the manager ``manager_id`` recorded in the workspace database ``db_path`` is alive
    (see :class:`LeaseTable`); False when the table or the row does not exist."""
    conn = connect(str(db_path))
    try:
        try:
            row = conn.execute(_SELECT, (manager_id,)).fetchone()
        except sqlite3.OperationalError:  # no such table: no manager ever ran on this workspace
            return False
        return _row_alive(row, clock.now())
    finally:
        conn.close()
