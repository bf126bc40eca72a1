"""Reconcile decisions of v1 training jobs (pure): conditions, replica statuses, restart, success,
backoff, deadline, cleanPodPolicy, TTL and suspend, from job + Pod statuses."""
from __future__ import annotations

import pytest

from localflow.clock import rfc3339
from localflow.training.conditions import state, update_conditions
from localflow.training.defaults import apply_defaults
from localflow.training.policy import reconcile
from localflow.training.pods import replica_pods

T0 = 1_767_225_600.0


def make_job(kind="PyTorchJob", master=True, workers=2, policy=None, run_policy=None, **spec):
    field, container = {"PyTorchJob": ("pytorchReplicaSpecs", "pytorch"), "TFJob": ("tfReplicaSpecs", "tensorflow"),
                        "JAXJob": ("jaxReplicaSpecs", "jax"), "MPIJob": ("mpiReplicaSpecs", "mpi"),
                        "XGBoostJob": ("xgbReplicaSpecs", "xgboost")}[kind]
    head = {"PyTorchJob": "Master", "TFJob": "Chief", "MPIJob": "Launcher", "XGBoostJob": "Master"}.get(kind)

    def rs(n):
        d = {"replicas": n, "template": {"spec": {"containers": [{"name": container, "image": "i"}]}}}
        if policy:
            d["restartPolicy"] = policy
        return d
    specs = {"Worker": rs(workers)}
    if master and head:
        specs[head] = rs(1)
    s = {field: specs, "runPolicy": run_policy or {}}
    s.update(spec)
    return apply_defaults({"apiVersion": "kubeflow.org/v1", "kind": kind,
                           "metadata": {"name": "j", "namespace": "ns", "uid": "u"}, "spec": s})


def pods_with(job, phases: dict, codes: dict | None = None, restarts: dict | None = None):
    """Pods of ``job`` with phase per pod name (missing names: no Pod)."""
    out = []
    container = job["spec"][next(k for k in job["spec"] if k.endswith("ReplicaSpecs"))]
    for p in replica_pods(job, "dns"):
        name = p["metadata"]["name"]
        if name not in phases:
            continue
        c0 = p["spec"]["containers"][0]["name"]
        phase = phases[name]
        cs = {"name": c0, "restartCount": (restarts or {}).get(name, 0), "state": {"running": {}}}
        if phase in ("Succeeded", "Failed"):
            code = (codes or {}).get(name, 0 if phase == "Succeeded" else 1)
            cs["state"] = {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}
        p["status"] = {"phase": phase, "containerStatuses": [cs]}
        out.append(p)
    assert container
    return out


def step(job, pods, now=T0, retries=0):
    d = reconcile(job, pods, now, retries)
    return dict(job, status=d.status), d


def types(status):
    return [(c["type"], c["status"], c["reason"]) for c in status["conditions"]]


# ---------------------------------------------------------------------------- condition rules
def test_condition_rules_running_restarting_exclusive_and_failed_is_final():
    c = update_conditions([], "Created", "True", "XCreated", "m", "t0")
    c = update_conditions(c, "Running", "True", "XRunning", "m", "t1")
    c = update_conditions(c, "Restarting", "True", "XRestarting", "m", "t2")
    assert [x["type"] for x in c] == ["Created", "Restarting"]
    c = update_conditions(c, "Running", "True", "XRunning", "m", "t3")
    assert [x["type"] for x in c] == ["Created", "Running"]
    same = update_conditions(c, "Running", "True", "XRunning", "other message", "t4")
    assert same == c
    c = update_conditions(c, "Failed", "True", "XFailed", "m", "t5")
    assert [(x["type"], x["status"]) for x in c] == [("Created", "True"), ("Running", "False"), ("Failed", "True")]
    assert update_conditions(c, "Succeeded", "True", "XSucceeded", "m", "t6") == c
    assert state({"conditions": c}) == "Failed"


