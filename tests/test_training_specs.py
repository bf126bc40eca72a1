"""Validation and defaulting of training jobs (kubeflow.org/v1 kinds, TrainJob, runtimes)."""
from __future__ import annotations

import copy
import glob
import os

import pytest
import yaml

from localflow.errors import SpecError
from localflow.specs.training import (job_errors, job_warnings, load_job, runtime_errors, trainjob_errors,
                                      validate_trainjob)
from localflow.training.defaults import apply_defaults

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "corpus")


def pytorch_job(**worker) -> dict:
    w = {"replicas": 2, "template": {"spec": {"containers": [{"name": "pytorch", "image": "img", "command": ["python"]}]}}}
    w.update(worker)
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "mnist"},
            "spec": {"pytorchReplicaSpecs": {
                "Master": {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "img"}]}}},
                "Worker": w}}}


def first_error(job, gpus=0) -> str:
    with pytest.raises(SpecError) as e:
        load_job(job, gpus=gpus)
    return str(e.value)


def test_negative_replicas_names_the_field_path():
    msg = first_error(pytorch_job(replicas=-1))
    assert msg.startswith("PyTorchJob.spec.pytorchReplicaSpecs.Worker.replicas: must be >= 0 (got -1)")
    assert "set replicas to 0 or more" in msg


def test_unknown_replica_type_lists_the_allowed_ones():
    job = pytorch_job()
    job["spec"]["pytorchReplicaSpecs"]["Workr"] = job["spec"]["pytorchReplicaSpecs"].pop("Worker")
    msg = first_error(job)
    assert msg.startswith("PyTorchJob.spec.pytorchReplicaSpecs.Workr: unsupported replica type 'Workr'")
    assert "PyTorchJob supports: Master, Worker" in msg


def test_lower_case_replica_type_is_normalized_not_refused():
    job = pytorch_job()
    job["spec"]["pytorchReplicaSpecs"]["worker"] = job["spec"]["pytorchReplicaSpecs"].pop("Worker")
    out = load_job(job, gpus=0)
    assert set(out["spec"]["pytorchReplicaSpecs"]) == {"Master", "Worker"}


def test_missing_containers_is_required():
    job = pytorch_job(template={"spec": {"containers": []}})
    assert first_error(job).startswith("PyTorchJob.spec.pytorchReplicaSpecs.Worker.template.spec.containers: must be specified")


def test_container_not_named_as_the_operator_requires_explains_the_fix():
    job = pytorch_job(template={"spec": {"containers": [{"name": "trainer", "image": "img"}]}})
    msg = first_error(job)
    assert msg.startswith("PyTorchJob.spec.pytorchReplicaSpecs.Worker.template.spec.containers: "
                          "must have at least one container with name pytorch (found 'trainer')")
    assert "rename the training container to 'pytorch'" in msg


@pytest.mark.parametrize("kind,field,container", [
    ("TFJob", "tfReplicaSpecs", "tensorflow"), ("XGBoostJob", "xgbReplicaSpecs", "xgboost"),
    ("JAXJob", "jaxReplicaSpecs", "jax"), ("PaddleJob", "paddleReplicaSpecs", "paddle")])
def test_each_kind_requires_its_own_container_name(kind, field, container):
    rtype = "Master" if kind == "XGBoostJob" else "Worker"
    job = {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": {"name": "j"},
           "spec": {field: {rtype: {"replicas": 1, "template": {"spec": {"containers": [{"name": "main", "image": "i"}]}}}}}}
    assert f"must have at least one container with name {container}" in first_error(job)
    job["spec"][field][rtype]["template"]["spec"]["containers"][0]["name"] = container
    load_job(job, gpus=0)


def test_mpijob_accepts_any_container_name():
    job = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob", "metadata": {"name": "m"},
           "spec": {"mpiReplicaSpecs": {
               "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{"name": "mpi-launcher", "image": "i"}]}}},
               "Worker": {"replicas": 2, "template": {"spec": {"containers": [{"name": "mpi-worker", "image": "i"}]}}}}}}
    assert load_job(job, gpus=0)["spec"]["runPolicy"]["cleanPodPolicy"] == "None"


def test_gpu_limit_without_gpu_is_refused_with_precise_reason():
    job = pytorch_job()
    job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": 1}}
    msg = first_error(job, gpus=0)
    assert msg.startswith("PyTorchJob.spec.pytorchReplicaSpecs.Master.template.spec.containers[0]"
                          ".resources.limits['nvidia.com/gpu']: requests 1 GPU(s) but this machine has no GPU")
    assert "remove the nvidia.com/gpu limit to train on CPU" in msg
    load_job(job, gpus=1)  # fine where there is one


