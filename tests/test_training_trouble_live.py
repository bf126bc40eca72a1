"""Training jobs in trouble, end to end with real processes: a crash-looping replica shows in the live
progress at every restart and ``backoffLimit`` ends it; a Pod that cannot run here fails the job at
once."""
from __future__ import annotations

import time
from pathlib import Path

import localflow
from localflow.clock import FakeClock
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.training.conditions import state

ROOT = Path(__file__).resolve().parents[1]
SCEN = ROOT / "scenarios" / "training"

# one line on stderr, then exit 2: what `python train.py --epochs x` does with a bad argument
CRASH = "import sys; print('ValueError: bad --epochs', file=sys.stderr); sys.exit(2)"
SLEEP = "import time; time.sleep(60)"
CRASH_LINE = "exit code 2; last log line: ValueError: bad --epochs"


def pytorchjob(name: str, master: str = CRASH, worker: str = SLEEP, backoff_limit: int | None = None) -> dict:
    def replica(code):
        return {"replicas": 1, "restartPolicy": "OnFailure", "template": {"spec": {"containers": [
            {"name": "pytorch", "image": "python:3.11-slim", "command": ["python", "-c", code]}]}}}

    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
           "spec": {"pytorchReplicaSpecs": {"Master": replica(master), "Worker": replica(worker)}}}
    if backoff_limit is not None:
        job["spec"]["runPolicy"] = {"backoffLimit": backoff_limit}
    return job


# ---------------------------------------------------------------- crash loops


def test_crash_looping_replica_is_reported_at_every_restart_until_backoff_limit_fails_the_job(tmp_path):
    """restartPolicy OnFailure: the kubelet restarts the container in place (the Pod stays Running); each restart
    is a progress record (RUNNING, error set) and the restarts count against runPolicy.backoffLimit
    (kubeflow/training-operator pkg/core/job.go PastBackoffLimit). A FakeClock makes the kubelet's back-off instant."""
    seen = []
    r = localflow.run(pytorchjob("looper", backoff_limit=3), workspace=tmp_path / "ws", clock=FakeClock(), timeout=60,
                      on_task=lambda rec: seen.append((rec.pod, rec.state, rec.error)))
    assert r.state == "FAILED"
    assert r.error == "Job looper has failed because it has reached the specified backoff limit"
    trouble = [e for p, s, e in seen if p == "looper-master-0" and s == "RUNNING" and e]
    assert trouble[:3] == [f"restarting (1 restart): {CRASH_LINE}", f"restarting (2 restarts): {CRASH_LINE}",
                           f"restarting (3 restarts): {CRASH_LINE}"], seen
    # the culprit ends FAILED with why; the worker it took down with it is CANCELED
    master, worker = r.tasks["looper-master-0"], r.tasks["looper-worker-0"]
    assert master.state == "FAILED", master
    assert master.error.startswith("stopped after crash-looping (") and master.error.endswith(CRASH_LINE)
    assert worker.state == "CANCELED"
    assert state(r.object["status"]) == "Failed"
    with MetadataStore(tmp_path / "ws" / "localflow.db") as md:
        execs = {e["name"]: e for e in md.list_executions(run_id=r.id)}
        assert execs["looper-master-0"]["state"] == "FAILED" and execs["looper-master-0"]["properties"]["restarts"] >= 3
        assert execs["looper-worker-0"]["state"] == "CANCELED"
        assert md.get_run(r.id)["state"] == "FAILED"


def test_crash_loop_without_backoff_limit_keeps_reporting_and_a_recovering_replica_succeeds(tmp_path):
    """No backoffLimit: the job keeps running (as on a cluster); a replica that succeeds after restarts ends SUCCEEDED."""
    flaky = ("import os, pathlib, sys; f = pathlib.Path(os.environ['TRIES']); n = int(f.read_text() or 0) if f.exists() else 0; "
             "f.write_text(str(n + 1)); print('attempt', n + 1, file=sys.stderr); sys.exit(0 if n >= 2 else 3)")
    job = pytorchjob("flaky", master=flaky, worker="print('worker done')")
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TRIES", "value": str(tmp_path / "tries")}]
    seen = []
    r = localflow.run(job, workspace=tmp_path / "ws", clock=FakeClock(), timeout=60,
                      on_task=lambda rec: seen.append((rec.pod, rec.state, rec.error)))
    assert r.state == "SUCCEEDED", r.error
    trouble = [e for p, s, e in seen if p == "flaky-master-0" and s == "RUNNING" and e]
    assert trouble == ["restarting (1 restart): exit code 3; last log line: attempt 1",
                       "restarting (2 restarts): exit code 3; last log line: attempt 2"]
    assert r.tasks["flaky-master-0"].state == "SUCCEEDED" and r.tasks["flaky-master-0"].restarts == 2


def test_scenario_without_its_image_map_fails_at_once_with_the_fix(tmp_path):
    """The user ran scenarios/training/pytorchjob.yaml without --config: /opt/scenario/pytorch_ddp.py exists only in
    the image. The replicas fail with ContainerCannotRun and the job fails at once (no recreate loop), saying why."""
    seen = []
    t0 = time.monotonic()
    r = localflow.run(str(SCEN / "pytorchjob.yaml"), workspace=tmp_path / "ws", timeout=60,
                      on_task=lambda rec: seen.append((rec.pod, rec.state)))
    assert time.monotonic() - t0 < 30
    assert r.state == "FAILED"
    assert r.error.startswith("PyTorchJob pytorch-ddp is failed because 1 Master replica(s) failed: pod "
                              "pytorch-ddp-master-0 cannot run here (ContainerCannotRun): ")
    assert "/opt/scenario/pytorch_ddp.py" in r.error and "localflow.yaml" in r.error
    assert ("pytorch-ddp-master-0", "FAILED") in seen
    store = ObjectStore(tmp_path / "ws" / "localflow.db")
    try:
        assert sorted(p["metadata"]["name"] for p in store.list("Pod")) == ["pytorch-ddp-master-0", "pytorch-ddp-worker-0"]
        scheduled = [e["involvedObject"]["name"] for e in store.list("Event") if e["reason"] == "Scheduled"]
        assert sorted(scheduled) == ["pytorch-ddp-master-0", "pytorch-ddp-worker-0"]  # each Pod ran once: no recreate loop
    finally:
        store.close()
