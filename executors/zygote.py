"""The zygote client: one long-lived, pre-imported interpreter that forks containers on request.

:class:`Zygote` starts ``python -c <_zygote_server.py> <fd> <config>`` lazily, with the start-up
environment it was made for plus its preload environment, waits for ``ready`` (the preload
modules are imported), and then turns :meth:`Zygote.spawn` calls into ``spawn`` frames on a
Unix socketpair (length-prefixed JSON; the log file descriptor travels with SCM_RIGHTS, so the
child writes to the very file description the executor opened). A reader thread per zygote
process resolves ``started`` replies and dispatches ``exit`` reports to :class:`WarmProcess`
waiters. Which containers may be forked is decided by :mod:`localflow.executors.warm`.

Robustness: a zygote that dies fails spawns in flight (the caller starts them with Popen) and
kills the children it had started (their exit status is gone; they end with -9 and ``lost`` set);
the next spawn boots a new process; a preload that fails, or 3 boots in a row that never served a
spawn, turn the zygote off for good (``broken``). The zygote exits at EOF on its socket, i.e.
when this process exits (also by SIGKILL), and kills its children's process groups first.

Follows CPython's ``multiprocessing.forkserver`` (cpython ``Lib/multiprocessing/forkserver.py``:
a server process forking pre-imported children on request, fds passed over a Unix socket).
"""
from __future__ import annotations

import array
import json
import os
import signal
import socket
import struct
import subprocess
import threading
from pathlib import Path

__all__ = ["DEFAULT_PRELOAD", "DEFAULT_PRELOAD_ENV", "WarmProcess", "Zygote", "ZygoteUnavailable", "startup_profile"]

DEFAULT_PRELOAD = ("kfp.dsl.executor_main",)
DEFAULT_PRELOAD_ENV = {"_KFP_RUNTIME": "true"}
BOOT_TIMEOUT_S = 60.0
SPAWN_TIMEOUT_S = 30.0
MAX_BOOT_FAILURES = 3

_STARTUP_PREFIXES = ("PYTHON", "LC_", "LD_", "MALLOC_")
# TMPDIR is per Pod: not a start-up variable (a child resets ``tempfile``'s cache instead)
_STARTUP_NAMES = frozenset({"HOME", "LANG", "TZ", "GLIBC_TUNABLES"})
_HEADER = struct.Struct(">I")
_SERVER_SOURCE = (Path(__file__).with_name("_zygote_server.py")).read_text(encoding="utf-8")
_LOST = ("lost track of the container: its warm-start helper (zygote pid {zpid}) died, so its exit "
         "status could not be read; the container was killed")


class ZygoteUnavailable(Exception):
    """The zygote cannot fork this container now (not booted, died, or broken); use Popen."""


