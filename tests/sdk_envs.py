"""One virtualenv per Kubeflow SDK for the real-SDK tests (their pins conflict: protobuf, ``kubernetes<37``;
``../shared/reference/apiserver.md`` section 2), created from PyPI with exact pins and reused between runs.

``sdk_python(name)`` returns the interpreter of the venv for ``SDKS[name]`` under
``$LOCALFLOW_TEST_VENVS`` (default ``~/.cache/localflow-test-venvs``), named ``<name>-<hash of the pins>``
so changing a pin makes a new one. A venv is complete only once its ``.complete`` marker is written;
a half-made one is removed and made again. When the install fails the test is skipped with pip's last
line as reason, except under ``CI=true``, where it fails. ``run_sdk_script`` runs a file of
``tests/sdk_scripts`` in that venv against a server and returns the JSON it prints last.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "sdk_scripts"

#: name -> exact pins. ``kubernetes`` is pinned below 37 (the pydantic rewrite breaks Katib and KServe).
SDKS: dict[str, list[str]] = {
    "training": ["kubeflow-training==1.9.4", "kubernetes==35.0.0"],
    "katib": ["kubeflow-katib==0.19.0", "kubernetes==35.0.0"],
    "kserve": ["kserve==0.21.0", "kubernetes==36.0.3"],
    "kubeflow": ["kubeflow==0.5.0"],
}


def venv_root() -> Path:
    """Where the SDK venvs are kept (``$LOCALFLOW_TEST_VENVS`` or ``~/.cache/localflow-test-venvs``)."""
    env = os.environ.get("LOCALFLOW_TEST_VENVS")
    return Path(env) if env else Path.home() / ".cache" / "localflow-test-venvs"


def venv_dir(name: str) -> Path:
    """The venv directory of SDK ``name``: its name and a hash of its pins and of this interpreter's version."""
    key = json.dumps([SDKS[name], sys.version_info[:2]]).encode()
    return venv_root() / f"{name}-{hashlib.sha256(key).hexdigest()[:12]}"


def ensure_venv(name: str, timeout: float = 1200) -> Path:
    """Create (once, under a file lock) the venv of SDK ``name`` and return its python.
    Raises :class:`RuntimeError` naming pip's last output line when the install fails."""
    d = venv_dir(name)
    py = d / "bin" / "python"
    if (d / ".complete").exists():
        return py
    venv_root().mkdir(parents=True, exist_ok=True)
    with open(venv_root() / f".{d.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (d / ".complete").exists():
            return py
        shutil.rmtree(d, ignore_errors=True)
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
        env.pop("PYTHONPATH", None)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(d)
            pip = [str(py), "-m", "pip"]
        except subprocess.CalledProcessError:
            # no ensurepip (Debian's python3 without python3-venv): this interpreter's pip installs into it
            venv.EnvBuilder(with_pip=False, clear=True).create(d)
            pip = [sys.executable, "-m", "pip", "--python", str(py)]
        p = subprocess.run([*pip, "install", "-q", *SDKS[name]], capture_output=True, text=True,
                           env=env, timeout=timeout, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            shutil.rmtree(d, ignore_errors=True)
            lines = [l for l in (p.stderr + p.stdout).splitlines() if l.strip()]
            raise RuntimeError(f"pip install {' '.join(SDKS[name])} failed: {lines[-1] if lines else p.returncode}")
        (d / ".complete").write_text(" ".join(SDKS[name]) + "\n")
    return py


def sdk_python(name: str) -> Path:
    """The venv python of SDK ``name``; skips the test when it cannot be installed (fails under ``CI=true``)."""
    try:
        return ensure_venv(name)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the {name} SDK venv could not be created under CI: {exc}")
        pytest.skip(f"the {name} SDK venv could not be created: {exc}")


def run_sdk_script(name: str, script: str, kubeconfig: Path, *args: str, timeout: float = 300) -> dict:
    """Run ``tests/sdk_scripts/<script>`` with the venv python of SDK ``name``, ``KUBECONFIG`` set to
    ``kubeconfig``; returns the JSON object on its last stdout line (asserting it exited 0)."""
    py = sdk_python(name)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "KUBECONFIG": str(kubeconfig),
           "HOME": str(Path(kubeconfig).parent), "PYTHONUNBUFFERED": "1"}
    p = subprocess.run([str(py), str(SCRIPTS / script), *args], capture_output=True, text=True, env=env,
                       timeout=timeout, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"{script} exited {p.returncode}\nstdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    assert lines, f"{script} printed nothing; stderr:\n{p.stderr[-4000:]}"
    return json.loads(lines[-1])
