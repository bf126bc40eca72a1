"""Environment the Training Operator injects into each replica, per kind (training reference, section 2).

Each ``*_env`` function returns the list of ``{name, value}`` (or ``{name, valueFrom}``) entries
appended to a replica's container env, in the operator's order, with addresses taken from an
endpoint plan (:func:`localflow.training.addressing.plan_endpoints`): in ``dns`` mode they are
the operator's values, in ``loopback`` mode the same variables point at ``127.0.0.1`` and each
replica's own port.

Sources (kubeflow/training-operator ``release-1.9``): ``pkg/controller.v1/tensorflow/tensorflow.go``
(TF_CONFIG), ``pkg/controller.v1/pytorch/{envvar.go,master.go,elastic.go}``,
``pkg/controller.v1/xgboost/xgboost.go``, ``pkg/controller.v1/jax/envvar.go``,
``pkg/controller.v1/paddlepaddle/envvar.go``, ``pkg/controller.v1/mpi/mpijob.go``.
"""
from __future__ import annotations

import json

from localflow.training.addressing import Endpoint, ordered_types
from localflow.training.defaults import replica_specs, total_replicas
from localflow.training.gpus import gpu_resources

__all__ = ["replica_env", "tf_config", "pytorch_env", "xgboost_env", "jax_env", "paddle_env", "mpi_launcher_env",
           "MPI_CONFIG_DIR"]

Endpoints = dict[tuple[str, int], Endpoint]
MPI_CONFIG_DIR = "/etc/mpi"


def _e(name: str, value) -> dict:
    return {"name": name, "value": str(value)}


def _replicas(job: dict, rtype: str) -> int:
    return int((replica_specs(job).get(rtype) or {}).get("replicas", 1))


# ----------------------------------------------------------------------------------------- TFJob
def tf_config(job: dict, rtype: str, index: int, endpoints: Endpoints) -> str | None:
    """The ``TF_CONFIG`` JSON for one TF task, or None for a single-replica job (kubeflow/trainer#1078).

    Full form ``{"cluster": {<type>: [host:port, ...]}, "task": {"type", "index"}, "environment": "cloud"}``
    with cluster keys sorted (Go ``json.Marshal`` of a map) and ``evaluator`` included; with
    ``spec.enableDynamicWorker`` Worker and PS tasks get the sparse form instead.
    """
    if total_replicas(job) == 1:
        return None
    types = ordered_types(job)
    task = {"type": rtype.lower(), "index": index}
    if (job.get("spec") or {}).get("enableDynamicWorker") and rtype in ("Worker", "PS"):
        ps = [str(endpoints[("PS", i)]) for i in range(_replicas(job, "PS"))] if "PS" in types else []
        if rtype == "Worker":
            cluster = {"worker": {str(index): str(endpoints[(rtype, index)])}, "ps": ps}
        else:
            cluster = {"worker": {}, "ps": [str(endpoints[(rtype, index)])]}
        return json.dumps({"cluster": cluster, "task": task}, separators=(",", ":"))
    cluster = {t.lower(): [str(endpoints[(t, i)]) for i in range(_replicas(job, t))]
               for t in sorted(types, key=str.lower)}
    return json.dumps({"cluster": cluster, "task": task, "environment": "cloud"}, separators=(",", ":"))


def _tf_env(job, rtype, index, endpoints) -> list[dict]:
    cfg = tf_config(job, rtype, index, endpoints)
    return [] if cfg is None else [_e("TF_CONFIG", cfg)]


# ------------------------------------------------------------------------------------ PyTorchJob
def _nproc_int(v) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    return int(v) if isinstance(v, str) and v.isdigit() else 1


def pytorch_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """PyTorchJob: PYTHONUNBUFFERED, MASTER_*/PET_MASTER_*, WORLD_SIZE, RANK/PET_NODE_RANK (Master
    present), PET_NPROC_PER_NODE, then the elastic PET_RDZV_* set or PET_NNODES."""
    spec = job.get("spec") or {}
    total = total_replicas(job)
    env = [_e("PYTHONUNBUFFERED", "1")]
    if "Master" in replica_specs(job):
        master = endpoints[("Master", 0)]
        rank = index + 1 if rtype == "Worker" else index
        env += [_e("MASTER_PORT", master.port), _e("PET_MASTER_PORT", master.port),
                _e("MASTER_ADDR", master.host), _e("PET_MASTER_ADDR", master.host),
                _e("WORLD_SIZE", total * _nproc_int(spec.get("nprocPerNode"))),
                _e("RANK", rank), _e("PET_NODE_RANK", rank)]
    if spec.get("nprocPerNode") is not None:
        env.append(_e("PET_NPROC_PER_NODE", spec["nprocPerNode"]))
    ep = spec.get("elasticPolicy")
    if isinstance(ep, dict):
        if ep.get("rdzvHost"):
            host = ep["rdzvHost"]
        else:
            host = endpoints[("Worker", 0)].host if ("Worker", 0) in endpoints else f"{job['metadata']['name']}-worker-0"
        port = ep.get("rdzvPort") or (endpoints[("Worker", 0)].port if ("Worker", 0) in endpoints else 23456)
        env += [_e("PET_RDZV_ENDPOINT", f"{host}:{port}"), _e("PET_RDZV_BACKEND", ep.get("rdzvBackend") or "c10d"),
                _e("PET_NNODES", f"{ep.get('minReplicas')}:{ep.get('maxReplicas')}")]
        if ep.get("maxRestarts") is not None:
            env.append(_e("PET_MAX_RESTARTS", ep["maxRestarts"]))
        if ep.get("nProcPerNode") is not None:
            env.append(_e("PET_NPROC_PER_NODE", ep["nProcPerNode"]))
        if ep.get("rdzvId") is not None:
            env.append(_e("PET_RDZV_ID", ep["rdzvId"]))
        if ep.get("rdzvConf"):
            env.append(_e("PET_RDZV_CONF", ",".join(f"{c.get('key')}={c.get('value')}" for c in ep["rdzvConf"])))
        if ep.get("standalone"):
            env.append(_e("PET_STANDALONE", ""))
    else:
        env.append(_e("PET_NNODES", total))
    return env


