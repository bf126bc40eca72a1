"""Replica Pod manifests for v1 training jobs, as the operator's ``createNewPod`` builds them.

Follows kubeflow/training-operator ``release-1.9`` ``pkg/controller.v1/common/pod.go``
(``createNewPod``: name ``<job>-<type>-<index>``, labels, ``job-role: master``, controller
ownerReference, restartPolicy from the replica spec with ``ExitCode`` -> pod ``Never``),
``SetClusterSpec`` per kind (:mod:`localflow.training.env`) and
``pkg/controller.v1/pytorch/initcontainer.go`` (workers wait for the master's name to resolve).
"""
from __future__ import annotations

import copy

from localflow.training.addressing import Endpoint, ordered_types, plan_endpoints, replica_name
from localflow.training.defaults import apply_defaults, replica_specs
from localflow.training.env import replica_env
from localflow.training.kinds import (KINDS, LABEL_JOB_NAME, LABEL_JOB_ROLE, LABEL_OPERATOR_NAME,
                                      LABEL_REPLICA_INDEX, LABEL_REPLICA_TYPE, TrainingKind)
from localflow.training.mpi import config_volume, launcher_name
from localflow.training.ports import PortAllocator

__all__ = ["replica_pods", "pod_name", "job_labels", "replica_labels", "is_master_role", "network_name",
           "NETWORK_ANNOTATION", "ADDRESS_ANNOTATION", "owner_reference"]

NETWORK_ANNOTATION = "localflow.dev/network"
ADDRESS_ANNOTATION = "localflow.dev/address"
_INIT_TRIES = 100  # the operator's --init-container-max-tries default


def pod_name(job: dict, rtype: str, index: int) -> str:
    """The Pod (and service) name of a replica; the MPIJob launcher is ``<job>-launcher``."""
    name = job["metadata"]["name"]
    if job["kind"] == "MPIJob" and rtype == "Launcher":
        return launcher_name(name)
    return replica_name(name, rtype, index)


def job_labels(job: dict) -> dict[str, str]:
    """Labels on every Pod of the job (``GenLabels``): operator name and job name."""
    return {LABEL_OPERATOR_NAME: KINDS[job["kind"]].operator_name,
            LABEL_JOB_NAME: job["metadata"]["name"].replace("/", "-")}


def is_master_role(job: dict, rtype: str, index: int) -> bool:
    """Whether replica ``rtype``/``index`` gets ``job-role: master`` (``IsMasterRole`` per kind)."""
    info = KINDS[job["kind"]]
    types = replica_specs(job)
    if rtype in info.master_types:
        return True
    has_master = any(t in types for t in info.master_types)
    return info.worker0_is_master and not has_master and rtype == "Worker" and index == 0


def replica_labels(job: dict, rtype: str, index: int) -> dict[str, str]:
    """Operator labels of one replica's Pod."""
    labels = job_labels(job)
    labels[LABEL_REPLICA_TYPE] = rtype.lower()
    labels[LABEL_REPLICA_INDEX] = str(index)
    if is_master_role(job, rtype, index):
        labels[LABEL_JOB_ROLE] = "master"
    return labels


def network_name(job: dict) -> str:
    """The docker network grouping a job's Pods: ``<namespace>-<job name>``."""
    meta = job["metadata"]
    return f"{meta.get('namespace') or 'default'}-{meta['name']}"


