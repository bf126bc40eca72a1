"""MPIJob v1: the ``<job>-config`` ConfigMap (hostfile, kubexec.sh, discover_hosts.sh) and its volume.

Follows kubeflow/training-operator ``release-1.9`` ``pkg/controller.v1/mpi/mpijob.go``
(``newConfigMap``, ``updateDiscoverHostsInConfigMap``) and ``mpijob_controller.go`` (launcher
named ``<job>-launcher``, config mounted at ``/etc/mpi``). One local change: ``kubexec.sh``
cannot ``kubectl exec`` into another Pod, so it runs the command on this machine, where every
"pod" of the subprocess executor lives anyway (design note in the training reference, section 2.6;
*unverified* against real MPI launchers). The ``kubectl-delivery`` init container is not needed.
"""
from __future__ import annotations

from localflow.training.defaults import replica_specs
from localflow.training.env import MPI_CONFIG_DIR
from localflow.training.gpus import gpu_resources

__all__ = ["config_map_name", "launcher_name", "config_map", "hostfile", "config_volume", "CONFIG_VOLUME"]

CONFIG_VOLUME = "mpi-job-config"
_KUBEXEC = """#!/bin/sh
set -x
POD_NAME=$1
shift
# localflow: every pod runs on this machine, so run the command here instead of kubectl exec.
exec /bin/sh -c "$*"
"""


def config_map_name(job_name: str) -> str:
    """``<job>-config``."""
    return f"{job_name}-config"


def launcher_name(job_name: str) -> str:
    """The launcher Pod's name: ``<job>-launcher`` (no index in MPIJob v1)."""
    return f"{job_name}-launcher"


def _slots(job: dict) -> int:
    return int((job.get("spec") or {}).get("slotsPerWorker") or 1)


def hostfile(job: dict) -> str:
    """One ``<job>-worker-<i> slots=<slotsPerWorker>`` line per worker, preceded by the launcher's
    line when the launcher requests a GPU."""
    name = job["metadata"]["name"]
    specs = replica_specs(job)
    lines = []
    launcher = specs.get("Launcher") or {}
    lgpus = sum(sum(gpu_resources(c.get("resources")).values())
                for c in ((launcher.get("template") or {}).get("spec") or {}).get("containers") or [])
    if lgpus:
        lines.append(f"{launcher_name(name)} slots={lgpus}")
    for i in range(int((specs.get("Worker") or {}).get("replicas", 0) if "Worker" in specs else 0)):
        lines.append(f"{name}-worker-{i} slots={_slots(job)}")
    return "".join(line + "\n" for line in lines)


def _discover_hosts(job: dict, running_workers: list[str] | None) -> str:
    name = job["metadata"]["name"]
    if running_workers is None:
        n = int((replica_specs(job).get("Worker") or {}).get("replicas", 0))
        running_workers = [f"{name}-worker-{i}" for i in range(n)]
    return "#!/bin/sh\n" + "".join(f"echo {p}:{_slots(job)}\n" for p in sorted(running_workers))


def config_map(job: dict, running_workers: list[str] | None = None) -> dict:
    """The ``v1 ConfigMap`` object for ``job`` (owned by it), listing ``running_workers`` in
    ``discover_hosts.sh`` (default: every worker)."""
    meta = job["metadata"]
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": config_map_name(meta["name"]), "namespace": meta.get("namespace", "default"),
                     "labels": {"app": meta["name"]},
                     "ownerReferences": [{"apiVersion": job.get("apiVersion", "kubeflow.org/v1"), "kind": "MPIJob",
                                          "name": meta["name"], "uid": meta.get("uid", ""), "controller": True,
                                          "blockOwnerDeletion": True}]},
        "data": {"hostfile": hostfile(job), "kubexec.sh": _KUBEXEC,
                 "discover_hosts.sh": _discover_hosts(job, running_workers)},
    }


def config_volume(job_name: str) -> tuple[dict, dict]:
    """``(volume, volumeMount)`` that put the ConfigMap at ``/etc/mpi`` (scripts mode 0555, hostfile 0444)."""
    volume = {"name": CONFIG_VOLUME, "configMap": {
        "name": config_map_name(job_name),
        "items": [{"key": "kubexec.sh", "path": "kubexec.sh", "mode": 0o555},
                  {"key": "hostfile", "path": "hostfile", "mode": 0o444},
                  {"key": "discover_hosts.sh", "path": "discover_hosts.sh", "mode": 0o555}]}}
    return volume, {"name": CONFIG_VOLUME, "mountPath": MPI_CONFIG_DIR}
