"""The default executor: each container is a process group on this machine.

A container becomes ``Popen(argv, start_new_session=True)`` with the environment the container
would see (its ``env`` plus a minimal base: ``PATH`` with the Pod's shim directory first
(:mod:`~localflow.executors.shims`: ``python``/``python3``/``sh`` as the image map says), ``HOME``,
``HOSTNAME``, ``TMPDIR`` in the Pod's directory), stdout and stderr appended to the container's
log file. Sandboxed (:mod:`~localflow.executors.sandbox`, the default where bwrap works) it runs
under ``bwrap`` and sees its volumes at their mount paths; otherwise paths the spec names inside
the container are rewritten in argv and env to the host directories mounted there. Every group is
registered with :mod:`~localflow.executors.lifetime`, so it dies with localflow even on SIGKILL.
Kill is SIGTERM to the whole group, then SIGKILL after the grace period,
so no grandchild survives. A memory limit is enforced like the cgroup OOM killer would: the RSS of
the process tree is sampled and the group is killed with reason ``OOMKilled`` / exit 137 when it
goes over. CPU limits are not enforced (requests still count for admission in the scheduler).

Warm path: a container that is ``python -c ...`` / ``python -m ...`` with the interpreter
``python`` maps to is forked from a zygote of that interpreter (:mod:`localflow.executors.warm`)
instead of started cold: ~3 ms instead of ~40-70 ms (``site`` plus, for KFP components,
``kfp.dsl.executor_main`` are imported once). It is a process group like any other (kill, memory
limit, logs, exit codes unchanged); anything the zygote cannot start exactly runs with ``Popen``.
Sandboxed, zygotes run inside the sandbox, one per sandbox shape (Pods with the same mounts in
one workspace, e.g. all KFP lightweight tasks without volumes, share one).
Off with ``SubprocessExecutor(warm=False)`` or ``LOCALFLOW_WARM=0``.

Kubernetes semantics followed: kubelet container status reasons (kubernetes/kubernetes
``pkg/kubelet/kuberuntime/kuberuntime_container.go``); 137 = 128 + SIGKILL.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import psutil

from localflow.errors import ExecutorError

from . import lifetime
from . import sandbox as _sandbox
from . import warm as _warm
from .base import ContainerResult, ContainerSpec, DrivenPod, Executor, PodSpec
from .shims import shim_dir

_BASE_ENV_KEYS = ("LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SSL_CERT_FILE",
                  "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_OOM_POLL_S = 0.05


class SubprocessExecutor(Executor):
    """Runs each container as a local process group.

    ``python``: interpreter that ``python``/``python3`` mean inside containers whose image has no
    mapping with its own ``python`` (default: the interpreter running localflow, ``sys.executable``).
    ``warm``: fork Python containers from a zygote when that is exact (see the module doc); the
    environment variable ``LOCALFLOW_WARM=0`` (or false/no/off) turns it off too. ``sandbox``:
    run containers in a bubblewrap sandbox (:mod:`~localflow.executors.sandbox`) when bwrap
    works here and ``LOCALFLOW_SANDBOX`` is not ``0`` (default), False: never.
    """

    name = "subprocess"

    def __init__(self, python: str | None = None, warm: bool = True, sandbox: bool = True):
        self.python = python or sys.executable
        self.warm = bool(warm) and os.environ.get("LOCALFLOW_WARM", "1").strip().lower() not in ("0", "false", "no", "off")
        self.sandbox = bool(sandbox) and _sandbox.enabled()

    def start(self, pod: PodSpec) -> "SubprocessPod":
        """Start ``pod``. Raises :class:`ExecutorError` at once, before any process starts, when a
        main container's program cannot exist here: its executable is not on this machine, or the
        script an interpreter is given (``python /opt/app/train.py``) lies at a path that is neither
        on this machine nor in a mounted volume — in a cluster the image carries it; here the image
        needs a ``paths:`` mapping. Failing fast keeps such Pods out of a crash loop. Also raised
        for a volume whose directory lies outside the workspace (:func:`sandbox.check_sources`)."""
        running = SubprocessPod(pod, self.python, self.warm, self.sandbox)
        for c in pod.init_containers + pod.containers:
            if self.sandbox:
                running._shapes[c.name] = _sandbox.container_shape(pod, c, interpreters=(running._python_for(c),))
            else:
                _sandbox.check_sources(pod, c.mounts, f" container {c.name!r}")
        for c in pod.containers:
            problem = running._preflight(c)
            if problem:
                raise ExecutorError(problem, fix=f"map the image in localflow.yaml, e.g. images: {{'{c.image}': "
                                                 "{paths: {<container dir>: <host dir>}}}, or use --executor docker")
        running._thread.start()
        return running


class SubprocessPod(DrivenPod):
    """A Pod whose containers are process groups; driven by one thread."""

    def __init__(self, spec: PodSpec, default_python: str, warm: bool = False, sandboxed: bool = False):
        self.spec = spec
        self._default_python = default_python
        self._warm = warm
        self._sandboxed = sandboxed
        self._shapes: dict[str, _sandbox.Shape] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a container started, or the Pod ended
        self._procs: dict[str, subprocess.Popen | _warm.WarmProcess] = {}
        self._killed: str | None = None
        self._done = threading.Event()
        self._results: list[ContainerResult] = []
        self._thread = threading.Thread(target=self._drive, name=f"pod-{spec.name}", daemon=True)

    # -- RunningPod ------------------------------------------------------------------------
    def kill(self, reason: str = "Killed", grace_seconds: float = 5.0) -> None:
        with self._lock:
            if self._killed is None:
                self._killed = reason
            procs = [p for p in self._procs.values() if p.poll() is None]
        for p in procs:
            _signal_group(p, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        for p in procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(p, signal.SIGKILL)

    def pids(self) -> list[int]:
        with self._lock:
            return [_group(p) for p in self._procs.values() if p.poll() is None]

    def container_ids(self) -> dict[str, str]:
        """``process://<pid>`` of each started container; the pid is also its process group id."""
        with self._lock:
            return self._ids_locked()

    def _ids_locked(self) -> dict[str, str]:
        return {name: f"process://{_group(p)}" for name, p in self._procs.items()}

    def wait_container_ids(self, names, timeout: float) -> dict[str, str]:
        """Woken by each container start and by the Pod's end: no polling."""
        want = set(names)
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (want <= self._procs.keys() or self._done.is_set()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._ids_locked()

    # -- driving ---------------------------------------------------------------------------
    def _drive(self) -> None:
        try:
            for c in self.spec.init_containers:
                result = self._run_one(c)
                if result.exit_code != 0:
                    self._results = [result]
                    return
            if self._killed:
                self._results = [ContainerResult(c.name, 137, self._killed, "killed before start")
                                 for c in self.spec.containers]
                return
            started = [(c, self._spawn(c)) for c in self.spec.containers]
            self._results = [self._finish(c, p) for c, p in started]
        except BaseException as e:  # never leave a waiter hanging
            self._results = [ContainerResult(c.name, 1, "Error", f"executor failure: {e!r}")
                             for c in self.spec.containers]
            raise
        finally:
            with self._changed:
                self._done.set()
                self._changed.notify_all()

    def _run_one(self, c: ContainerSpec) -> ContainerResult:
        return self._finish(c, self._spawn(c))

    def _spawn(self, c: ContainerSpec):
        started = time.time()
        argv, env, cwd, python = self._resolve(c)
        host_cwd = self._host_path(c, cwd) if cwd else None
        log = open(c.log_path, "ab", buffering=0) if c.log_path else subprocess.DEVNULL
        try:
            exe = argv[0] if argv else ""
            if not argv or self._missing(c, exe, env):
                return ContainerResult(c.name, 127, "ContainerCannotRun", _missing_exe_message(exe, c), started, time.time())
            if host_cwd and not os.path.isdir(host_cwd):
                return ContainerResult(c.name, 127, "ContainerCannotRun",
                                       f"working directory {cwd!r} does not exist on this machine (image {c.image!r}); "
                                       f"set images['{c.image}'].workdir or paths in localflow.yaml", started, time.time())
            shape = self._shapes.get(c.name) if self._sandboxed else None
            wrapper = tuple(shape.argv(cwd="/")) if shape else ()
            plan = _warm_plan(argv, env, cwd, python, wrapper) if self._warm else None
            with self._lock:
                if self._killed:
                    return ContainerResult(c.name, 137, self._killed, "killed before start", started, time.time())
                p = plan.spawn(log.fileno() if log is not subprocess.DEVNULL else None) if plan else None
                if p is None:
                    try:
                        p = _popen(argv, env, cwd, log, shape)
                    except OSError as e:
                        return ContainerResult(c.name, 127, "ContainerCannotRun", f"{exe}: {e.strerror}", started, time.time())
                lifetime.register(_group(p))
                self._procs[c.name] = p
                self._changed.notify_all()
            p._lf_started = started  # type: ignore[attr-defined]
            return p
        finally:
            if log is not subprocess.DEVNULL:
                log.close()

    def _finish(self, c: ContainerSpec, p) -> ContainerResult:
        if isinstance(p, ContainerResult):
            return p
        oom = False
        limit = c.resources.memory_limit
        if limit:
            while p.poll() is None:
                if _tree_rss(p.pid) > limit:
                    oom = True
                    _signal_group(p, signal.SIGKILL)
                    break
                try:
                    p.wait(_OOM_POLL_S)
                except subprocess.TimeoutExpired:
                    pass
        code = p.wait()
        # reap whatever is left of the group (a backgrounded grandchild)
        _signal_group(p, signal.SIGKILL)
        lifetime.unregister(_group(p))
        finished = time.time()
        if code < 0:  # killed by a signal: shells report 128+n
            code = 128 - code
        if oom:
            return ContainerResult(c.name, 137, "OOMKilled", f"memory use went over the limit of {limit} bytes",
                                   p._lf_started, finished)
        if self._killed and code != 0:
            return ContainerResult(c.name, code, self._killed, "", p._lf_started, finished)
        if getattr(p, "lost", None):  # a warm container whose zygote died (see executors/warm.py)
            return ContainerResult(c.name, code, "Error", p.lost, p._lf_started, finished)
        return ContainerResult(c.name, code, "Completed" if code == 0 else "Error", "", p._lf_started, finished)

    _INTERPRETERS = ("python", "python3", "sh", "bash", "dash", "perl", "ruby", "node", "Rscript")

    def _preflight(self, c: ContainerSpec) -> str | None:
        """Why container ``c`` cannot run on this machine at all, or None (see :meth:`SubprocessExecutor.start`)."""
        argv, env, cwd, _ = self._resolve(c)
        if not argv:
            return f"container {c.name!r} (image {c.image!r}) has no command"
        exe = argv[0]
        if self._missing(c, exe, env):
            return _missing_exe_message(exe, c)
        name = os.path.basename(exe)
        if len(argv) > 1 and (name in self._INTERPRETERS or name.startswith("python")):
            script = self._host_path(c, argv[1])
            mounted = [m.host_path for m in c.mounts] + list((c.mapping.paths.values()) if c.mapping else [])
            if os.path.isabs(script) and not os.path.exists(script) and \
                    not any(script == h or script.startswith(h.rstrip("/") + "/") for h in mounted):
                return (f"container {c.name!r}: {exe} is given {script}, which does not exist on this machine "
                        f"(image {c.image!r} would carry it in a cluster)")
        return None

    def _missing(self, c: ContainerSpec, exe: str, env: dict[str, str]) -> bool:
        """``exe`` cannot be executed: not on the container's PATH, or not an executable file."""
        if os.sep not in exe:
            return shutil.which(exe, path=env.get("PATH")) is None
        return not os.access(self._host_path(c, exe), os.X_OK)

    def _path_map(self, c: ContainerSpec) -> list[tuple[str, str]]:
        """(container path, host path) of the container's mounts and image paths, longest first
        (so /opt/app/data wins over /opt/app)."""
        path_map = {m.container_path: m.host_path for m in c.mounts if m.container_path != m.host_path}
        if c.mapping:
            path_map.update(c.mapping.paths)
        return sorted(path_map.items(), key=lambda kv: len(kv[0]), reverse=True)

    def _host_path(self, c: ContainerSpec, path: str) -> str:
        """Where this machine sees the container's ``path`` (through its mounts and image paths)."""
        for cpath, hpath in self._path_map(c):
            if path == cpath or path.startswith(cpath.rstrip("/") + "/"):
                return hpath + path[len(cpath):]
        return path

    def _python_for(self, c: ContainerSpec) -> str:
        return c.mapping.python if c.mapping and c.mapping.python else self._default_python

    def _resolve(self, c: ContainerSpec):
        """argv, env, cwd and the interpreter ``python`` means, as the container's processes see
        them. Sandboxed, container paths are real; otherwise they are rewritten to host paths
        (argv, env values, ``KEY=<path>`` inside them, the working directory)."""
        mapping = c.mapping
        prefixes = [] if self._sandboxed else self._path_map(c)

        def rewrite(s: str) -> str:
            for cpath, hpath in prefixes:
                if s == cpath or s.startswith(cpath.rstrip("/") + "/"):
                    return hpath + s[len(cpath):]
                marker = "=" + cpath
                if marker in s:
                    s = s.replace(marker, "=" + hpath)
            return s

        python = self._python_for(c)
        pod_dir = self.spec.workdir or os.path.join("/tmp", f"localflow-{self.spec.uid}")
        shim = shim_dir(pod_dir, python, mapping.shell if mapping else None)
        tmp = os.path.join(pod_dir, "tmp")  # kfp's kfp-component-* and every tempfile land here
        os.makedirs(tmp, exist_ok=True)
        env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        env["PATH"] = shim + os.pathsep + os.environ.get("PATH", os.defpath)
        env["HOME"] = os.environ.get("HOME", "/root")
        env["HOSTNAME"] = self.spec.hostname or self.spec.name
        env["PYTHONUNBUFFERED"] = "1"
        env["TMPDIR"] = tmp
        if mapping:
            env.update(mapping.env)
        env.update({k: rewrite(v) for k, v in c.env.items()})
        argv = [rewrite(a) for a in c.argv]
        workdir = c.working_dir or (mapping.workdir if mapping else None)
        cwd = rewrite(workdir) if workdir else None
        return argv, env, cwd, python


def _warm_plan(argv: list[str], env: dict[str, str], cwd: str | None, python: str, wrapper: tuple[str, ...]):
    """A warm start for this container, or None (start it cold)."""
    try:
        return _warm.plan(argv, env, cwd or os.getcwd(), python, wrapper)
    except OSError:  # cwd gone, unreadable shim link, ...: the cold path reports it properly
        return None


def _missing_exe_message(exe: str, c: ContainerSpec) -> str:
    # a program the image carries (my_program, a containerized component's module): the three fixes
    return (f"executable {exe!r} not found on this machine: image {c.image!r} carries it in a cluster; "
            f"map the image's paths in localflow.yaml (images: {{{c.image!r}: {{paths: ..., python: ...}}}}), "
            f"or run with --executor docker with the image present, "
            f"or build it (`kfp component build` for a containerized Python component)")


def _popen(argv: list[str], env: dict[str, str], cwd: str | None, log, shape: "_sandbox.Shape | None"):
    """Start a container cold; sandboxed, through bwrap, with the container's own pid (its
    process group, read from bwrap's info fd) as ``p.group``."""
    if shape is None:
        return subprocess.Popen(argv, env=env, cwd=cwd or None, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    r, w = os.pipe()
    try:
        # bwrap enters the working directory inside the sandbox (it may exist only there)
        p = subprocess.Popen(shape.argv(cwd=cwd or os.getcwd(), info_fd=w) + argv, env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=(w,))
    finally:
        os.close(w)
    try:
        with os.fdopen(r, "rb") as f:
            info = f.read()  # EOF once bwrap started the container (or failed: its message is in the log)
        p.group = int(json.loads(info)["child-pid"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return p


def _group(p) -> int:
    """The container's process group id (= its main process's pid)."""
    return getattr(p, "group", p.pid)


def _signal_group(p, sig: int) -> None:
    try:
        os.killpg(_group(p), sig)
    except (ProcessLookupError, PermissionError):
        if _group(p) != p.pid and p.poll() is None:  # not yet its own group: bwrap takes it down
            try:
                os.kill(p.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass


def _tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total