def test_condition_keeps_transition_time_when_only_reason_changes():
    c = update_conditions([], "Suspended", "True", "A", "m", "t0")
    c = update_conditions(c, "Suspended", "True", "B", "m", "t1")
    assert c[0]["lastTransitionTime"] == "t0" and c[0]["lastUpdateTime"] == "t1"


# ---------------------------------------------------------------------------- lifecycle
def test_new_job_creates_all_replicas_and_is_created():
    job = make_job()
    job2, d = step(job, [])
    assert d.create == [("Master", 0), ("Worker", 0), ("Worker", 1)]
    assert types(job2["status"]) == [("Created", "True", "PyTorchJobCreated")]
    assert job2["status"]["conditions"][0]["message"] == "PyTorchJob j is created."
    assert job2["status"]["startTime"] == rfc3339(T0)


def test_pytorch_running_then_succeeded_when_master_succeeds():
    job = make_job()
    job, d = step(job, pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Pending"}))
    assert d.create == [] and state(job["status"]) == "Running"
    assert job["status"]["conditions"][-1]["message"] == "PyTorchJob j is running."
    assert job["status"]["replicaStatuses"]["Worker"] == {
        "active": 1, "succeeded": 0, "failed": 0,
        "selector": "training.kubeflow.org/job-name=j,training.kubeflow.org/operator-name=pytorchjob-controller,"
                    "training.kubeflow.org/replica-type=worker"}
    pods = pods_with(job, {"j-master-0": "Succeeded", "j-worker-0": "Running", "j-worker-1": "Running"})
    job, d = step(job, pods, T0 + 5)
    assert types(job["status"])[-2:] == [("Running", "False", "PyTorchJobRunning"), ("Succeeded", "True", "PyTorchJobSucceeded")]
    assert job["status"]["conditions"][-1]["message"] == "PyTorchJob j is successfully completed."
    assert job["status"]["completionTime"] == rfc3339(T0 + 5)
    assert ("Normal", "PyTorchJobSucceeded", "PyTorchJob j is successfully completed.") in d.events
    # default cleanPodPolicy None keeps the still-running workers; active counts move to succeeded
    job, d = step(job, pods, T0 + 6)
    assert d.delete == [] and d.create == []
    assert job["status"]["replicaStatuses"]["Worker"]["succeeded"] == 2


@pytest.mark.parametrize("policy,expected", [("Running", ["j-worker-0"]), ("All", ["j-master-0", "j-worker-0", "j-worker-1"]),
                                             ("None", [])])
def test_clean_pod_policy_after_success(policy, expected):
    job = make_job(run_policy={"cleanPodPolicy": policy})
    pods = pods_with(job, {"j-master-0": "Succeeded", "j-worker-0": "Running", "j-worker-1": "Succeeded"})
    job, _ = step(job, pods)
    _, d = step(job, pods)
    assert sorted(d.delete) == expected


def test_restart_policy_never_worker_failure_fails_job_while_master_runs():
    job = make_job(policy="Never")
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"})
    job, d = step(job, pods)
    assert state(job["status"]) == "Failed"
    assert job["status"]["conditions"][-1]["message"] == "PyTorchJob j is failed because 1 Worker replica(s) failed."
    assert d.delete == []  # kubeflow/trainer#1579: with cleanPodPolicy None the master keeps running
    assert job["status"]["replicaStatuses"]["Worker"]["failed"] == 1


def test_exitcode_retryable_recreates_the_pod_and_restarts():
    job = make_job(policy="ExitCode")
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"},
                     codes={"j-worker-0": 137})
    job, d = step(job, pods)
    assert d.delete == ["j-worker-0"] and d.restarts == 1
    assert types(job["status"])[-1] == ("Restarting", "True", "PyTorchJobRestarting")
    # ReconcilePods sets the pod-level message, then the master's Running condition displaces it and
    # UpdateJobStatus sets Restarting again with the job-level message (both are recorded as events)
    assert job["status"]["conditions"][-1]["message"] == "PyTorchJob j is restarting because 1 Worker replica(s) failed."
    assert ("Warning", "PyTorchJobRestarting", "job j is restarting because Worker replica(s) failed.") in d.events
    assert ("Normal", "ExitedWithCode", "Pod: ns.j-worker-0 exited with code 137") in d.events
    pods = [p for p in pods if p["metadata"]["name"] != "j-worker-0"]
    job, d = step(job, pods, retries=1)
    assert d.create == [("Worker", 0)]


