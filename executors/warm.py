"""Warm starts for Python containers: a zygote (fork server) per interpreter.

A lightweight KFP component costs ~65-70 ms of interpreter start-up (CPython, ``site``, and
``import kfp.dsl.executor_main`` under ``_KFP_RUNTIME=true``) before it does any work. A
:class:`Zygote` pays that once: it runs ONE long-lived helper process of the container's
interpreter that has already started up and imported the preload modules, and forks it for each
container (:mod:`~localflow.executors.zygote` is the client, ``_zygote_server.py`` the server and
its protocol). This module decides which containers may start warm and on which zygote. A forked child sets itself up as CPython would
after ``execve`` (session, stdio, cwd, environment, signals, ``__main__``, ``sys.argv``,
``sys.path[0]``, ``sys.executable``) and runs the program; it ends with CPython's exit-status rules
(``SystemExit`` codes and messages, traceback + 1, SIGINT after ``KeyboardInterrupt``) and the
observable part of finalization (threads joined, atexit, stdio flushed, ``__main__`` released).

When a warm start is exact (:func:`plan`), the container runs forked; otherwise it is started
with ``Popen`` as before:

- ``argv[0]`` is the interpreter the zygote runs: the same path, a symlink to it (the
  executor's ``python``/``python3`` shim) with no ``pyvenv.cfg`` beside it, or the shim script
  that runs a virtualenv's interpreter (:func:`~localflow.executors.shims.shim_target`);
- ``argv[1]`` is exactly ``-c`` or ``-m`` followed by the code/module (no other options);
- the variables that shape interpreter start-up (:func:`startup_profile`: ``PYTHON*`` including
  ``PYTHONPATH``/``PYTHONHOME``/``PYTHONSAFEPATH``, ``LC_*``, ``LANG``, ``HOME`` (user site),
  ``TZ``, ``LD_*``, ``MALLOC_*``, ``GLIBC_TUNABLES``) equal the zygote's: each
  distinct profile gets its own zygote, STARTED with that environment, so a Pod's ``PYTHONPATH``
  is applied by CPython itself, preloads included (not patched into ``sys.path`` by hand); a
  ``PYTHONPATH`` with a relative entry means a cold start (the zygote's cwd is not the Pod's);
- the zygote's preload environment (``_KFP_RUNTIME=true`` for ``kfp.dsl.executor_main``) is the
  container's, or is set by the ``-c`` program's leading statements (only standard-library
  imports and ``os.environ['K'] = 'literal'`` before it: the form of localflow's KFP launcher).
  Otherwise the plain zygote (no preload) serves it.

Differences from a cold start, all deliberate: the child's parent is the zygote, not localflow;
modules the zygote imported (preload dependencies, ``json``, ``socket``, ...) are already in
``sys.modules``, as are ``runpy`` and ``locale`` (the preload targets themselves are dropped so
``runpy`` runs them fresh); all
children share the zygote's string-hash seed (``PYTHONHASHSEED`` unset means one random seed per
zygote, not per process; ``random`` is reseeded by ``os.fork``); the preloaded code is the version
on disk when the zygote started; a child's RSS includes the preloaded modules (~2.5 MB for
``kfp.dsl.executor_main``), which counts against a memory limit; finalization stops short of
tearing down modules (a finalizer that only module teardown would trigger, e.g. an unclosed file
held in an imported module's global, does not run; one held by ``__main__`` does).

If a zygote dies, spawns in flight fall back to ``Popen``; children it had started lose their exit
status, so they are killed (their whole group) and end with exit 137 and a message saying why; the
next spawn starts a new zygote (after 3 failed boots in a row that zygote stays off). A zygote
exits when localflow's process exits (EOF on its control socket; not ``PR_SET_PDEATHSIG``, which
fires when the *thread* that started it ends). Zygotes are shared process-wide (one per
interpreter, start-up profile and preload set; at most :data:`MAX_ZYGOTES`, the least recently
used idle one is stopped to make room, and with none idle the container starts cold). Sandboxed
containers (:mod:`~localflow.executors.sandbox`) are forked by a zygote started inside their
sandbox (``wrapper``), one per sandbox shape: Pods with the same mounts share it, and what is per
Pod (cwd, environment, ``TMPDIR``; ``tempfile``'s cached directory is reset) is set per fork.

Follows the zygote design of Android's app_process / Chromium's zygote and CPython's
``multiprocessing.forkserver`` (cpython ``Lib/multiprocessing/forkserver.py``); CPython start-up
semantics from cpython ``Modules/main.c`` and ``Lib/runpy.py``.
"""
from __future__ import annotations

