"""The ``localflow`` command, run as a real subprocess against a real workspace."""

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from kfp import compiler, dsl

from localflow.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@dsl.container_component
def say(msg: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "$0"; mkdir -p "$(dirname "$1")"; printf %s "$0" > "$1"'],
                             args=[msg, out])


@dsl.container_component
def fail(code: int):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "about to fail"; exit "$0"'], args=[code])


@dsl.pipeline(name="cli-hello")
def hello(msg: str = "hi"):
    say(msg=msg).set_caching_options(False)


@dsl.pipeline(name="cli-fail")
def failing():
    fail(code=3)


from cli_support import lf


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    compiler.Compiler().compile(hello, str(d / "hello.yaml"))
    compiler.Compiler().compile(failing, str(d / "fail.yaml"))
    return d


@pytest.fixture(scope="module")
def done(specs, tmp_path_factory):
    """One successful run in a workspace, shared by the read-only command tests."""
    ws = tmp_path_factory.mktemp("ws")
    p = lf("run", specs / "hello.yaml", "-p", "msg=hello-cli", "-W", ws, "-o", "json", check=0)
    return ws, json.loads(p.stdout)


def test_run_prints_a_kubectl_list_with_the_run_and_its_pods(done):
    ws, listing = done
    assert listing["kind"] == "List"
    kinds = [i["kind"] for i in listing["items"]]
    assert kinds[0] == "Run" and "Pod" in kinds
    run = listing["items"][0]
    assert run["status"]["state"] == "SUCCEEDED"
    pod = next(i for i in listing["items"] if i["kind"] == "Pod")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Run"


