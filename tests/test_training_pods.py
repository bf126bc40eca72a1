"""Replica Pod manifests: names, labels, ownerReferences, restart policy, addressing details."""
from __future__ import annotations

import pytest

from localflow.errors import SpecError
from localflow.training.pods import replica_pods
from localflow.training.ports import PortAllocator


def tfjob(**spec):
    c = lambda n=1: {"replicas": n, "template": {"metadata": {"labels": {"team": "ml"}},  # noqa: E731
                                                 "spec": {"containers": [{"name": "tensorflow", "image": "i"}]}}}
    s = {"tfReplicaSpecs": {"Chief": c(), "PS": c(), "Worker": dict(c(2), restartPolicy="ExitCode")}}
    s.update(spec)
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob",
            "metadata": {"name": "dist", "namespace": "team-a", "uid": "1234"}, "spec": s}


def test_pods_are_named_and_labelled_like_the_operator():
    pods = replica_pods(tfjob(), "loopback")
    assert [p["metadata"]["name"] for p in pods] == ["dist-chief-0", "dist-ps-0", "dist-worker-0", "dist-worker-1"]
    assert pods[0]["metadata"]["labels"] == {
        "team": "ml", "training.kubeflow.org/operator-name": "tfjob-controller",
        "training.kubeflow.org/job-name": "dist", "training.kubeflow.org/replica-type": "chief",
        "training.kubeflow.org/replica-index": "0", "training.kubeflow.org/job-role": "master"}
    assert "training.kubeflow.org/job-role" not in pods[2]["metadata"]["labels"]
    assert pods[3]["metadata"]["labels"]["training.kubeflow.org/replica-index"] == "1"
    assert all(p["metadata"]["namespace"] == "team-a" for p in pods)


def test_pods_are_owned_by_the_job_as_controller():
    pod = replica_pods(tfjob(), "dns")[0]
    assert pod["metadata"]["ownerReferences"] == [{"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "name": "dist",
                                                   "uid": "1234", "controller": True, "blockOwnerDeletion": True}]


def test_worker_zero_is_master_role_without_chief():
    j = tfjob()
    del j["spec"]["tfReplicaSpecs"]["Chief"]
    roles = {p["metadata"]["name"]: p["metadata"]["labels"].get("training.kubeflow.org/job-role")
             for p in replica_pods(j, "dns")}
    assert roles == {"dist-ps-0": None, "dist-worker-0": "master", "dist-worker-1": None}


def test_exitcode_restart_policy_gives_pod_never():
    pods = replica_pods(tfjob(), "dns")
    assert [p["spec"]["restartPolicy"] for p in pods] == ["Never", "Never", "Never", "Never"]
    pt = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p"},
          "spec": {"pytorchReplicaSpecs": {"Worker": {"template": {"spec": {
              "restartPolicy": "Never", "containers": [{"name": "pytorch", "image": "i"}]}}}}}}
    assert replica_pods(pt, "dns")[0]["spec"]["restartPolicy"] == "OnFailure"


def test_dns_mode_sets_hostname_and_network_annotation():
    pods = replica_pods(tfjob(), "dns")
    assert pods[1]["spec"]["hostname"] == "dist-ps-0"
    assert pods[1]["metadata"]["annotations"]["localflow.dev/network"] == "team-a-dist"
    assert pods[1]["spec"]["containers"][0]["ports"] == [{"name": "tfjob-port", "containerPort": 2222}]


def test_loopback_mode_has_no_hostname_and_distinct_ports_even_if_source_repeats():
    seq = iter([5000, 5000, 5001, 5001, 5002, 5003])
    pods = replica_pods(tfjob(), "loopback", PortAllocator(seq.__next__))
    assert all("hostname" not in p["spec"] for p in pods)
    assert [p["spec"]["containers"][0]["ports"][0]["containerPort"] for p in pods] == [5000, 5001, 5002, 5003]


def test_pytorch_workers_wait_for_master_name_in_dns_mode_only():
    pt = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "p"},
          "spec": {"pytorchReplicaSpecs": {
              "Master": {"template": {"spec": {"containers": [{"name": "pytorch", "image": "img"}]}}},
              "Worker": {"template": {"spec": {"containers": [{"name": "pytorch", "image": "img"}]}}}}}}
    dns = {p["metadata"]["name"]: p for p in replica_pods(pt, "dns")}
    init = dns["p-worker-0"]["spec"]["initContainers"][0]
    assert init["name"] == "init-pytorch" and "p-master-0" in init["command"][-1]
    assert "initContainers" not in dns["p-master-0"]["spec"]
    assert all("initContainers" not in p["spec"] for p in replica_pods(pt, "loopback"))


def test_unknown_addressing_mode_is_refused():
    with pytest.raises(SpecError, match="unknown addressing mode 'host'"):
        replica_pods(tfjob(), "host")


def test_input_job_is_not_mutated():
    import copy
    j = tfjob()
    before = copy.deepcopy(j)
    replica_pods(j, "loopback")
    assert j == before
