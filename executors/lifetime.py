"""Container process groups die with localflow, also when it is killed with SIGKILL.

A process that is SIGKILLed cleans up nothing, so the executor registers every container's
process group with a watchdog: one small helper process per localflow process (started on first
use, in a session of its own so a terminal's Ctrl-C reaches localflow first) that reads
``+<pgid>`` / ``-<pgid>`` lines on a pipe and, when the pipe reaches EOF because localflow is
gone, SIGKILLs every group still registered and exits. Not ``PR_SET_PDEATHSIG``: that fires when
the *thread* that started a child ends, and it reaches only the child, not its group.

The sandbox adds its own layer for cold containers (``bwrap --die-with-parent``; no pid namespace,
so ``process://<pgid>`` ids and psutil sampling stay this machine's), and zygotes kill their
children's groups when localflow's socket closes.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

__all__ = ["register", "unregister", "watchdog_pid"]

_SOURCE = r"""
import os, signal, sys
groups = set()
for line in sys.stdin.buffer:
    try:
        op, pgid = line[:1], int(line[1:])
    except ValueError:
        continue
    if op == b"+":
        groups.add(pgid)
    elif op == b"-":
        groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_lock = threading.Lock()
_proc: subprocess.Popen | None = None
_owner = 0  # pid of the process that started _proc (a forked copy must start its own)


def _pipe():
    global _proc, _owner
    if _proc is None or _owner != os.getpid() or _proc.poll() is not None:
        _proc = subprocess.Popen([sys.executable, "-S", "-E", "-c", _SOURCE], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                                 start_new_session=True, bufsize=0)
        _owner = os.getpid()
    return _proc.stdin


def _send(line: bytes) -> None:
    with _lock:
        try:
            _pipe().write(line)
        except (OSError, ValueError):
            pass  # the watchdog is gone: the next registration starts a new one


def register(pgid: int) -> None:
    """Kill process group ``pgid`` if this process dies before :func:`unregister`."""
    _send(b"+%d\n" % pgid)


def unregister(pgid: int) -> None:
    """The group ``pgid`` was reaped: forget it (its id may be reused)."""
    _send(b"-%d\n" % pgid)


def watchdog_pid() -> int | None:
    """Pid of this process's watchdog (None before the first registration)."""
    with _lock:
        return _proc.pid if _proc is not None and _owner == os.getpid() else None
