"""The kfp-kubernetes platform document mapped onto a local Pod (IR notes, section 14).

One executor's ``KubernetesExecutorConfig`` (kubeflow/pipelines
``kubernetes_platform/proto/kubernetes_executor_config.proto``) becomes env entries, volumes,
volume mounts, labels, annotations and Pod spec fields, the way the backend driver builds the
task Pod (``backend/src/v2/driver/k8s.go`` ``initPodSpecPatch`` / ``extendPodSpecPatch``):

- ``secretAsEnv`` / ``configMapAsEnv`` -> ``env[].valueFrom.{secret,configMap}KeyRef``;
  ``fieldPathAsEnv`` -> ``env[].valueFrom.fieldRef``;
- ``secretAsVolume`` / ``configMapAsVolume`` -> ``secret`` / ``configMap`` volumes (the scheduler
  projects their keys into files); ``pvcMount`` -> ``persistentVolumeClaim`` volumes (a directory
  ``pvc/<claim>`` of the workspace that outlives runs); ``emptyDirMounts`` and
  ``genericEphemeralVolume`` -> ``emptyDir`` volumes;
- ``podMetadata`` -> labels and annotations; ``activeDeadlineSeconds`` -> the Pod's.

Claim names, ``subPath`` values and volume names never reach a host path unchecked: constants are
checked before the run (:func:`localflow.pipelines.names.check_platform_paths`), every value when
the task's Pod is submitted (:func:`localflow.volumes.validate_pod_volumes`).

Names given as ``*NameParameter`` (``runtimeValue``, ``componentInputParameter``,
``taskOutputParameter``) are resolved by the caller's ``resolve(spec, path)``. Scheduling hints
that mean nothing on one node (``nodeSelector``, ``tolerations``, ``nodeAffinity``,
``podAffinity``, ``imagePullSecret``, ``imagePullPolicy``, ``securityContext``,
``enabledSharedMemory``) are accepted and ignored.

Also: the kfp-kubernetes ``CreatePVC`` / ``DeletePVC`` components, whose executors are the stub
images in :data:`PVC_OPERATIONS` that the backend driver implements itself (``k8s.go``
``createPVC`` / ``deletePVC``); see :func:`pvc_name`.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from localflow.errors import SpecError

__all__ = ["PodPatch", "apply_executor_config", "PVC_OPERATIONS", "pvc_name"]

#: Executor image of the kfp-kubernetes PVC components -> operation the engine performs itself.
PVC_OPERATIONS = {"argostub/createpvc": "create", "argostub/deletepvc": "delete"}

Resolver = Callable[[dict, str], Any]


@dataclass
class PodPatch:
    """What an executor config adds to a Pod manifest."""

    env: list[dict] = field(default_factory=list)
    volumes: list[dict] = field(default_factory=list)
    mounts: list[dict] = field(default_factory=list)
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)


def _name(entry: dict, legacy: str, param: str, resolve: Resolver, path: str, what: str) -> str | None:
    """The Secret/ConfigMap name of ``entry``; None when it is given by a parameter that resolved to
    null (an optional pipeline input left unset): the driver then skips the entry
    (``backend/src/v2/driver/k8s.go``: a null resolved parameter -> ``continue``)."""
    value = entry.get(legacy)
    if not value and entry.get(param):
        value = resolve(entry[param], f"{path}.{param}")
        if value is None:
            return None
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"the {what} name has no value (got {value!r})",
                        fix=f"set {legacy} or {param} to a non-empty string")
    return value


def _pvc_claim(entry: dict, resolve: Resolver, path: str) -> str:
    if entry.get("pvcNameParameter"):
        value = resolve(entry["pvcNameParameter"], f"{path}.pvcNameParameter")
    elif entry.get("constant"):
        value = entry["constant"]
    elif entry.get("componentInputParameter"):
        value = resolve({"componentInputParameter": entry["componentInputParameter"]}, f"{path}.componentInputParameter")
    elif entry.get("taskOutputParameter"):
        value = resolve({"taskOutputParameter": entry["taskOutputParameter"]}, f"{path}.taskOutputParameter")
    else:
        value = None
    if not isinstance(value, str) or not value:
        raise SpecError(path, f"the PVC name has no value (got {value!r})",
                        fix="pass pvc_name to kubernetes.mount_pvc as a string, a pipeline input or a CreatePVC output")
    return value


def apply_executor_config(config: dict, resolve: Resolver, path: str) -> PodPatch:
    """Map one ``platforms.kubernetes.deploymentSpec.executors[label]`` entry (``path`` names it in
    errors) to a :class:`PodPatch`. ``resolve(spec, path)`` returns the value of a
    TaskInputParameterSpec (``{"runtimeValue": {"constant": ...}}``,
    ``{"componentInputParameter": name}``, ``{"taskOutputParameter": {...}}``) for the task being
    started (``None`` for an optional input left unset: that Secret/ConfigMap entry is skipped),
    raising SpecError when it has none. Raises SpecError for a name that resolves to nothing else."""
    out = PodPatch()
    for i, s in enumerate(config.get("secretAsEnv") or []):
        p = f"{path}.secretAsEnv[{i}]"
        name = _name(s, "secretName", "secretNameParameter", resolve, p, "Secret")
        if name is None:
            continue
        for k in s.get("keyToEnv") or []:
            out.env.append({"name": k["envVar"], "valueFrom": {"secretKeyRef": {
                "name": name, "key": k["secretKey"], "optional": bool(s.get("optional"))}}})
    for i, s in enumerate(config.get("configMapAsEnv") or []):
        p = f"{path}.configMapAsEnv[{i}]"
        name = _name(s, "configMapName", "configMapNameParameter", resolve, p, "ConfigMap")
        if name is None:
            continue
        for k in s.get("keyToEnv") or []:
            out.env.append({"name": k["envVar"], "valueFrom": {"configMapKeyRef": {
                "name": name, "key": k["configMapKey"], "optional": bool(s.get("optional"))}}})
    for s in config.get("fieldPathAsEnv") or []:
        out.env.append({"name": s["name"], "valueFrom": {"fieldRef": {"fieldPath": s["fieldPath"]}}})
    for i, m in enumerate(config.get("pvcMount") or []):
        claim = _pvc_claim(m, resolve, f"{path}.pvcMount[{i}]")
        vname = f"pvc-{i}"
        out.volumes.append({"name": vname, "persistentVolumeClaim": {"claimName": claim}})
        mount = {"name": vname, "mountPath": m["mountPath"]}
        if m.get("subPath"):
            mount["subPath"] = m["subPath"]
        out.mounts.append(mount)
    for i, s in enumerate(config.get("secretAsVolume") or []):
        name = _name(s, "secretName", "secretNameParameter", resolve, f"{path}.secretAsVolume[{i}]", "Secret")
        if name is None:
            continue
        out.volumes.append({"name": f"secret-{i}", "secret": {"secretName": name, "optional": bool(s.get("optional"))}})
        out.mounts.append({"name": f"secret-{i}", "mountPath": s["mountPath"], "readOnly": True})
    for i, s in enumerate(config.get("configMapAsVolume") or []):
        name = _name(s, "configMapName", "configMapNameParameter", resolve, f"{path}.configMapAsVolume[{i}]", "ConfigMap")
        if name is None:
            continue
        out.volumes.append({"name": f"configmap-{i}", "configMap": {"name": name, "optional": bool(s.get("optional"))}})
        out.mounts.append({"name": f"configmap-{i}", "mountPath": s["mountPath"], "readOnly": True})
    for key in ("emptyDirMounts", "genericEphemeralVolume"):
        for i, s in enumerate(config.get(key) or []):
            vname = s.get("volumeName") or f"{key.lower()}-{i}"
            out.volumes.append({"name": vname, "emptyDir": {}})
            out.mounts.append({"name": vname, "mountPath": s["mountPath"]})
    meta = config.get("podMetadata") or {}
    out.labels.update(meta.get("labels") or {})
    out.annotations.update(meta.get("annotations") or {})
    if config.get("activeDeadlineSeconds"):
        out.spec["activeDeadlineSeconds"] = int(config["activeDeadlineSeconds"])
    return out


def pvc_name(inputs: dict, path: str) -> str:
    """Name of the PVC a ``CreatePVC`` task makes, from its input parameters (``k8s.go``
    ``createPVC``): ``pvc_name`` as given, or a random UUID followed by ``pvc_name_suffix``, or a
    random UUID. Raises SpecError when both are given."""
    name, suffix = inputs.get("pvc_name") or "", inputs.get("pvc_name_suffix") or ""
    if name and suffix:
        raise SpecError(path, "at most one of pvc_name and pvc_name_suffix can be non-empty",
                        fix="pass only one of them to kubernetes.CreatePVC")
    if name:
        return name
    return str(uuid.uuid4()) + suffix
