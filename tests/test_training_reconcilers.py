"""The training controllers as reconcilers on the controller manager: a restarted manager (and a
fresh controller with nothing in memory) continues a v1 job and a TrainJob where the last one
stopped; deadlines requeue on a FakeClock; two managers never both reconcile one job.

Real processes through the scheduler and subprocess executor; managers are driven on the test
thread (``run_until_idle``) and waits are bounded polls (tests/polling.py).
"""
from __future__ import annotations

import sys

import pytest

from localflow.api import open_runtime
from localflow.clock import FakeClock
from localflow.controllers.manager import MANAGER_ANNOTATION, ControllerManager
from localflow.controllers.trainingjob import RESTARTS_ANNOTATION, TrainingJobController, restarts_of
from localflow.controllers.trainjob import STATE_ANNOTATION, TrainJobController
from localflow.scheduler import Capacity
from localflow.training.conditions import state
from localflow.training.ports import PORTS_ANNOTATION
from tests.polling import wait_until

PY = sys.executable
SLEEP = "import time; time.sleep(60)"


def rs(code, policy=None):
    d = {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "python:3.11",
                                                               "command": [PY, "-c", code]}]}}}
    if policy:
        d["restartPolicy"] = policy
    return d


def pytorchjob(name, worker, **run_policy):
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Worker": worker}, "runPolicy": run_policy}}


def runtime(code):
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime", "metadata": {"name": "rt", "namespace": "default"},
            "spec": {"mlPolicy": {"numNodes": 1}, "template": {"spec": {"replicatedJobs": [
                {"name": "node", "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                              "spec": {"template": {"spec": {"containers": [
                                                  {"name": "node", "image": "python:3.11", "command": [PY, "-c", code]}]}}}}}]}}}}


def trainjob(name, **spec):
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": name},
            "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": "rt"}, **spec}}


def manager(ctl, ident):
    mgr = ControllerManager(ctl.store, ctl.clock, identity=ident, lease_duration=30)
    for r in ctl.reconcilers():
        mgr.register(r)
    return mgr


def pods(rt, **labels):
    return rt.store.list("Pod", "default", label_selector=labels)


def phases(rt, **labels):
    return sorted((p.get("status") or {}).get("phase", "Pending") for p in pods(rt, **labels))


def drive(mgr, cond, what, timeout=30):
    """Reconcile on this thread until ``cond()`` holds."""
    def step():
        mgr.run_until_idle()
        return cond()
    return wait_until(step, timeout=timeout, what=what)


def created(rt, obj):
    return sum(int(e.get("count", 1)) for e in rt.store.events_for(obj) if e["reason"] == "SuccessfulCreatePod")


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as runtime:
        yield runtime


def test_restart_count_and_ports_survive_a_manager_restart(rt):
    """ExitCode 137 is retryable: each failed Pod is deleted and recreated (a restart) until
    ``backoffLimit`` (2) is reached. The first manager makes one restart and stops; a second one
    with a fresh controller (no memory) counts on from the annotation: 2 restarts, 3 Pods in all,
    every one at the same planned address."""
    sel = {"training.kubeflow.org/job-name": "bo"}
    ctl1 = TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    job = ctl1.apply(pytorchjob("bo", rs("import os; os._exit(137)", policy="ExitCode"), backoffLimit=2))
    addresses = set()

    def seen():
        addresses.update(p["metadata"]["annotations"]["localflow.dev/address"] for p in pods(rt, **sel))
        return rt.store.get("PyTorchJob", "bo")

    with manager(ctl1, "first") as m1:
        drive(m1, lambda: restarts_of(seen()) >= 1, "the first restart")
    assert restarts_of(rt.store.get("PyTorchJob", "bo")) == 1
    ctl2 = TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    with manager(ctl2, "second") as m2:
        final = drive(m2, lambda: state(seen()["status"]) == "Failed" and not pods(rt, **sel) and seen(), "Failed")
    assert final["status"]["conditions"][-1]["message"] == "Job bo has failed because it has reached the specified backoff limit"
    assert final["metadata"]["annotations"][RESTARTS_ANNOTATION] == "2" and created(rt, job) == 3
    assert len(addresses) == 1 and addresses == {f"127.0.0.1:{final['metadata']['annotations'][PORTS_ANNOTATION]}"}


