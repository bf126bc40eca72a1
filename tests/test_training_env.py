"""Injected environment per kind, compared whole against the training reference's tables (section 2)."""
from __future__ import annotations

import json

import pytest

from localflow.training.pods import replica_pods
from localflow.training.ports import PortAllocator


def ports_from(start: int) -> PortAllocator:
    return PortAllocator(iter(range(start, start + 1000)).__next__)


def rs(container: str, replicas=1, **extra) -> dict:
    d = {"replicas": replicas, "template": {"spec": {"containers": [{"name": container, "image": "img"}]}}}
    d.update(extra)
    return d


def job(kind: str, field: str, specs: dict, name="mnist", ns="default", **spec) -> dict:
    s = {field: specs}
    s.update(spec)
    return {"apiVersion": "kubeflow.org/v1", "kind": kind, "metadata": {"name": name, "namespace": ns, "uid": "u-1"}, "spec": s}


def pods_by_name(j, addressing="dns", ports=None) -> dict:
    return {p["metadata"]["name"]: p for p in replica_pods(j, addressing, ports)}


def env_of(pod, container=0) -> dict:
    out = {}
    for e in pod["spec"]["containers"][container].get("env") or []:
        out[e["name"]] = e["value"] if "value" in e else e["valueFrom"]
    return out


# ----------------------------------------------------------------------------------- PyTorchJob
def test_pytorch_worker_env_matches_the_reference_example_in_order():
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Master": rs("pytorch"), "Worker": rs("pytorch", 2)})
    pod = pods_by_name(j)["mnist-worker-1"]
    got = " ".join(f"{e['name']}={e['value']}" for e in pod["spec"]["containers"][0]["env"])
    assert got == ("PYTHONUNBUFFERED=1 MASTER_PORT=23456 PET_MASTER_PORT=23456 MASTER_ADDR=mnist-master-0 "
                   "PET_MASTER_ADDR=mnist-master-0 WORLD_SIZE=3 RANK=2 PET_NODE_RANK=2 PET_NPROC_PER_NODE=auto PET_NNODES=3")


def test_pytorch_master_rank_zero_and_nproc_multiplies_world_size():
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Master": rs("pytorch"), "Worker": rs("pytorch")}, nprocPerNode="2")
    assert env_of(pods_by_name(j)["mnist-master-0"]) == {
        "PYTHONUNBUFFERED": "1", "MASTER_PORT": "23456", "PET_MASTER_PORT": "23456", "MASTER_ADDR": "mnist-master-0",
        "PET_MASTER_ADDR": "mnist-master-0", "WORLD_SIZE": "4", "RANK": "0", "PET_NODE_RANK": "0",
        "PET_NPROC_PER_NODE": "2", "PET_NNODES": "2"}


def test_pytorch_env_goes_into_every_container_after_user_env():
    w = rs("pytorch")
    w["template"]["spec"]["containers"][0]["env"] = [{"name": "LOGLEVEL", "value": "DEBUG"}]
    w["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s"})
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Master": rs("pytorch"), "Worker": w})
    pod = pods_by_name(j)["mnist-worker-0"]
    assert pod["spec"]["containers"][0]["env"][0] == {"name": "LOGLEVEL", "value": "DEBUG"}
    assert env_of(pod, 1)["RANK"] == "1"


def test_pytorch_elastic_env_without_master():
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Worker": rs("pytorch", 2)}, name="elastic-example-echo",
            elasticPolicy={"rdzvBackend": "c10d", "minReplicas": 1, "maxReplicas": 2, "maxRestarts": 100,
                           "rdzvId": "abc", "rdzvConf": [{"key": "timeout", "value": "60"}, {"key": "k", "value": "v"}],
                           "standalone": True})
    assert env_of(pods_by_name(j)["elastic-example-echo-worker-1"]) == {
        "PYTHONUNBUFFERED": "1", "PET_NPROC_PER_NODE": "auto",
        "PET_RDZV_ENDPOINT": "elastic-example-echo-worker-0:23456", "PET_RDZV_BACKEND": "c10d", "PET_NNODES": "1:2",
        "PET_MAX_RESTARTS": "100", "PET_RDZV_ID": "abc", "PET_RDZV_CONF": "timeout=60,k=v", "PET_STANDALONE": ""}