def test_exitcode_permanent_code_fails_job():
    job = make_job(policy="ExitCode")
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"},
                     codes={"j-worker-0": 3})
    job, d = step(job, pods)
    assert d.delete == [] and types(job["status"])[-1] == ("Failed", "True", "PyTorchJobFailed")
    assert job["status"]["conditions"][-1]["message"] == 'job "j" is failing because "Worker" replica(s) failed.'
    job2, d = step(job, pods)
    assert job2["status"]["conditions"] == job["status"]["conditions"]


def test_backoff_limit_bounds_exitcode_restarts():
    job = make_job(policy="ExitCode", run_policy={"backoffLimit": 1})
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"},
                     codes={"j-worker-0": 139})
    _, d = step(job, pods, retries=0)
    assert d.restarts == 1
    job2, d = step(job, pods, retries=1)
    assert types(job2["status"])[-1] == ("Failed", "True", "PyTorchJobFailed")
    assert job2["status"]["conditions"][-1]["message"] == "Job j has failed because it has reached the specified backoff limit"
    assert sorted(d.delete) == ["j-master-0", "j-worker-0", "j-worker-1"]


def test_backoff_limit_counts_in_place_restarts_of_running_pods():
    job = make_job(policy="OnFailure", run_policy={"backoffLimit": 3})
    running = {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Running"}
    job2, _ = step(job, pods_with(job, running, restarts={"j-worker-0": 2}))
    assert state(job2["status"]) == "Running"
    job3, d = step(job, pods_with(job, running, restarts={"j-worker-0": 2, "j-worker-1": 1}))
    assert state(job3["status"]) == "Failed" and len(d.delete) == 3


def test_backoff_limit_ignores_restarts_of_never_replicas():
    job = make_job(policy="Never", run_policy={"backoffLimit": 0})
    job2, _ = step(job, pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Running"},
                                  restarts={"j-worker-0": 5}))
    assert state(job2["status"]) == "Running"


def test_active_deadline_fails_job_and_deletes_every_pod():
    job = make_job(run_policy={"activeDeadlineSeconds": 30})
    running = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Running"})
    job, d = step(job, running, T0)
    assert d.requeue_after == 30
    job, d = step(job, running, T0 + 10)
    assert state(job["status"]) == "Running" and d.requeue_after == 20
    job, d = step(job, running, T0 + 30)
    assert job["status"]["conditions"][-1]["message"] == "Job j has failed because it was active longer than specified deadline"
    assert sorted(d.delete) == ["j-master-0", "j-worker-0", "j-worker-1"]


def test_ttl_after_finished_deletes_the_job():
    job = make_job(run_policy={"ttlSecondsAfterFinished": 60})
    pods = pods_with(job, {"j-master-0": "Succeeded", "j-worker-0": "Succeeded", "j-worker-1": "Succeeded"})
    job, d = step(job, pods, T0)
    _, d = step(job, pods, T0 + 59)
    assert not d.delete_job and d.requeue_after == 1
    _, d = step(job, pods, T0 + 60)
    assert d.delete_job


def test_suspend_deletes_pods_and_resume_recreates_them():
    job = make_job()
    running = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Running"})
    job, _ = step(job, running)
    job["spec"]["runPolicy"]["suspend"] = True
    job, d = step(job, running, T0 + 1)
    assert sorted(d.delete) == ["j-master-0", "j-worker-0", "j-worker-1"]
    assert types(job["status"])[-2:] == [("Running", "False", "PyTorchJobSuspended"), ("Suspended", "True", "PyTorchJobSuspended")]
    assert all(rs["active"] == 0 for rs in job["status"]["replicaStatuses"].values())
    job["spec"]["runPolicy"]["suspend"] = False
    job, d = step(job, [], T0 + 100)
    assert types(job["status"])[-1] == ("Suspended", "False", "PyTorchJobResumed")
    assert job["status"]["startTime"] == rfc3339(T0 + 100)
    assert d.create == [("Master", 0), ("Worker", 0), ("Worker", 1)]


