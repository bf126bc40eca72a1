"""What a new user trips over (issue 7 section 5), through the real ``localflow`` command on
kfp-compiled pipelines and real job YAML: a ``.py`` spec, log files and ``logs --previous``, the
"already exists" hint, progress lines, Python-API error words, Pod names, kinds and columns of
``get``/``describe``, and the documented commands, options and environment variables."""

import io
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import compiler, dsl

import localflow
from localflow import logfiles
from localflow.clock import FakeClock
from localflow.errors import SpecError

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "scenarios" / "pipelines"


import functools

import cli_support

lf = functools.partial(cli_support.lf, cwd=cli_support.ROOT)


@dsl.container_component
def shout(msg: str):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "$0"'], args=[msg])


@dsl.pipeline(name="ux-hello")
def hello(msg: str = "hi"):
    shout(msg=msg).set_caching_options(False)


@pytest.fixture(scope="module")
def hello_yaml(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "hello.yaml"
    compiler.Compiler().compile(hello, str(path))
    return path


FLAKY = ("import os, pathlib, sys; f = pathlib.Path(os.environ['TRIES']); n = int(f.read_text() or 0) if f.exists() else 0; "
         "f.write_text(str(n + 1)); print('attempt', n + 1); sys.exit(0 if n >= 1 else 3)")


def tfjob(name, tries=None, replicas=1):
    """A TFJob whose worker fails its first attempt and succeeds on the restart in place (with
    ``tries``), or just prints (without)."""
    code = FLAKY if tries else "print('only attempt')"
    c = {"name": "tensorflow", "image": "python:3.11", "command": [sys.executable, "-c", code]}
    if tries:
        c["env"] = [{"name": "TRIES", "value": str(tries)}]
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
            "spec": {"tfReplicaSpecs": {"Worker": {"replicas": replicas, "restartPolicy": "OnFailure",
                                                   "template": {"spec": {"containers": [c]}}}}}}


# ---------------------------------------------------------------- 1. a Python file


def test_running_a_python_file_says_so_and_shows_both_fixes(tmp_path):
    src = tmp_path / "pipeline.py"
    src.write_text("from kfp import dsl\n\n@dsl.pipeline\ndef p():\n    pass\n")
    p = lf("run", src, "-W", tmp_path / "ws", check=2)
    assert len(p.stderr.strip().splitlines()) == 1
    assert "is a Python file" in p.stderr
    assert f"kfp dsl compile --py {src} --output {tmp_path / 'pipeline.yaml'}" in p.stderr
    assert "localflow.run(" in p.stderr
    assert not (tmp_path / "ws").exists()  # nothing ran, nothing was created


# ---------------------------------------------------------------- 2. logs


def test_logs_are_named_by_pod_uid_and_deleting_the_run_removes_them(hello_yaml, tmp_path):
    ws = tmp_path / "ws"
    lf("run", hello_yaml, "--name", "again", "-p", "msg=first", "-W", ws, check=0)
    (pod,) = json.loads(lf("get", "pods", "-W", ws, "-o", "json", check=0).stdout)["items"]
    uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
    assert name.startswith("again-shout-")
    assert sorted(p.relative_to(ws / "logs").as_posix() for p in (ws / "logs").rglob("*.log")) == [f"{uid}/main/0.log"]
    assert lf("logs", name, "-W", ws, check=0).stdout == "first\n"
    assert lf("delete", "run", "again", "-W", ws, check=0).stdout.strip() == 'run.pipelines.kubeflow.org "again" deleted'
    assert not (ws / "logs" / uid).exists()
    assert "not found" in lf("logs", name, "-W", ws, check=1).stderr
    lf("run", hello_yaml, "--name", "again", "-p", "msg=second", "-W", ws, check=0)  # the same name starts clean
    (pod2,) = json.loads(lf("get", "pods", "-W", ws, "-o", "json", check=0).stdout)["items"]
    assert lf("logs", pod2["metadata"]["name"], "-W", ws, check=0).stdout == "second\n"
    assert [p.name for p in (ws / "logs").iterdir()] == [pod2["metadata"]["uid"]]


