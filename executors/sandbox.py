"""A filesystem sandbox for subprocess Pods, built with bubblewrap (``bwrap``).

A container started through :meth:`Shape.argv` sees what a Pod sees in a cluster, as far as
files go: every volume at its ``mountPath`` (a real bind mount of its workspace directory,
read-only when the mount says so), the image map's ``paths:`` read-only at their container
paths, a private ``/tmp``, the workspace writable (its Pod directory, artifact and PVC
directories; the SQLite files read-only), and the rest of this machine read-only. Capabilities are
dropped (root inside cannot remount anything writable). Cold containers are session leaders and
die with the thread that started them (``--die-with-parent``); pids are this machine's.

The root is a tmpfs holding each top-level host entry as a read-only bind, so a mount point that
does not exist on this machine (``/data``, ``/mnt/x/y``, ``/usr/share/foo``) can be created: a
host directory on the way to a missing mount point is itself a tmpfs directory holding its
children as binds (only along that path). The root is remounted read-only at the end.

Bind sources are checked first (defence in depth, also for ``--executor docker``,
:func:`check_sources`): a ``volume`` mount must come from inside the workspace; ``hostPath`` and
``image`` mounts are the ones the config allowed.

``LOCALFLOW_SANDBOX_WRITABLE`` (host directories, ``:``-separated) adds directories Pods may
write besides the workspace (this repository's test suite sets it to pytest's temp root, where
its tasks leave side files for the tests to read).

Detection: :func:`enabled` runs ``bwrap ... true`` once per process. ``LOCALFLOW_SANDBOX=0``
turns the sandbox off; when bwrap is missing or unusable, localflow prints one line saying which
guarantees are lost and rewrites container paths in argv/env as before.

bubblewrap: https://github.com/containers/bubblewrap (``bwrap.c``, options as of 0.4+).
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass

from localflow.errors import ExecutorError

from .base import ContainerSpec, Mount, PodSpec

__all__ = ["ENV_VAR", "WRITABLE_VAR", "Bind", "Shape", "check_sources", "container_shape", "enabled", "unavailable_reason"]

ENV_VAR = "LOCALFLOW_SANDBOX"
#: extra host directories Pods may write (``os.pathsep``-separated), e.g. a test suite's temp root
WRITABLE_VAR = "LOCALFLOW_SANDBOX_WRITABLE"
#: top-level host entries the sandbox makes itself instead of binding them
_SPECIAL = ("/proc", "/dev", "/tmp")
_DB_FILES = ("localflow.db", "localflow.db-wal", "localflow.db-shm")
_LOST = ("localflow: bubblewrap (bwrap) is not usable here ({why}); Pods run WITHOUT a filesystem sandbox: "
         "a write to a volume's mountPath or to /tmp reaches this machine's real path, and a Pod can write "
         "wherever localflow can. Install bubblewrap (apt-get install bubblewrap) to get it back; "
         f"{ENV_VAR}=0 turns the sandbox off without this message.")
_warned = threading.Event()


def _off_by_env() -> bool:
    return os.environ.get(ENV_VAR, "1").strip().lower() in ("0", "false", "no", "off")


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when ``bwrap`` works here (tried once per process on ``true``), else why not."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "no bwrap on PATH"
    probe = [exe, "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/", "/",
             "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--remount-ro", "/", "true"]
    try:
        p = subprocess.run(probe, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap could not run: {e}"
    if p.returncode != 0:
        return (p.stderr.decode(errors="replace").strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return None


@functools.lru_cache(maxsize=1)
def _bwrap() -> str:
    return shutil.which("bwrap") or "bwrap"


def enabled() -> bool:
    """Whether Pods run sandboxed: not turned off by ``LOCALFLOW_SANDBOX=0`` and bwrap works.
    The first call that finds bwrap unusable prints one line on stderr."""
    if _off_by_env():
        return False
    why = unavailable_reason()
    if why is None:
        return True
    if not _warned.is_set():
        _warned.set()
        print(_LOST.format(why=why), file=sys.stderr, flush=True)
    return False


def _inside(path: str, root: str) -> bool:
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_sources(pod: PodSpec, mounts: list[Mount], where: str = "") -> None:
    """Refuse a bind source a spec must not reach: a ``volume`` mount whose host path is not inside
    the workspace (``pod.workspace_root``, or the Pod's own directory when that is unset).
    ``hostPath`` and ``image`` mounts were allowed by the config and pass. Raises ExecutorError."""
    root = pod.workspace_root or pod.workdir
    for m in mounts:
        if m.kind in ("hostPath", "image"):
            continue
        if not root or not _inside(m.host_path, root):
            raise ExecutorError(
                f"Pod {pod.name!r}{where}: refusing to mount {m.host_path!r} at {m.container_path!r}: a volume's "
                f"directory must lie inside the workspace {root or '(none given)'}",
                fix="use emptyDir, persistentVolumeClaim, configMap or secret volumes, or allow the host "
                    "directory as a hostPath in localflow.yaml")


@dataclass(frozen=True)
class Bind:
    """``source`` (host path) visible at ``target`` inside the sandbox."""

    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class Shape:
    """What one sandbox looks like; equal shapes can share a sandboxed zygote.

    ``writable``: host directories bound read-write at their own paths (the workspace);
    ``visible``: host paths bound read-only at their own paths although the sandbox hides their
    parent (under ``/tmp``: an interpreter, localflow's working directory); ``binds``: mounts and
    image paths; ``read_only_files``: files re-bound read-only over a writable directory.
    """

    writable: tuple[str, ...]
    visible: tuple[str, ...]
    binds: tuple[Bind, ...]
    read_only_files: tuple[str, ...]

    def argv(self, *, cwd: str, info_fd: int | None = None) -> list[str]:
        """The ``bwrap ... --`` prefix that runs a program in this sandbox with working directory
        ``cwd`` (a path inside). With ``info_fd`` (a cold container, started by the thread that
        waits for it): the program is a session leader (``--new-session``: its pid is its process
        group, as for a Pod without a sandbox), dies with that thread (``--die-with-parent``), and
        bwrap writes ``{"child-pid": <host pid>}`` to ``info_fd``. Without: a zygote, which outlives
        the thread that started it and exits at EOF on its socket instead. Pids stay this
        machine's (no pid namespace), so groups are killed and sampled as without a sandbox."""
        head = [_bwrap(), "--cap-drop", "ALL"]  # bwrap sets PWD to the working directory, as a shell would
        if info_fd is not None:
            head += ["--die-with-parent", "--new-session", "--info-fd", str(info_fd)]
        return head + list(self._mounts()) + ["--chdir", cwd, "--"]

    def _mounts(self) -> tuple[str, ...]:
        return _mount_args(self)


@functools.lru_cache(maxsize=128)
def _mount_args(shape: Shape) -> tuple[str, ...]:
    targets = [b.target for b in shape.binds]
    mkdir_ok = ("/tmp",) + shape.writable
    expand = _expansions([t for t in targets if not any(_under(t, r) for r in mkdir_ok)])
    args: list[str] = []
    if expand:
        _emit_dir("/", expand, args)
    else:  # every mount point exists here: one recursive read-only bind of the root is cheaper
        args += ["--ro-bind", "/", "/"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    for extra in ("/dev/dri",) + tuple(f"/dev/{n}" for n in _listdir("/dev") if n.startswith("nvidia")):
        if os.path.exists(extra):  # GPUs stay usable
            args += ["--dev-bind", extra, extra]
    args += ["--tmpfs", "/tmp"]
    for v in shape.visible:  # before the writable binds: a visible /tmp/x must not cover a workspace inside it
        args += ["--ro-bind", v, v]
    for d in shape.writable:
        args += ["--bind", d, d]
    for b in sorted(shape.binds, key=lambda b: b.target.count("/")):  # a parent before what mounts inside it
        args += ["--ro-bind" if b.read_only else "--bind", b.source, b.target]
    for f in shape.read_only_files:  # -try: SQLite may delete its -wal/-shm files meanwhile
        args += ["--ro-bind-try", f, f]
    args += ["--remount-ro", "/"]
    return tuple(args)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _listdir(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def _expansions(targets: list[str]) -> frozenset[str]:
    """Host directories that must become tmpfs directories (children bound one by one) so that
    the missing mount points among ``targets`` can be created: each existing ancestor of the
    first missing component, ``/`` included (empty when nothing is missing)."""
    out: set[str] = set()
    for t in targets:
        parts = t.strip("/").split("/")
        for i in range(len(parts)):
            here = "/" + "/".join(parts[:i + 1])
            if not os.path.lexists(here):
                out.update("/" + "/".join(parts[:j]) if j else "/" for j in range(i + 1))
                break
    return frozenset(out)


def _emit_dir(d: str, expand: frozenset[str], args: list[str]) -> None:
    for name in _listdir(d):
        p = os.path.join(d, name)
        if p in _SPECIAL:
            continue
        if p in expand and os.path.isdir(p) and not os.path.islink(p):
            args += ["--dir", p]
            _emit_dir(p, expand, args)
        elif os.path.islink(p):
            args += ["--symlink", os.readlink(p), p]
        else:
            args += ["--ro-bind", p, p]


def container_shape(pod: PodSpec, c: ContainerSpec, *, interpreters: tuple[str, ...] = ()) -> Shape:
    """The sandbox of container ``c`` of ``pod``; raises ExecutorError for a refused bind
    (:func:`check_sources`) or a mount point no container can have (relative, ``/``, ``/proc``).

    ``interpreters``: programs the container may run that live under ``/tmp`` on this machine
    (a venv made by a test); their installation directory stays visible, read-only."""
    check_sources(pod, c.mounts, f" container {c.name!r}")
    pod_dir = pod.workdir or os.path.join("/tmp", f"localflow-{pod.uid}")
    root = os.path.realpath(pod.workspace_root) if pod.workspace_root else ""
    extra = {os.path.realpath(d) for d in os.environ.get(WRITABLE_VAR, "").split(os.pathsep) if d and os.path.isdir(d)}
    writable = tuple(sorted({d for d in (root, os.path.realpath(pod_dir)) if d and not (root and _inside(d, root))}
                            | ({root} if root else set()) | extra))
    binds: dict[str, Bind] = {}
    mapping_paths = dict(c.mapping.paths) if c.mapping else {}
    for target, source in mapping_paths.items():
        if os.path.exists(source):
            binds[_target(target, pod, c)] = Bind(os.path.realpath(source), _target(target, pod, c), True)
    for m in c.mounts:  # a volume wins over an image path at the same place
        target = _target(m.container_path, pod, c)
        source = os.path.realpath(m.host_path)
        if source == target and not m.read_only and any(_inside(source, w) for w in writable):
            binds.pop(target, None)
            continue  # already there, writable
        binds[target] = Bind(source, target, m.read_only)
    visible = set()
    try:
        here: tuple[str, ...] = (os.getcwd(),)
    except OSError:  # localflow's working directory was removed
        here = ()
    for path in here + tuple(os.path.dirname(os.path.dirname(os.path.abspath(p))) for p in interpreters):
        real = os.path.realpath(path)
        if real != "/tmp" and _under(real, "/tmp") and not any(_inside(path, w) for w in writable):  # /tmp itself stays private
            visible.add(real)
    ro_files = tuple(os.path.join(root, f) for f in _DB_FILES) if root else ()
    return Shape(writable=writable, visible=tuple(sorted(visible)),
                 binds=tuple(binds[t] for t in sorted(binds)), read_only_files=ro_files)


def _target(path: str, pod: PodSpec, c: ContainerSpec) -> str:
    norm = os.path.normpath(path) if path else ""
    if not os.path.isabs(norm) or norm == "/" or _under(norm, "/proc"):
        raise ExecutorError(f"Pod {pod.name!r} container {c.name!r}: cannot mount at {path!r}",
                            fix="mountPath must be an absolute path other than / and /proc")
    # a symlink on the way (/lib -> usr/lib) is followed, as the kernel would when mounting
    parent, leaf = os.path.split(norm)
    return os.path.join(os.path.realpath(parent), leaf)
