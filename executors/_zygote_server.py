"""The zygote (fork server) that :mod:`localflow.executors.warm` runs inside a container's interpreter.

NOT imported by localflow: its text is passed to the target interpreter as ``python -c <text>
<control fd> <json config>``, so it must run on any CPython >= 3.8 with nothing but the standard
library (the target may be another interpreter than localflow's).

Protocol on the control socket (AF_UNIX stream; every frame is a 4-byte big-endian length and a
UTF-8 JSON object):

- zygote -> client, once: ``{"op": "ready", "pid": <zygote pid>}`` after the preload modules were
  imported, or ``{"op": "boot-error", "error": <traceback text>}`` (then it exits).
- client -> zygote: ``{"op": "spawn", "id": n, "argv": ["-c", code, *args] | ["-m", module, *args],
  "argv0": <interpreter path as the container named it>, "executable": <what sys.executable would be>,
  "env": {...}, "cwd": <dir>, "nfds": 0|1}`` with the log file descriptor attached (SCM_RIGHTS) when
  ``nfds`` is 1 (stdout and stderr go there; /dev/null otherwise).
- zygote -> client: ``{"op": "started", "id": n, "pid": p}`` (the child runs only after this frame
  was sent, so a zygote that dies in between never leaves an unreported child) or
  ``{"op": "spawn-error", "id": n, "error": msg}``; later ``{"op": "exit", "pid": p, "code": c}``
  with ``c`` in ``subprocess.Popen.returncode`` form (exit status, or ``-signal``).

The zygote exits when its control socket reaches EOF (localflow's process ended, even by SIGKILL):
it first SIGKILLs the process group of every child still running, so no container outlives
localflow.

A child does what ``execve`` + CPython start-up would have done differently from the zygote's own
start: new session (pgid == pid), stdio on the log and /dev/null, cwd, a replaced environment,
default signal handlers, a fresh ``__main__``, ``sys.argv``/``sys.path[0]``/``sys.executable``/
``sys.orig_argv`` as CPython sets them for ``-c`` and ``-m`` (cpython ``Modules/main.c``
``pymain_run_command`` / ``pymain_run_module``), then runs the program (outside the server's
frames, so a traceback shows only the program's) and ends as CPython would: ``SystemExit`` codes
and printing, traceback + 1, SIGINT after ``KeyboardInterrupt``, then the observable part of
finalization (threads joined, atexit, stdio flushed, ``__main__`` released) and ``os._exit``.
"""
import json
import os
import select
import signal
import socket
import struct
import sys

_HEADER = struct.Struct(">I")
_MAX_FDS = 4
# standard-library modules imported before forking, so a child does not import them itself: a
# child's first import scans sys.path afresh (its import caches are invalidated), ~1 ms per task
_WARM_STDLIB = ("runpy", "locale")


def _send(sock, obj):
    body = json.dumps(obj).encode("utf-8")
    sock.sendall(_HEADER.pack(len(body)) + body)


