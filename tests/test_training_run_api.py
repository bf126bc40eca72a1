"""Training jobs through ``localflow.run`` and the ``localflow`` command: Run, live replica progress,
metadata (run, one execution per replica, PVC outputs as artifacts with lineage), kubectl-shaped
inspection, exit codes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import localflow
from localflow.config import load_config
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.controllers.ownership import OWNER_PID_ANNOTATION
from localflow.errors import SpecError
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore

ROOT = Path(__file__).resolve().parents[1]
SCEN = ROOT / "scenarios" / "training"

# Master writes a model and metrics into the PVC (then exits $EXIT); the worker writes a note into the same claim.
MASTER = textwrap.dedent("""
    import json, os, sys, pathlib, time
    deadline = time.monotonic() + 20  # the master decides a PyTorchJob: wait for the worker's note first
    while not (pathlib.Path(sys.argv[1]) / "worker-note.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    out = pathlib.Path(sys.argv[1]) / "tiny"
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.pt").write_bytes(b"weights")
    (out / "metrics.json").write_text(json.dumps({"rank": os.environ["RANK"], "world": os.environ["WORLD_SIZE"]}))
    print("master saved", os.environ["MASTER_ADDR"], os.environ["WORLD_SIZE"])
    sys.exit(int(os.environ.get("EXIT", "0")))
""")
WORKER = textwrap.dedent("""
    import os, sys, pathlib
    (pathlib.Path(sys.argv[1]) / "worker-note.txt").write_text(os.environ["RANK"])
""")


def tiny_pytorchjob(name="tiny-torch", master_exit=0, restart="Never") -> dict:
    def replica(code, env):
        return {"replicas": 1, "restartPolicy": restart, "template": {"spec": {
            "containers": [{"name": "pytorch", "image": "python:3.11-slim", "command": ["python", "-c", code, "/mnt/models"],
                            "env": env, "volumeMounts": [{"name": "models", "mountPath": "/mnt/models"}]}],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}]}}}

    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Master": replica(MASTER, [{"name": "EXIT", "value": str(master_exit)}]),
                                             "Worker": replica(WORKER, [])}}}


@pytest.fixture(scope="module")
def config():
    return load_config(SCEN / "localflow.yaml")


def test_run_tfjob_reports_replicas_live_and_records_them(tmp_path, config):
    ws = tmp_path / "ws"
    seen: list[tuple[str, str, bool]] = []
    store = None

    def on_task(rec):
        nonlocal store
        store = store or ObjectStore(ws / "localflow.db")
        job = store.get("TFJob", "tf-config-check")
        finished = any(c["type"] in ("Succeeded", "Failed") and c["status"] == "True"
                       for c in job["status"].get("conditions") or [])
        seen.append((rec.pod, rec.state, finished))

    r = localflow.run(str(SCEN / "tfjob.yaml"), workspace=ws, config=config, on_task=on_task, timeout=120)
    assert r.state == "SUCCEEDED", r.error
    pods = ["tf-config-check-chief-0", "tf-config-check-ps-0", "tf-config-check-worker-0", "tf-config-check-worker-1"]
    assert sorted(r.tasks) == pods
    assert {t.state for t in r.tasks.values()} == {"SUCCEEDED"}
    assert {(t.replica_type, t.index) for t in r.tasks.values()} == {("Chief", 0), ("PS", 0), ("Worker", 0), ("Worker", 1)}
    # live: each replica was reported RUNNING while the job was still running, then SUCCEEDED
    order = {"PENDING": 0, "RUNNING": 1, "SUCCEEDED": 2}
    for pod in pods:
        states = [s for p, s, _ in seen if p == pod]
        assert states[-1] == "SUCCEEDED" and "RUNNING" in states, (pod, states)
        assert [order[s] for s in states] == sorted(order[s] for s in states), states
        assert all(not fin for p, s, fin in seen if p == pod and s == "RUNNING")
    store.close()

    # objects: the run id labels the job and its Pods, the job names the process that owns it
    assert r.object["metadata"]["labels"][RUN_ID_LABEL] == r.id == r.object["metadata"]["uid"]
    assert OWNER_PID_ANNOTATION in r.object["metadata"]["annotations"]
    assert sorted(p["metadata"]["name"] for p in r.pods) == pods
    assert {p["metadata"]["labels"][RUN_ID_LABEL] for p in r.pods} == {r.id}

    with MetadataStore(ws / "localflow.db") as md:
        run = md.get_run(r.id)
        assert (run["name"], run["kind"], run["state"], run["executor"], run["namespace"]) == \
            ("tf-config-check", "TFJob", "SUCCEEDED", "subprocess", "default")
        assert run["spec_path"].endswith("tfjob.yaml") and run["finished_at"]
        execs = md.list_executions(run_id=r.id)
        assert sorted(e["name"] for e in execs) == pods
        assert {e["type"] for e in execs} == {"kubeflow.org/Replica"}
        assert {e["state"] for e in execs} == {"COMPLETE"}
        chief = next(e for e in execs if e["name"] == "tf-config-check-chief-0")
        assert chief["properties"]["replica_type"] == "Chief" and chief["properties"]["exit_code"] == 0
        assert chief["properties"]["address"].startswith("127.0.0.1:") and chief["started_at"] and chief["finished_at"]
        assert {t.execution_id for t in r.tasks.values()} == {e["id"] for e in execs}
        ctx = next(c for c in (md.get_context(i) for i in range(1, 10)) if c["type"] == "kubeflow.org/TFJob")
        assert ctx["name"] == "tf-config-check"
        assert sorted(e["id"] for e in md.executions_in_context(ctx["id"])) == sorted(e["id"] for e in execs)
        assert md.list_artifacts(run_id=r.id) == []  # no PVC mounted, nothing recorded


def test_pvc_outputs_become_artifacts_produced_by_the_master(tmp_path):
    ws = tmp_path / "ws"
    old = ws / "pvc" / "models" / "before.pt"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"from an earlier run")
    os.utime(old, (1_000_000_000, 1_000_000_000))

    r = localflow.run(tiny_pytorchjob(), workspace=ws, timeout=60)
    assert r.state == "SUCCEEDED", r.error
    assert r.tasks["tiny-torch-master-0"].volumes == [{"claim": "models", "mountPath": "/mnt/models"}]
    with MetadataStore(ws / "localflow.db") as md:
        arts = {a["name"]: a for a in md.list_artifacts(run_id=r.id)}
        assert set(arts) == {"tiny/model.pt", "tiny/metrics.json", "worker-note.txt"}  # not before.pt
        model = arts["tiny/model.pt"]
        assert model["schema_title"] == "system.Model" and arts["tiny/metrics.json"]["schema_title"] == "system.Artifact"
        assert Path(model["uri"]) == ws / "pvc" / "models" / "tiny" / "model.pt" and Path(model["uri"]).read_bytes() == b"weights"
        assert model["metadata"]["mountPath"] == "/mnt/models/tiny/model.pt" and model["metadata"]["claim"] == "models"
        master = md.get_execution(r.tasks["tiny-torch-master-0"].execution_id)
        for a in arts.values():  # the master is the producer of everything written to the claim it shares
            assert md.lineage(a["id"])["producer"]["id"] == master["id"]
        assert [a["name"] for a in md.artifacts_of(master["id"], "OUTPUT")] == ["tiny/metrics.json", "tiny/model.pt",
                                                                                   "worker-note.txt"]
        ctx = next(c for c in (md.get_context(i) for i in range(1, 10)) if c["type"] == "kubeflow.org/PyTorchJob")
        assert {a["id"] for a in md.artifacts_in_context(ctx["id"])} == {a["id"] for a in arts.values()}


def test_crashing_replica_fails_the_run_with_the_operator_message(tmp_path):
    ws = tmp_path / "ws"
    r = localflow.run(tiny_pytorchjob("crashy", master_exit=3), workspace=ws, timeout=60)
    assert r.state == "FAILED"
    assert r.error == "PyTorchJob crashy is failed because 1 Master replica(s) failed."
    master = r.tasks["crashy-master-0"]
    assert (master.state, master.exit_code) == ("FAILED", 3)
    assert master.error == "pytorch exited with code 3 (Error); last log line: master saved 127.0.0.1 2"
    with pytest.raises(localflow.errors.RunFailed, match="crashy failed"):
        r.raise_for_state()
    with MetadataStore(ws / "localflow.db") as md:
        assert md.get_run(r.id)["state"] == "FAILED" and md.get_run(r.id)["error"] == r.error
        states = {e["name"]: e["state"] for e in md.list_executions(run_id=r.id)}
        assert states["crashy-master-0"] == "FAILED"


def test_suspended_job_is_refused_before_anything_runs(tmp_path):
    job = tiny_pytorchjob("sleepy")
    job["spec"]["runPolicy"] = {"suspend": True}
    with pytest.raises(SpecError) as err:
        localflow.run(job, workspace=tmp_path / "ws")
    assert err.value.path == "PyTorchJob.spec.runPolicy.suspend"
    assert not (tmp_path / "ws" / "localflow.db").exists() or not ObjectStore(tmp_path / "ws" / "localflow.db").list("PyTorchJob")


def test_runtimes_first_in_the_file_still_run_the_trainjob(tmp_path):
    """A file whose first document is a ClusterTrainingRuntime (as kubeflow/trainer's examples are) runs its TrainJob."""
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
               "metadata": {"name": "plain-python", "labels": {"trainer.kubeflow.org/framework": "torch"}},
               "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [
                   {"name": "node", "template": {"spec": {"template": {"spec": {"containers": [
                       {"name": "node", "image": "python:3.11-slim"}]}}}}}]}}}}
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "two-nodes"},
          "spec": {"runtimeRef": {"name": "plain-python", "kind": "ClusterTrainingRuntime", "apiGroup": "trainer.kubeflow.org"},
                   "trainer": {"numNodes": 2, "command": ["python", "-c",
                                                          "import os; print('rank', os.environ['PET_NODE_RANK'])"]}}}
    seen = []
    r = localflow.run([runtime, tj], workspace=tmp_path / "ws", on_task=lambda rec: seen.append((rec.pod, rec.state)),
                      timeout=60)
    assert r.state == "SUCCEEDED", r.error
    assert sorted(r.tasks) == ["two-nodes-node-0-0", "two-nodes-node-0-1"]
    assert {(p, s) for p, s in seen if s == "SUCCEEDED"} == {(p, "SUCCEEDED") for p in r.tasks}
    assert r.logs("two-nodes-node-0-1", "node").strip() == "rank 1"
    with MetadataStore(tmp_path / "ws" / "localflow.db") as md:
        assert md.get_run(r.id)["kind"] == "TrainJob"
        assert {(e["name"], e["state"]) for e in md.list_executions(run_id=r.id)} == \
            {("two-nodes-node-0-0", "COMPLETE"), ("two-nodes-node-0-1", "COMPLETE")}


