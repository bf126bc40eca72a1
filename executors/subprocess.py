"""The default executor: each container is a process group on this machine.

A container becomes ``Popen(argv, start_new_session=True)`` with the environment the container
would see (its ``env`` plus a minimal base: ``PATH`` with a shim directory first where ``python``
and ``python3`` are the mapped interpreter, ``HOME``, ``HOSTNAME``), stdout and stderr appended to
the container's log file, and paths the spec names inside the container rewritten to the host
directories mounted there. Kill is SIGTERM to the whole group, then SIGKILL after the grace period,
so no grandchild survives. A memory limit is enforced like the cgroup OOM killer would: the RSS of
the process tree is sampled and the group is killed with reason ``OOMKilled`` / exit 137 when it
goes over. CPU limits are not enforced (requests still count for admission in the scheduler).

Warm path: a container that is ``python -c ...`` / ``python -m ...`` with the interpreter
``python`` maps to is forked from a zygote of that interpreter (:mod:`localflow.executors.warm`)
instead of started cold: ~3 ms instead of ~40-70 ms (``site`` plus, for KFP components,
``kfp.dsl.executor_main`` are imported once). It is a process group like any other (kill, memory
limit, logs, exit codes unchanged); anything the zygote cannot start exactly runs with ``Popen``.
Off with ``SubprocessExecutor(warm=False)`` or ``LOCALFLOW_WARM=0``.

Kubernetes semantics followed: kubelet container status reasons (kubernetes/kubernetes
``pkg/kubelet/kuberuntime/kuberuntime_container.go``); 137 = 128 + SIGKILL.
"""
from __future__ import annotations

import os
import shutil
import shlex
import signal
import subprocess
import sys
import threading
import time

import psutil

from localflow.errors import ExecutorError

from . import warm as _warm
from .base import ContainerResult, ContainerSpec, DrivenPod, Executor, PodSpec