def test_pytorch_elastic_nproc_and_rdzv_host_override():
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Worker": rs("pytorch", 3)},
            elasticPolicy={"rdzvHost": "etcd-service", "rdzvPort": 2379, "rdzvBackend": "etcd", "nProcPerNode": 4})
    assert env_of(pods_by_name(j)["mnist-worker-0"]) == {
        "PYTHONUNBUFFERED": "1", "PET_RDZV_ENDPOINT": "etcd-service:2379", "PET_RDZV_BACKEND": "etcd",
        "PET_NNODES": "3:3", "PET_NPROC_PER_NODE": "4"}


def test_pytorch_loopback_points_every_replica_at_the_masters_own_port():
    j = job("PyTorchJob", "pytorchReplicaSpecs", {"Master": rs("pytorch"), "Worker": rs("pytorch", 2)})
    pods = pods_by_name(j, "loopback", ports_from(41000))
    master_port = pods["mnist-master-0"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert master_port == 41000
    for p in pods.values():
        e = env_of(p)
        assert (e["MASTER_ADDR"], e["MASTER_PORT"], e["PET_MASTER_PORT"]) == ("127.0.0.1", "41000", "41000")
    ports = [p["spec"]["containers"][0]["ports"][0]["containerPort"] for p in pods.values()]
    assert len(set(ports)) == 3


# ---------------------------------------------------------------------------------------- TFJob
TF4 = {"Chief": rs("tensorflow"), "PS": rs("tensorflow"), "Worker": rs("tensorflow", 2)}


def test_tf_config_dns_lists_every_task_sorted_with_task_and_environment():
    pods = pods_by_name(job("TFJob", "tfReplicaSpecs", TF4, name="dist"))
    assert json.loads(env_of(pods["dist-worker-1"])["TF_CONFIG"]) == {
        "cluster": {"chief": ["dist-chief-0:2222"], "ps": ["dist-ps-0:2222"],
                    "worker": ["dist-worker-0:2222", "dist-worker-1:2222"]},
        "task": {"type": "worker", "index": 1}, "environment": "cloud"}
    # Go json.Marshal: compact, cluster keys sorted, struct order cluster/task/environment
    assert env_of(pods["dist-chief-0"])["TF_CONFIG"] == (
        '{"cluster":{"chief":["dist-chief-0:2222"],"ps":["dist-ps-0:2222"],'
        '"worker":["dist-worker-0:2222","dist-worker-1:2222"]},"task":{"type":"chief","index":0},"environment":"cloud"}')


def test_tf_config_loopback_gives_each_task_its_own_port_and_listens_there():
    pods = pods_by_name(job("TFJob", "tfReplicaSpecs", TF4, name="dist"), "loopback", ports_from(42000))
    cfg = json.loads(env_of(pods["dist-ps-0"])["TF_CONFIG"])
    assert cfg["cluster"] == {"chief": ["127.0.0.1:42000"], "ps": ["127.0.0.1:42001"],
                              "worker": ["127.0.0.1:42002", "127.0.0.1:42003"]}
    for name, p in pods.items():
        c = json.loads(env_of(p)["TF_CONFIG"])
        own = c["cluster"][c["task"]["type"]][c["task"]["index"]]
        assert own == f"127.0.0.1:{p['spec']['containers'][0]['ports'][0]['containerPort']}"
        assert p["metadata"]["annotations"]["localflow.dev/address"] == own


def test_single_replica_tfjob_gets_no_tf_config():
    pods = replica_pods(job("TFJob", "tfReplicaSpecs", {"Worker": rs("tensorflow")}), "dns")
    assert "env" not in pods[0]["spec"]["containers"][0] or env_of(pods[0]) == {}


def test_tf_config_includes_evaluator_and_only_tensorflow_container():
    w = rs("tensorflow")
    w["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s"})
    pods = pods_by_name(job("TFJob", "tfReplicaSpecs", {"Worker": w, "Evaluator": rs("tensorflow")}, name="t"))
    cfg = json.loads(env_of(pods["t-evaluator-0"])["TF_CONFIG"])
    assert cfg["cluster"] == {"evaluator": ["t-evaluator-0:2222"], "worker": ["t-worker-0:2222"]}
    assert "env" not in pods["t-worker-0"]["spec"]["containers"][1]