# ---------------------------------------------------------------- the command


import functools

import cli_support

lf = functools.partial(cli_support.lf, cwd=cli_support.ROOT)


@pytest.fixture(scope="module")
def cli_ws(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    spec = d / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_pytorchjob()))
    p = lf("run", spec, "-W", d / "ws", check=0)
    return d / "ws", p


def test_cli_run_prints_replica_progress_and_the_result(cli_ws):
    _, p = cli_ws
    for pod in ("tiny-torch-master-0", "tiny-torch-worker-0"):
        assert any("RUNNING" in line and pod in line for line in p.stderr.splitlines()), p.stderr
        assert any("SUCCEEDED" in line and pod in line for line in p.stderr.splitlines()), p.stderr
    assert "PyTorchJob tiny-torch SUCCEEDED" in p.stdout


def test_cli_get_describe_logs_of_a_training_job(cli_ws):
    ws, _ = cli_ws
    out = lf("get", "pytorchjobs", "-W", ws, check=0).stdout
    assert out.split("\n")[1].split()[:2] == ["tiny-torch", "Succeeded"], out
    desc = lf("describe", "pytorchjob", "tiny-torch", "-W", ws, check=0).stdout
    assert "Events:" in desc and "SuccessfulCreatePod" in desc and "Created pod: tiny-torch-master-0" in desc
    assert "master saved 127.0.0.1 2" in lf("logs", "tiny-torch-master-0", "-W", ws, check=0).stdout
    pods = lf("get", "pods", "--run", "tiny-torch", "-W", ws, check=0).stdout
    assert [line.split()[0] for line in pods.strip().splitlines()[1:]] == ["tiny-torch-master-0", "tiny-torch-worker-0"]
    execs = json.loads(lf("get", "executions", "--run", "tiny-torch", "-W", ws, "-o", "json", check=0).stdout)["items"]
    assert sorted((e["name"], e["state"]) for e in execs) == [("tiny-torch-master-0", "COMPLETE"),
                                                             ("tiny-torch-worker-0", "COMPLETE")]
    arts = lf("get", "artifacts", "--run", "tiny-torch", "-W", ws, check=0).stdout
    assert "system.Model" in arts and "tiny/model.pt" in arts


