"""Trainer v2 TrainJob: runtime resolution, rendered Pods and env per plugin, and the pure reconcile."""
from __future__ import annotations

import copy

import pytest

from localflow.errors import SpecError
from localflow.training.ports import PortAllocator
from localflow.training.runtimes import BUILTIN_RUNTIMES, resolve_runtime, torch_nproc_per_node, trainjob_plan
from localflow.training.trainjob import TrainJobState, reconcile_trainjob

T0 = 1_767_225_600.0
RANK = {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}


def tj(runtime="torch-distributed", **trainer):
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
            "metadata": {"name": "multi-node", "namespace": "default", "uid": "u"},
            "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime", "name": runtime},
                     "trainer": trainer}}


def env_of(pod):
    c = next(c for c in pod["spec"]["containers"] if c["name"] == "node")
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env") or []}


def test_torch_distributed_two_nodes_dns_env_matches_the_torch_plugin():
    job = tj(numNodes=2, command=["torchrun", "train.py"], env=[{"name": "CUSTOM_VAR", "value": "x"}])
    plans = trainjob_plan(job, resolve_runtime(job), "dns")
    assert [p.name for p in plans] == ["node"]
    pods = plans[0].pods
    assert [p["metadata"]["name"] for p in pods] == ["multi-node-node-0-0", "multi-node-node-0-1"]
    assert pods[1]["spec"]["hostname"] == "multi-node-node-0-1" and pods[1]["spec"]["subdomain"] == "multi-node"
    assert env_of(pods[1]) == {"CUSTOM_VAR": "x", "PET_NNODES": "2", "PET_NPROC_PER_NODE": "auto", "PET_NODE_RANK": RANK,
                               "PET_MASTER_ADDR": "multi-node-node-0-0.multi-node", "PET_MASTER_PORT": "29500"}
    assert pods[1]["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
    assert pods[1]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    c = pods[0]["spec"]["containers"][0]
    assert c["command"] == ["torchrun", "train.py"] and c["image"] == "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"
    assert c["ports"] == [{"containerPort": 29500}]
    assert pods[0]["spec"]["restartPolicy"] == "OnFailure"
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "TrainJob"


def test_torch_distributed_loopback_uses_node0_port():
    job = tj(numNodes=2)
    pods = trainjob_plan(job, resolve_runtime(job), "loopback", PortAllocator(iter(range(45000, 45100)).__next__))[0].pods
    for p in pods:
        e = env_of(p)
        assert (e["PET_MASTER_ADDR"], e["PET_MASTER_PORT"]) == ("127.0.0.1", "45000")
    assert [p["spec"]["containers"][0]["ports"] for p in pods] == [[{"containerPort": 45000}], [{"containerPort": 45001}]]


@pytest.mark.parametrize("resources,npn,expected", [
    (None, None, "auto"), ({"limits": {"cpu": "2"}}, None, "2"), ({"requests": {"cpu": "500m"}}, None, "1"),
    ({"limits": {"nvidia.com/gpu": "1"}, "requests": {"cpu": "4"}}, None, "auto"), (None, 3, "3"),
    ({"limits": {"cpu": "3"}}, "cpu", "3")])
def test_torch_nproc_per_node(resources, npn, expected):
    trainer = {}
    if resources:
        trainer["resourcesPerNode"] = resources
    if npn:
        trainer["numProcPerNode"] = npn
    job = tj(**trainer)
    assert torch_nproc_per_node(job, resolve_runtime(job)) == expected


def test_jax_and_xgboost_plugin_env():
    job = tj("jax-distributed", numNodes=2)
    assert env_of(trainjob_plan(job, resolve_runtime(job), "dns")[0].pods[1]) == {
        "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": RANK, "JAX_COORDINATOR_ADDRESS": "multi-node-node-0-0.multi-node:29500"}
    job = tj("xgboost-distributed", numNodes=3)
    assert env_of(trainjob_plan(job, resolve_runtime(job), "dns")[0].pods[0]) == {
        "DMLC_TRACKER_URI": "multi-node-node-0-0.multi-node", "DMLC_TRACKER_PORT": "29500", "DMLC_TASK_ID": RANK,
        "DMLC_NUM_WORKER": "3"}


def test_unknown_runtime_names_the_builtins():
    with pytest.raises(SpecError, match="ClusterTrainingRuntime 'nope' not found cluster-wide"):
        resolve_runtime(tj("nope"))


def test_store_runtime_wins_over_builtin():
    rt = copy.deepcopy(BUILTIN_RUNTIMES["torch-distributed"])
    rt["spec"]["mlPolicy"]["numNodes"] = 3
    assert resolve_runtime(tj(), lambda k, n, ns: rt if n == "torch-distributed" else None)["spec"]["mlPolicy"]["numNodes"] == 3


# ------------------------------------------------------------------ reconcile
def with_phase(pods, phases, restarts=0):
    out = []
    for p, ph in zip(pods, phases):
        if ph is None:
            continue
        p = copy.deepcopy(p)
        p["metadata"]["uid"] = p["metadata"]["name"] + "-uid"
        p["status"] = {"phase": ph, "containerStatuses": [{"name": "node", "restartCount": restarts}]}
        out.append(p)
    return out


def render(job, runtime=None):
    return trainjob_plan(job, runtime or resolve_runtime(job), "dns")


def test_trainjob_creates_all_nodes_then_completes():
    job = tj(numNodes=2)
    plans = render(job)
    state = TrainJobState()
    d = reconcile_trainjob(job, plans, [], T0, state)
    assert [p["metadata"]["name"] for p in d.create] == ["multi-node-node-0-0", "multi-node-node-0-1"]
    job["status"] = d.status
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Running", "Running"]), T0 + 1, state)
    assert d.status["jobsStatus"] == [{"name": "node", "ready": 1, "succeeded": 0, "failed": 0, "active": 1, "suspended": 0}]
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Succeeded", "Succeeded"]), T0 + 2, state)
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in d.status["conditions"]] == [
        ("Complete", "True", "AllJobsCompleted", "jobset completed successfully")]