def startup_profile(env: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The variables of ``env`` that shape CPython start-up, sorted ``(name, value)`` pairs.

    Two environments with equal profiles start an interpreter into the same state (sys.path,
    user site, locale and encodings, stdio buffering, hash seed, loader and allocator settings).
    """
    return tuple(sorted((k, v) for k, v in env.items() if k in _STARTUP_NAMES or k.startswith(_STARTUP_PREFIXES)))


class WarmProcess:
    """A container forked by a zygote; the subset of ``subprocess.Popen`` the executor uses.

    ``pid`` is also its process group id (it called ``setsid``). ``returncode`` follows Popen
    (exit status, or ``-signal``). ``lost`` is a message when its zygote died before reporting
    the exit (it was then killed and ``returncode`` is ``-9``).
    """

    def __init__(self, pid: int, args: list[str], zygote_pid: int):
        self.pid = pid
        self.args = args
        self.zygote_pid = zygote_pid
        self.returncode: int | None = None
        self.lost: str | None = None
        self._done = threading.Event()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until it exits; raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if not self._done.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode  # type: ignore[return-value]

    def _exited(self, code: int, lost: str | None = None) -> None:
        if self._done.is_set():
            return
        self.lost = lost
        self.returncode = code
        self._done.set()


class _Slot:
    __slots__ = ("event", "process", "error")

    def __init__(self):
        self.event = threading.Event()
        self.process: WarmProcess | None = None
        self.error: str | None = None


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read_frame(sock: socket.socket) -> dict:
    (size,) = _HEADER.unpack(_read_exact(sock, _HEADER.size))
    return json.loads(_read_exact(sock, size))


class _Connection:
    """One running zygote process: its control socket, reader thread, pending spawns, children."""

    def __init__(self, python: str, preload: tuple[str, ...], env: dict[str, str], timeout: float,
                 wrapper: tuple[str, ...] = ()):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = json.dumps({"preload": list(preload), "env_keys": sorted(env)})
        try:
            self.proc = subprocess.Popen(
                [*wrapper, python, "-c", _SERVER_SOURCE, str(theirs.fileno()), config], env=env, cwd="/",
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), start_new_session=True)
        except OSError as e:
            ours.close()
            raise ZygoteUnavailable(f"cannot start {python}: {e.strerror}") from None
        finally:
            theirs.close()
        self.sock = ours
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.alive = False
        self.pending: dict[int, _Slot] = {}
        self.children: dict[int, WarmProcess] = {}
        self.next_id = 0
        try:
            ours.settimeout(timeout)
            hello = _read_frame(ours)
            ours.settimeout(None)
        except (OSError, EOFError, ValueError) as e:
            ours.close()
            self._reap_zygote(kill=True)
            raise ZygoteUnavailable(f"zygote did not start: {e!r}") from None
        if hello.get("op") != "ready":
            ours.close()
            self._reap_zygote(kill=True)
            raise _BootError(hello.get("error") or repr(hello))
        self.pid = int(hello["pid"])
        self.alive = True
        self.reader = threading.Thread(target=self._read_loop, name=f"zygote-{self.pid}", daemon=True)
        self.reader.start()

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, log_fd: int | None,
              argv0: str, executable: str) -> WarmProcess:
        slot = _Slot()
        with self.lock:
            if not self.alive:
                raise ZygoteUnavailable("zygote is not running")
            self.next_id += 1
            rid = self.next_id
            self.pending[rid] = slot
        body = json.dumps({"op": "spawn", "id": rid, "argv": argv, "argv0": argv0, "executable": executable,
                           "env": env, "cwd": cwd, "nfds": 0 if log_fd is None else 1}).encode("utf-8")
        frame = _HEADER.pack(len(body)) + body
        try:
            with self.send_lock:
                fds = [] if log_fd is None else [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [log_fd]))]
                sent = self.sock.sendmsg([frame], fds)
                if sent < len(frame):
                    self.sock.sendall(frame[sent:])
        except OSError as e:
            with self.lock:
                self.pending.pop(rid, None)
            self._abort()
            raise ZygoteUnavailable(f"zygote control socket: {e!r}") from None
        if not slot.event.wait(SPAWN_TIMEOUT_S):
            with self.lock:
                abandoned = self.pending.pop(rid, None) is not None
            if abandoned:  # a late "started" finds no slot and kills that child: it never runs twice
                raise ZygoteUnavailable(f"zygote did not answer within {SPAWN_TIMEOUT_S} s")
            slot.event.wait()  # answered just now: the reader is filling the slot
        if slot.process is None:
            raise ZygoteUnavailable(slot.error or "zygote died")
        slot.process.args = [argv0, *argv]
        return slot.process

    def _read_loop(self) -> None:
        try:
            while True:
                msg = _read_frame(self.sock)
                op = msg.get("op")
                if op == "started":
                    pid = int(msg["pid"])
                    proc = WarmProcess(pid, [], self.pid)
                    with self.lock:
                        self.children[pid] = proc
                        slot = self.pending.pop(msg["id"], None)
                    if slot is None:  # its spawner gave up: nobody will wait for it
                        _killpg(pid)
                    else:
                        slot.process = proc
                        slot.event.set()
                elif op == "spawn-error":
                    with self.lock:
                        slot = self.pending.pop(msg["id"], None)
                    if slot is not None:
                        slot.error = msg.get("error")
                        slot.event.set()
                elif op == "exit":
                    with self.lock:
                        proc = self.children.pop(int(msg["pid"]), None)
                    if proc is not None:
                        proc._exited(int(msg["code"]))
        except (OSError, EOFError, ValueError, KeyError, TypeError):
            pass
        self._die()

    def _abort(self) -> None:
        """From any thread: take this zygote out of service and kill it. The reader thread then
        reads what the zygote sent before it died (a ``started`` still reaches its spawner, so no
        container runs twice) and tears down at EOF."""
        with self.lock:
            self.alive = False
        zpid = getattr(self, "pid", None)
        if zpid is not None and zpid != self.proc.pid and self.proc.poll() is None:
            # under a wrapper (bwrap) the zygote is its child: killing only the wrapper would leave the
            # zygote running with the socket open, so the reader would wait for an EOF that never comes
            _kill(zpid)
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass

    def _die(self) -> None:
        """Reader thread only, at EOF: fail spawns never answered (their child never ran: it waits
        for a go byte sent after ``started``) and kill children whose exit can no longer be read."""
        with self.lock:
            self.alive = False
            pending, self.pending = self.pending, {}
            children, self.children = self.children, {}
        for slot in pending.values():
            slot.error = "zygote died"
            slot.event.set()
        lost = _LOST.format(zpid=self.pid)
        for pid, proc in children.items():
            _killpg(pid)
            proc._exited(-9, lost)
        try:
            self.sock.close()
        except OSError:
            pass
        self._reap_zygote(kill=True)

    def _reap_zygote(self, kill: bool) -> None:
        if kill and self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def close(self) -> None:
        self._abort()
        self.reader.join(10)


class _BootError(ZygoteUnavailable):
    """The zygote's preload failed: retrying cannot help."""


class Zygote:
    """One warm interpreter that forks containers; started lazily, restarted after it dies.

    ``python``: the interpreter to run (path). ``preload``: modules imported once, before any
    fork. ``env``: environment the preload needs and that a container must have (or set in its
    leading ``-c`` statements) to be served, default ``{"_KFP_RUNTIME": "true"}``.
    ``startup_env``: the start-up variables (see :func:`startup_profile`) the zygote starts with;
    containers whose profile differs are not served (default: those of ``os.environ``).
    ``wrapper``: argv prefix the zygote runs under (a sandbox's ``bwrap ... --``: then every child
    is forked inside that sandbox). Thread-safe.
    """

    def __init__(self, python: str, preload=DEFAULT_PRELOAD, env: dict[str, str] | None = None,
                 startup_env: dict[str, str] | None = None, boot_timeout: float = BOOT_TIMEOUT_S,
                 wrapper: tuple[str, ...] = ()):
        self.python = python
        self.wrapper = tuple(wrapper)
        self.preload = tuple(preload)
        self.env = dict(DEFAULT_PRELOAD_ENV if env is None else env)
        self.profile = startup_profile(dict(os.environ) if startup_env is None else startup_env)
        self.boot_timeout = boot_timeout
        self.broken: str | None = None
        self._boot_lock = threading.Lock()
        self._conn: _Connection | None = None
        self._failures = 0
        self.last_used = 0.0
        self._closed = False

    def idle(self) -> bool:
        """No container of this zygote is running or being started."""
        conn = self._conn
        if conn is None or not conn.alive:
            return True
        with conn.lock:
            return not conn.children and not conn.pending

    @property
    def pid(self) -> int | None:
        """The running zygote's pid (None when not running)."""
        conn = self._conn
        return conn.pid if conn is not None and conn.alive else None

    def start(self) -> None:
        """Boot the zygote unless it runs (blocks up to ``boot_timeout``); raises ZygoteUnavailable."""
        self._connection()

    def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        with self._boot_lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if self._closed:
                raise ZygoteUnavailable("zygote was stopped")
            if self.broken:
                raise ZygoteUnavailable(self.broken)
            if self._failures >= MAX_BOOT_FAILURES:
                self.broken = f"zygote for {self.python} failed {self._failures} times; warm starts are off"
                raise ZygoteUnavailable(self.broken)
            env = dict(self.profile)
            env.update(self.env)
            env.setdefault("PATH", os.environ.get("PATH", os.defpath))
            self._failures += 1
            try:
                self._conn = _Connection(self.python, self.preload, env, self.boot_timeout, self.wrapper)
            except _BootError as e:
                self.broken = f"zygote for {self.python} could not preload {', '.join(self.preload)}: {e}"
                raise ZygoteUnavailable(self.broken) from None
            return self._conn

    def spawn(self, args: list[str], env: dict[str, str], cwd: str, log_fd: int | None = None, *,
              argv0: str | None = None, executable: str | None = None) -> WarmProcess:
        """Fork ``python <args>`` (``args`` = ``["-c", code, *a]`` or ``["-m", module, *a]``) with exactly
        ``env`` in ``cwd``, stdout+stderr on ``log_fd`` (None: /dev/null). ``argv0``/``executable``:
        the interpreter as the container named it and as ``sys.executable`` (default ``python``).
        Returns at once (after the fork); raises ZygoteUnavailable (caller starts it cold)."""
        if len(args) < 2 or args[0] not in ("-c", "-m"):
            raise ValueError(f"warm starts take ['-c', code, ...] or ['-m', module, ...], not {args[:1]}")
        conn = self._connection()
        proc = conn.spawn(list(args), dict(env), cwd, log_fd, argv0 or self.python, executable or self.python)
        self._failures = 0
        return proc

    def _forget_after_fork(self) -> None:
        """In a forked copy of this process: drop the parent's zygote without touching it (its
        socket is shared with the parent, so only this copy's descriptor is closed)."""
        conn, self._conn = self._conn, None
        self._boot_lock = threading.Lock()
        if conn is not None:
            try:
                os.close(conn.sock.detach())
            except OSError:
                pass

    def close(self) -> None:
        """Stop the zygote for good. Children still running are killed (their exit status would be lost)."""
        with self._boot_lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