def test_cli_rerun_of_an_existing_job_points_at_name_and_delete(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_pytorchjob("again")))
    lf("run", spec, "-W", tmp_path / "ws", check=0)
    p = lf("run", spec, "-W", tmp_path / "ws", check=1)
    assert p.stderr.startswith('error: PyTorchJob "again" already exists in namespace "default" (from an earlier run)')
    ws = tmp_path / "ws"
    assert f"`localflow run {spec} -W {ws} --name again-2`" in p.stderr and f"`localflow delete pytorchjob again -W {ws}`" in p.stderr
    assert "PyTorchJob again-2 SUCCEEDED" in lf("run", spec, "-W", tmp_path / "ws", "--name", "again-2", check=0).stdout


def test_rerun_in_another_namespace_names_the_namespace_in_both_fixes(tmp_path):
    job = tiny_pytorchjob("again")
    assert localflow.run(job, workspace=tmp_path / "ws", namespace="team", timeout=60).state == "SUCCEEDED"
    with pytest.raises(localflow.errors.AlreadyExists) as err:
        localflow.run(job, workspace=tmp_path / "ws", namespace="team", timeout=60)
    assert err.value.message == 'PyTorchJob "again" already exists in namespace "team" (from an earlier run)'
    assert "run_name='again-2'" in err.value.fix  # the Python API's argument, not the CLI's --name
    assert "`localflow delete pytorchjob again -n team`" in err.value.fix


