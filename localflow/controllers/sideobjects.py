"""Objects that ship in the same YAML as a job and that the job's Pods refer to (ConfigMaps, Secrets).

``kubectl apply -f job.yaml`` creates every document of the file; a training job's runner creates
these before the job so that ``configMap``/``secret`` volumes and ``valueFrom`` env resolve when the
scheduler starts the Pods (kubernetes/kubernetes ``pkg/kubelet/kubelet_pods.go`` reads them at start).
"""
from __future__ import annotations

import copy

from localflow.errors import NotFound

__all__ = ["SIDE_KINDS", "create_side_objects", "RUN_ID_LABEL"]

SIDE_KINDS = ("ConfigMap", "Secret")

# The label every object of one localflow run carries (job and Pods): `localflow get pods --run`,
# `localflow gc` and the Docker executor's container labels key on it.
RUN_ID_LABEL = "localflow.dev/run-id"


def create_side_objects(store, docs: list[dict], namespace: str) -> list[dict]:
    """Create the ConfigMaps and Secrets among ``docs`` (namespace defaulted to ``namespace``) that do
    not exist yet; returns the objects created. An existing object of the same name is kept as is
    (``kubectl create`` would refuse; a re-run of the same file should not)."""
    made = []
    for d in docs:
        if isinstance(d, dict) and d.get("kind") in SIDE_KINDS:
            obj = copy.deepcopy(d)
            obj.setdefault("metadata", {}).setdefault("namespace", namespace)
            try:
                store.get(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
            except NotFound:
                made.append(store.create(obj))
    return made
