"""Bad input (issue 2, "Bad input"): each mistake gets one clear message naming the field path and
the fix; the API raises the documented error class, the CLI (``python -m localflow run``, a real
subprocess) exits 2 for spec errors and 1 for run failures, and never prints a traceback. Spec
errors are found before anything runs."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import dsl

from localflow.errors import LocalflowError, SpecError
from localflow.specs.pipeline import compile_pipeline_func
from pipeline_support import BASE, metadata_of


@dsl.component(base_image=BASE)
def num(n: int) -> int:
    return n


@dsl.container_component
def echo(msg: str):
    return dsl.ContainerSpec(image="alpine:3.19", command=["echo"], args=[msg])


@dsl.pipeline(name="bad-input")
def bad_input(n: int, s: str = "x", items: list = [1]):
    v = num(n=n)
    with dsl.If(v.output > 1, name="big"):
        echo(msg=s)


@pytest.fixture(scope="module")
def spec() -> dict:
    """The compiled PipelineSpec (compiled once per module; tests edit deep copies)."""
    return compile_pipeline_func(bad_input)[0]


def _write(tmp_path: Path, doc, name: str = "p.yaml") -> Path:
    f = tmp_path / name
    f.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return f


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localflow", "run", *args, "--workspace", str(tmp_path / "ws")],
                          capture_output=True, text=True, timeout=120)


def _one_clean_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _edited(spec: dict, edit) -> dict:
    s = copy.deepcopy(spec)
    edit(s)
    return s


def _set_condition(expr):
    def edit(s):
        s["root"]["dag"]["tasks"]["condition-1"]["triggerPolicy"]["condition"] = expr
    return edit


def _set_echo_args(args):
    def edit(s):
        s["deploymentSpec"]["executors"]["exec-echo"]["container"]["args"] = args
    return edit


def _set_component_ref(s):
    s["root"]["dag"]["tasks"]["num"]["componentRef"]["name"] = "comp-nope"


def _set_bad_enum(s):
    s["components"]["comp-num"]["inputDefinitions"]["parameters"]["n"]["parameterType"] = "INTEGERISH"


def _unknown_field(s):
    s["root"]["dag"]["tasks"]["num"]["retryPolicyy"] = {"maxRetryCount": 1}


SPEC_ERRORS = [
    # (id, edit of the compiled spec, params, field path that the message must start with)
    ("unknown-component", _set_component_ref, {"n": 3}, "root.dag.tasks['num'].componentRef.name"),
    ("bad-enum", _set_bad_enum, {"n": 3}, "components['comp-num'].inputDefinitions.parameters['n'].parameterType"),
    ("unknown-field", _unknown_field, {"n": 3}, "root.dag.tasks['num']"),
    ("condition-syntax", _set_condition("int(inputs.parameter_values['pipelinechannel--num-Output']) >"), {"n": 3},
     "root.dag.tasks['condition-1'].triggerPolicy.condition"),
    ("condition-unknown-input", _set_condition("inputs.parameter_values['nope'] > 1"), {"n": 3},
     "root.dag.tasks['condition-1'].triggerPolicy.condition"),
    ("unresolvable-placeholder", _set_echo_args(["{{$.inputs.parameters['nope']}}"]), {"n": 3},
     "deploymentSpec.executors['exec-echo'].container.args[0]"),
    ("unknown-placeholder", _set_echo_args(["x", "{{$.inputs.whatever}}"]), {"n": 3},
     "deploymentSpec.executors['exec-echo'].container.args[1]"),
    ("missing-parameter", lambda s: None, {}, "root.inputDefinitions.parameters['n']"),
    ("wrong-typed-parameter", lambda s: None, {"n": [1, 2]}, "root.inputDefinitions.parameters['n']"),
    ("unparsable-parameter", lambda s: None, {"n": "abc"}, "params['n']"),  # the API's argument, not the CLI's -p
    ("unknown-parameter", lambda s: None, {"n": 1, "zzz": 1}, "root.inputDefinitions.parameters['zzz']"),
    ("list-parameter-not-json", lambda s: None, {"n": 1, "items": "[1,"}, "params['items']"),
]


@pytest.mark.parametrize("edit, params, path", [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS])
def test_spec_errors_raise_spec_error_naming_the_field_before_anything_runs(localflow, spec, edit, params, path):
    with pytest.raises(SpecError) as err:
        localflow.run(_edited(spec, edit), params=params)
    assert str(err.value).startswith(path + ":"), str(err.value)
    assert err.value.exit_code == 2
    with metadata_of(localflow) as md:
        assert md.list_runs() == [] and md.list_executions() == []  # nothing ran, nothing recorded


CLI_SPEC_ERRORS = [
    ("unresolvable-placeholder", _set_echo_args(["{{$.inputs.parameters['nope']}}"]), ["-p", "n=3"],
     "deploymentSpec.executors['exec-echo'].container.args[0]"),
    ("condition-syntax", _set_condition("1 +"), ["-p", "n=3"], "root.dag.tasks['condition-1'].triggerPolicy.condition"),
    ("missing-parameter", lambda s: None, [], "root.inputDefinitions.parameters['n']"),
    ("wrong-typed-parameter", lambda s: None, ["-p", "n=abc"], "-p n"),
    ("not-name-value", lambda s: None, ["-p", "n"], "-p n"),
    ("bad-enum", _set_bad_enum, ["-p", "n=3"], "components['comp-num'].inputDefinitions.parameters['n'].parameterType"),
]


@pytest.mark.parametrize("edit, args, path", [c[1:] for c in CLI_SPEC_ERRORS], ids=[c[0] for c in CLI_SPEC_ERRORS])
def test_cli_exits_2_with_one_line_naming_the_field_for_spec_errors(tmp_path, spec, edit, args, path):
    f = _write(tmp_path, _edited(spec, edit))
    proc = _cli(tmp_path, str(f), *args)
    assert proc.returncode == 2, proc.stderr
    assert _one_clean_error_line(proc).startswith(f"error: {path}:")


def test_malformed_yaml_names_file_line_and_column(tmp_path, localflow):
    f = _write(tmp_path, "pipelineInfo:\n  name: x\nroot:\n  dag: [1, 2\n")
    with pytest.raises(SpecError) as err:
        localflow.run(str(f))
    assert str(err.value).startswith(f"{f}:5:1:") or str(err.value).startswith(f"{f}:4:")
    assert "fix the YAML syntax" in str(err.value)
    proc = _cli(tmp_path, str(f))
    assert proc.returncode == 2
    assert _one_clean_error_line(proc).startswith(f"error: {f}:")


def test_unknown_kind_is_a_spec_error_listing_what_can_run(tmp_path, localflow):
    f = _write(tmp_path, {"apiVersion": "example.com/v1", "kind": "Banana", "metadata": {"name": "b"}})
    with pytest.raises(SpecError) as err:
        localflow.run(str(f))
    assert "kind" in str(err.value) and "'Banana'" in str(err.value) and "PipelineSpec" in str(err.value)
    proc = _cli(tmp_path, str(f))
    assert proc.returncode == 2
    assert "Banana" in _one_clean_error_line(proc)


def test_a_document_that_is_neither_a_pipeline_nor_an_object_is_refused(tmp_path, localflow):
    f = _write(tmp_path, {"hello": "world"})
    with pytest.raises(SpecError) as err:
        localflow.run(str(f))
    assert "compiled KFP pipeline" in str(err.value)


def test_a_missing_spec_file_is_a_spec_error_exit_2(tmp_path, localflow):
    with pytest.raises(SpecError, match="no such file"):
        localflow.run(str(tmp_path / "nope.yaml"))
    proc = _cli(tmp_path, str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope.yaml" in proc.stderr


def test_a_condition_that_fails_at_run_time_fails_its_task_naming_the_condition(tmp_path, localflow, spec):
    # comparing a number with a string is only known once the upstream value exists
    bad = _edited(spec, _set_condition("inputs.parameter_values['pipelinechannel--num-Output'] > 'abc'"))
    run = localflow.run(bad, params={"n": 3})
    assert run.state == "FAILED"
    group = run.task("big")
    assert group.state == "FAILED"
    assert group.error.startswith("root.dag.tasks['condition-1'].triggerPolicy.condition:")
    assert "type mismatch" in group.error
    assert run.task("num").state == "SUCCEEDED"  # what ran before stays recorded
    with metadata_of(localflow) as md:
        assert {e["name"]: e["state"] for e in md.list_executions(run_id=run.id, type="system.ContainerExecution")} \
            == {"num": "COMPLETE"}
    proc = _cli(tmp_path, str(_write(tmp_path, bad)), "-p", "n=3")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "type mismatch" in proc.stderr


def test_a_missing_executable_fails_the_task_naming_the_image_and_the_config_key(tmp_path, localflow, spec):
    bad = _edited(spec, lambda s: s["deploymentSpec"]["executors"]["exec-echo"]["container"].update(
        command=["no-such-binary-xyz"]))
    run = localflow.run(bad, params={"n": 3})
    assert run.state == "FAILED"
    t = run.task("echo")
    assert t.state == "FAILED"
    assert "no-such-binary-xyz" in t.error and "alpine:3.19" in t.error and "localflow.yaml" in t.error
    pod = next(p for p in run.pods if p["metadata"]["name"] == t.pod)
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["reason"] == "ContainerCannotRun"
    proc = _cli(tmp_path, str(_write(tmp_path, bad)), "-p", "n=3")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "no-such-binary-xyz" in proc.stderr


@dsl.component(base_image=BASE)
def crash():
    raise ValueError("boom from user code")


@dsl.pipeline(name="crashing")
def crashing():
    crash()


def test_a_task_raising_in_user_code_fails_the_run_with_exit_1_and_its_log_tail(tmp_path, localflow):
    run = localflow.run(crashing)
    assert run.state == "FAILED"
    assert "ValueError: boom from user code" in run.task("crash").error
    assert "Traceback" in run.logs("crash")  # the user's traceback is in the task log, not on our stderr
    with pytest.raises(LocalflowError):
        run.raise_for_state()
    f = tmp_path / "crashing.yaml"
    from kfp import compiler

    compiler.Compiler().compile(crashing, str(f))
    proc = _cli(tmp_path, str(f))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "boom from user code" in proc.stderr


@dsl.pipeline(name="needs-artifact")
def needs_artifact(data: dsl.Input[dsl.Dataset]):
    echo(msg="x")


def test_a_pipeline_that_needs_an_input_artifact_is_refused_with_the_fix(localflow):
    with pytest.raises(SpecError) as err:
        localflow.run(needs_artifact)
    assert str(err.value).startswith("root.inputDefinitions.artifacts['data']:")
    assert "dsl.importer" in str(err.value)


@dsl.component(base_image=BASE)
def exit_quietly():
    import sys

    sys.exit(4)


@dsl.pipeline(name="quiet-failure")
def quiet_failure():
    exit_quietly()


def test_a_failure_without_a_message_points_at_the_logs(localflow):
    run = localflow.run(quiet_failure)
    t = run.task("exit-quietly")
    assert t.state == "FAILED"
    assert t.error == f"exit code 4 (Error) (see `localflow logs {t.pod}`)"