def test_out_of_range_replica_is_deleted():
    job = make_job(workers=3)
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Running", "j-worker-2": "Running"})
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] = 2
    _, d = step(job, pods)
    assert d.delete == ["j-worker-2"]


# ---------------------------------------------------------------------------- success policies
def test_pytorch_without_master_needs_all_workers():
    job = make_job(master=False)
    job2, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Running"}))
    assert state(job2["status"]) == "Running"
    job3, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Succeeded"}))
    assert state(job3["status"]) == "Succeeded"


def test_elastic_pytorch_succeeds_when_any_worker_succeeds():
    job = make_job(master=False, elasticPolicy={"minReplicas": 1, "maxReplicas": 2})
    job2, _ = step(job, pods_with(job, {"j-worker-0": "Running", "j-worker-1": "Succeeded"}))
    assert state(job2["status"]) == "Succeeded"


def test_tfjob_default_success_policy_worker0_decides():
    job = make_job("TFJob", master=False, workers=3)
    job2, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Running", "j-worker-2": "Running"}))
    assert types(job2["status"])[-1] == ("Succeeded", "True", "TFJobSucceeded")
    assert job2["status"]["conditions"][-1]["message"] == "TFJob ns/j successfully completed."


def test_tfjob_all_workers_success_policy_waits_for_every_worker():
    job = make_job("TFJob", master=False, workers=3, successPolicy="AllWorkers")
    job2, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Running", "j-worker-2": "Running"}))
    assert state(job2["status"]) == "Running"
    assert job2["status"]["conditions"][-1]["message"] == "TFJob ns/j is running."
    job3, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Succeeded", "j-worker-2": "Succeeded"}))
    assert state(job3["status"]) == "Succeeded"


def test_tfjob_chief_decides_and_any_failure_fails():
    job = make_job("TFJob", workers=2)
    job2, _ = step(job, pods_with(job, {"j-chief-0": "Running", "j-worker-0": "Succeeded", "j-worker-1": "Succeeded"}))
    assert state(job2["status"]) == "Running"
    job3, _ = step(job, pods_with(job, {"j-chief-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"}))
    assert job3["status"]["conditions"][-1]["message"] == "TFJob ns/j has failed because 1 Worker replica(s) failed."


def test_tfjob_dynamic_worker_failure_does_not_fail():
    job = make_job("TFJob", workers=2, enableDynamicWorker=True)
    job2, _ = step(job, pods_with(job, {"j-chief-0": "Running", "j-worker-0": "Failed", "j-worker-1": "Running"}))
    assert state(job2["status"]) == "Running"


def test_jax_worker0_decides_and_mpi_launcher_decides():
    job = make_job("JAXJob", workers=2)
    job2, _ = step(job, pods_with(job, {"j-worker-0": "Succeeded", "j-worker-1": "Running"}))
    assert types(job2["status"])[-1] == ("Succeeded", "True", "JAXJobSucceeded")
    mpi = make_job("MPIJob", workers=2, run_policy={"cleanPodPolicy": "Running"})
    mpi2, _ = step(mpi, pods_with(mpi, {"j-launcher": "Succeeded", "j-worker-0": "Running", "j-worker-1": "Running"}))
    assert types(mpi2["status"])[-1] == ("Succeeded", "True", "MPIJobSucceeded")
    _, d = step(mpi2, pods_with(mpi, {"j-launcher": "Succeeded", "j-worker-0": "Running", "j-worker-1": "Running"}))
    assert sorted(d.delete) == ["j-worker-0", "j-worker-1"]


def test_xgboost_master_failure_with_never_fails():
    job = make_job("XGBoostJob", workers=1)
    job2, _ = step(job, pods_with(job, {"j-master-0": "Failed", "j-worker-0": "Running"}))
    assert job2["status"]["conditions"][-1]["message"] == "XGBoostJob j is failed because 1 Master replica(s) failed."