def _recv_exact(sock, n, fds):
    """Read exactly n bytes (b"" at EOF before the first byte), collecting passed fds."""
    chunks = []
    got = 0
    while got < n:
        data, ancdata, _flags, _addr = sock.recvmsg(n - got, socket.CMSG_SPACE(_MAX_FDS * 4))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - len(payload) % 4
                fds.extend(struct.unpack("%di" % (usable // 4), payload[:usable]))
        if not data:
            if got == 0:
                return b""
            raise EOFError("control socket closed inside a frame")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def _recv(sock):
    """One frame: (object, fds) or (None, []) at EOF."""
    fds = []
    head = _recv_exact(sock, _HEADER.size, fds)
    if not head:
        return None, fds
    (size,) = _HEADER.unpack(head)
    body = _recv_exact(sock, size, fds) if size else b""
    return json.loads(body.decode("utf-8")), fds


def _exit_code(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return None  # stopped/continued: not an exit


def _close(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


class _Server(object):
    def __init__(self, sock, config):
        self.sock = sock
        self.config = config
        self.children = set()  # pids (= process group ids) of children not reaped yet
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        os.set_blocking(self.wake_r, False)
        # start-up may add variables to the environment (C-locale coercion sets LC_CTYPE);
        # a child's fresh start would have added them too
        given = set(config.get("env_keys", ()))
        self.startup_added = dict((k, v) for k, v in os.environ.items() if k not in given)
        # handlers as CPython start-up left them, before a preload module could change one
        self.initial_handlers = {}
        for signum in signal.valid_signals():
            try:
                self.initial_handlers[signum] = signal.getsignal(signum)
            except (OSError, ValueError):
                pass

    def preload(self):
        if sys.path and sys.path[0] == "":
            del sys.path[0]  # this zygote's own ``-c`` entry (its cwd); a child inserts the one CPython would
        for name in self.config.get("preload", ()):
            __import__(name)
        for name in _WARM_STDLIB:  # what nearly every child imports first (argparse's gettext, -m)
            try:
                __import__(name)
            except ImportError:
                pass
        import threading

        if threading.active_count() > 1:  # forking a multi-threaded process is not safe
            raise RuntimeError("preloading %s started threads: %s" % (
                ", ".join(self.config.get("preload", ())), [t.name for t in threading.enumerate()]))
        import gc

        gc.collect()
        gc.freeze()  # children's collections then skip the inherited objects (less copy-on-write)

    def serve(self):
        """Serve spawn requests; returns the request only in a forked child."""
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wake_w)
        _send(self.sock, {"op": "ready", "pid": os.getpid()})
        while True:
            try:
                readable, _, _ = select.select([self.sock, self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in readable:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
            self.reap()
            if self.sock in readable:
                req, fds = _recv(self.sock)
                if req is None:  # localflow is gone: so are its containers
                    for pid in self.children:
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    os._exit(0)
                if req.get("op") != "spawn":
                    _close(*fds)
                    continue
                child = self.spawn(req, fds)
                if child is not None:
                    return child

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = _exit_code(status)
            if code is not None:
                self.children.discard(pid)
                _send(self.sock, {"op": "exit", "pid": pid, "code": code})

    def spawn(self, req, fds):
        log_fd = fds[0] if fds else None
        _close(*fds[1:])
        try:
            ready_r, ready_w = os.pipe()
            go_r, go_w = os.pipe()
        except OSError as e:
            _close(*fds)
            _send(self.sock, {"op": "spawn-error", "id": req["id"], "error": "pipe: %s" % e})
            return None
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as e:
            _close(ready_r, ready_w, go_r, go_w, *fds)
            _send(self.sock, {"op": "spawn-error", "id": req["id"], "error": "fork: %s" % e})
            return None
        if pid == 0:
            _close(ready_r, go_w)
            return self.become_child(req, log_fd, ready_w, go_r)
        _close(ready_w, go_r)
        _close(*fds)
        self.children.add(pid)
        try:
            os.read(ready_r, 1)  # the child is in its own session now (or died: its exit is reported)
        except OSError:
            pass
        _send(self.sock, {"op": "started", "id": req["id"], "pid": pid})
        try:
            os.write(go_w, b"g")
        except OSError:
            pass  # the child died already; its exit will be reaped and reported
        _close(ready_r, go_w)
        return None

    def become_child(self, req, log_fd, ready_w, go_r):
        # signal handling as a fresh CPython: default_int_handler for SIGINT, SIGPIPE/SIGXFSZ
        # ignored (inherited from this interpreter's own start-up), everything else default
        signal.set_wakeup_fd(-1)
        for signum, handler in self.initial_handlers.items():
            if handler is not None and signal.getsignal(signum) is not handler:
                try:
                    signal.signal(signum, handler)
                except (OSError, ValueError, TypeError):
                    pass
        try:
            self.sock.close()
        except OSError:
            pass
        _close(self.wake_r, self.wake_w)
        os.setsid()
        os.write(ready_w, b"r")
        _close(ready_w)
        try:
            go = os.read(go_r, 1)
        except OSError:
            go = b""
        _close(go_r)
        if not go:
            os._exit(0)  # the zygote died before localflow learnt our pid: never run
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        out = log_fd if log_fd is not None else devnull
        os.dup2(out, 1)
        os.dup2(out, 2)
        _close(devnull)
        if log_fd is not None and log_fd > 2:
            _close(log_fd)
        try:
            os.chdir(req["cwd"])
        except OSError as e:
            os.write(2, ("localflow: cannot change directory to %r: %s\n" % (req["cwd"], e.strerror)).encode())
            os._exit(127)
        env = dict(req["env"])
        for k, v in self.startup_added.items():
            env.setdefault(k, v)
        if "PWD" in self.startup_added:  # set by a sandbox (bwrap) for the zygote's cwd: a child's is its own
            env["PWD"] = req["cwd"]
        os.environ.clear()
        os.environ.update(env)
        tempfile = sys.modules.get("tempfile")
        if tempfile is not None:  # gettempdir() caches: a child must see its own TMPDIR
            tempfile.tempdir = None
        return req


def _run_child(req, preload):
    """Run the request's program as ``python <argv>`` would, in this (forked) interpreter; never returns."""
    import importlib
    import importlib.machinery
    import types

    argv = req["argv"]
    for name in preload:  # a preload target may be run as __main__; a fresh process has not imported it
        sys.modules.pop(name, None)
    importlib.invalidate_caches()
    main = types.ModuleType("__main__")
    main.__dict__["__annotations__"] = {}
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    sys.executable = req["executable"]
    sys.orig_argv = [req["argv0"]] + list(argv)
    status, sigint = 0, False
    try:
        if argv[0] == "-c":
            main.__loader__ = importlib.machinery.BuiltinImporter
            sys.argv = ["-c"] + list(argv[2:])
            sys.path.insert(0, "")
            exec(compile(argv[1], "<string>", "exec"), main.__dict__)
        else:
            import runpy

            sys.argv = ["-m"] + list(argv[2:])
            sys.path.insert(0, os.getcwd())
            runpy._run_module_as_main(argv[1], True)
    except SystemExit as e:
        status = _system_exit_status(e.code)
    except BaseException as e:
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code is _run_child.__code__:
            tb = tb.tb_next  # hide this runner's frame: the traceback is the program's own
        _print_exception(e.with_traceback(tb))
        status, sigint = 1, isinstance(e, KeyboardInterrupt)
        e = tb = None
    _finalize(status, sigint)


def _system_exit_status(code):
    """Exit status for ``SystemExit(code)`` as CPython computes it (Python/pythonrun.c handle_system_exit)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF if -(1 << 63) <= code < (1 << 63) else 255
    try:
        sys.stderr.write(str(code))
    except Exception:
        pass
    try:
        sys.stderr.write("\n")
    except Exception:
        pass
    return 1


def _print_exception(exc):
    hook = getattr(sys, "excepthook", None)
    try:
        if hook is None:
            raise RuntimeError("lost sys.excepthook")
        hook(type(exc), exc, exc.__traceback__)
    except BaseException as failure:
        sys.stderr.write("Error in sys.excepthook:\n")
        sys.__excepthook__(type(failure), failure, failure.__traceback__)
        sys.stderr.write("\nOriginal exception was:\n")
        sys.__excepthook__(type(exc), exc, exc.__traceback__)


def _flush_std():
    ok = True
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if stream is None:
            continue
        try:
            stream.flush()
        except Exception:
            ok = ok and name != "stdout"  # CPython: a failed stdout flush makes the exit status 120
    return ok


def _finalize(status, sigint):
    """The parts of Py_FinalizeEx a program can observe (cpython Python/pylifecycle.c), then _exit.

    Non-daemon threads are joined, atexit handlers run, stdio is flushed, the program's globals
    (``__main__``) are released and garbage collected so finalizers run (an unclosed file is
    flushed), stdio is flushed again. The zygote's own modules are not torn down: that would touch
    every inherited page (~10 ms of copy-on-write) and nothing the program made depends on it.
    """
    import atexit
    import gc
    import threading

    try:
        threading._shutdown()
    except BaseException:
        pass
    atexit._run_exitfuncs()
    ok = _flush_std()
    main = sys.modules.get("__main__")
    if main is not None:
        names = [k for k in main.__dict__ if k != "__builtins__"]
        for k in reversed(names):
            main.__dict__.pop(k, None)
    gc.collect()
    ok = _flush_std() and ok
    if sigint:  # CPython exits by SIGINT after an uncaught KeyboardInterrupt (Modules/main.c exit_sigint)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(status if ok else 120)


def _main():
    fd = int(sys.argv[1])
    config = json.loads(sys.argv[2])
    sock = socket.socket(fileno=fd)
    server = _Server(sock, config)
    try:
        server.preload()
    except BaseException:
        import traceback

        _send(sock, {"op": "boot-error", "error": traceback.format_exc()})
        os._exit(1)
    return server.serve(), tuple(config.get("preload", ()))


_request, _preload = _main()
_run_child(_request, _preload)
