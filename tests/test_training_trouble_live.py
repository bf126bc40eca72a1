"""Training jobs in trouble, end to end with real processes: a crash-looping replica shows in the live
progress at every restart and ``backoffLimit`` ends it; a Pod that cannot run here fails the job at
once; an interrupted run (Ctrl-C) or a dead one (``localflow gc``) leaves the job Failed with no
replica active and no process behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import re
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

import localflow
from localflow.clock import FakeClock
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.training.conditions import state
from localflow.training.records import mark_abandoned

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


import functools

import cli_support

lf = functools.partial(cli_support.lf, cwd=cli_support.ROOT, timeout=120)


def process_pids(store: ObjectStore, run_id: str | None = None) -> list[int]:
    """pids of the running containers of the store's Pods (``containerID: process://<pid>``)."""
    sel = {"localflow.dev/run-id": run_id} if run_id else None
    return [int(cs["containerID"].split("://")[1]) for p in store.list("Pod", None, label_selector=sel)
            for cs in (p.get("status") or {}).get("containerStatuses") or []
            if "running" in (cs.get("state") or {}) and str(cs.get("containerID", "")).startswith("process://")]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_until(predicate, seconds=30.0, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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
    # Both replicas fail at once; whichever the controller sees first names the job's failure, as upstream's
    # status update (a Go map walk over replica types) does not fix an order either.
    assert re.match(r"PyTorchJob pytorch-ddp is failed because 1 (Master|Worker) replica\(s\) failed: pod "
                    r"pytorch-ddp-(master|worker)-0 cannot run here \(ContainerCannotRun\): ", r.error), r.error
    assert "/opt/scenario/pytorch_ddp.py" in r.error and "localflow.yaml" in r.error
    assert {("pytorch-ddp-master-0", "FAILED"), ("pytorch-ddp-worker-0", "FAILED")} & set(seen)
    store = ObjectStore(tmp_path / "ws" / "localflow.db")
    try:
        assert sorted(p["metadata"]["name"] for p in store.list("Pod")) == ["pytorch-ddp-master-0", "pytorch-ddp-worker-0"]
        scheduled = [e["involvedObject"]["name"] for e in store.list("Event") if e["reason"] == "Scheduled"]
        assert sorted(scheduled) == ["pytorch-ddp-master-0", "pytorch-ddp-worker-0"]  # each Pod ran once: no recreate loop
    finally:
        store.close()


# ---------------------------------------------------------------- interrupted runs


def _interrupt_when_running(pods: set[str], store_path: Path, pids: list[int]):
    """An on_task that raises KeyboardInterrupt once every Pod in ``pods`` is RUNNING (as Ctrl-C would)."""
    running: set[str] = set()
    fired = []

    def on_task(rec):
        if rec.state == "RUNNING":
            running.add(rec.pod)
        if running >= pods and not fired:
            fired.append(True)
            store = ObjectStore(store_path)
            try:
                wait_until(lambda: len(process_pids(store)) >= len(pods), what="container pids")
                pids.extend(process_pids(store))
            finally:
                store.close()
            raise KeyboardInterrupt

    return on_task


def test_interrupted_run_leaves_the_job_failed_with_no_replica_active(tmp_path):
    ws = tmp_path / "ws"
    pids: list[int] = []
    on_task = _interrupt_when_running({"sleepy-master-0", "sleepy-worker-0"}, ws / "localflow.db", pids)
    with pytest.raises(KeyboardInterrupt):
        localflow.run(pytorchjob("sleepy", master=SLEEP), workspace=ws, on_task=on_task, timeout=60)
    assert len(pids) == 2
    assert not [p for p in pids if alive(p)], "replica processes outlived the interrupted run"
    store = ObjectStore(ws / "localflow.db")
    try:
        job = store.get("PyTorchJob", "sleepy")
        st = job["status"]
        assert state(st) == "Failed"
        failed = st["conditions"][-1]
        assert (failed["status"], failed["reason"]) == ("True", "PyTorchJobFailed")
        assert failed["message"] == ("PyTorchJob sleepy is failed because it was canceled: localflow was interrupted; "
                                     "its Pods were stopped.")
        assert [c["status"] for c in st["conditions"] if c["type"] == "Running"] in ([], ["False"])
        assert {k: (v["active"], v["failed"]) for k, v in st["replicaStatuses"].items()} == {"Master": (0, 1), "Worker": (0, 1)}
        assert st["completionTime"]
        pods = store.list("Pod")
        assert {(p["status"]["phase"], p["status"].get("reason")) for p in pods} == {("Failed", "Canceled")}
        events = [(e["type"], e["reason"]) for e in store.list("Event") if e["involvedObject"]["kind"] == "PyTorchJob"]
        assert ("Warning", "PyTorchJobFailed") in events
        run_id = job["metadata"]["labels"]["localflow.dev/run-id"]
    finally:
        store.close()
    with MetadataStore(ws / "localflow.db") as md:
        run = md.get_run(run_id)
        assert (run["state"], run["error"]) == ("CANCELED", "interrupted: the run was canceled")
        assert {(e["name"], e["state"], e["error"]) for e in md.list_executions(run_id=run_id)} == {
            ("sleepy-master-0", "CANCELED", "canceled: localflow was interrupted"),
            ("sleepy-worker-0", "CANCELED", "canceled: localflow was interrupted")}


def test_interrupted_trainjob_is_failed_with_no_job_active(tmp_path):
    runtime = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
               "metadata": {"name": "plain-python"},
               "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [
                   {"name": "node", "template": {"spec": {"template": {"spec": {"containers": [
                       {"name": "node", "image": "python:3.11-slim"}]}}}}}]}}}}
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "nap"},
          "spec": {"runtimeRef": {"name": "plain-python", "kind": "ClusterTrainingRuntime", "apiGroup": "trainer.kubeflow.org"},
                   "trainer": {"numNodes": 2, "command": ["python", "-c", SLEEP]}}}
    ws = tmp_path / "ws"
    pids: list[int] = []
    on_task = _interrupt_when_running({"nap-node-0-0", "nap-node-0-1"}, ws / "localflow.db", pids)
    with pytest.raises(KeyboardInterrupt):
        localflow.run([runtime, tj], workspace=ws, on_task=on_task, timeout=60)
    assert len(pids) == 2 and not [p for p in pids if alive(p)]
    store = ObjectStore(ws / "localflow.db")
    try:
        st = store.get("TrainJob", "nap")["status"]
        assert [(c["type"], c["status"], c["reason"], c["message"]) for c in st["conditions"]] == [
            ("Failed", "True", "FailedJobs",
             "TrainJob nap is failed because it was canceled: localflow was interrupted; its Pods were stopped.")]
        assert [(j["name"], j["active"], j["ready"], j["failed"]) for j in st["jobsStatus"]] == [("node", 0, 0, 1)]
    finally:
        store.close()