def test_get_runs_pods_artifacts_executions_events(done):
    ws, listing = done
    run_name = listing["items"][0]["metadata"]["name"]
    out = lf("get", "runs", "-W", ws, check=0).stdout
    assert run_name in out and "SUCCEEDED" in out
    pods = lf("get", "pods", "-W", ws, check=0).stdout
    assert pods.splitlines()[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "Completed" in pods
    ex = json.loads(lf("get", "executions", "--run", run_name, "-W", ws, "-o", "json", check=0).stdout)["items"]
    assert {e["state"] for e in ex} == {"COMPLETE"}
    assert "Scheduled" in lf("get", "events", "-W", ws, check=0).stdout
    y = yaml.safe_load(lf("get", "pods", "--run", run_name, "-W", ws, "-o", "yaml", check=0).stdout)
    assert y["kind"] == "List" and len(y["items"]) == 1


def test_describe_and_logs_of_the_task_pod(done):
    ws, listing = done
    pod = next(i for i in listing["items"] if i["kind"] == "Pod")["metadata"]["name"]
    d = lf("describe", "pod", pod, "-W", ws, check=0).stdout
    assert f"Name:         {pod}" in d and "Events:" in d and "Started" in d
    assert lf("logs", pod, "-W", ws, check=0).stdout == "hello-cli\n"
    assert lf("logs", pod, "-f", "-W", ws, check=0).stdout == "hello-cli\n"
    run_name = listing["items"][0]["metadata"]["name"]
    assert "SUCCEEDED" in lf("describe", "run", run_name, "-W", ws, check=0).stdout


def test_failed_run_exits_1_and_keeps_its_records(specs, tmp_path):
    p = lf("run", specs / "fail.yaml", "-W", tmp_path, check=1)
    assert "exit code 3" in p.stderr and "about to fail" in p.stderr
    runs = json.loads(lf("get", "runs", "-W", tmp_path, "-o", "json", check=0).stdout)["items"]
    assert runs[0]["state"] == "FAILED"


@pytest.mark.parametrize("text,needle", [
    ("a: [unclosed", "bad.yaml:"),
    ("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "Widget"),
])
def test_bad_spec_exits_2_with_one_line(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    p = lf("run", f, "-W", tmp_path / "ws", check=2)
    assert p.stderr.startswith("error: ") and needle.lower() in p.stderr.lower()


def test_missing_required_parameter_names_it(specs, tmp_path):
    p = lf("run", specs / "hello.yaml", "-p", "nope=1", "-W", tmp_path, check=2)
    assert "nope" in p.stderr and "msg" in p.stderr
    p = lf("run", specs / "hello.yaml", "-p", "mgs=1", "-W", tmp_path, check=2)
    assert "did you mean 'msg'?" in p.stderr


def test_delete_run_cascades_to_its_pods(specs, tmp_path):
    listing = json.loads(lf("run", specs / "hello.yaml", "-W", tmp_path, "-o", "json", check=0).stdout)
    name = listing["items"][0]["metadata"]["name"]
    lf("delete", "run", name, "-W", tmp_path, check=0)
    assert "No resources found" in lf("get", "pods", "-W", tmp_path, check=0).stderr
    assert name in lf("get", "runs", "-W", tmp_path, check=0).stdout  # metadata history stays


def test_get_in_an_empty_directory_says_there_is_no_workspace(tmp_path):
    p = lf("get", "pods", "-W", tmp_path / "nothing", check=1)
    assert "no localflow workspace" in p.stderr


def _commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


@pytest.mark.parametrize("path,cmd", list(_commands(cli)), ids=lambda x: " ".join(x) if isinstance(x, tuple) else "")
def test_every_command_has_help_and_is_in_the_readme(path, cmd):
    assert cmd.help and len(cmd.help) > 20
    readme = (ROOT / "README.md").read_text()
    assert f"localflow {' '.join(path)}" in readme, f"README.md does not show `localflow {' '.join(path)}`"


@dsl.component(base_image="python:3.11")
def read_token() -> str:
    import os

    return os.environ["TOKEN"]


def test_applied_secret_reaches_a_pipeline_task_as_env(tmp_path):
    from kfp import kubernetes

    @dsl.pipeline(name="cli-secret")
    def secret_pipeline() -> str:
        t = read_token().set_caching_options(False)
        kubernetes.use_secret_as_env(t, secret_name="api", secret_key_to_env={"token": "TOKEN"})
        return t.output

    spec = tmp_path / "p.yaml"
    compiler.Compiler().compile(secret_pipeline, str(spec))
    secret = tmp_path / "secret.yaml"
    secret.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: s3cr3t}\n"
                      "data: {token: czNjcjN0}\n")
    p = lf("apply", "-f", secret, "-W", tmp_path / "ws", check=0)
    assert p.stdout.strip() == "secret/api created"
    p = lf("apply", "-f", secret, "-W", tmp_path / "ws", check=0)  # the same file again changes nothing
    assert p.stdout.strip() == "secret/api unchanged"
    secret.write_text(secret.read_text().replace("metadata: {name: api}", "metadata: {name: api, labels: {team: ml}}"))
    p = lf("apply", "-f", secret, "-W", tmp_path / "ws", check=0)
    assert p.stdout.strip() == "secret/api configured"
    stored = json.loads(lf("get", "secrets", "api", "-W", tmp_path / "ws", "-o", "json", check=0).stdout)
    assert stored["data"] == {"token": "czNjcjN0"} and "stringData" not in stored
    out = json.loads(lf("run", spec, "-W", tmp_path / "ws", "-o", "json", check=0).stdout)
    assert out["items"][0]["status"]["state"] == "SUCCEEDED"
    assert lf("run", spec, "-W", tmp_path / "ws", check=0).stdout.count("s3cr3t") == 1  # the output line


def test_apply_refuses_a_pipeline(specs, tmp_path):
    p = lf("apply", "-f", specs / "hello.yaml", "-W", tmp_path, check=2)
    assert "localflow run" in p.stderr


def test_a_refused_run_name_records_nothing(specs, tmp_path):
    lf("run", specs / "hello.yaml", "--name", "myrun", "-W", tmp_path, check=0)
    p = lf("run", specs / "hello.yaml", "--name", "myrun", "-W", tmp_path, check=1)
    assert "already exists" in p.stderr
    lf("run", specs / "hello.yaml", "--name", "My_Run", "-W", tmp_path, check=2)
    runs = json.loads(lf("get", "runs", "-W", tmp_path, "-o", "json", check=0).stdout)["items"]
    assert [(r["name"], r["state"]) for r in runs] == [("myrun", "SUCCEEDED")]


def test_get_refuses_label_selectors_on_metadata_and_filters_events_by_run(done):
    ws, listing = done
    p = lf("get", "runs", "-l", "a=b", "-W", ws, check=2)
    assert "--run" in p.stderr
    assert "SUCCEEDED" not in lf("get", "runs", "-n", "elsewhere", "-W", ws, check=0).stdout
    run_name = listing["items"][0]["metadata"]["name"]
    events = lf("get", "events", "--run", run_name, "-W", ws, check=0).stdout
    assert "Scheduled" in events and "Started" in events


def test_describe_artifact_by_a_non_numeric_id_is_a_clear_error(done):
    ws, _ = done
    p = lf("describe", "artifact", "abc", "-W", ws, check=2)
    assert "numeric ID" in p.stderr and "internal error" not in p.stderr


def test_describe_and_delete_run_reach_a_training_job_and_a_deleted_run(tmp_path, specs):
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "tiny"},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {
               "containers": [{"name": "pytorch", "image": "python:3.11", "command": [sys.executable, "-c", "pass"]}]}}}}}}
    f = tmp_path / "job.yaml"
    f.write_text(yaml.safe_dump(job))
    lf("run", f, "-W", tmp_path / "ws", check=0)
    d = lf("describe", "run", "tiny", "-W", tmp_path / "ws", check=0).stdout
    assert "Kind:         PyTorchJob" in d and "PyTorchJobSucceeded" in d
    lf("delete", "run", "tiny", "-W", tmp_path / "ws", check=0)
    assert "No resources found" in lf("get", "pytorchjobs", "-W", tmp_path / "ws", check=0).stderr
    d = lf("describe", "run", "tiny", "-W", tmp_path / "ws", check=0).stdout
    assert "state: SUCCEEDED" in d and "metadata record" in d