def test_cli_crashing_replica_exits_1_with_the_operator_message(tmp_path):
    spec = tmp_path / "crash.yaml"
    spec.write_text(yaml.safe_dump(tiny_pytorchjob("crashy", master_exit=3)))
    p = lf("run", spec, "-W", tmp_path / "ws", check=1)
    assert p.stdout.strip().splitlines()[-1] == "PyTorchJob crashy is failed because 1 Master replica(s) failed."
    assert any("FAILED" in line and "crashy-master-0" in line and "exited with code 3" in line
               for line in p.stderr.splitlines()), p.stderr


def test_cli_bad_training_spec_exits_2_with_the_field_path(tmp_path):
    job = tiny_pytorchjob("bad")
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = -1
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(job))
    p = lf("run", spec, "-W", tmp_path / "ws", check=2)
    assert p.stderr.strip().splitlines() == [
        "error: PyTorchJob.spec.pytorchReplicaSpecs.Worker.replicas: must be >= 0 (got -1) (set replicas to 0 or more)"]


def test_gc_marks_a_training_run_failed_when_its_localflow_process_died(tmp_path):
    """The job carries the owner-pid annotation and the run-id label: `localflow gc` finds its dead run."""
    job = tiny_pytorchjob("sleeper")
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        spec["template"]["spec"]["containers"][0]["command"] = ["python", "-c", "import time; time.sleep(30)"]
    spec_path, ws = tmp_path / "sleeper.yaml", tmp_path / "ws"
    spec_path.write_text(yaml.safe_dump(job))
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(spec_path), "-W", str(ws)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 2:
            out = lf("get", "pods", "-W", ws, "-o", "json")
            items = json.loads(out.stdout)["items"] if out.returncode == 0 else []
            pids = [int(cs["containerID"].split("://")[1]) for p in items for cs in p["status"].get("containerStatuses") or []
                    if "running" in cs.get("state", {}) and str(cs.get("containerID", "")).startswith("process://")]
            time.sleep(0.1)
        assert len(pids) == 2, "the replicas did not start"
        runs = json.loads(lf("get", "runs", "-W", ws, "-o", "json", check=0).stdout)["items"]
        assert [(r["name"], r["state"]) for r in runs] == [("sleeper", "RUNNING")]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        lf("gc", "-W", ws, check=0)
        (run,) = json.loads(lf("get", "runs", "-W", ws, "-o", "json", check=0).stdout)["items"]
        assert run["state"] == "FAILED" and "gc" in run["error"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:  # whatever gc left behind
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


torch = pytest.importorskip("torch", reason="torch is not installed")


@pytest.mark.slow
def test_pytorchjob_scenario_model_is_a_system_model_produced_by_the_master(tmp_path, config):
    job = yaml.safe_load((SCEN / "pytorchjob.yaml").read_text())
    for spec in job["spec"]["pytorchReplicaSpecs"].values():  # fewer epochs: the model, not its accuracy, is under test
        spec["template"]["spec"]["containers"][0]["args"][1] = "2"
    r = localflow.run(job, workspace=tmp_path / "ws", config=config, timeout=300)
    assert r.state == "SUCCEEDED", r.error
    with MetadataStore(tmp_path / "ws" / "localflow.db") as md:
        models = md.list_artifacts(run_id=r.id, schema_title="system.Model")
        assert [a["name"] for a in models] == ["pytorch-ddp/model.pt"]
        assert set(torch.load(models[0]["uri"])) == {"weight", "bias"}
        producer = md.lineage(models[0]["id"])["producer"]
        assert producer["name"] == "pytorch-ddp-master-0" and producer["properties"]["replica_type"] == "Master"
        assert producer["state"] == "COMPLETE"