# ------------------------------------------------------------------------------------ XGBoostJob
def xgboost_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """XGBoostJob: MASTER_PORT/ADDR, WORLD_SIZE, RANK (Workers after the Masters), PYTHONUNBUFFERED,
    and WORKER_PORT/WORKER_ADDRS when the job has more than one replica."""
    total = total_replicas(job)
    masters = _replicas(job, "Master") if "Master" in replica_specs(job) else 0
    master = endpoints[("Master", 0)]
    rank = index + masters if rtype == "Worker" else index
    env = [_e("MASTER_PORT", master.port), _e("MASTER_ADDR", master.host), _e("WORLD_SIZE", total),
           _e("RANK", rank), _e("PYTHONUNBUFFERED", "1")]
    if total > 1 and ("Worker", 0) in endpoints:
        env += [_e("WORKER_PORT", endpoints[("Worker", 0)].port),
                _e("WORKER_ADDRS", ",".join(endpoints[("Worker", i)].host if ("Worker", i) in endpoints
                                            else f"{job['metadata']['name']}-worker-{i}" for i in range(total - 1)))]
    return env


# ---------------------------------------------------------------------------------------- JAXJob
def jax_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """JAXJob: PYTHONUNBUFFERED, COORDINATOR_PORT/ADDRESS (worker 0), NUM_PROCESSES, PROCESS_ID."""
    coord = endpoints[("Worker", 0)]
    return [_e("PYTHONUNBUFFERED", "1"), _e("COORDINATOR_PORT", coord.port), _e("COORDINATOR_ADDRESS", coord.host),
            _e("NUM_PROCESSES", total_replicas(job)), _e("PROCESS_ID", index)]


# ------------------------------------------------------------------------------------- PaddleJob
def paddle_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """PaddleJob: PYTHONUNBUFFERED, PADDLE_JOB_ID, PADDLE_NNODES, PADDLE_MASTER (the rendezvous
    replica itself gets ``$(POD_IP_DUMMY):<port>`` from its Pod IP), PS-mode server/trainer counts."""
    env = [_e("PYTHONUNBUFFERED", "1"), _e("PADDLE_JOB_ID", job["metadata"]["name"]),
           _e("PADDLE_NNODES", total_replicas(job))]
    ps_mode = "Master" in replica_specs(job)
    head_type = "Master" if ps_mode else "Worker"
    head = endpoints[(head_type, 0)]
    if rtype == head_type and index == 0:
        env += [{"name": "POD_IP_DUMMY", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                _e("PADDLE_MASTER", f"$(POD_IP_DUMMY):{head.port}")]
    else:
        env.append(_e("PADDLE_MASTER", f"{head.host}:{head.port}"))
    if ps_mode:
        env.append(_e("PADDLE_SERVER_NUM" if rtype == "Master" else "PADDLE_TRAINER_NUM", "1"))
    return env


# ---------------------------------------------------------------------------------------- MPIJob
def mpi_launcher_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """MPIJob Launcher: OpenMPI/Intel MPI bootstrap through ``/etc/mpi/kubexec.sh`` and the
    hostfile; NVIDIA_* emptied when the launcher requests no GPU. Workers get nothing."""
    if rtype != "Launcher":
        return []
    rs = replica_specs(job)["Launcher"]
    containers = ((rs.get("template") or {}).get("spec") or {}).get("containers") or []
    user = {e.get("name") for c in containers for e in c.get("env") or []}
    env = [_e("OMPI_MCA_plm_rsh_agent", f"{MPI_CONFIG_DIR}/kubexec.sh"),
           _e("OMPI_MCA_orte_default_hostfile", f"{MPI_CONFIG_DIR}/hostfile")]
    if "I_MPI_HYDRA_BOOTSTRAP" not in user:
        env.append(_e("I_MPI_HYDRA_BOOTSTRAP", "rsh"))
    if "I_MPI_HYDRA_BOOTSTRAP_EXEC" not in user:
        env.append(_e("I_MPI_HYDRA_BOOTSTRAP_EXEC", f"{MPI_CONFIG_DIR}/kubexec.sh"))
    if not any(gpu_resources(c.get("resources")) for c in containers):
        env += [_e("NVIDIA_VISIBLE_DEVICES", ""), _e("NVIDIA_DRIVER_CAPABILITIES", "")]
    return env


_BY_KIND = {"TFJob": _tf_env, "PyTorchJob": pytorch_env, "XGBoostJob": xgboost_env, "JAXJob": jax_env,
            "PaddleJob": paddle_env, "MPIJob": mpi_launcher_env}


def replica_env(job: dict, rtype: str, index: int, endpoints: Endpoints) -> list[dict]:
    """The env entries the operator appends for replica ``rtype``/``index`` of a defaulted job."""
    return _BY_KIND[job["kind"]](job, rtype, index, endpoints)