def test_trainjob_never_policy_replaces_failed_pods_until_backoff_limit():
    rt = copy.deepcopy(BUILTIN_RUNTIMES["torch-distributed"])
    jspec = rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]
    jspec["backoffLimit"] = 1
    jspec["template"]["spec"]["restartPolicy"] = "Never"
    job = tj(numNodes=2)
    plans = render(job, rt)
    state = TrainJobState()
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Failed", "Running"]), T0, state)
    assert d.delete == ["multi-node-node-0-0"] and [p["metadata"]["name"] for p in d.create] == ["multi-node-node-0-0"]
    second = with_phase(plans[0].pods, ["Failed", "Running"])
    second[0]["metadata"]["uid"] = "another-uid"
    d = reconcile_trainjob(job, plans, second, T0 + 1, state)
    assert d.status["conditions"][-1]["reason"] == "FailedJobs"
    assert d.delete == ["multi-node-node-0-1"] and d.create == []


def test_trainjob_on_failure_restarts_count_toward_backoff():
    job = tj(numNodes=1)
    plans = render(job)
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Running"], restarts=6), T0, TrainJobState())
    assert d.status["conditions"][-1]["reason"] == "FailedJobs"


def test_trainjob_deadline_and_suspend():
    job = tj(numNodes=1)
    job["spec"]["activeDeadlineSeconds"] = 10
    plans = render(job)
    state = TrainJobState()
    d = reconcile_trainjob(job, plans, [], T0, state)
    assert d.requeue_after == 10
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Running"]), T0 + 10, state)
    assert d.status["conditions"][-1]["reason"] == "DeadlineExceeded" and d.delete == ["multi-node-node-0-0"]
    job = tj(numNodes=1)
    job["spec"]["suspend"] = True
    d = reconcile_trainjob(job, plans, [], T0, TrainJobState())
    assert d.create == [] and d.status["conditions"][-1]["message"] == "TrainJob is suspended"
    job["status"] = d.status
    job["spec"]["suspend"] = False
    d = reconcile_trainjob(job, plans, [], T0 + 5, TrainJobState())
    assert d.status["conditions"][-1]["reason"] == "Resumed" and len(d.create) == 1


def test_trainjob_initializer_runs_before_trainer():
    rt = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainingRuntime", "metadata": {"name": "with-init"},
          "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [
              {"name": "dataset-initializer", "template": {"metadata": {"labels": {
                  "trainer.kubeflow.org/trainjob-ancestor-step": "dataset-initializer"}},
                  "spec": {"template": {"spec": {"containers": [{"name": "dataset-initializer", "image": "init"}]}}}}},
              {"name": "node", "dependsOn": [{"name": "dataset-initializer", "status": "Complete"}],
               "template": {"metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                            "spec": {"template": {"spec": {"containers": [{"name": "node", "image": "n"}]}}}}}]}}}}
    job = tj(numNodes=2)
    job["spec"]["initializer"] = {"dataset": {"storageUri": "hf://tatsu-lab/alpaca"}}
    plans = render(job, rt)
    init_env = plans[0].pods[0]["spec"]["containers"][0]["env"]
    assert init_env == [{"name": "STORAGE_URI", "value": "hf://tatsu-lab/alpaca"}]
    state = TrainJobState()
    d = reconcile_trainjob(job, plans, [], T0, state)
    assert [p["metadata"]["name"] for p in d.create] == ["multi-node-dataset-initializer-0-0"]
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Succeeded"]), T0 + 1, state)
    assert [p["metadata"]["name"] for p in d.create] == ["multi-node-node-0-0", "multi-node-node-0-1"]


def test_trainjob_pod_that_cannot_run_here_fails_at_once_with_the_reason():
    job = tj(numNodes=2)
    plans = render(job)
    pods = with_phase(plans[0].pods, ["Failed", "Running"])
    pods[0]["status"].update(reason="ContainerCannotRun", message="train.py does not exist")
    d = reconcile_trainjob(job, plans, pods, T0, TrainJobState())
    assert d.create == [] and d.delete == ["multi-node-node-0-1"]
    cond = d.status["conditions"][-1]
    assert (cond["type"], cond["reason"]) == ("Failed", "FailedJobs")
    assert cond["message"] == ("jobset failed due to one or more job failures: pod multi-node-node-0-0 cannot run "
                               "here (ContainerCannotRun): train.py does not exist")


def test_final_trainjob_status_of_an_interrupted_trainjob():
    from localflow.training.trainjob import final_trainjob_status

    job = tj(numNodes=2)
    plans = render(job)
    d = reconcile_trainjob(job, plans, with_phase(plans[0].pods, ["Running", "Running"]), T0, TrainJobState())
    job["status"] = d.status
    status = final_trainjob_status(job, T0 + 3, "TrainJob multi-node is failed because it was canceled")
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [("Failed", "True", "FailedJobs")]
    assert status["jobsStatus"] == [{"name": "node", "ready": 0, "succeeded": 0, "failed": 1, "active": 0, "suspended": 0}]
    job["status"] = status
    assert final_trainjob_status(job, T0 + 9, "again") == status
