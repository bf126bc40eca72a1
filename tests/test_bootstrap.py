"""Lightweight Python components: structural recognition, requirement checks, running offline."""
import json
import subprocess
import sys
from importlib.metadata import version

import pytest

from localflow.errors import ExecutorError
from localflow.pipelines import bootstrap
from localflow.pipelines.bootstrap import LightweightCommand, local_argv, missing_requirements, parse_lightweight
from localflow.pipelines.placeholders import PlaceholderContext, resolve_command
from localflow.specs.pipeline import compile_pipeline_func, load_pipeline

KFP = f"kfp=={version('kfp')}"
TYPING_EXT = 'typing-extensions>=3.7.4,<5; python_version<"3.9"'


@pytest.fixture(scope="module")
def executors():
    """Executors of one compiled pipeline with every lightweight emission variant."""
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def plain(x: int) -> int:
        import os

        return x + (1 if os.environ.get("_KFP_RUNTIME") == "true" else 100)

    @dsl.component(base_image="python:3.11", packages_to_install=["numpy==1.26.4", "pandas>=2"],
                   pip_index_urls=["https://a.example/simple", "https://b.example/simple"], use_venv=True)
    def heavy(x: float) -> float:
        return x

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def nopip(s: str) -> str:
        return s.upper()

    @dsl.component(base_image="python:3.11", install_kfp_package=False, packages_to_install=["six"],
                   pip_trusted_hosts=["pypi.example"], pip_index_urls=["https://pypi.example/simple"])
    def only_user(x: int) -> int:
        return x

    @dsl.component(base_image="python:3.11", packages_to_install=["kfp==2.17.3", "requests"])
    def own_kfp(x: int) -> int:
        return x

    @dsl.component(base_image="python:3.11", target_image="registry.example/comp:1")
    def packaged(x: int) -> int:
        return x

    @dsl.component(base_image="python:3.11", install_kfp_package=False)
    def fails(x: int) -> int:
        raise ValueError(f"bad x {x}")

    @dsl.container_component
    def shell(msg: str):
        return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", "pip install x && echo $0"], args=[msg])

    @dsl.pipeline(name="variants")
    def pipe():
        plain(x=1)
        heavy(x=1.0)
        nopip(s="a")
        only_user(x=1)
        own_kfp(x=1)
        packaged(x=1)
        fails(x=1)
        shell(msg="m")

    doc = load_pipeline(compile_pipeline_func(pipe))
    return {k[len("exec-"):]: v["container"] for k, v in doc.executors.items()}


def _parse(container) -> LightweightCommand | None:
    return parse_lightweight(container["command"], container.get("args"))


def test_default_component_is_recognised_with_kfp_requirement(executors):
    cmd = _parse(executors["plain"])
    assert cmd.form == "bootstrap"
    assert cmd.function_name == "plain"
    assert cmd.requirements == (KFP, TYPING_EXT)
    assert cmd.index_urls == () and cmd.use_venv is False
    assert cmd.executor_module == "kfp.dsl.executor_main"
    assert "def plain(x: int) -> int:" in cmd.module_source
    assert cmd.args == ("--executor_input", "{{$}}", "--function_to_execute", "plain")


def test_packages_index_urls_and_venv_are_extracted(executors):
    cmd = _parse(executors["heavy"])
    assert cmd.requirements == ("numpy==1.26.4", "pandas>=2", KFP, TYPING_EXT)
    assert cmd.index_urls == ("https://a.example/simple", "https://b.example/simple")
    assert cmd.trusted_hosts == ("https://a.example/simple", "https://b.example/simple")
    assert cmd.use_venv is True
    assert len(cmd.install_commands) == 2


def test_no_install_form_has_no_requirements(executors):
    assert executors["nopip"]["command"][:2] == ["sh", "-ec"]
    cmd = _parse(executors["nopip"])
    assert (cmd.form, cmd.requirements, cmd.bootstrap_script) == ("no-install", (), None)


def test_user_packages_without_kfp_injection(executors):
    cmd = _parse(executors["only-user"])
    assert cmd.requirements == ("six",)
    assert cmd.index_urls == ("https://pypi.example/simple",)
    assert cmd.trusted_hosts == ("pypi.example",)
    assert _parse(executors["own-kfp"]).requirements == ("kfp==2.17.3", "requests")


def test_containerized_component_is_recognised(executors):
    assert executors["packaged"]["command"] == ["python3", "-m", "kfp.dsl.executor_main"]
    cmd = _parse(executors["packaged"])
    assert (cmd.form, cmd.function_name, cmd.module_source) == ("containerized", "packaged", None)
    assert local_argv(cmd, "/usr/bin/python3", check=False) == [
        "/usr/bin/python3", "-m", "kfp.dsl.executor_main", "--executor_input", "{{$}}", "--function_to_execute", "packaged"]


