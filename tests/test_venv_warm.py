"""A Pod whose command is ``python`` starts warm also when ``python`` is a virtualenv's
interpreter (then the Pod's ``python`` shim is a script, see executors/shims.py)."""
import os
import subprocess
import sys

from localflow.executors import warm
from localflow.executors.base import ContainerSpec, ImageMapping, PodSpec
from localflow.executors.shims import shim_target
from localflow.executors.subprocess import SubprocessExecutor


def test_python_of_a_virtualenv_starts_warm_and_sees_the_venv(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCALFLOW_WARM", raising=False)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
                   check=True, timeout=120)
    python = str(venv / "bin" / "python")
    out = tmp_path / "out.txt"
    code = ("import os, sys; open(sys.argv[1], 'w').write(f'{sys.prefix} {os.getppid()}')")
    c = ContainerSpec(name="main", image="python:3.11", argv=["python", "-c", code, str(out)],
                      log_path=str(tmp_path / "main.log"), mapping=ImageMapping(image="python:3.11", python=python))
    pod = PodSpec(uid="venv", namespace="default", name="venv", containers=[c], workdir=str(tmp_path / "pods" / "venv"),
                  workspace_root=str(tmp_path))
    before = warm.spawn_count()
    (result,) = SubprocessExecutor().start(pod).wait(120)
    assert result.exit_code == 0, (tmp_path / "main.log").read_text()
    shim = tmp_path / "pods" / "venv" / "bin" / "python"
    assert not os.path.islink(shim) and shim_target(str(shim)) == python  # a script, recognised as the venv's python
    prefix, ppid = out.read_text().split()
    assert prefix == str(venv)  # the venv's packages, as a cold start through the script would see
    assert warm.spawn_count() == before + 1 and int(ppid) in warm.zygote_pids()