import ast
import functools
import os
import sys
import threading
import time
from dataclasses import dataclass

from .shims import shim_target
from .zygote import DEFAULT_PRELOAD, DEFAULT_PRELOAD_ENV, WarmProcess, Zygote, ZygoteUnavailable, startup_profile

__all__ = [
    "DEFAULT_PRELOAD",
    "DEFAULT_PRELOAD_ENV",
    "MAX_ZYGOTES",
    "WarmPlan",
    "WarmProcess",
    "Zygote",
    "ZygoteUnavailable",
    "effective_env",
    "plan",
    "spawn_count",
    "startup_profile",
    "zygote_pids",
]

#: (preload modules, preload env) tried in order for a container: the KFP one, then a plain one.
PROFILES: tuple[tuple[tuple[str, ...], dict[str, str]], ...] = ((DEFAULT_PRELOAD, DEFAULT_PRELOAD_ENV), ((), {}))
MAX_ZYGOTES = 8

@functools.lru_cache(maxsize=64)
def _leading_env_assignments(code: str) -> tuple[tuple[str, str], ...]:
    """``os.environ['K'] = 'v'`` statements a ``-c`` program runs before anything but stdlib imports."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return ()
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    os_bound = False
    found: list[tuple[str, str]] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Import):
            if not all(a.name.split(".")[0] in stdlib for a in stmt.names):
                break
            os_bound = os_bound or any(a.name == "os" and a.asname in (None, "os") for a in stmt.names)
            continue
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and os_bound
                and isinstance(stmt.targets[0], ast.Subscript)
                and isinstance(stmt.targets[0].value, ast.Attribute)
                and isinstance(stmt.targets[0].value.value, ast.Name)
                and stmt.targets[0].value.value.id == "os" and stmt.targets[0].value.attr == "environ"
                and isinstance(stmt.targets[0].slice, ast.Constant) and isinstance(stmt.targets[0].slice.value, str)
                and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)):
            found.append((stmt.targets[0].slice.value, stmt.value.value))
            continue
        break
    return tuple(found)


def effective_env(args: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment in force when a ``python <args>`` program first imports a non-stdlib module:
    ``env`` plus the leading ``os.environ[...] = '...'`` assignments of a ``-c`` program."""
    if len(args) >= 2 and args[0] == "-c":
        assigned = _leading_env_assignments(args[1])
        if assigned:
            return {**env, **dict(assigned)}
    return env


def _shim_interpreter(candidate: str) -> str | None:
    """The interpreter a localflow ``python`` shim script runs (a venv's: see executors/shims.py)."""
    return shim_target(candidate) if os.path.isfile(candidate) and not os.path.islink(candidate) else None


def _same_interpreter(candidate: str, python: str) -> bool:
    shimmed = _shim_interpreter(candidate)
    if shimmed is not None:
        return os.path.abspath(shimmed) == os.path.abspath(python)
    if os.path.abspath(candidate) == os.path.abspath(python):
        return True
    if not os.path.islink(candidate):
        return False
    target = os.path.join(os.path.dirname(candidate), os.readlink(candidate))
    if os.path.abspath(target) != os.path.abspath(python):
        return False
    # a venv's bin/python is a symlink too: its pyvenv.cfg makes it another interpreter
    here = os.path.dirname(os.path.abspath(candidate))
    return not any(os.path.isfile(os.path.join(d, "pyvenv.cfg")) for d in (here, os.path.dirname(here)))


def _names_dir(pwd: str | None, cwd: str) -> bool:
    try:
        return bool(pwd) and os.path.isabs(pwd) and os.path.samefile(pwd, cwd)
    except OSError:
        return False


def _interpreter_path(argv0: str, env: dict[str, str], cwd: str) -> str | None:
    """Where exec would find ``argv0`` (and what CPython makes ``sys.executable``)."""
    if os.sep in argv0:
        return os.path.normpath(os.path.join(cwd, argv0))
    import shutil

    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    return os.path.abspath(found) if found else None