def owner_reference(obj: dict) -> dict:
    """A controller ownerReference pointing at ``obj``."""
    meta = obj["metadata"]
    return {"apiVersion": obj.get("apiVersion", "kubeflow.org/v1"), "kind": obj["kind"], "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def _env_targets(info: TrainingKind, containers: list[dict]) -> list[dict]:
    if info.env_only_default_container:
        return [c for c in containers if c.get("name") == info.container]
    return containers


def _set_port(info: TrainingKind, containers: list[dict], port: int) -> None:
    for c in containers:
        if c.get("name") != info.container:
            continue
        ports = c.setdefault("ports", [])
        for p in ports:
            if p.get("name") == info.port_name:
                p["containerPort"] = port
                return
        ports.append({"name": info.port_name, "containerPort": port})


def _pytorch_init(job: dict, worker_image: str, master_host: str) -> dict:
    script = (f"err=1; for i in $(seq {_INIT_TRIES}); do if getent hosts {master_host} >/dev/null 2>&1 || "
              f"nslookup {master_host} >/dev/null 2>&1; then err=0 && break; fi; "
              f"echo waiting for {master_host}; sleep 2; done; exit $err")
    return {"name": "init-pytorch", "image": worker_image, "command": ["sh", "-c", script],
            "resources": {"limits": {"cpu": "100m", "memory": "20Mi"}, "requests": {"cpu": "50m", "memory": "10Mi"}}}


def _build_pod(job: dict, rtype: str, index: int, endpoints: dict[tuple[str, int], Endpoint], addressing: str) -> dict:
    info = KINDS[job["kind"]]
    meta = job["metadata"]
    rs = replica_specs(job)[rtype]
    template = copy.deepcopy(rs.get("template") or {})
    tmeta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    name = pod_name(job, rtype, index)
    ep = endpoints[(rtype, index)]

    labels = dict(tmeta.get("labels") or {})
    labels.update(replica_labels(job, rtype, index))
    annotations = dict(tmeta.get("annotations") or {})
    annotations[ADDRESS_ANNOTATION] = str(ep)

    policy = rs.get("restartPolicy") or info.restart_policy
    spec["restartPolicy"] = "Never" if policy == "ExitCode" else policy
    containers = spec.get("containers") or []
    injected = replica_env(job, rtype, index, endpoints)
    for c in _env_targets(info, containers) if injected else []:
        c["env"] = list(c.get("env") or []) + copy.deepcopy(injected)
    if job["kind"] != "MPIJob":
        _set_port(info, containers, ep.port)
    if job["kind"] == "MPIJob" and rtype == "Launcher":
        volume, mount = config_volume(meta["name"])
        spec["volumes"] = list(spec.get("volumes") or []) + [volume]
        for c in containers:
            c["volumeMounts"] = list(c.get("volumeMounts") or []) + [mount]
    if addressing == "dns":
        spec["hostname"] = name
        annotations[NETWORK_ANNOTATION] = network_name(job)
        if job["kind"] == "PyTorchJob" and rtype == "Worker" and ("Master", 0) in endpoints:
            image = next((c.get("image") for c in containers if c.get("name") == info.container), containers[0].get("image"))
            spec["initContainers"] = [_pytorch_init(job, image, endpoints[("Master", 0)].host)] + \
                list(spec.get("initContainers") or [])

    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": meta.get("namespace") or "default", "labels": labels,
                     "annotations": annotations, "ownerReferences": [owner_reference(job)]},
        "spec": spec,
    }


def replica_pods(job: dict, addressing: str = "loopback", ports: PortAllocator | None = None) -> list[dict]:
    """Pod manifests for every replica of a v1 training ``job`` (defaulted here if it is not yet).

    ``addressing``: ``"loopback"`` (every address 127.0.0.1, each replica its own port from
    ``ports``) or ``"dns"`` (the operator's host names and ports; ``spec.hostname`` and the
    ``localflow.dev/network`` annotation set). Pods come in the kind's replica-type order, index
    ascending. Each carries the annotation ``localflow.dev/address`` (``host:port`` it listens on).
    Raises :class:`~localflow.errors.SpecError` for an unknown addressing mode.
    """
    job = apply_defaults(job)
    job.setdefault("metadata", {}).setdefault("namespace", "default")
    endpoints = plan_endpoints(job, addressing, ports)
    return [_build_pod(job, rtype, i, endpoints, addressing)
            for rtype in ordered_types(job)
            for i in range(int(replica_specs(job)[rtype].get("replicas", 1)))]

