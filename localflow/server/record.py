"""The server record of a workspace: who serves it, since when, at which addresses.

``<workspace>/server/server.json`` holds ``{"pid", "id", "started", "workspace", "urls", "log"}``
(``id`` is ``<pid>@<process start time>``, the same form as the ``localflow.dev/owner-pid``
annotation, so a reused pid is never mistaken for the server). It is written atomically (a
temporary file renamed over it) while the server holds an exclusive ``fcntl.flock`` on
``<workspace>/server/lock`` for its whole life: a second server on the same workspace cannot take
the lock and refuses, naming the first one's pid (:class:`ServerRunning`). A record whose process
is gone (the server was ``kill -9``'d) is stale: :func:`server_status` reports ``running: false``
and the next server overwrites it.

Follows the shape of a pid file with a lock (``flock(1)``, systemd's ``PIDFile=``), not any
Kubeflow source: a cluster has no such record, its API server address is in the kubeconfig.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from localflow.errors import SpecError
from localflow.node.restart import kubelet_alive, kubelet_id
from localflow.workspace import Workspace

__all__ = ["ServerRunning", "ServerLock", "server_dir", "record_path", "read_record", "server_status",
           "stop_server", "process_id", "alive"]


class ServerRunning(SpecError):
    """A server already serves this workspace (exit code 2): its pid is in the message."""

    def __init__(self, ws: Workspace, record: dict | None):
        pid = (record or {}).get("pid", "?")
        since = (record or {}).get("started", "?")
        super().__init__("", f"a localflow server already runs on workspace {ws.root} (pid {pid}, since {since})",
                         fix=f"use it, or stop it first: localflow serve --stop -W {ws.root}")
        self.pid = pid


def server_dir(ws: Workspace) -> Path:
    """``<workspace>/server``: the record, the lock, the server's log and its runs' logs."""
    return ws.root / "server"


def record_path(ws: Workspace) -> Path:
    """``<workspace>/server/server.json``."""
    return server_dir(ws) / "server.json"


def process_id(pid: int | None = None) -> str:
    """``"<pid>@<start time, epoch seconds>"`` of process ``pid`` (default: this one): the node's
    :func:`localflow.node.restart.kubelet_id`, one identity for every claim."""
    return kubelet_id(pid)


def alive(process: str | None) -> bool:
    """Whether the process named by a :func:`process_id` value runs (same pid, same start time)."""
    return kubelet_alive(process)


def read_record(ws: Workspace) -> dict | None:
    """The recorded server (a dict) or None when there is no readable record."""
    try:
        return json.loads(record_path(ws).read_text())
    except (OSError, ValueError):
        return None


def _write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class ServerLock:
    """The exclusive lock a server holds on its workspace, and its record.

    :meth:`acquire` takes the lock (non-blocking) or raises :class:`ServerRunning`; :meth:`write`
    replaces the record atomically (call it again when ``urls`` change); :meth:`release` removes
    the record and the lock.
    """

    ws: Workspace
    fd: int | None = None

    def acquire(self) -> "ServerLock":
        d = server_dir(self.ws)
        try:
            d.mkdir(parents=True, exist_ok=True)
            fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SpecError("--workspace", f"cannot write the server record in {d}: {e.strerror}",
                            fix="choose a writable workspace (-W DIR)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ServerRunning(self.ws, read_record(self.ws)) from None
        self.fd = fd
        return self

    def write(self, urls: dict[str, str] | None = None, **extra) -> dict:
        me = psutil.Process()
        data = {"pid": me.pid, "id": process_id(), "workspace": str(self.ws.root),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(me.create_time())),
                "urls": dict(urls or {}), "log": str(server_dir(self.ws) / "serve.log"), **extra}
        _write_atomic(record_path(self.ws), data)
        return data

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            rec = read_record(self.ws)
            if rec and rec.get("pid") == os.getpid():
                record_path(self.ws).unlink(missing_ok=True)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def server_status(ws: Workspace) -> dict:
    """``{"running", "pid", "started", "urls", "workspace", "log"}`` of the workspace's server.

    ``running`` is true only when the recorded process runs (same start time); a stale record keeps
    its ``pid``/``started`` with ``running: false``; no record: ``pid`` and ``started`` None."""
    rec = read_record(ws) or {}
    running = bool(rec) and alive(rec.get("id"))
    return {"running": running, "pid": rec.get("pid"), "started": rec.get("started"),
            "urls": rec.get("urls") or {}, "workspace": str(ws.root), "log": rec.get("log"),
            **({"stale": True} if rec and not running else {})}


def stop_server(ws: Workspace, timeout: float = 30.0) -> str:
    """Stop the workspace's server: SIGTERM, then wait up to ``timeout`` seconds for it to end
    (it cancels its runs as Ctrl-C cancels ``localflow run``); SIGKILL if it is still there.
    Returns one line saying what was done."""
    status = server_status(ws)
    if not status["running"]:
        if status["pid"] is not None:
            record_path(ws).unlink(missing_ok=True)
            return f"no localflow server runs on workspace {ws.root} (removed the stale record of pid {status['pid']})"
        return f"no localflow server runs on workspace {ws.root}"
    pid = status["pid"]
    proc = psutil.Process(pid)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    if not _ended(proc, timeout):
        proc.kill()
        _ended(proc, 10.0)
        record_path(ws).unlink(missing_ok=True)
        return f"localflow server pid {pid} did not stop within {timeout:g}s of SIGTERM: killed it (SIGKILL)"
    return f"stopped the localflow server (pid {pid}) in {time.monotonic() - t0:.1f}s"


def _ended(proc: psutil.Process, timeout: float) -> bool:
    """Whether ``proc`` ended within ``timeout`` seconds (a zombie has ended: its parent, not us,
    reaps it). A bounded poll: the process is not our child, so it cannot be waited for."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        except psutil.Error:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