def test_run_that_times_out_stops_the_job_and_says_so(tmp_path):
    ws = tmp_path / "ws"
    with pytest.raises(TimeoutError):
        localflow.run(pytorchjob("slow", master=SLEEP), workspace=ws, timeout=1.5)
    store = ObjectStore(ws / "localflow.db")
    try:
        job = store.get("PyTorchJob", "slow")
        assert state(job["status"]) == "Failed"
        assert job["status"]["conditions"][-1]["message"] == (
            "PyTorchJob slow is failed because it did not finish in time (PyTorchJob slow did not finish within 1.5s); "
            "its Pods were stopped.")
        assert {p["status"]["phase"] for p in store.list("Pod")} == {"Failed"}
        run_id = job["metadata"]["labels"]["localflow.dev/run-id"]
    finally:
        store.close()
    with MetadataStore(ws / "localflow.db") as md:
        assert md.get_run(run_id)["state"] == "FAILED"
        assert {e["error"] for e in md.list_executions(run_id=run_id)} == {"stopped: the run did not finish in time"}


# `localflow run ...` with SIGINT handled as in a terminal (a background job of a script inherits it ignored)
_WITH_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                "os.execv(sys.executable, [sys.executable, '-m', 'localflow'] + sys.argv[1:])")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_localflow_run_leaves_no_running_job(tmp_path, sig):
    """The user's report: after Ctrl-C, `localflow get pytorchjobs` still said Running with active: 1."""
    spec, ws = tmp_path / "sleepy.yaml", tmp_path / "ws"
    spec.write_text(yaml.safe_dump(pytorchjob("sleepy", master=SLEEP)))
    proc = subprocess.Popen([sys.executable, "-c", _WITH_SIGINT, "run", str(spec), "-W", str(ws)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pids: list[int] = []
    try:
        def both_running():
            out = lf("get", "pods", "-W", ws, "-o", "json")
            items = json.loads(out.stdout)["items"] if out.returncode == 0 and out.stdout.strip() else []
            found = [int(cs["containerID"].split("://")[1]) for p in items
                     for cs in p["status"].get("containerStatuses") or []
                     if "running" in cs.get("state", {}) and str(cs.get("containerID", "")).startswith("process://")]
            return found if len(found) == 2 else None

        pids = wait_until(both_running, 60, "both replicas running")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted" in err
        out = lf("get", "pytorchjobs", "-W", ws, check=0).stdout
        assert out.splitlines()[1].split()[:2] == ["sleepy", "Failed"], out
        job = json.loads(lf("get", "pytorchjob", "sleepy", "-W", ws, "-o", "json", check=0).stdout)
        assert all(rs["active"] == 0 for rs in job["status"]["replicaStatuses"].values()), job["status"]
        assert not [p for p in pids if alive(p)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in pids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


# ---------------------------------------------------------------- dead runs (the gc hook)


def test_mark_abandoned_finishes_the_job_pods_and_records_of_a_dead_run(tmp_path):
    """`localflow gc` calls mark_abandoned for a run whose localflow process died (here: SIGKILL)."""
    spec, ws = tmp_path / "sleepy.yaml", tmp_path / "ws"
    spec.write_text(yaml.safe_dump(pytorchjob("sleepy", master=SLEEP)))
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(spec), "-W", str(ws)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    pids: list[int] = []
    try:
        def both_running():
            if not (ws / "localflow.db").exists():
                return None
            store = ObjectStore(ws / "localflow.db")
            try:
                found = process_pids(store)
                # the operator marks the job Running on its next reconcile after the replicas run
                job_running = len(found) == 2 and state(store.get("PyTorchJob", "sleepy")["status"]) == "Running"
            finally:
                store.close()
            return found if job_running else None

        pids = wait_until(both_running, 60, "both replicas and the job running")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        for pid in pids:  # what gc does first: kill the orphaned process groups
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:  # localflow's watchdog already killed them (issue 7: Pods die with localflow)
                pass
        store, md = ObjectStore(ws / "localflow.db"), MetadataStore(ws / "localflow.db")
        try:
            (run,) = md.list_runs()
            assert state(store.get("PyTorchJob", "sleepy")["status"]) == "Running"
            reason = "the localflow process running it is gone (cleaned by gc)"
            (job,) = mark_abandoned(store, run, reason, metadata=md)
            assert state(job["status"]) == "Failed"
            assert job["status"]["conditions"][-1]["message"] == f"PyTorchJob sleepy is failed because {reason}; its Pods were stopped."
            assert all(rs["active"] == 0 and rs["failed"] == 1 for rs in job["status"]["replicaStatuses"].values())
            assert {(p["status"]["phase"], p["status"]["reason"]) for p in store.list("Pod")} == {("Failed", "Orphaned")}
            assert {e["state"] for e in md.list_executions(run_id=run["id"])} == {"CANCELED"}
            assert (md.get_run(run["id"])["state"], md.get_run(run["id"])["error"]) == ("FAILED", reason)
            assert store.get("PyTorchJob", "sleepy") == job
            assert mark_abandoned(store, run["id"], reason, metadata=md) == [store.get("PyTorchJob", "sleepy")]  # idempotent
            assert mark_abandoned(store, "no-such-run", reason, metadata=md) == []
        finally:
            store.close()
            md.close()
        # and through the command: gc leaves the job Failed
        out = lf("get", "pytorchjobs", "-W", ws, check=0).stdout
        assert out.splitlines()[1].split()[:2] == ["sleepy", "Failed"], out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in pids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)
