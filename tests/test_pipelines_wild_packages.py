"""``packages_to_install`` (issue 12): a lightweight component's packages that localflow's
interpreter lacks are installed once into a cached venv of the test's workspace and reused; the
warm path keeps working on that venv; offline (or with ``--no-install``) the task fails naming the
packages and how to pre-install them. ``inflection`` is a tiny pure-Python package that is not
installed on this machine (checked first). Pipelines compiled by the real kfp compiler."""
import json
import os
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner
from kfp import dsl

from localflow.cli import cli
from localflow.executors import warm
from localflow.pipelines.packages import COMPLETE_MARKER
from pipeline_support import BASE

PACKAGE = "inflection"


def _installed(name: str) -> bool:
    return subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True).returncode == 0


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


needs_index = pytest.mark.skipif(os.environ.get("CI") != "true" and not _index_reachable(),
                                 reason="PyPI is unreachable from this machine (CI=true runs it anyway)")
not_installed = pytest.mark.skipif(_installed(PACKAGE), reason=f"{PACKAGE} is installed here, so nothing to install")


@dsl.component(base_image=BASE, packages_to_install=[PACKAGE])
def camelize(word: str) -> str:
    import json
    import sys

    import inflection

    return json.dumps({"value": inflection.camelize(word), "prefix": sys.prefix})


@dsl.pipeline(name="needs-packages")
def needs_packages(word: str = "device_type") -> str:
    a = camelize(word=word).set_caching_options(False)
    b = camelize(word="second_task").set_caching_options(False).after(a)
    return b.output


def _venvs(localflow):
    root = localflow.workspace / "venvs"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


@needs_index
@not_installed
@pytest.mark.slow
def test_packages_are_installed_once_into_a_cached_venv_and_reused(localflow, capfd):
    run = localflow.run(needs_packages)
    assert run.state == "SUCCEEDED", run.error
    out = json.loads(run.outputs["Output"])
    assert out["value"] == "SecondTask"
    venvs = _venvs(localflow)
    assert len(venvs) == 1 and (venvs[0] / COMPLETE_MARKER).is_file()
    assert out["prefix"] == str(venvs[0])  # the task ran on the venv's interpreter
    err = capfd.readouterr().err
    assert err.count("installing 1 package for task camelize") == 1  # two tasks, one installation
    marker_mtime = (venvs[0] / COMPLETE_MARKER).stat().st_mtime_ns
    pod = next(p for p in run.pods if p["metadata"]["annotations"]["pipelines.kubeflow.org/task_path"] == "camelize")
    assert pod["metadata"]["annotations"]["localflow.dev/python"] == str(venvs[0] / "bin" / "python")

    # a second run performs no installation, and starts warm from the venv's zygote
    before = warm.spawn_count()
    run2 = localflow.run(needs_packages, params={"word": "x"})
    assert run2.state == "SUCCEEDED", run2.error
    assert "installing" not in capfd.readouterr().err
    assert _venvs(localflow) == venvs and (venvs[0] / COMPLETE_MARKER).stat().st_mtime_ns == marker_mtime
    if os.environ.get("LOCALFLOW_WARM", "1") != "0":
        assert warm.spawn_count() >= before + 2
    # the interpreter localflow runs on is untouched
    assert not _installed(PACKAGE)


@not_installed
def test_offline_the_task_fails_naming_the_packages_and_how_to_pre_install_them(localflow, monkeypatch):
    # pip with no index and no configured wheel directories: what an offline machine sees
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    run = localflow.run(needs_packages)
    assert run.state == "FAILED"
    error = run.task("camelize").error
    assert f"{PACKAGE} (not installed)" in error and "installing them failed" in error
    assert f"pip install {PACKAGE}" in error  # how to pre-install them
    assert "venvs" in error  # where a later online run caches them
    assert not [p for p in _venvs(localflow) if (p / COMPLETE_MARKER).exists()]  # nothing half-made is reused


@not_installed
def test_no_install_reports_the_missing_packages_without_installing(tmp_path):
    from kfp import compiler

    spec = tmp_path / "p.yaml"
    compiler.Compiler().compile(needs_packages, str(spec))
    ws = tmp_path / "ws"
    result = CliRunner().invoke(cli, ["run", str(spec), "-W", str(ws), "--no-install"])
    assert result.exit_code == 1
    assert "needs packages that" in result.output and PACKAGE in result.output
    assert "installing" not in result.output
    assert not (ws / "venvs").exists() or not any((ws / "venvs").iterdir())


@not_installed
def test_the_config_key_turns_installation_off(localflow, tmp_path):
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text("packages:\n  install: false\n")
    run = localflow.run(needs_packages, config=str(cfg))
    assert run.state == "FAILED"
    assert "needs packages that" in run.task("camelize").error