def test_logs_previous_shows_the_instance_before_a_restart_in_place(tmp_path):
    """restartPolicy OnFailure: the kubelet restarts the container in the same Pod; `logs` shows the
    current instance, `logs -p` the one before, as kubectl does (a FakeClock makes the back-off instant)."""
    ws = tmp_path / "ws"
    r = localflow.run(tfjob("flaky", tmp_path / "tries"), workspace=ws, clock=FakeClock(), timeout=60)
    assert r.state == "SUCCEEDED", r.error
    assert lf("logs", "flaky-worker-0", "-W", ws, check=0).stdout == "attempt 2\n"
    assert lf("logs", "flaky-worker-0", "--previous", "-W", ws, check=0).stdout == "attempt 1\n"
    assert lf("logs", "flaky-worker-0", "-p", "-c", "tensorflow", "-W", ws, check=0).stdout == "attempt 1\n"
    assert r.logs("flaky-worker-0", previous=True) == "attempt 1\n"
    # a job deleted and run again under the same name starts with no old instances
    lf("delete", "tfjob", "flaky", "-W", ws, check=0)
    assert list((ws / "logs").iterdir()) == []
    assert localflow.run(tfjob("flaky"), workspace=ws, timeout=60).state == "SUCCEEDED"
    assert lf("logs", "flaky-worker-0", "-W", ws, check=0).stdout == "only attempt\n"
    p = lf("logs", "flaky-worker-0", "-p", "-W", ws, check=1)
    assert p.stderr.strip() == 'error: previous terminated container "tensorflow" in pod "flaky-worker-0" not found'


@pytest.mark.parametrize("name", ["main", "../../etc", "a/b", "UPPER", "x" * 300, "..", "with space", "\x00nul"])
def test_container_log_paths_stay_in_the_pod_directory_whatever_the_name(tmp_path, name):
    p = logfiles.log_path(tmp_path, "0b6e2a55-7f0e-4a40-9c0a-6c8c9d1c2f11", name, 3)
    assert p.parent.parent == tmp_path / "0b6e2a55-7f0e-4a40-9c0a-6c8c9d1c2f11" and p.name == "3.log"
    assert len(p.parent.name) <= 63 and "/" not in p.parent.name and p.parent.name not in (".", "..")
    assert logfiles.container_key(name) == logfiles.container_key(name)  # stable: the reader finds the writer's file
    with pytest.raises(SpecError):
        logfiles.log_path(tmp_path, "../escape", name)


# ---------------------------------------------------------------- 3. the "already exists" hint


def test_already_exists_hint_keeps_every_option_and_its_command_works(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(tfjob("keep")))
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text("images: {}\n")
    ws = tmp_path / "ws"
    # (no -p: a training job refuses parameters, see test_a_parameter_given_to_a_training_job_is_refused_not_ignored)
    opts = ["--executor", "subprocess", "--config", cfg, "-n", "team", "-W", ws, "--no-cache"]
    lf("run", spec, *opts, check=0)
    p = lf("run", spec, *opts, check=1)
    assert 'TFJob "keep" already exists in namespace "team"' in p.stderr
    rerun, delete = re.findall(r"`([^`]+)`", p.stderr)
    words = shlex.split(rerun)
    for opt in ("--executor", "subprocess", "--config", str(cfg), "-n", "team", "-W", str(ws), "--no-cache"):
        assert opt in words, (opt, rerun)
    assert words[-2:] == ["--name", "keep-2"]
    assert "TFJob keep-2 SUCCEEDED" in lf(*words[1:], check=0).stdout  # the hint's command runs as shown
    assert shlex.split(delete) == ["localflow", "delete", "tfjob", "keep", "-W", str(ws), "-n", "team"]
    lf(*shlex.split(delete)[1:], check=0)
    lf("run", spec, *opts, check=0)


# ---------------------------------------------------------------- 4. progress