def test_sigterm_cancels_the_run_like_ctrl_c(tmp_path):
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(ROOT / "scenarios/pipelines/sleep_fanout.yaml"),
                             "-p", "seconds=60", "-W", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = lf("get", "pods", "-W", tmp_path)
        if p.returncode == 0 and p.stdout.count("Running") >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err
    runs = json.loads(lf("get", "runs", "-W", tmp_path, "-o", "json", check=0).stdout)["items"]
    assert runs[0]["state"] == "CANCELED"
    pods = json.loads(lf("get", "pods", "-W", tmp_path, "-o", "json", check=0).stdout)["items"]
    assert pods and all(p["status"]["phase"] == "Failed" for p in pods)


def _job_yaml(tmp_path, name, replica_key="replicas", metadata=None, command=None):
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": metadata or {"name": name},
           "spec": {"pytorchReplicaSpecs": {"Master": {replica_key: 1, "restartPolicy": "Never", "template": {"spec": {
               "containers": [{"name": "pytorch", "image": "example/trainer:1",
                               "command": command or [sys.executable, "-c", "pass"]}]}}}}}}
    f = tmp_path / f"{name}.yaml"
    f.write_text(yaml.safe_dump(job))
    return f


def test_a_misspelled_replica_field_and_a_scalar_metadata_are_spec_errors(tmp_path):
    p = lf("run", _job_yaml(tmp_path, "typo", replica_key="replica"), "-W", tmp_path / "ws", check=2)
    assert "pytorchReplicaSpecs.Master.replica: unknown field" in p.stderr and "replicas" in p.stderr
    p = lf("run", _job_yaml(tmp_path, "meta", metadata="name pytorch-ddp"), "-W", tmp_path / "ws", check=2)
    assert "PyTorchJob.metadata: must be a mapping" in p.stderr


def test_logs_of_a_container_that_never_started_say_why(tmp_path):
    f = _job_yaml(tmp_path, "nostart", command=["python3", "/opt/scenario/train.py"])
    lf("run", f, "-W", tmp_path / "ws", check=1)
    p = lf("logs", "nostart-master-0", "-W", tmp_path / "ws", check=1)
    assert "never started: ContainerCannotRun" in p.stderr and "/opt/scenario/train.py" in p.stderr
    p = lf("logs", "nostart-master-0", "-c", "nope", "-W", tmp_path / "ws", check=1)
    assert "containers: pytorch" in p.stderr


def test_a_failed_run_points_at_the_unused_localflow_yaml_beside_its_spec(tmp_path):
    p = lf("run", ROOT / "scenarios/training/pytorchjob.yaml", "--name", "hint", "-W", tmp_path, check=1)
    assert "/opt/scenario/pytorch_ddp.py" in p.stdout
    assert "maps this spec's images and was not used; pass --config" in p.stdout
    assert "scenarios/training/localflow.yaml" in p.stdout
