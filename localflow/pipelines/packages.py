"""``packages_to_install`` / ``pip_index_urls``: cached virtualenvs for lightweight components.

On a cluster a lightweight component's command pip-installs its packages into the container on
every start (kubeflow/pipelines ``sdk/python/kfp/dsl/component_factory.py``
``_get_packages_to_install_command``). Here the requirements the task's interpreter lacks are
installed ONCE into a virtualenv per (interpreter, requirement set, index URLs), kept in the
workspace (``<workspace>/venvs/<key>``) or the directory ``packages.cache`` of ``localflow.yaml``
names, and reused by every later task and run with the same set. The venv sees the interpreter's
own packages (``--system-site-packages``, plus a ``.pth`` naming the interpreter's site
directories, so a venv made from a venv sees kfp too); its ``bin/python`` becomes the task's
interpreter, and the warm fork server starts one zygote per venv (executors/warm.py keys zygotes
by interpreter). ``uv pip install`` is used when ``uv`` is installed (much faster), else
``<venv python> -m pip install``.

:class:`PackageInstaller` does it; :class:`PackageSettings` is the ``packages:`` section
(``install: false`` or ``--no-install`` turns installation off: a task whose packages are missing
then fails with the list of what is missing).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable

from localflow.errors import ExecutorError

__all__ = ["PackageSettings", "PackageInstaller", "venv_python", "COMPLETE_MARKER"]

#: Written last into a venv whose installation succeeded; a venv without it is rebuilt.
COMPLETE_MARKER = ".localflow-complete"
_INSTALL_TIMEOUT_S = 1800


@dataclass(frozen=True)
class PackageSettings:
    """``install``: install missing packages (default True); ``installer``: ``auto`` (uv when on
    PATH, else pip), ``uv`` or ``pip``; ``cache_dir``: where the venvs live (None: the workspace's
    ``venvs/``)."""

    install: bool = True
    installer: str = "auto"
    cache_dir: str | None = None


def venv_python(venv: str) -> str:
    """The interpreter of the venv directory ``venv``."""
    return os.path.join(venv, "Scripts", "python.exe") if os.name == "nt" else os.path.join(venv, "bin", "python")


_SITE_SCRIPT = ("import json, site, sys; "
                "print(json.dumps({'version': sys.version, 'site': [p for p in sys.path if p.endswith(('site-packages', 'dist-packages'))]}))")


class PackageInstaller:
    """Finds or builds the venv that gives a task the packages its interpreter lacks.

    ``settings``: :class:`PackageSettings`; ``default_cache_dir``: the workspace's venv directory;
    ``log``: called with one progress line per installation (default: stderr). Thread-safe and
    safe across processes (an ``fcntl`` lock per venv): two runs needing the same set install it once.
    """

    def __init__(self, settings: PackageSettings, default_cache_dir: str,
                 log: Callable[[str], None] | None = None):
        self.settings = settings
        self.cache_dir = settings.cache_dir or str(default_cache_dir)
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.installs = 0  # installations this installer performed (the benchmark and tests read it)
        self._lock = threading.Lock()
        self._base: dict[str, dict] = {}

    @property
    def enabled(self) -> bool:
        return self.settings.install

    def key(self, python: str, requirements, index_urls=(), trusted_hosts=()) -> str:
        """The venv key: a hash of the interpreter (resolved path and version), the sorted
        requirement set and the index URLs / trusted hosts, in that order."""
        base = self._base_info(python)
        blob = json.dumps([os.path.realpath(python), base["version"], sorted(set(requirements)),
                           list(index_urls), sorted(set(trusted_hosts))])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def python_for(self, python: str, requirements, *, index_urls=(), trusted_hosts=(), task: str = "",
                   described=None) -> str:
        """The interpreter of the cached venv over ``python`` that has ``requirements`` (pip specs
        ``python`` lacks), creating and filling it first when missing. ``task`` names the task in
        the progress line and errors; ``described``: the requirements as the error lists them
        (``x==1 (not installed)``, :func:`~localflow.pipelines.bootstrap.describe_report`). Raises
        ExecutorError naming the packages and how to
        pre-install them when the installation fails (offline, unknown package, bad index)."""
        requirements = list(dict.fromkeys(requirements))
        venv = os.path.join(self.cache_dir, self.key(python, requirements, index_urls, trusted_hosts))
        target = venv_python(venv)
        if os.path.exists(os.path.join(venv, COMPLETE_MARKER)):
            return target
        os.makedirs(self.cache_dir, exist_ok=True)
        with self._lock, open(venv + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be installing the same set
            if os.path.exists(os.path.join(venv, COMPLETE_MARKER)):
                return target
            shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted install
            n = len(requirements)
            self.log(f"installing {n} package{'s' if n != 1 else ''} for task {task}: {' '.join(requirements)}")
            started = time.monotonic()
            try:
                self._create(python, venv)
                self._install(target, requirements, index_urls, trusted_hosts)
            except ExecutorError as err:
                shutil.rmtree(venv, ignore_errors=True)
                raise self._failure(err, python, requirements, index_urls, task, described) from None
            with open(os.path.join(venv, COMPLETE_MARKER), "w") as f:
                json.dump({"python": python, "requirements": requirements, "index_urls": list(index_urls),
                           "seconds": round(time.monotonic() - started, 3)}, f)
            self.installs += 1
        return target

    # ---------------------------------------------------------------- steps
    def _base_info(self, python: str) -> dict:
        if python not in self._base:
            out = _run([python, "-c", _SITE_SCRIPT], f"{python} could not report its site directories")
            self._base[python] = json.loads(out.strip().splitlines()[-1])
        return self._base[python]

    def _create(self, python: str, venv: str) -> None:
        _run([python, "-m", "venv", "--system-site-packages", "--without-pip", venv],
             f"{python} -m venv could not create {venv}")
        # --system-site-packages reaches the BASE interpreter's packages only; a venv made from a
        # venv (localflow's own, say) must also see that venv's packages (kfp): name them in a .pth
        site_dir = _run([venv_python(venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        "the new venv does not start").strip().splitlines()[-1]
        with open(os.path.join(site_dir, "_localflow_base.pth"), "w") as f:
            f.write("\n".join(self._base_info(python)["site"]) + "\n")

    def _installer(self) -> str:
        choice = self.settings.installer
        if choice == "uv" and shutil.which("uv") is None:
            raise ExecutorError("packages.installer is uv and uv is not installed", fix="pip install uv, or set installer: auto")
        return "uv" if choice == "uv" or (choice == "auto" and shutil.which("uv")) else "pip"

    def _install(self, python: str, requirements, index_urls, trusted_hosts) -> None:
        options: list[str] = []
        for i, url in enumerate(index_urls):
            options += ["--index-url" if i == 0 else "--extra-index-url", url]
        if self._installer() == "uv":
            argv = ["uv", "pip", "install", "--python", python, *options, *requirements]
        else:
            for host in trusted_hosts:
                options += ["--trusted-host", host]
            argv = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--retries", "0",
                    "--timeout", "30", *options, *requirements]
        _run(argv, "installing the packages failed", timeout=_INSTALL_TIMEOUT_S)

    def _failure(self, err: ExecutorError, python: str, requirements, index_urls, task: str,
                 described=None) -> ExecutorError:
        options = "".join(f" --index-url {u}" if i == 0 else f" --extra-index-url {u}" for i, u in enumerate(index_urls))
        quoted = " ".join(shlex.quote(r) for r in requirements)
        return ExecutorError(
            f"task {task} needs packages that {python} does not have: {', '.join(described or requirements)}; "
            f"installing them failed: {err.message}",
            fix=f"run once with access to the package index (the venv is then cached in {self.cache_dir}), or "
                f"pre-install them: `{python} -m pip install{options} {quoted}`, or map the image to an interpreter "
                "that has them in localflow.yaml `images:`")


def _run(argv: list[str], what: str, timeout: float = 300) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/", check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ExecutorError(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise ExecutorError(f"{what}: still running after {timeout:.0f} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        last = next((ln for ln in reversed(lines) if "ERROR" in ln or "error" in ln), lines[-1] if lines else "no output")
        raise ExecutorError(f"{what} (exit {proc.returncode}): {last.strip()}")
    return proc.stdout