# ---------------------------------------------------------------------------- a Pod that cannot run here
@pytest.mark.parametrize("policy", ["OnFailure", "Always", "ExitCode", "Never"])
def test_pod_that_cannot_run_here_fails_the_job_instead_of_being_recreated(policy):
    """ContainerCannotRun (e.g. a script path only the image carries): a new Pod would fail the same way at once."""
    job = make_job(policy=policy)
    pods = pods_with(job, {"j-master-0": "Failed", "j-worker-0": "Running", "j-worker-1": "Running"},
                     codes={"j-master-0": 127})
    pods[0]["status"].update(reason="ContainerCannotRun", message="python is given /opt/x.py, which does not exist")
    job2, d = step(job, pods)
    assert d.delete == [] and d.restarts == 0 and d.create == []
    assert types(job2["status"])[-1] == ("Failed", "True", "PyTorchJobFailed")
    assert job2["status"]["conditions"][-1]["message"] == (
        "PyTorchJob j is failed because 1 Master replica(s) failed: pod j-master-0 cannot run here "
        "(ContainerCannotRun): python is given /opt/x.py, which does not exist")
    assert not any(r == "PyTorchJobRestarting" for _, r, _ in d.events)
    assert job2["status"]["replicaStatuses"]["Master"]["failed"] == 1
    _, d = step(job2, pods)  # next pass: finished, cleanPodPolicy None keeps the Pods, nothing recreated
    assert d.create == [] and d.delete == []


def test_failed_pod_that_did_run_is_still_restarted_with_on_failure():
    job = make_job(policy="OnFailure")
    pods = pods_with(job, {"j-master-0": "Failed", "j-worker-0": "Running", "j-worker-1": "Running"})
    pods[0]["status"].update(reason="Error")
    job2, d = step(job, pods)
    assert d.delete == ["j-master-0"] and state(job2["status"]) != "Failed"


# ---------------------------------------------------------------------------- stopped from outside
def test_final_status_of_an_interrupted_job_is_failed_with_nothing_active():
    from localflow.training.policy import final_status

    job = make_job()
    pods = pods_with(job, {"j-master-0": "Running", "j-worker-0": "Running", "j-worker-1": "Succeeded"})
    job, _ = step(job, pods)
    assert job["status"]["replicaStatuses"]["Master"]["active"] == 1 and state(job["status"]) == "Running"
    # the kill happened: one Pod already Failed (Canceled), one still Running in the store (its kubelet died)
    pods[0]["status"]["phase"] = "Failed"
    status = final_status(job, pods, T0 + 60, "PyTorchJob j is failed because it was canceled")
    assert types(status)[-2:] == [("Running", "False", "PyTorchJobRunning"), ("Failed", "True", "PyTorchJobFailed")]
    assert status["conditions"][-1]["message"] == "PyTorchJob j is failed because it was canceled"
    assert {k: (v["active"], v["succeeded"], v["failed"]) for k, v in status["replicaStatuses"].items()} == \
        {"Master": (0, 0, 1), "Worker": (0, 1, 1)}
    assert status["replicaStatuses"]["Worker"]["selector"].endswith("replica-type=worker")
    assert status["completionTime"] == rfc3339(T0 + 60) and state(status) == "Failed"
    assert job["status"]["replicaStatuses"]["Master"]["active"] == 1  # input not mutated


def test_final_status_keeps_a_finished_job_finished():
    from localflow.training.policy import final_status

    job = make_job(workers=1)
    pods = pods_with(job, {"j-master-0": "Succeeded", "j-worker-0": "Running"})
    job, _ = step(job, pods)
    assert state(job["status"]) == "Succeeded" and job["status"]["replicaStatuses"]["Worker"]["active"] == 1
    status = final_status(job, pods, T0 + 5, "ignored")
    assert status["conditions"] == job["status"]["conditions"]
    assert (status["replicaStatuses"]["Worker"]["active"], status["replicaStatuses"]["Worker"]["succeeded"]) == (0, 1)