def test_master_replicas_must_be_one():
    job = pytorch_job()
    job["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = 2
    assert first_error(job).startswith("PyTorchJob.spec.pytorchReplicaSpecs.Master.replicas: must be 1 (got 2)")


@pytest.mark.parametrize("mutate,expected", [
    (lambda s: s.update(elasticPolicy={"nProcPerNode": 2}, nprocPerNode="2"),
     "PyTorchJob.spec.elasticPolicy.nProcPerNode: must not be used with PyTorchJob.spec.nprocPerNode"),
    (lambda s: s.update(elasticPolicy={"minReplicas": 3, "maxReplicas": 2}),
     "PyTorchJob.spec.elasticPolicy.minReplicas: must not exceed maxReplicas (3 > 2)"),
    (lambda s: s["pytorchReplicaSpecs"]["Worker"].update(restartPolicy="Sometimes"),
     "PyTorchJob.spec.pytorchReplicaSpecs.Worker.restartPolicy: unsupported value 'Sometimes'"),
    (lambda s: s.update(runPolicy={"cleanPodPolicy": "Some"}),
     "PyTorchJob.spec.runPolicy.cleanPodPolicy: unsupported value 'Some'"),
    (lambda s: s.update(runPolicy={"backoffLimit": -2}),
     "PyTorchJob.spec.runPolicy.backoffLimit: must be an integer >= 0 (got -2)"),
    (lambda s: s.update(runPolicy={"schedulingPolicy": {"minAvailable": 9}}),
     "PyTorchJob.spec.runPolicy.schedulingPolicy.minAvailable: must be between 0 and the job's 3 replicas (got 9)"),
    (lambda s: s.update(runPolicy={"managedBy": "kueue.x-k8s.io/multikueue"}),
     "PyTorchJob.spec.runPolicy.managedBy: the job is delegated to Kueue MultiKueue"),
])
def test_conflicting_or_invalid_policies_are_refused(mutate, expected):
    job = pytorch_job()
    mutate(job["spec"])
    assert first_error(job).startswith(expected)


def test_tfjob_with_chief_and_master_is_refused():
    c = {"replicas": 1, "template": {"spec": {"containers": [{"name": "tensorflow", "image": "i"}]}}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "t"},
           "spec": {"tfReplicaSpecs": {"Chief": c, "Master": copy.deepcopy(c)}}}
    assert first_error(job).startswith("TFJob.spec.tfReplicaSpecs: must not have more than 1 Chief or Master role")


def test_mpijob_refuses_exitcode_and_conflicting_clean_pod_policies():
    c = {"replicas": 1, "template": {"spec": {"containers": [{"name": "mpi", "image": "i"}]}}}
    job = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob", "metadata": {"name": "m"},
           "spec": {"cleanPodPolicy": "Running", "runPolicy": {"cleanPodPolicy": "All"},
                    "mpiReplicaSpecs": {"Launcher": c, "Worker": dict(copy.deepcopy(c), restartPolicy="ExitCode")}}}
    msgs = [str(e) for e in job_errors(apply_defaults(job), gpus=0)]
    assert any(m.startswith("MPIJob.spec.mpiReplicaSpecs.Worker.restartPolicy: ExitCode is not supported") for m in msgs)
    assert any(m.startswith("MPIJob.spec.cleanPodPolicy: conflicts with spec.runPolicy.cleanPodPolicy") for m in msgs)


def test_xgboostjob_needs_a_master():
    job = {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob", "metadata": {"name": "x"},
           "spec": {"xgbReplicaSpecs": {"Worker": {"template": {"spec": {"containers": [{"name": "xgboost", "image": "i"}]}}}}}}
    assert first_error(job).startswith("XGBoostJob.spec.xgbReplicaSpecs.Master: must be present")


def test_job_name_must_be_a_dns_label():
    job = pytorch_job()
    job["metadata"]["name"] = "My_Job"
    assert first_error(job).startswith("PyTorchJob.metadata.name: must be a DNS-1035 label")


def test_defaults_per_kind():
    job = load_job(pytorch_job(), gpus=0)
    w = job["spec"]["pytorchReplicaSpecs"]["Worker"]
    assert w["restartPolicy"] == "OnFailure"
    assert w["template"]["spec"]["containers"][0]["ports"] == [{"name": "pytorchjob-port", "containerPort": 23456}]
    assert job["spec"]["nprocPerNode"] == "auto"
    assert job["spec"]["runPolicy"] == {"cleanPodPolicy": "None", "suspend": False}
    expected = {"TFJob": ("Never", "tfjob-port", 2222), "XGBoostJob": ("Never", "xgboostjob-port", 9999),
                "JAXJob": ("Never", "jaxjob-port", 6666), "PaddleJob": ("OnFailure", "master", 36543)}
    fields = {"TFJob": "tfReplicaSpecs", "XGBoostJob": "xgbReplicaSpecs", "JAXJob": "jaxReplicaSpecs",
              "PaddleJob": "paddleReplicaSpecs"}
    containers = {"TFJob": "tensorflow", "XGBoostJob": "xgboost", "JAXJob": "jax", "PaddleJob": "paddle"}
    for kind, (policy, port_name, port) in expected.items():
        d = apply_defaults({"kind": kind, "metadata": {"name": "j"}, "spec": {fields[kind]: {
            "Master" if kind == "XGBoostJob" else "Worker": {"template": {"spec": {"containers": [
                {"name": containers[kind], "image": "i"}, {"name": "sidecar", "image": "s"}]}}}}}})
        rs = next(iter(d["spec"][fields[kind]].values()))
        assert rs["replicas"] == 1 and rs["restartPolicy"] == policy
        assert rs["template"]["spec"]["containers"][0]["ports"] == [{"name": port_name, "containerPort": port}]
        assert "ports" not in rs["template"]["spec"]["containers"][1]