_BASE_ENV_KEYS = ("LANG", "LC_ALL", "TZ", "TMPDIR", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "SSL_CERT_FILE",
                  "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_OOM_POLL_S = 0.05


class SubprocessExecutor(Executor):
    """Runs each container as a local process group.

    ``python``: interpreter that ``python``/``python3`` mean inside containers whose image has no
    mapping with its own ``python`` (default: the interpreter running localflow, ``sys.executable``).
    ``warm``: fork Python containers from a zygote when that is exact (see the module doc); the
    environment variable ``LOCALFLOW_WARM=0`` (or false/no/off) turns it off too.
    """

    name = "subprocess"

    def __init__(self, python: str | None = None, warm: bool = True):
        self.python = python or sys.executable
        self.warm = bool(warm) and os.environ.get("LOCALFLOW_WARM", "1").strip().lower() not in ("0", "false", "no", "off")

    def start(self, pod: PodSpec) -> "SubprocessPod":
        """Start ``pod``. Raises :class:`ExecutorError` at once, before any process starts, when a
        main container's program cannot exist here: its executable is not on this machine, or the
        script an interpreter is given (``python /opt/app/train.py``) lies at a path that is neither
        on this machine nor in a mounted volume — in a cluster the image carries it; here the image
        needs a ``paths:`` mapping. Failing fast keeps such Pods out of a crash loop."""
        running = SubprocessPod(pod, self.python, self.warm)
        for c in pod.containers:
            problem = running._preflight(c)
            if problem:
                raise ExecutorError(problem, fix=f"map the image in localflow.yaml, e.g. images: {{'{c.image}': "
                                                 "{paths: {<container dir>: <host dir>}}}, or use --executor docker")
        running._thread.start()
        return running


class SubprocessPod(DrivenPod):
    """A Pod whose containers are process groups; driven by one thread."""

    def __init__(self, spec: PodSpec, default_python: str, warm: bool = False):
        self.spec = spec
        self._default_python = default_python
        self._warm = warm
        self._lock = threading.Lock()
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
            return [p.pid for p in self._procs.values() if p.poll() is None]

    def container_ids(self) -> dict[str, str]:
        """``process://<pid>`` of each started container; the pid is also its process group id."""
        with self._lock:
            return {name: f"process://{p.pid}" for name, p in self._procs.items()}

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
            self._done.set()

    def _run_one(self, c: ContainerSpec) -> ContainerResult:
        return self._finish(c, self._spawn(c))

    def _spawn(self, c: ContainerSpec):
        started = time.time()
        argv, env, cwd, python = self._resolve(c)
        log = open(c.log_path, "ab", buffering=0) if c.log_path else subprocess.DEVNULL
        try:
            exe = argv[0] if argv else ""
            if not argv or (os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None) \
                    or (os.sep in exe and not os.access(exe, os.X_OK)):
                return ContainerResult(c.name, 127, "ContainerCannotRun", _missing_exe_message(exe, c), started, time.time())
            if cwd and not os.path.isdir(cwd):
                return ContainerResult(c.name, 127, "ContainerCannotRun",
                                       f"working directory {cwd!r} does not exist on this machine (image {c.image!r}); "
                                       f"set images['{c.image}'].workdir or paths in localflow.yaml", started, time.time())
            plan = _warm_plan(argv, env, cwd, python) if self._warm else None
            with self._lock:
                if self._killed:
                    return ContainerResult(c.name, 137, self._killed, "killed before start", started, time.time())
                p = plan.spawn(log.fileno() if log is not subprocess.DEVNULL else None) if plan else None
                if p is None:
                    try:
                        p = subprocess.Popen(argv, env=env, cwd=cwd or None, stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                    except OSError as e:
                        return ContainerResult(c.name, 127, "ContainerCannotRun", f"{exe}: {e.strerror}", started, time.time())
                self._procs[c.name] = p
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
        if (os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None) \
                or (os.sep in exe and not os.access(exe, os.X_OK)):
            return _missing_exe_message(exe, c)
        name = os.path.basename(exe)
        if len(argv) > 1 and (name in self._INTERPRETERS or name.startswith("python")):
            script = argv[1]
            mounted = [m.host_path for m in c.mounts] + list((c.mapping.paths.values()) if c.mapping else [])
            if os.path.isabs(script) and not os.path.exists(script) and \
                    not any(script == h or script.startswith(h.rstrip("/") + "/") for h in mounted):
                return (f"container {c.name!r}: {exe} is given {script}, which does not exist on this machine "
                        f"(image {c.image!r} would carry it in a cluster)")
        return None

    def _resolve(self, c: ContainerSpec):
        """argv, env, cwd and the interpreter ``python`` means, as this machine sees them: container
        paths rewritten to host paths."""
        mapping = c.mapping
        path_map = {m.container_path: m.host_path for m in c.mounts if m.container_path != m.host_path}
        if mapping:
            path_map.update(mapping.paths)
        # longest prefix first so /opt/app/data wins over /opt/app
        prefixes = sorted(path_map.items(), key=lambda kv: len(kv[0]), reverse=True)

        def rewrite(s: str) -> str:
            for cpath, hpath in prefixes:
                if s == cpath or s.startswith(cpath.rstrip("/") + "/"):
                    return hpath + s[len(cpath):]
                marker = "=" + cpath
                if marker in s:
                    s = s.replace(marker, "=" + hpath)
            return s

        python = mapping.python if mapping and mapping.python else self._default_python
        shim = self._python_shim(python)
        if mapping and mapping.shell and not os.path.lexists(os.path.join(shim, "sh")):
            os.symlink(mapping.shell, os.path.join(shim, "sh"))  # busybox dispatches on argv[0]
        env = {k: os.environ[k] for k in _BASE_ENV_KEYS if k in os.environ}
        env["PATH"] = shim + os.pathsep + os.environ.get("PATH", os.defpath)
        env["HOME"] = os.environ.get("HOME", "/root")
        env["HOSTNAME"] = self.spec.hostname or self.spec.name
        env["PYTHONUNBUFFERED"] = "1"
        if mapping:
            env.update(mapping.env)
        env.update({k: rewrite(v) for k, v in c.env.items()})
        argv = [rewrite(a) for a in c.argv]
        workdir = c.working_dir or (mapping.workdir if mapping else None)
        cwd = rewrite(workdir) if workdir else None
        return argv, env, cwd, python

    def _python_shim(self, python: str) -> str:
        """A directory whose ``python``/``python3`` run ``python`` (kept per Pod in its workdir)."""
        base = self.spec.workdir or os.path.join("/tmp", f"localflow-{self.spec.uid}")
        shim = os.path.join(base, "bin")
        if not os.path.isdir(shim):
            os.makedirs(shim, exist_ok=True)
        in_venv = os.path.exists(os.path.join(os.path.dirname(os.path.abspath(python)), os.pardir, "pyvenv.cfg"))
        for name in ("python", "python3"):
            link = os.path.join(shim, name)
            if os.path.lexists(link):
                continue
            if in_venv:
                # CPython finds a venv by the pyvenv.cfg beside the path it was started by: a symlink
                # elsewhere would run the base interpreter without the venv's packages.
                with open(link, "w") as f:
                    f.write(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')
                os.chmod(link, 0o755)
            else:
                os.symlink(python, link)
        return shim


def _warm_plan(argv: list[str], env: dict[str, str], cwd: str | None, python: str):
    """A warm start for this container, or None (start it cold)."""
    try:
        return _warm.plan(argv, env, cwd or os.getcwd(), python)
    except OSError:  # cwd gone, unreadable shim link, ...: the cold path reports it properly
        return None


def _missing_exe_message(exe: str, c: ContainerSpec) -> str:
    # a program the image carries (my_program, a containerized component's module): the three fixes
    return (f"executable {exe!r} not found on this machine: image {c.image!r} carries it in a cluster; "
            f"map the image's paths in localflow.yaml (images: {{{c.image!r}: {{paths: ..., python: ...}}}}), "
            f"or run with --executor docker with the image present, "
            f"or build it (`kfp component build` for a containerized Python component)")


def _signal_group(p, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
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
