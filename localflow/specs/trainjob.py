"""Shapes of a TrainJob's own fields (trainer.kubeflow.org/v1alpha1), checked before its runtime is
resolved or its Pods are rendered: ``runtimeRef``, ``trainer``, ``initializer``, ``runtimePatches``.

Follows kubeflow/trainer ``pkg/apis/trainer/v1alpha1/trainjob_types.go`` (field types) and the
Kubernetes Pod validation (:mod:`localflow.specs.podspec`) for the Pod fields a patch carries.
:func:`trainjob_shape_errors` returns ``[]`` or the first problem as a
:class:`~localflow.errors.SpecError` at ``TrainJob.spec...``.
"""
from __future__ import annotations

from typing import Any

from localflow.errors import SpecError
from localflow.quantity import parse_quantity
from localflow.specs.podspec import check_metadata, check_pod_spec
from localflow.validation import (
    check_dns1123_label, check_dns1123_subdomain, check_list, check_mapping, check_string,
)

__all__ = ["trainjob_shape_errors"]


def trainjob_shape_errors(tj: dict) -> list[SpecError]:
    """The first shape problem of a TrainJob's spec (``[]`` when its fields have the API's types)."""
    try:
        _check(tj.get("spec"))
    except SpecError as err:
        return [err]
    return []


def _check_env(path: str, env: Any) -> None:
    for i, e in enumerate(check_list(path, env) or []):
        check_mapping(f"{path}[{i}]", e, required=True, what="an env var (a mapping with name and value)")
        check_string(f"{path}[{i}].name", e.get("name"), what="a variable name")
        check_string(f"{path}[{i}].value", e.get("value"), required=False)
        check_mapping(f"{path}[{i}].valueFrom", e.get("valueFrom"))


def _check_strings(path: str, value: Any) -> None:
    for i, a in enumerate(check_list(path, value) or []):
        check_string(f"{path}[{i}]", a, what="a string")


def _check(spec: Any) -> None:
    base = "TrainJob.spec"
    if not isinstance(spec, dict):
        return  # reported by trainjob_errors
    ref = check_mapping(f"{base}.runtimeRef", spec.get("runtimeRef"))
    if ref is not None:
        if ref.get("name") not in (None, ""):  # a missing name is reported with its fix by trainjob_errors
            check_dns1123_subdomain(f"{base}.runtimeRef.name", ref.get("name"))
        for key in ("kind", "apiGroup"):
            check_string(f"{base}.runtimeRef.{key}", ref.get(key), required=False)
    tr = check_mapping(f"{base}.trainer", spec.get("trainer"))
    if tr is not None:
        check_string(f"{base}.trainer.image", tr.get("image"), required=False)
        _check_strings(f"{base}.trainer.command", tr.get("command"))
        _check_strings(f"{base}.trainer.args", tr.get("args"))
        _check_env(f"{base}.trainer.env", tr.get("env"))
        res = check_mapping(f"{base}.trainer.resourcesPerNode", tr.get("resourcesPerNode"))
        for section in ("limits", "requests"):
            for name, q in (check_mapping(f"{base}.trainer.resourcesPerNode.{section}", (res or {}).get(section)) or {}).items():
                parse_quantity(q, f"{base}.trainer.resourcesPerNode.{section}['{name}']")
    init = check_mapping(f"{base}.initializer", spec.get("initializer"))
    for step in ("dataset", "model"):
        sub = check_mapping(f"{base}.initializer.{step}", (init or {}).get(step))
        if sub is not None:
            check_string(f"{base}.initializer.{step}.storageUri", sub.get("storageUri"), required=False)
            _check_env(f"{base}.initializer.{step}.env", sub.get("env"))
    for i, patch in enumerate(check_list(f"{base}.runtimePatches", spec.get("runtimePatches")) or []):
        _check_patch(f"{base}.runtimePatches[{i}]", patch)
    if spec.get("labels") is not None or spec.get("annotations") is not None:
        check_metadata(f"{base}", {k: spec.get(k) for k in ("labels", "annotations")}, name=None)


def _check_patch(p: str, patch: Any) -> None:
    check_mapping(p, patch, required=True, what="a runtime patch (a mapping with manager and trainingRuntimeSpec)")
    check_string(f"{p}.manager", patch.get("manager"), required=False)
    node: Any = check_mapping(f"{p}.trainingRuntimeSpec", patch.get("trainingRuntimeSpec"))
    sub = f"{p}.trainingRuntimeSpec"
    for key in ("template", "spec"):
        node = check_mapping(f"{sub}.{key}", (node or {}).get(key))
        sub = f"{sub}.{key}"
    for j, rj in enumerate(check_list(f"{sub}.replicatedJobs", (node or {}).get("replicatedJobs")) or []):
        rp = f"{sub}.replicatedJobs[{j}]"
        check_mapping(rp, rj, required=True, what="a replicated job patch (a mapping with name and template)")
        check_dns1123_label(f"{rp}.name", rj.get("name"))
        cur: Any = rj
        cp = rp
        for key in ("template", "spec", "template"):
            cur = check_mapping(f"{cp}.{key}", (cur or {}).get(key))
            cp = f"{cp}.{key}"
            if cur is not None and cur.get("metadata") is not None:
                check_metadata(f"{cp}.metadata", cur["metadata"], name=None)
        pod = check_mapping(f"{cp}.spec", (cur or {}).get("spec"))
        if pod is not None:
            check_pod_spec(f"{cp}.spec", pod, require_containers=False, patch=True)