def test_user_port_is_kept_by_defaulting():
    job = pytorch_job(template={"spec": {"containers": [{"name": "pytorch", "image": "i",
                                                         "ports": [{"name": "pytorchjob-port", "containerPort": 1234}]}]}})
    out = load_job(job, gpus=0)
    assert out["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["ports"] == [
        {"name": "pytorchjob-port", "containerPort": 1234}]


def test_elastic_defaults_copy_min_and_max():
    job = pytorch_job()
    job["spec"]["elasticPolicy"] = {"maxReplicas": 4}
    assert load_job(job, gpus=0)["spec"]["elasticPolicy"] == {"maxReplicas": 4, "minReplicas": 4}
    job["spec"]["elasticPolicy"] = {}
    assert load_job(job, gpus=0)["spec"]["elasticPolicy"] == {"minReplicas": 2, "maxReplicas": 2}


def test_pod_template_restart_policy_gives_a_warning():
    job = pytorch_job(template={"spec": {"restartPolicy": "Always", "containers": [{"name": "pytorch", "image": "i"}]}})
    assert any("will be overwritten by restart policy in replica spec" in w for w in job_warnings(load_job(job, gpus=0)))


def test_defaulting_does_not_mutate_input():
    job = pytorch_job()
    before = copy.deepcopy(job)
    load_job(job, gpus=0)
    assert job == before


# ------------------------------------------------------------------ TrainJob / runtimes
def trainjob(**trainer) -> dict:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj"},
            "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": trainer}}


TORCH_RT = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
            "metadata": {"name": "torch-distributed"},
            "spec": {"mlPolicy": {"numNodes": 1, "torch": {}}, "template": {"spec": {"replicatedJobs": [
                {"name": "node", "template": {"spec": {"template": {"spec": {"containers": [{"name": "node", "image": "i"}]}}}}}]}}}}


def test_trainjob_reserved_torch_env_is_refused():
    errs = trainjob_errors(trainjob(env=[{"name": "PET_NNODES", "value": "3"}]), TORCH_RT, gpus=0)
    assert [str(e).split(" (")[0] for e in errs] == [
        "TrainJob.spec.trainer.env: must not have reserved envs, invalid envs configured: [PET_NNODES]"]


def test_trainjob_num_nodes_and_gpu_checks():
    assert str(trainjob_errors(trainjob(numNodes=0), TORCH_RT, gpus=0)[0]).startswith(
        "TrainJob.spec.trainer.numNodes: must be an integer >= 1 (got 0)")
    errs = trainjob_errors(trainjob(resourcesPerNode={"limits": {"nvidia.com/gpu": 2}}), TORCH_RT, gpus=0)
    assert str(errs[0]).startswith("TrainJob.spec.trainer.resourcesPerNode.limits['nvidia.com/gpu']: requests 2 GPU(s)")


def test_trainjob_dataset_initializer_needs_runtime_job():
    tj = trainjob()
    tj["spec"]["initializer"] = {"dataset": {"storageUri": "hf://x/y"}}
    with pytest.raises(SpecError, match="must have dataset-initializer job"):
        validate_trainjob(tj, TORCH_RT, gpus=0)


def test_runtime_without_node_container_is_refused():
    rt = copy.deepcopy(TORCH_RT)
    rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]["name"] = "x"
    assert "must have at least one container with name node" in str(runtime_errors(rt, gpus=0)[0])
    assert runtime_errors(TORCH_RT, gpus=0) == []


# ------------------------------------------------------------------ upstream examples
V1_KINDS = ("TFJob", "PyTorchJob", "XGBoostJob", "JAXJob", "PaddleJob", "MPIJob")


def corpus_docs():
    for f in sorted(glob.glob(os.path.join(CORPUS, "training-v1", "*.yaml"))):
        for d in yaml.safe_load_all(open(f)):
            if d and d.get("kind") in V1_KINDS:
                yield os.path.basename(f), d


@pytest.mark.corpus
def test_upstream_v1_examples_load_or_are_refused_for_gpus():
    docs = list(corpus_docs())
    if not docs:
        pytest.skip("../shared/corpus is absent")
    for fname, d in docs:
        errs = job_errors(apply_defaults(d), gpus=0)
        assert all("GPU" in str(e) for e in errs), (fname, [str(e) for e in errs])
        if not errs:
            load_job(d, gpus=0)
    refused = {f for f, d in docs if job_errors(apply_defaults(d), gpus=0)}
    assert "pytorch__mnist__v1__pytorch_job_mnist_gloo.yaml" in refused
    assert "tensorflow__dist-mnist__tf_job_mnist.yaml" not in refused
