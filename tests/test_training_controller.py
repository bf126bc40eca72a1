"""The v1 training controller end to end: real processes through the scheduler and subprocess executor.

Waits poll the store with a deadline; deadlines and TTLs are driven with a FakeClock.
"""
from __future__ import annotations

import sys
import time

import psutil
import pytest

from localflow.api import open_runtime, read_logs
from localflow.clock import FakeClock
from localflow.controllers.trainingjob import TrainingJobController
from localflow.errors import Unschedulable
from localflow.scheduler import Capacity
from localflow.training.conditions import state

PY = sys.executable


def rs(code, n=1, policy=None, container="pytorch", cpu=None):
    c = {"name": container, "image": "python:3.11", "command": [PY, "-c", code]}
    if cpu:
        c["resources"] = {"requests": {"cpu": cpu}}
    d = {"replicas": n, "template": {"spec": {"containers": [c]}}}
    if policy:
        d["restartPolicy"] = policy
    return d


def pytorchjob(name, master, worker, **run_policy):
    specs = {"Worker": worker}
    if master:
        specs["Master"] = master
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": specs, "runPolicy": run_policy}}


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as runtime:
        yield runtime


@pytest.fixture
def ctl(rt):
    return TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)


def wait_for(fn, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def phases(rt, job):
    return {p["metadata"]["name"]: p["status"].get("phase")
            for p in rt.store.list("Pod", "default", label_selector={"training.kubeflow.org/job-name": job})}


def reasons(rt, obj):
    return [e["reason"] for e in rt.store.events_for(obj)]


def count(rt, obj, reason):
    """Occurrences of an event reason (identical events are aggregated into ``count``)."""
    return sum(int(e.get("count", 1)) for e in rt.store.events_for(obj) if e["reason"] == reason)


SLEEP = "import time; time.sleep(60)"


def test_pytorchjob_runs_every_replica_with_its_rank_and_succeeds(rt, ctl):
    code = "import os; print(os.environ['RANK'], os.environ['WORLD_SIZE'], os.environ['MASTER_ADDR'])"
    ctl.apply(pytorchjob("ok", rs(code), rs(code, 2)))
    job = ctl.run_until_done("ok", timeout=60)
    conds = [(c["type"], c["status"]) for c in job["status"]["conditions"]]
    # Running appears (then turns False on success) only if a reconcile saw the replicas running:
    # warm-started replicas can finish before that, as Pods can on a cluster
    assert conds in ([("Created", "True"), ("Running", "False"), ("Succeeded", "True")],
                     [("Created", "True"), ("Succeeded", "True")])
    # the master decides; cleanPodPolicy None leaves workers to finish on their own
    wait_for(lambda: set(phases(rt, "ok").values()) == {"Succeeded"})
    logs = {n: read_logs(rt.workspace, n, "pytorch").split() for n in phases(rt, "ok")}
    assert logs == {"ok-master-0": ["0", "3", "127.0.0.1"], "ok-worker-0": ["1", "3", "127.0.0.1"],
                    "ok-worker-1": ["2", "3", "127.0.0.1"]}
    assert {"PyTorchJobCreated", "SuccessfulCreatePod", "ExitedWithCode", "PyTorchJobSucceeded"} <= set(reasons(rt, job))
    rec = ctl.records("ok")
    assert rec["ok-worker-1"].exit_code == 0 and rec["ok-worker-1"].replica_type == "Worker"


def test_worker_failure_with_never_fails_job_and_keeps_master_by_default(rt, ctl):
    ctl.apply(pytorchjob("nv", rs(SLEEP, policy="Never"), rs("import sys; sys.exit(2)", policy="Never")))
    job = ctl.run_until_done("nv", timeout=60)
    assert state(job["status"]) == "Failed"
    assert job["status"]["conditions"][-1]["message"] == "PyTorchJob nv is failed because 1 Worker replica(s) failed."
    # cleanPodPolicy None (kubeflow/trainer#1579): the master is kept, not stopped (on a loaded machine
    # the worker can fail before the master's process has started, so it may still be Pending)
    assert phases(rt, "nv")["nv-master-0"] in ("Pending", "Running")


def test_clean_pod_policy_running_kills_the_master_process(rt, ctl):
    ctl.apply(pytorchjob("cl", rs(SLEEP, policy="Never"), rs("import sys; sys.exit(2)", policy="Never"),
                         cleanPodPolicy="Running"))
    wait_for(lambda: phases(rt, "cl").get("cl-master-0") == "Running")
    job = ctl.run_until_done("cl", timeout=60)
    assert state(job["status"]) == "Failed"
    assert "cl-master-0" not in phases(rt, "cl")
    assert "SuccessfulDeletePod" in reasons(rt, job)
    sleepers = [p for p in psutil.Process().children(recursive=True)
                if p.is_running() and "time.sleep(60)" in " ".join(p.cmdline())]
    assert sleepers == []


def test_exitcode_retryable_is_recreated_then_succeeds(rt, ctl, tmp_path):
    marker = tmp_path / "tried"
    code = (f"import os, sys\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r}, 'w').close()\n"
            f"    sys.exit(137)\n")
    ctl.apply(pytorchjob("ec", None, rs(code, policy="ExitCode")))
    job = ctl.run_until_done("ec", timeout=60)
    assert state(job["status"]) == "Succeeded"
    rs_ = reasons(rt, job)
    assert "PyTorchJobRestarting" in rs_ and count(rt, job, "SuccessfulCreatePod") == 2


def test_exitcode_permanent_fails_without_restart(rt, ctl):
    ctl.apply(pytorchjob("ep", None, rs("import sys; sys.exit(3)", policy="ExitCode")))
    job = ctl.run_until_done("ep", timeout=60)
    assert job["status"]["conditions"][-1]["message"] == 'job "ep" is failing because "Worker" replica(s) failed.'
    assert count(rt, job, "SuccessfulCreatePod") == 1


def test_backoff_limit_stops_exitcode_retries(rt, ctl):
    ctl.apply(pytorchjob("bo", None, rs("import sys; sys.exit(139)", policy="ExitCode"), backoffLimit=2))
    job = ctl.run_until_done("bo", timeout=60)
    assert job["status"]["conditions"][-1]["message"] == "Job bo has failed because it has reached the specified backoff limit"
    assert count(rt, job, "SuccessfulCreatePod") == 3


def test_gang_that_cannot_fit_is_refused_and_nothing_starts(rt, ctl):
    job = pytorchjob("big", rs(SLEEP, cpu="1"), rs(SLEEP, n=2, cpu="1"))
    with pytest.raises(Unschedulable, match="Insufficient cpu"):
        ctl.apply(job)
    assert phases(rt, "big") == {}
    obj = rt.store.get("PyTorchJob", "big")
    assert state(obj["status"]) == "Failed" and "cannot be scheduled" in obj["status"]["conditions"][-1]["message"]


def test_suspend_deletes_pods_and_resume_runs_again(rt, ctl, tmp_path):
    gate = tmp_path / "go"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    ctl.apply(pytorchjob("sp", rs(code), rs(code)))
    wait_for(lambda: set(phases(rt, "sp").values()) == {"Running"})
    job = ctl.suspend("sp")
    assert state(job["status"]) == "Suspended" and phases(rt, "sp") == {}
    assert "PyTorchJobSuspended" in reasons(rt, job)
    job = ctl.resume("sp")
    assert [c for c in job["status"]["conditions"] if c["type"] == "Suspended"][0]["reason"] == "PyTorchJobResumed"
    wait_for(lambda: len(phases(rt, "sp")) == 2)
    gate.write_text("")
    assert state(ctl.run_until_done("sp", timeout=60)["status"]) == "Succeeded"


def test_active_deadline_with_fake_clock_kills_running_replicas(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30), clock=clock) as rt:
        ctl = TrainingJobController(rt.store, rt.scheduler, clock, gpus=0)
        ctl.apply(pytorchjob("dl", rs(SLEEP), rs(SLEEP), activeDeadlineSeconds=30))
        wait_for(lambda: set(phases(rt, "dl").values()) == {"Running"})
        job, d = ctl.reconcile("dl")
        assert state(job["status"]) == "Running" and d.requeue_after == 30
        clock.advance(31)
        job = ctl.run_until_done("dl", timeout=30)
        assert job["status"]["conditions"][-1]["message"] == \
            "Job dl has failed because it was active longer than specified deadline"
        assert phases(rt, "dl") == {}


