"""Faults during a run: what they are called in one line, and when an interrupt may land.

A run that meets a fault must end in a true record (FAILED or CANCELED, with the reason), never a
hang or a stale RUNNING. Three pieces help the controllers and the CLI do that:

- :func:`describe` turns any exception met mid-run into one line naming its cause, and
  :func:`out_of_space` says when the workspace's filesystem is full (the usual cause of an
  ``OSError`` ``ENOSPC`` in a task or ``database or disk is full`` from SQLite). The space the
  failure record itself needs is kept free by the reserve file of :mod:`localflow.dbconn`.
- :func:`critical` marks sections that record a run's state (creating it, canceling it, writing
  its end): a Ctrl-C or SIGTERM that arrives inside one is held until the section ends
  (:func:`on_signal`, installed by the CLI), so an interrupt can never leave a run half-recorded.
- :class:`SchedulerFault` carries a failure of a scheduler (kubelet) thread to the controller
  that waits for that Pod, which would otherwise wait forever.

Imports nothing of localflow but :mod:`localflow.dbconn` and :mod:`localflow.errors`.
"""
from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import threading
from contextlib import contextmanager

from localflow import dbconn
from localflow.errors import LocalflowError

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
LOW_SPACE_BYTES = 1 << 20  # a filesystem with less free than this is taken as full


class SchedulerFault(LocalflowError):
    """A kubelet thread of the scheduler failed in a way that left a Pod's end unrecorded."""


def is_disk_full(exc: BaseException) -> bool:
    """True for ``ENOSPC``/``EDQUOT`` and SQLite's ``database or disk is full`` (also when chained)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(exc, sqlite3.OperationalError) and dbconn.is_full_error(exc):
            return True
        if NO_SPACE in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def describe(exc: BaseException) -> str:
    """One line for an exception met mid-run: ``No space left on device`` for a full disk, else
    ``<Type>: <message>`` (``[Errno 20] Not a directory: '...'`` for an OSError); newlines and
    control characters are flattened so the line stays one line."""
    if is_disk_full(exc):
        text = NO_SPACE
    elif isinstance(exc, LocalflowError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def free_bytes(path) -> int | None:
    """Free bytes on the filesystem holding ``path`` (None when it cannot be read)."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def out_of_space(workspace) -> str | None:
    """``"the workspace /ws is out of space (No space left on device)"`` when the workspace's
    filesystem is (nearly) full or its space reserve had to be used, else None."""
    root = str(workspace.root)
    free = free_bytes(root)
    if dbconn.reserve_used(workspace.db_path) or (free is not None and free < LOW_SPACE_BYTES):
        return f"the workspace {root} is out of space ({NO_SPACE})"
    return None


def run_fault_message(workspace, exc: BaseException) -> str:
    """The run's error after an unexpected exception: one line naming the workspace and the cause."""
    space = out_of_space(workspace)
    if space is not None or is_disk_full(exc):
        return space or f"the workspace {workspace.root} is out of space ({NO_SPACE})"
    return f"localflow failed while running in workspace {workspace.root}: {describe(exc)}"


def with_space_note(workspace, error: str | None) -> str | None:
    """``error`` prefixed with :func:`out_of_space`'s line when the workspace is full (a task that
    failed writing its outputs says so in one line, even when its log could not be written)."""
    space = out_of_space(workspace)
    if space is None or (error and NO_SPACE in error and str(workspace.root) in error):
        return error
    return f"{space}: {error}" if error else space


# ------------------------------------------------------------------ interrupts
_held = {"depth": 0, "pending": False}
_held_lock = threading.Lock()


@contextmanager
def critical():
    """A section of the main thread that records a run's state: an interrupt delivered through
    :func:`on_signal` inside it is raised (as ``KeyboardInterrupt``) when the outermost section
    ends instead of in the middle. Re-entrant. Other threads pass through unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _held_lock:
        _held["depth"] += 1
    try:
        yield
    finally:
        with _held_lock:
            _held["depth"] -= 1
            fire = _held["depth"] == 0 and _held["pending"]
            if fire:
                _held["pending"] = False
        if fire:
            raise KeyboardInterrupt


def on_signal() -> None:
    """Called by the CLI's handler for the first SIGINT/SIGTERM: raise ``KeyboardInterrupt`` now,
    or hold it until the current :func:`critical` section ends."""
    with _held_lock:
        if _held["depth"] > 0:
            _held["pending"] = True
            return
    raise KeyboardInterrupt


def take_pending() -> bool:
    """Take the interrupt held by the current :func:`critical` section (it is not raised when the
    section ends): the caller raises it where its handler can see it. True when there was one."""
    with _held_lock:
        pending, _held["pending"] = _held["pending"], False
    return pending
