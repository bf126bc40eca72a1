"""Objects that ship in the same YAML as a job and that the job's Pods refer to (ConfigMaps, Secrets).

``kubectl apply -f job.yaml`` creates every document of the file; a training job's runner creates
these before the job so that ``configMap``/``secret`` volumes and ``valueFrom`` env resolve when the
scheduler starts the Pods (kubernetes/kubernetes ``pkg/kubelet/kubelet_pods.go`` reads them at start).
Their shapes are checked first as the API server checks them (``pkg/apis/core/validation``
``ValidateConfigMap``, ``ValidateSecret``): a name, data keys that are valid file names (a
volume without ``items`` writes one file per key), string values. The store runs the same check
on every write (the kind table registers it as admission, :mod:`localflow.kinds`), and encodes a
Secret's ``stringData`` into ``data`` there.
"""
from __future__ import annotations

import base64
import binascii
import copy

from localflow.errors import NotFound, SpecError
from localflow.specs.podspec import check_metadata
from localflow.validation import check_config_key, check_mapping, check_string

__all__ = ["SIDE_KINDS", "create_side_objects", "check_side_object", "RUN_ID_LABEL"]

SIDE_KINDS = ("ConfigMap", "Secret")

# The label every object of one localflow run carries (job and Pods): `localflow get pods --run`,
# `localflow gc` and the Docker executor's container labels key on it.
RUN_ID_LABEL = "localflow.dev/run-id"


def check_side_object(doc: dict) -> None:
    """Raise :class:`SpecError` (``ConfigMap.metadata.name``, ``Secret.data['key']``, ...) for a
    ConfigMap, Secret or PersistentVolumeClaim the API server would refuse; other kinds pass."""
    kind = doc.get("kind")
    if kind not in (*SIDE_KINDS, "PersistentVolumeClaim"):
        return
    check_metadata(f"{kind}.metadata", doc.get("metadata"), name="subdomain")
    if kind == "PersistentVolumeClaim":
        check_mapping(f"{kind}.spec", doc.get("spec"))
        return
    for field in ("data", "stringData", "binaryData"):
        values = check_mapping(f"{kind}.{field}", doc.get(field))
        for key, value in (values or {}).items():
            path = f"{kind}.{field}['{key}']"
            check_config_key(path, key)
            check_string(path, value, required=False, what="a string (quote numbers and booleans)")
            if (field == "binaryData" or (kind == "Secret" and field == "data")) and value:
                try:
                    base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    raise SpecError(path, "is not valid base64", fix="encode the value (base64 -w0) or put it "
                                    "in stringData" if kind == "Secret" else "encode the value with base64 -w0") from None
    if kind == "Secret":
        check_string("Secret.type", doc.get("type"), required=False)


def create_side_objects(store, docs: list[dict], namespace: str) -> list[dict]:
    """Create the ConfigMaps and Secrets among ``docs`` (namespace defaulted to ``namespace``) that do
    not exist yet; returns the objects created. An existing object of the same name is kept as is
    (``kubectl create`` would refuse; a re-run of the same file should not). Every one is checked
    with :func:`check_side_object` before any is created."""
    side = [d for d in docs if isinstance(d, dict) and d.get("kind") in SIDE_KINDS]
    for d in side:
        check_side_object(d)
    made = []
    for d in side:
        obj = copy.deepcopy(d)
        obj.setdefault("metadata", {}).setdefault("namespace", namespace)
        try:
            store.get(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
        except NotFound:
            made.append(store.create(obj))
    return made
