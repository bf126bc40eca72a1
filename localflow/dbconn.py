"""SQLite connections to the workspace database, shared by the object store and the metadata store.

One file per workspace, in WAL mode so readers (``localflow get`` in another terminal) never block
the writer, with a busy timeout and explicit transactions. Imports nothing of localflow: the fake
object store (``localflow.fakes``) and ``localflow.metadata`` both use it.
"""
from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager

BUSY_TIMEOUT_S = 10.0
# Kept allocated beside the database and deleted when SQLite finds the disk full, so the writes that
# record the failure (a Pod's end, a run's FAILED) still fit: a task that fills the workspace's disk
# must not leave its run RUNNING for want of a few pages.
RESERVE_BYTES = 4 << 20
LOW_SPACE_BYTES = 1 << 20  # less free than this before a write: the reserve is freed first
_reserve_used: set[str] = set()


class _Connection(sqlite3.Connection):
    """A connection that knows its database file (for the space reserve)."""

    db_file: str | None = None


def connect(db_path: str) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit, see :func:`immediate`) in WAL mode with
    a 10 s busy timeout, usable from several threads (callers serialise access with a lock)."""
    conn = sqlite3.connect(db_path, timeout=BUSY_TIMEOUT_S, check_same_thread=False, isolation_level=None,
                           factory=_Connection)
    conn.db_file = str(db_path)
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


def is_full_error(err: sqlite3.Error) -> bool:
    """SQLite's SQLITE_FULL (``database or disk is full``)."""
    return getattr(err, "sqlite_errorcode", None) == 13 or "disk is full" in str(err)


def reserve_path(db_path) -> str:
    """The space reserve of a database file: ``<db>-reserve`` beside it."""
    return f"{db_path}-reserve"


def reserve_space(db_path, nbytes: int = RESERVE_BYTES) -> bool:
    """Allocate the space reserve of ``db_path`` (really allocated: ``posix_fallocate``) unless it
    exists; False when there is no room for it (the disk is already full)."""
    path = reserve_path(db_path)
    if os.path.exists(path):
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return True
    except OSError:
        return False
    try:
        try:
            os.posix_fallocate(fd, 0, nbytes)
        except (AttributeError, OSError) as err:
            if getattr(err, "errno", None) not in (None, 95):  # EOPNOTSUPP: write it instead
                raise
            block = b"\0" * (1 << 16)
            for _ in range(nbytes // len(block)):
                os.write(fd, block)
    except OSError:
        os.close(fd)
        os.unlink(path)
        return False
    os.close(fd)
    _reserve_used.discard(os.path.abspath(str(db_path)))
    return True


def release_reserve(db_path) -> bool:
    """Delete the space reserve of ``db_path``; True when there was one to free."""
    try:
        os.unlink(reserve_path(db_path))
    except OSError:
        return False
    _reserve_used.add(os.path.abspath(str(db_path)))
    return True


def reserve_used(db_path) -> bool:
    """True when this process freed the reserve of ``db_path`` because the disk was full."""
    return os.path.abspath(str(db_path)) in _reserve_used


def _make_room(conn: sqlite3.Connection, failed: bool = False) -> None:
    """Free the reserve of ``conn``'s database when its filesystem is (nearly) full, before a
    write: SQLite rolls a transaction back when its COMMIT finds the disk full, so the room must be
    there first. ``failed``: a write just failed so (the next one then finds the room)."""
    path = getattr(conn, "db_file", None)
    if not path or not os.path.exists(reserve_path(path)):
        return
    if not failed:
        try:
            st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        except OSError:
            return
        if st.f_bavail * st.f_frsize >= LOW_SPACE_BYTES:
            return
    release_reserve(path)


@contextmanager
def immediate(conn: sqlite3.Connection):
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on any exception): one writer at a time.

    A write that finds the disk (nearly) full first frees the space reserve (:func:`reserve_space`),
    so the record of the failure that filled it still lands; one that fails with SQLite's
    ``database or disk is full`` frees it for the next."""
    _make_room(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException as err:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(err, sqlite3.OperationalError) and is_full_error(err):
            _make_room(conn, failed=True)
        raise
    try:
        conn.execute("COMMIT")
    except sqlite3.OperationalError as err:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if is_full_error(err):
            _make_room(conn, failed=True)
        raise


@contextmanager
def snapshot(conn: sqlite3.Connection):
    """``BEGIN`` … ``COMMIT`` around reads so that they all see one committed state (in WAL mode a
    read transaction never blocks a writer). Inside an open transaction it adds nothing."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")


def has_tables(conn: sqlite3.Connection, names) -> bool:
    """True when every table in ``names`` exists (lets stores skip schema creation, and the import
    of sqlite-utils, when opening an existing workspace)."""
    names = list(names)
    marks = ",".join("?" * len(names))
    (count,) = conn.execute(f"SELECT count(*) FROM sqlite_master WHERE type='table' AND name IN ({marks})",
                            names).fetchone()
    return count == len(names)