def test_ttl_after_finished_deletes_the_job(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30), clock=clock) as rt:
        ctl = TrainingJobController(rt.store, rt.scheduler, clock, gpus=0)
        ctl.apply(pytorchjob("ttl", None, rs("pass"), ttlSecondsAfterFinished=100))
        job = ctl.run_until_done("ttl", timeout=30)
        assert state(job["status"]) == "Succeeded"
        clock.advance(101)
        assert ctl.reconcile("ttl")[0] is None
        assert rt.store.list("PyTorchJob", "default") == [] and phases(rt, "ttl") == {}


def test_tfjob_workers_without_chief_worker0_decides(rt, ctl):
    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "tf"},
           "spec": {"tfReplicaSpecs": {"Worker": rs("import json, os; c = json.loads(os.environ['TF_CONFIG']);"
                                                    " import time; time.sleep(0 if c['task']['index'] == 0 else 60)",
                                                    n=2, container="tensorflow")},
                    "runPolicy": {"cleanPodPolicy": "Running"}}}
    ctl.apply(job)
    out = ctl.run_until_done("tf", timeout=60)
    assert out["status"]["conditions"][-1]["reason"] == "TFJobSucceeded"
    assert phases(rt, "tf") == {"tf-worker-0": "Succeeded"}


def test_mpijob_launcher_sees_hostfile_and_kubexec_through_the_config_map(rt, ctl):
    code = ("import os, subprocess; print(open(os.environ['OMPI_MCA_orte_default_hostfile']).read(), end='');"
            " print(subprocess.run(['sh', os.environ['OMPI_MCA_plm_rsh_agent'], 'mpi-worker-0', 'echo', 'ran', 'here'],"
            " capture_output=True, text=True).stdout, end='')")
    job = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob", "metadata": {"name": "mpi"},
           "spec": {"slotsPerWorker": 2, "runPolicy": {"cleanPodPolicy": "Running"},
                    "mpiReplicaSpecs": {"Launcher": rs(code, container="mpi"), "Worker": rs(SLEEP, n=2, container="mpi")}}}
    ctl.apply(job)
    out = ctl.run_until_done("mpi", timeout=60)
    assert out["status"]["conditions"][-1]["reason"] == "MPIJobSucceeded"
    assert read_logs(rt.workspace, "mpi-launcher", "mpi") == \
        "mpi-worker-0 slots=2\nmpi-worker-1 slots=2\nran here\n"
    assert phases(rt, "mpi") == {"mpi-launcher": "Succeeded"}  # workers cleaned (cleanPodPolicy Running)
    assert rt.store.get("ConfigMap", "mpi-config")["data"]["hostfile"].startswith("mpi-worker-0 slots=2")