def test_tf_config_sparse_for_dynamic_workers():
    pods = pods_by_name(job("TFJob", "tfReplicaSpecs", {"PS": rs("tensorflow"), "Worker": rs("tensorflow", 2)},
                            name="d", enableDynamicWorker=True))
    assert env_of(pods["d-worker-1"])["TF_CONFIG"] == \
        '{"cluster":{"worker":{"1":"d-worker-1:2222"},"ps":["d-ps-0:2222"]},"task":{"type":"worker","index":1}}'
    assert env_of(pods["d-ps-0"])["TF_CONFIG"] == '{"cluster":{"worker":{},"ps":["d-ps-0:2222"]},"task":{"type":"ps","index":0}}'


# ----------------------------------------------------------------------------------- XGBoostJob
def test_xgboost_env_master_and_workers():
    pods = pods_by_name(job("XGBoostJob", "xgbReplicaSpecs", {"Master": rs("xgboost"), "Worker": rs("xgboost", 2)}, name="x"))
    assert env_of(pods["x-worker-1"]) == {
        "MASTER_PORT": "9999", "MASTER_ADDR": "x-master-0", "WORLD_SIZE": "3", "RANK": "2", "PYTHONUNBUFFERED": "1",
        "WORKER_PORT": "9999", "WORKER_ADDRS": "x-worker-0,x-worker-1"}
    assert env_of(pods["x-master-0"])["RANK"] == "0"


def test_xgboost_single_master_has_no_worker_vars():
    pods = pods_by_name(job("XGBoostJob", "xgbReplicaSpecs", {"Master": rs("xgboost")}, name="x"))
    assert env_of(pods["x-master-0"]) == {"MASTER_PORT": "9999", "MASTER_ADDR": "x-master-0", "WORLD_SIZE": "1",
                                          "RANK": "0", "PYTHONUNBUFFERED": "1"}


# --------------------------------------------------------------------------------------- JAXJob
def test_jax_env():
    pods = pods_by_name(job("JAXJob", "jaxReplicaSpecs", {"Worker": rs("jax", 2)}, name="jaxjob-simple"))
    assert env_of(pods["jaxjob-simple-worker-1"]) == {
        "PYTHONUNBUFFERED": "1", "COORDINATOR_PORT": "6666", "COORDINATOR_ADDRESS": "jaxjob-simple-worker-0",
        "NUM_PROCESSES": "2", "PROCESS_ID": "1"}


# ------------------------------------------------------------------------------------ PaddleJob
POD_IP = {"fieldRef": {"fieldPath": "status.podIP"}}


def test_paddle_collective_mode():
    pods = pods_by_name(job("PaddleJob", "paddleReplicaSpecs", {"Worker": rs("paddle", 2)}, name="p"))
    assert env_of(pods["p-worker-0"]) == {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "p", "PADDLE_NNODES": "2",
                                          "POD_IP_DUMMY": POD_IP, "PADDLE_MASTER": "$(POD_IP_DUMMY):36543"}
    assert env_of(pods["p-worker-1"]) == {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "p", "PADDLE_NNODES": "2",
                                          "PADDLE_MASTER": "p-worker-0:36543"}