def test_container_components_and_altered_scripts_are_not_lightweight(executors):
    assert _parse(executors["shell"]) is None
    plain = executors["plain"]
    altered_runner = list(plain["command"])
    altered_runner[5] = altered_runner[5].replace("ephemeral_component.py", "other.py")
    assert parse_lightweight(altered_runner, plain["args"]) is None
    extra_element = list(plain["command"]) + ["--extra"]
    assert parse_lightweight(extra_element, plain["args"]) is None
    no_ensurepip = list(plain["command"])
    no_ensurepip[2] = no_ensurepip[2].replace("ensurepip", "getpip")
    assert parse_lightweight(no_ensurepip, plain["args"]) is None
    assert parse_lightweight(plain["command"], ["--executor_input", "{{$}}"]) is None  # no function name


def test_requirements_are_checked_in_the_interpreter_with_markers_and_versions():
    reqs = (KFP, TYPING_EXT, "kfp==0.0.1", "definitely-not-installed-pkg-xyz>=1", "PyYAML", "git+https://example.com/x.git")
    assert missing_requirements(reqs, sys.executable) == [
        "kfp==0.0.1", "definitely-not-installed-pkg-xyz>=1", "git+https://example.com/x.git"]


def test_requirement_check_runs_once_per_interpreter_and_set():
    reqs = ("pyyaml", "networkx")
    missing_requirements(reqs, sys.executable)
    before = bootstrap._check.cache_info()
    assert missing_requirements(list(reqs), sys.executable) == []
    after = bootstrap._check.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (1, 0)


def test_missing_requirements_raise_executor_error_with_the_install_fix(executors):
    cmd = _parse(executors["heavy"])
    with pytest.raises(ExecutorError) as err:
        local_argv(cmd, sys.executable, image="python:3.11")
    msg = str(err.value)
    assert msg.startswith(f"image 'python:3.11' (function heavy) needs packages that {sys.executable} does not have: ")
    assert "pandas>=2 (not installed)" in msg or "pandas>=2 (installed: " in msg
    assert "numpy==1.26.4 (" in msg
    assert KFP not in msg.split(" (run ")[0]  # satisfied requirements are not listed
    assert err.value.fix.startswith(
        f"run `{sys.executable} -m pip install --index-url https://a.example/simple "
        "--extra-index-url https://b.example/simple numpy==1.26.4")
    assert err.value.fix.endswith("or map the image to an interpreter that has them in localflow.yaml `images:`")


def test_unknown_interpreter_is_an_executor_error():
    with pytest.raises(ExecutorError, match="python interpreter '/nonexistent/python3' not found"):
        missing_requirements(("six",), "/nonexistent/python3")


def _run(executors, name, executor_input, tmp_path):
    container = executors[name]
    args = resolve_command(container["args"], PlaceholderContext(executor_input=executor_input), "args")
    argv = local_argv(parse_lightweight(container["command"], args), sys.executable)
    assert argv[0] == sys.executable and not any("pip install" in a for a in argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)


def _executor_input(tmp_path, **params):
    return {
        "inputs": {"parameterValues": params},
        "outputs": {"parameters": {"Output": {"outputFile": str(tmp_path / "Output")}},
                    "outputFile": str(tmp_path / "task" / "output_metadata.json")},
    }


def test_component_runs_without_bootstrap_and_with_kfp_runtime_env(executors, tmp_path):
    proc = _run(executors, "plain", _executor_input(tmp_path, x=41), tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads((tmp_path / "task" / "output_metadata.json").read_text())
    assert out == {"parameterValues": {"Output": 42}}
    assert not list(tmp_path.glob("**/ephemeral_component.py"))


def test_failing_component_exits_nonzero_with_its_traceback(executors, tmp_path):
    proc = _run(executors, "fails", _executor_input(tmp_path, x=7), tmp_path)
    assert proc.returncode == 1
    assert "ValueError: bad x 7" in proc.stderr
    assert 'ephemeral_component.py", line' in proc.stderr


@pytest.mark.parametrize("pin", ["kfp==2.0.0", "kfp==2.99.1"])
def test_kfp_pin_of_another_2x_version_runs_on_the_installed_kfp(pin):
    cmd = LightweightCommand(form="bootstrap", function_name="f", args=(), module_source="", requirements=(pin,))
    argv = local_argv(cmd, sys.executable)
    assert argv[:2] == [sys.executable, "-c"]


def test_kfp_pin_of_another_major_version_is_missing():
    cmd = LightweightCommand(form="bootstrap", function_name="f", args=(), module_source="", requirements=("kfp==1.8.22",))
    with pytest.raises(ExecutorError) as e:
        local_argv(cmd, sys.executable)
    assert "kfp>=1,<2" in str(e.value)