# -- process-wide registry and the executor's entry point ------------------------------------
_registry: dict[tuple, Zygote] = {}
_registry_lock = threading.Lock()
_spawned = 0


def _after_fork_in_child() -> None:
    # a forked localflow must not talk to its parent's zygotes over their shared sockets
    global _registry, _registry_lock
    for z in _registry.values():
        z._forget_after_fork()
    _registry, _registry_lock = {}, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def spawn_count() -> int:
    """How many containers this process has started warm so far (all zygotes)."""
    return _spawned


def _zygote_for(python: str, profile: tuple, preload: tuple[str, ...], penv: dict[str, str],
                wrapper: tuple[str, ...] = ()) -> Zygote | None:
    key = (os.path.abspath(python), profile, preload, tuple(sorted(penv.items())), wrapper)
    evicted = None
    with _registry_lock:
        z = _registry.get(key)
        if z is None:
            if len(_registry) >= MAX_ZYGOTES:
                idle = [(other.last_used, k) for k, other in _registry.items() if other.idle()]
                if not idle:
                    return None
                evicted = _registry.pop(min(idle)[1])
            z = Zygote(python, preload, penv, startup_env=dict(profile), wrapper=wrapper)
            _registry[key] = z
        z.last_used = time.monotonic()
    if evicted is not None:
        evicted.close()
    return z


def zygote_pids() -> list[int]:
    """Pids of the zygotes running in this process (for tests and ``localflow`` diagnostics)."""
    with _registry_lock:
        zs = list(_registry.values())
    return [z.pid for z in zs if z.pid is not None]


def close_all() -> None:
    """Stop every zygote of this process (children still running are killed)."""
    with _registry_lock:
        zs = list(_registry.values())
        _registry.clear()
    for z in zs:
        z.close()


@dataclass
class WarmPlan:
    """A container that can start warm: the (booted) zygote to fork it from and the fork arguments."""

    zygote: Zygote
    args: list[str]
    env: dict[str, str]
    cwd: str
    argv0: str
    executable: str

    def spawn(self, log_fd: int | None) -> WarmProcess | None:
        """Fork it, stdout+stderr on ``log_fd``; None when the zygote cannot now (start it cold)."""
        global _spawned
        try:
            proc = self.zygote.spawn(self.args, self.env, self.cwd, log_fd, argv0=self.argv0, executable=self.executable)
        except ZygoteUnavailable:
            return None
        with _registry_lock:
            _spawned += 1
        return proc


def plan(argv: list[str], env: dict[str, str], cwd: str, python: str,
         wrapper: tuple[str, ...] = ()) -> WarmPlan | None:
    """A :class:`WarmPlan` when ``argv`` (with environment ``env``, working directory ``cwd``) is
    ``python -c``/``-m`` that a zygote of ``python`` starts exactly (rules in the module doc),
    with the zygotes booted; None otherwise. ``wrapper``: the sandbox the container runs in
    (``bwrap ... --``); containers with equal wrappers share zygotes, which run inside it."""
    if len(argv) < 3 or argv[1] not in ("-c", "-m") or not hasattr(os, "fork"):
        return None
    found = _interpreter_path(argv[0], env, cwd)
    if found is None or not _same_interpreter(found, python):
        return None
    args = argv[1:]
    if any(not os.path.isabs(p) for p in env.get("PYTHONPATH", "/").split(os.pathsep)):
        return None  # '' or a relative entry means the Pod's cwd, which the zygote's start-up did not see
    effective = effective_env(args, env)
    profile = startup_profile(env)
    for preload, penv in PROFILES:  # the most specific zygote that runs
        if not all(effective.get(k) == v for k, v in penv.items()):
            continue
        z = _zygote_for(python, profile, preload, penv, wrapper)
        if z is None or z.broken:
            continue
        try:
            z.start()
        except ZygoteUnavailable:
            continue
        shimmed = _shim_interpreter(found)
        if shimmed is not None:  # the script execs the interpreter: that is what CPython sees,
            if not _names_dir(env.get("PWD"), cwd):  # after /bin/sh exported PWD (POSIX sh does)
                env = {**env, "PWD": cwd}
            return WarmPlan(z, args, env, cwd, shimmed, shimmed)
        return WarmPlan(z, args, env, cwd, argv[0], found)
    return None