def test_active_deadline_requeues_on_the_fake_clock(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30), clock=clock) as rt:
        ctl = TrainingJobController(rt.store, rt.scheduler, clock, gpus=0)
        ctl.apply(pytorchjob("dl", rs(SLEEP), activeDeadlineSeconds=30))
        sel = {"training.kubeflow.org/job-name": "dl"}
        with manager(ctl, "m") as mgr:
            drive(mgr, lambda: phases(rt, **sel) == ["Running"], "the replica running")
            clock.advance(29)
            mgr.run_until_idle()
            assert state(rt.store.get("PyTorchJob", "dl")["status"]) == "Running"
            clock.advance(2)  # the requeue the first pass asked for (30 s) is due
            mgr.run_until_idle()
            job = rt.store.get("PyTorchJob", "dl")
        assert job["status"]["conditions"][-1]["message"] == \
            "Job dl has failed because it was active longer than specified deadline"
        assert pods(rt, **sel) == []


def test_trainjob_deadline_and_plan_survive_a_manager_restart(tmp_path):
    """The TrainJob became active at t0 (recorded on it); a new controller and manager 20 s later
    rebuild its plan with the same port, and fail it at t0 + 30 s, not 30 s after the restart."""
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30), clock=clock) as rt:
        sel = {"jobset.sigs.k8s.io/jobset-name": "tj"}
        ctl1 = TrainJobController(rt.store, rt.scheduler, clock, gpus=0)
        ctl1.apply_runtime(runtime(SLEEP))
        ctl1.apply(trainjob("tj", activeDeadlineSeconds=30))
        with manager(ctl1, "first") as m1:
            drive(m1, lambda: phases(rt, **sel) == ["Running"], "the node running")
        first = rt.store.get("TrainJob", "tj")
        assert STATE_ANNOTATION in first["metadata"]["annotations"]
        clock.advance(20)
        ctl2 = TrainJobController(rt.store, rt.scheduler, clock, gpus=0)
        tj, plans = ctl2._plan(rt.store.get("TrainJob", "tj"))
        assert [p["spec"]["containers"][0]["ports"] for p in plans[0].pods] == \
            [p["spec"]["containers"][0]["ports"] for p in pods(rt, **sel)]
        with manager(ctl2, "second") as m2:
            m2.run_until_idle()
            assert not any(c["type"] == "Failed" for c in rt.store.get("TrainJob", "tj")["status"].get("conditions") or [])
            clock.advance(11)
            m2.run_until_idle()
            tj = rt.store.get("TrainJob", "tj")
        cond = next(c for c in tj["status"]["conditions"] if c["type"] == "Failed")
        assert (cond["status"], cond["reason"]) == ("True", "DeadlineExceeded")
        wait_until(lambda: "Running" not in phases(rt, **sel), what="the node stopped")


def test_trainjob_runs_to_complete_on_a_manager(rt, tmp_path):
    ctl = TrainJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    ctl.apply_runtime(runtime("print('trained')"))
    ctl.apply(trainjob("ok"))
    out = ctl.run_until_done("ok", timeout=60)
    assert [c["reason"] for c in out["status"]["conditions"] if c["status"] == "True"] == ["AllJobsCompleted"]


def test_two_managers_never_both_reconcile_one_job_and_the_survivor_adopts_it(rt, tmp_path):
    gate = tmp_path / "gate"
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"
    sel = {"training.kubeflow.org/job-name": "two"}
    a_ctl = TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    b_ctl = TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    a_ctl.apply(pytorchjob("two", rs(code)))
    a, b = manager(a_ctl, "a"), manager(b_ctl, "b")
    try:
        drive(a, lambda: phases(rt, **sel) == ["Running"], "the replica running")
        b.run_until_idle()
        key = ("PyTorchJob", "default", "two")
        assert rt.store.get("PyTorchJob", "two")["metadata"]["annotations"][MANAGER_ANNOTATION] == "a"
        assert b.reconciles == 0 and b.foreign_keys() == {key: "a"}
        a.stop()  # its lease is released: b adopts the job
        gate.write_text("")
        job = drive(b, lambda: state(rt.store.get("PyTorchJob", "two")["status"]) == "Succeeded"
                    and rt.store.get("PyTorchJob", "two"), "Succeeded")
        assert job["metadata"]["annotations"][MANAGER_ANNOTATION] == "b"
        assert "Adopted" in [e["reason"] for e in rt.store.events_for(job)]
    finally:
        a.stop()
        b.stop()


def test_run_until_done_with_ttl_zero_returns_after_the_job_is_deleted(rt):
    ctl = TrainingJobController(rt.store, rt.scheduler, rt.clock, gpus=0)
    ctl.apply(pytorchjob("gone", rs("pass"), ttlSecondsAfterFinished=0))
    out = ctl.run_until_done("gone", timeout=60)
    assert state(out["status"]) == "Succeeded"
    assert rt.store.list("PyTorchJob", "default") == [] and pods(rt, **{"training.kubeflow.org/job-name": "gone"}) == []