def _progress_lines(stderr: str) -> list[tuple[str, str]]:
    """(STATE, task) of each progress line (``   1.23s STATE     task  extra``)."""
    out = []
    for line in stderr.splitlines():
        m = re.match(r"\s*\d+\.\d+s (\S+)\s+(\S+)", line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def test_progress_prints_each_state_change_of_a_retried_task_once(tmp_path):
    p = lf("run", PIPELINES / "retry.yaml", "-W", tmp_path / "ws", check=0)
    lines = _progress_lines(p.stderr)
    flaky = [s for s, t in lines if t == "flaky"]
    assert flaky == ["RUNNING", "RETRYING", "RUNNING", "SUCCEEDED"], p.stderr
    assert len(set(re.findall(r"pod/(\S+)", p.stderr))) == 3  # flaky's two attempts and report
    assert [s for s, t in lines if t == "report"] == ["RUNNING", "SUCCEEDED"]


def test_progress_of_a_training_job_prints_each_replica_change_once(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(tfjob("two", replicas=2)))
    lines = _progress_lines(lf("run", spec, "-W", tmp_path / "ws", check=0).stderr)
    # worker 0 decides a TFJob's success; worker 1 may still be starting when the job ends
    assert [s for s, t in lines if t == "two-worker-0"][-2:] == ["RUNNING", "SUCCEEDED"], lines
    for pod in ("two-worker-0", "two-worker-1"):
        states = [s for s, t in lines if t == pod]
        assert len(states) == len(set(states)), lines  # no state printed twice


def test_progress_prints_one_line_per_restart_in_place(tmp_path):
    from rich.console import Console

    from localflow.progress import Progress

    buf = io.StringIO()
    progress = Progress(enabled=True, console=Console(file=buf, width=400, color_system=None))
    r = localflow.run(tfjob("flaky", tmp_path / "tries"), workspace=tmp_path / "ws", clock=FakeClock(), timeout=60,
                      on_task=progress)
    assert r.state == "SUCCEEDED"
    states = [s for s, t in _progress_lines(buf.getvalue()) if t == "flaky-worker-0"]
    assert states.count("RETRYING") == 1 and states.count("SUCCEEDED") == 1, buf.getvalue()
    assert "restarting (1 restart): exit code 3; last log line: attempt 1" in buf.getvalue()


# ---------------------------------------------------------------- 5. Python API words


def test_python_api_errors_name_arguments_and_the_cli_names_flags(tmp_path):
    spec = str(PIPELINES / "params.yaml")
    defs = yaml.safe_load((PIPELINES / "params.yaml").read_text())["root"]["inputDefinitions"]["parameters"]
    name = next(k for k, d in defs.items() if d["parameterType"] == "NUMBER_INTEGER")
    with pytest.raises(SpecError) as err:
        localflow.run(spec, params={name: "abc"}, workspace=tmp_path / "ws")
    assert str(err.value).startswith(f"params['{name}']: expected an integer"), str(err.value)
    assert "-p " not in str(err.value) and "params={" in str(err.value)
    with pytest.raises(SpecError) as err:
        localflow.run(spec, executor="kubernetes", workspace=tmp_path / "ws")
    assert str(err.value).startswith("executor: unknown executor") and "--executor" not in str(err.value)
    with pytest.raises(SpecError) as err:
        localflow.run(spec, config=tmp_path / "missing.yaml", workspace=tmp_path / "ws")
    assert str(err.value).startswith("config: no such file") and "--config" not in str(err.value)
    # the command line keeps its own words
    assert lf("run", spec, "-p", f"{name}=abc", "-W", tmp_path / "ws", check=2).stderr.startswith(f"error: -p {name}: ")
    assert lf("run", spec, "--config", tmp_path / "missing.yaml", "-W", tmp_path / "ws",
              check=2).stderr.startswith("error: --config: no such file")


# ---------------------------------------------------------------- 6. Pod names


@pytest.mark.parametrize("scenario", ["exit_handler.yaml", "nested.yaml"])
def test_pod_names_carry_the_task_name_inside_exit_handlers_and_sub_dags(tmp_path, scenario):
    r = localflow.run(str(PIPELINES / scenario), workspace=tmp_path / "ws", cache=False)
    assert r.state == "SUCCEEDED", r.error
    containers = [t for t in r.tasks.values() if t.kind == "container"]
    assert containers and any("." in t.name for t in containers)  # some run inside a group
    for t in containers:
        assert len(t.pod) <= 63
        assert f"-{t.task}-" in t.pod, (t.name, t.pod)


# ---------------------------------------------------------------- 7. kinds, Lists, columns


@pytest.fixture(scope="module")
def ran(hello_yaml, tmp_path_factory):
    ws = tmp_path_factory.mktemp("ws")
    objects = tmp_path_factory.mktemp("objects") / "objects.yaml"
    objects.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\ntype: Opaque\nstringData: {password: hunter22, user: ada}\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {mode: fast, level: '3'}\n")
    lf("apply", "-f", objects, "-W", ws, check=0)
    lf("run", hello_yaml, "--name", "shown", "-W", ws, check=0)
    return ws


def test_get_pipelineruns_lists_the_kind_get_runs_shows(ran):
    runs = lf("get", "runs", "-W", ran, check=0).stdout
    assert re.search(r"^shown\s+PipelineRun\s+SUCCEEDED", runs, re.M), runs
    table = lf("get", "pipelineruns", "-W", ran, check=0).stdout
    assert table.splitlines()[0].split() == ["NAME", "STATE", "AGE"] and re.search(r"^shown\s+SUCCEEDED", table, re.M)
    assert json.loads(lf("get", "pipelinerun", "shown", "-W", ran, "-o", "json", check=0).stdout)["kind"] == "Run"
    assert "Name:         shown" in lf("describe", "pipelinerun", "shown", "-W", ran, check=0).stdout
    assert "Name:         shown" in lf("describe", "run", "shown", "-W", ran, check=0).stdout


@pytest.mark.parametrize("how", ["script", "module"])
def test_ctrl_c_while_the_command_is_still_importing_is_one_line_and_exit_130(tmp_path, how):
    """SIGINT in the middle of the imports (before the CLI's own handler exists): no traceback.
    ``python -v`` names each module as it is imported, so the signal lands while ``localflow`` is
    still being imported (its import takes far longer than a signal takes to arrive)."""
    import shutil
    import signal

    script = shutil.which("localflow", path=str(Path(sys.executable).parent))
    if how == "script" and script is None:
        pytest.skip("no localflow console script next to this interpreter")
    cmd = [sys.executable, "-v", *([script] if how == "script" else ["-m", "localflow"]),
           "run", str(tmp_path / "p.yaml"), "-W", str(tmp_path / "ws")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        own = []
        for line in proc.stderr:
            if line.startswith("import 'localflow.kinds'"):  # localflow/__init__.py is running
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.stderr.read()
        proc.wait(timeout=60)
        own = [ln for ln in rest.splitlines() if ln and not ln.startswith(("#", "import "))]
        assert proc.returncode == 130, (proc.returncode, own)
        assert own == ["error: interrupted while starting; nothing was run"], own
        assert not (tmp_path / "ws").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_unknown_kind_lists_every_name_get_takes_for_a_kind(ran):
    """The known kinds of the error include the kind table's plural aliases (``pipelineruns``)."""
    err = lf("get", "pipelinerunz", "-W", ran, check=2).stderr.strip()
    assert len(err.splitlines()) == 1 and "unknown kind 'pipelinerunz'" in err
    known = err.split("known kinds: ", 1)[1].rstrip(")").split(", ")
    assert {"pipelineruns", "runs", "pods", "jobs"} <= set(known) and known == sorted(known)


@pytest.mark.parametrize("kind", ["runs", "pipelineruns", "executions", "artifacts", "pods", "events", "secrets"])
@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_get_o_json_yaml_always_prints_a_kubectl_list(ran, kind, fmt):
    out = lf("get", kind, "-W", ran, "-o", fmt, check=0).stdout
    doc = json.loads(out) if fmt == "json" else yaml.safe_load(out)
    assert doc["apiVersion"] == "v1" and doc["kind"] == "List" and isinstance(doc["items"], list)


def test_get_secrets_and_configmaps_show_kubectls_columns(ran):
    secrets = lf("get", "secrets", "-W", ran, check=0).stdout.splitlines()
    assert secrets[0].split() == ["NAME", "TYPE", "DATA", "AGE"] and secrets[1].split()[:3] == ["db", "Opaque", "2"]
    cms = lf("get", "configmaps", "-W", ran, check=0).stdout.splitlines()
    assert cms[0].split() == ["NAME", "DATA", "AGE"] and cms[1].split()[:2] == ["settings", "2"]


def test_describe_secret_shows_keys_and_sizes_never_values(ran):
    out = lf("describe", "secret", "db", "-W", ran, check=0).stdout
    assert "Type:  Opaque" in out and "password:  8 bytes" in out and "user:  3 bytes" in out
    assert "hunter22" not in out and "aHVudGVyMjI" not in out


def test_describe_configmap_shows_keys_and_values(ran):
    out = lf("describe", "configmap", "settings", "-W", ran, check=0).stdout
    assert "Data\n====" in out and "mode:\n----\nfast" in out and "level:\n----\n3" in out


# ---------------------------------------------------------------- 8. gc -n, build-base, --version, README


def test_gc_takes_a_namespace(hello_yaml, tmp_path):
    lf("run", hello_yaml, "-W", tmp_path, check=0)
    assert lf("gc", "-n", "default", "-W", tmp_path, check=0).stdout.startswith("removed: 0 dead run(s)")
    assert lf("gc", "--namespace", "other", "--dry-run", "-W", tmp_path, check=0).stdout.startswith("would remove: 0")


def test_images_build_base_declares_its_options():
    out = lf("images", "build-base", "--help", check=0).stdout
    for opt in ("--tag", "--no-python", "--no-busybox", "--kfp-version", "--with", "--with-host", "--training",
                "--mirror", "--force"):
        assert opt in out
    p = lf("images", "build-base", "--no-such-option", check=2)
    assert "No such option" in p.stderr


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    assert lf("--version", check=0).stdout.strip() == f"localflow, version {version('localflow')}"


def _commands_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Commands"):text.index("\n## ", text.index("## Commands") + 1)]


def test_readme_documents_every_environment_variable_localflow_reads():
    used = set()
    for d in ("localflow", "executors", "fakes"):
        for f in (ROOT / d).rglob("*.py"):
            used.update(re.findall(r"\b(LOCALFLOW_[A-Z_]+)\b", f.read_text()))
    used.update({"LOCALFLOW_SANDBOX", "DOCKER_HOST"})
    readme = (ROOT / "README.md").read_text()
    assert {"LOCALFLOW_HOME", "LOCALFLOW_DEBUG", "LOCALFLOW_WARM", "LOCALFLOW_GPUS"} <= used
    missing = sorted(v for v in used if v not in readme)
    assert not missing, f"README.md does not document {missing}"


def _all_commands(group, prefix=()):
    import click

    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _all_commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


def test_readme_commands_section_names_every_option_of_every_command():
    from localflow.cli import cli

    section = _commands_section()
    missing = []
    for path, cmd in _all_commands(cli):
        for param in cmd.params:
            longs = [o for o in getattr(param, "opts", []) if o.startswith("--")]
            if longs and param.name not in ("help",) and not any(o in section for o in longs):
                missing.append(f"localflow {' '.join(path)} {longs[0]}")
    assert not missing, f"README.md ## Commands does not mention {missing}"


def test_progress_piped_into_a_reader_that_exits_does_not_cancel_the_run(tmp_path):
    """`localflow run … 2>&1 | head -1`: the pipe's reader exits after one line; the run still ends
    SUCCEEDED and is recorded so (rich's default on EPIPE exits the process, which canceled it)."""
    spec = Path(__file__).parent.parent / "scenarios" / "pipelines" / "noop_chain.yaml"
    ws = tmp_path / "ws"
    cmd = f"{shlex.quote(sys.executable)} -m localflow run {shlex.quote(str(spec))} -W {shlex.quote(str(ws))} 2>&1 | head -1"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=240)
    assert len(p.stdout.splitlines()) == 1
    assert p.returncode == 0, p.stdout
    runs = subprocess.run([sys.executable, "-m", "localflow", "get", "runs", "-W", str(ws), "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    (run,) = json.loads(runs.stdout)["items"]
    assert run["state"] == "SUCCEEDED", run


def test_a_parameter_given_to_a_training_job_is_refused_not_ignored(tmp_path):
    spec = Path(__file__).parent.parent / "scenarios" / "training" / "tfjob.yaml"
    p = subprocess.run([sys.executable, "-m", "localflow", "run", str(spec), "-p", "lr=0.1", "-W", str(tmp_path / "ws")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "-p lr" in p.stderr and "takes no parameters" in p.stderr
    with pytest.raises(SpecError, match=r"params\['lr'\]"):
        localflow.run(str(spec), params={"lr": 0.1}, workspace=tmp_path / "ws2")


def test_a_misspelled_replica_specs_key_is_named_in_the_fix(tmp_path):
    spec = Path(__file__).parent.parent / "scenarios" / "training" / "tfjob.yaml"
    bad = tmp_path / "tf.yaml"
    bad.write_text(spec.read_text().replace("tfReplicaSpecs", "tfReplicaSpec"))
    p = subprocess.run([sys.executable, "-m", "localflow", "run", str(bad), "-W", str(tmp_path / "ws")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert "rename TFJob.spec.tfReplicaSpec to tfReplicaSpecs" in p.stderr


def test_a_misspelled_kind_gets_a_did_you_mean(tmp_path):
    lf("apply", "-f", _configmap_file(tmp_path), "-W", tmp_path / "ws", check=0)  # a workspace to look in
    p = lf("get", "tfjbos", "-W", tmp_path / "ws", check=2)
    assert "did you mean 'tfjobs'?" in p.stderr and p.stderr.count("\n") == 1


def _configmap_file(tmp_path):
    f = tmp_path / "cm.yaml"
    f.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}))
    return f


@pytest.mark.parametrize("args, says", [
    (("-W", "somewhere", "get", "runs"), "No such option '-W'. (fix: options go after the command name"),
    (("get", "runs", "-o", "tabel"), "'tabel' is not one of 'json', 'yaml', 'wide'. (fix: see localflow get -h)"),
    (("run", "-e", "dockr", "x.yaml"), "'dockr' is not one of 'subprocess', 'docker'. (fix: see localflow run -h)"),
    (("wait", "run/x"), "Missing option '--for'. (fix: see localflow wait -h)"),
    (("nosuch",), "No such command 'nosuch'."),
])
def test_a_bad_option_or_command_is_one_line_with_exit_2(args, says, tmp_path):
    p = lf(*args, check=2, cwd=tmp_path)
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ") and says in p.stderr, p.stderr