def test_paddle_ps_mode():
    pods = pods_by_name(job("PaddleJob", "paddleReplicaSpecs", {"Master": rs("paddle"), "Worker": rs("paddle", 2)}, name="p"))
    assert env_of(pods["p-master-0"]) == {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "p", "PADDLE_NNODES": "3",
                                          "POD_IP_DUMMY": POD_IP, "PADDLE_MASTER": "$(POD_IP_DUMMY):36543",
                                          "PADDLE_SERVER_NUM": "1"}
    assert env_of(pods["p-worker-0"]) == {"PYTHONUNBUFFERED": "1", "PADDLE_JOB_ID": "p", "PADDLE_NNODES": "3",
                                          "PADDLE_MASTER": "p-master-0:36543", "PADDLE_TRAINER_NUM": "1"}


# ---------------------------------------------------------------------------------------- MPIJob
def test_mpi_launcher_env_and_hostfile_volume():
    j = job("MPIJob", "mpiReplicaSpecs", {"Launcher": rs("mpi"), "Worker": rs("mpi", 2)}, name="m", slotsPerWorker=2)
    pods = pods_by_name(j)
    launcher = pods["m-launcher"]
    assert env_of(launcher) == {
        "OMPI_MCA_plm_rsh_agent": "/etc/mpi/kubexec.sh", "OMPI_MCA_orte_default_hostfile": "/etc/mpi/hostfile",
        "I_MPI_HYDRA_BOOTSTRAP": "rsh", "I_MPI_HYDRA_BOOTSTRAP_EXEC": "/etc/mpi/kubexec.sh",
        "NVIDIA_VISIBLE_DEVICES": "", "NVIDIA_DRIVER_CAPABILITIES": ""}
    assert launcher["spec"]["volumes"][-1]["configMap"]["name"] == "m-config"
    assert launcher["spec"]["containers"][0]["volumeMounts"][-1] == {"name": "mpi-job-config", "mountPath": "/etc/mpi"}
    assert "env" not in pods["m-worker-0"]["spec"]["containers"][0]
    from localflow.training.mpi import config_map
    data = config_map(j)["data"]
    assert data["hostfile"] == "m-worker-0 slots=2\nm-worker-1 slots=2\n"
    assert data["discover_hosts.sh"] == "#!/bin/sh\necho m-worker-0:2\necho m-worker-1:2\n"


def test_mpi_user_intel_bootstrap_is_not_overridden():
    launcher = rs("mpi")
    launcher["template"]["spec"]["containers"][0]["env"] = [{"name": "I_MPI_HYDRA_BOOTSTRAP", "value": "ssh"}]
    pods = pods_by_name(job("MPIJob", "mpiReplicaSpecs", {"Launcher": launcher, "Worker": rs("mpi")}, name="m"))
    env = env_of(pods["m-launcher"])
    assert env["I_MPI_HYDRA_BOOTSTRAP"] == "ssh" and env["I_MPI_HYDRA_BOOTSTRAP_EXEC"] == "/etc/mpi/kubexec.sh"


@pytest.mark.parametrize("addressing", ["loopback", "dns"])
def test_every_kind_builds_pods_in_both_addressing_modes(addressing):
    kinds = [("TFJob", "tfReplicaSpecs", TF4),
             ("PyTorchJob", "pytorchReplicaSpecs", {"Master": rs("pytorch"), "Worker": rs("pytorch")}),
             ("XGBoostJob", "xgbReplicaSpecs", {"Master": rs("xgboost"), "Worker": rs("xgboost")}),
             ("JAXJob", "jaxReplicaSpecs", {"Worker": rs("jax", 2)}),
             ("PaddleJob", "paddleReplicaSpecs", {"Worker": rs("paddle", 2)}),
             ("MPIJob", "mpiReplicaSpecs", {"Launcher": rs("mpi"), "Worker": rs("mpi", 2)})]
    for kind, field, specs in kinds:
        pods = replica_pods(job(kind, field, specs), addressing, ports_from(43000))
        assert pods and all(p["kind"] == "Pod" for p in pods)
        if addressing == "loopback":
            blob = json.dumps([p["spec"] for p in pods])
            assert "mnist-worker-0:" not in blob and "mnist-master-0:" not in blob
