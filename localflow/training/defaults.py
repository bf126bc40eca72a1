"""Defaulting of v1 training jobs, as the operator's defaulters do before validation.

Follows kubeflow/training-operator ``release-1.9`` ``pkg/apis/kubeflow.org/v1/*_defaults.go``:

- replica-type keys are normalized to their canonical case (``worker`` -> ``Worker``);
- ``replicas`` defaults to 1 and ``restartPolicy`` to the kind's default (PyTorchJob and PaddleJob
  ``OnFailure``, the others ``Never``);
- ``runPolicy.cleanPodPolicy`` defaults to ``None`` (MPIJob: the top-level ``cleanPodPolicy`` when set);
- the kind's named port is added to the default-named container when missing;
- PyTorchJob: ``nprocPerNode: auto`` unless ``elasticPolicy.nProcPerNode`` is set; elastic
  ``minReplicas``/``maxReplicas`` copy each other or, when both unset, ``Worker.replicas``;
- TFJob: ``successPolicy`` defaults to ``""``; MPIJob: ``slotsPerWorker`` defaults to 1.

Pure: returns a new dict, never mutates its input. Shapes it cannot default (a replica spec that is
not a mapping, a negative count) are left for :mod:`localflow.specs.training` to report.
"""
from __future__ import annotations

import copy

from localflow.training.kinds import KINDS, TrainingKind

__all__ = ["apply_defaults", "replica_specs", "total_replicas"]


def replica_specs(job: dict) -> dict:
    """The replica map of a v1 job (``spec.<kind>ReplicaSpecs``) or ``{}``."""
    info = KINDS[job["kind"]]
    specs = _mapping(job.get("spec")).get(info.replica_specs_field) or {}
    return specs if isinstance(specs, dict) else {}


def total_replicas(job: dict) -> int:
    """Sum of ``replicas`` over every replica type (unset counts as 1)."""
    total = 0
    for rs in replica_specs(job).values():
        n = rs.get("replicas", 1) if isinstance(rs, dict) else 1
        total += n if isinstance(n, int) and not isinstance(n, bool) else 1
    return total


def _mapping(value) -> dict:
    """``value`` when it is a mapping, else ``{}`` (validation reports the wrong shape)."""
    return value if isinstance(value, dict) else {}


def _default_port(info: TrainingKind, rspec: dict) -> None:
    containers = _mapping(_mapping(rspec.get("template")).get("spec")).get("containers") or []
    if not isinstance(containers, list):
        return
    for c in containers:
        if isinstance(c, dict) and c.get("name") == info.container:
            ports = c.setdefault("ports", []) or []
            if not isinstance(ports, list):
                return
            c["ports"] = ports
            if not any(isinstance(p, dict) and p.get("name") == info.port_name for p in ports):
                ports.append({"name": info.port_name, "containerPort": info.port})


def apply_defaults(job: dict) -> dict:
    """Return a defaulted deep copy of a v1 training job dict (``kind`` must be in ``KINDS``)."""
    job = copy.deepcopy(job)
    info = KINDS[job["kind"]]
    spec = job.setdefault("spec", {})
    if not isinstance(spec, dict):
        return job
    raw = spec.get(info.replica_specs_field)
    if isinstance(raw, dict):
        normalized: dict = {}
        for key, rspec in raw.items():
            canon = info.canonical_type(key) or key
            normalized[canon] = rspec
        spec[info.replica_specs_field] = normalized
        for rspec in normalized.values():
            if not isinstance(rspec, dict):
                continue
            rspec.setdefault("replicas", 1)
            if not rspec.get("restartPolicy"):
                rspec["restartPolicy"] = info.restart_policy
            _default_port(info, rspec)
    run_policy = spec.setdefault("runPolicy", {})
    if isinstance(run_policy, dict):
        if info.kind == "MPIJob" and spec.get("cleanPodPolicy") and not run_policy.get("cleanPodPolicy"):
            run_policy["cleanPodPolicy"] = spec["cleanPodPolicy"]
        run_policy.setdefault("cleanPodPolicy", "None")
        run_policy.setdefault("suspend", False)
    if info.kind == "PyTorchJob":
        _default_pytorch(spec, spec.get(info.replica_specs_field))
    elif info.kind == "TFJob":
        spec.setdefault("successPolicy", "")
    elif info.kind == "MPIJob":
        spec.setdefault("slotsPerWorker", 1)
    return job


def _default_pytorch(spec: dict, rspecs) -> None:
    elastic = spec.get("elasticPolicy")
    if isinstance(elastic, dict):
        lo, hi = elastic.get("minReplicas"), elastic.get("maxReplicas")
        if lo is None and hi is None:
            worker = rspecs.get("Worker") if isinstance(rspecs, dict) else None
            n = worker.get("replicas", 1) if isinstance(worker, dict) else None
            if n is not None:
                elastic["minReplicas"] = elastic["maxReplicas"] = n
        elif lo is None:
            elastic["minReplicas"] = hi
        elif hi is None:
            elastic["maxReplicas"] = lo
    if spec.get("nprocPerNode") is None and not (isinstance(elastic, dict) and elastic.get("nProcPerNode") is not None):
        spec["nprocPerNode"] = "auto"
