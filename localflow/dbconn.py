"""SQLite connections to the workspace database, shared by the object store and the metadata store.

One file per workspace, in WAL mode so readers (``localflow get`` in another terminal) never block
the writer, with a busy timeout and explicit transactions. Imports nothing of localflow: the fake
object store (``localflow.fakes``) and ``localflow.metadata`` both use it.
"""
from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

BUSY_TIMEOUT_S = 10.0


def connect(db_path: str) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit, see :func:`immediate`) in WAL mode with
    a 10 s busy timeout, usable from several threads (callers serialise access with a lock)."""
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL"))
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def retry_locked(fn, seconds: float = BUSY_TIMEOUT_S):
    """Run ``fn``, retrying while SQLite reports a lock it did not wait for (switching a new file
    to WAL, or creating the schema while another process does the same)."""
    deadline = time.monotonic() + seconds
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as err:
            if ("locked" not in str(err) and "busy" not in str(err)) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.2)


@contextmanager
def immediate(conn: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception): one writer at a time."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def has_tables(conn: sqlite3.Connection, names) -> bool:
    """True when every table in ``names`` exists (lets stores skip schema creation, and the import
    of sqlite-utils, when opening an existing workspace)."""
    names = list(names)
    marks = ",".join("?" * len(names))
    (count,) = conn.execute(f"SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ({marks})",
                            names).fetchone()
    return count == len(names)
