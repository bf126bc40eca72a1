"""The four PATCH content types of the Kubernetes API, applied to a stored object.

- ``application/merge-patch+json``: RFC 7386 (the store's own :meth:`ObjectStore.patch`);
- ``application/json-patch+json``: RFC 6902, by the ``jsonpatch`` library;
- ``application/strategic-merge-patch+json``: for built-in kinds only (a CRD answers 415, as
  the API server does), following ``staging/src/k8s.io/apimachinery/pkg/util/strategicpatch/patch.go``:
  maps merge, lists of objects with a merge key (``containers`` by ``name``, ``ports`` by
  ``containerPort``, …, from the ``patchMergeKey`` tags of ``k8s.io/api/core/v1/types.go``) merge
  by that key, other lists are replaced; ``$patch: delete``/``replace`` directives,
  ``$deleteFromPrimitiveList/<field>``, and ``$setElementOrder/<field>`` (which orders the result);
- ``application/apply-patch+yaml`` (server-side apply): the body is the intended object; it is
  created when absent, else merged in as a merge patch (field ownership is not tracked:
  ``managedFields`` are not kept).
"""
from __future__ import annotations

import copy

import jsonpatch

from localflow.apiserver.status import ApiError

__all__ = ["MERGE", "JSON", "STRATEGIC", "APPLY", "json_patch", "strategic_merge", "CONTENT_TYPES"]

MERGE = "application/merge-patch+json"
JSON = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
CONTENT_TYPES = (MERGE, JSON, STRATEGIC, APPLY)

#: field name -> merge key of the lists of built-in kinds (k8s.io/api core/v1, apps/v1, batch/v1 patchMergeKey tags)
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "ports": "containerPort",
    "imagePullSecrets": "name", "hostAliases": "ip", "tolerations": "key", "conditions": "type",
    "ownerReferences": "uid", "finalizers": None, "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name", "schedulingGates": "name", "readinessGates": "conditionType",
}
#: ports of a Service merge by ``port`` (its ServicePort tag), not containerPort
_SERVICE_PORT_KEY = "port"


def json_patch(obj: dict, ops) -> dict:
    """``obj`` with the RFC 6902 operations ``ops`` applied; a failing op is 422 Invalid."""
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "a json-patch+json body must be a list of operations")
    try:
        return jsonpatch.apply_patch(obj, ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError, ValueError) as exc:
        raise ApiError(422, "Invalid", f"the json patch could not be applied: {exc}") from None


def strategic_merge(obj: dict, patch: dict, *, kind: str = "") -> dict:
    """``obj`` with a strategic merge ``patch`` applied (see the module docstring); ``kind`` picks
    a Service's port key."""
    if not isinstance(patch, dict):
        raise ApiError(400, "BadRequest", "a strategic-merge-patch+json body must be an object")
    return _merge_map(copy.deepcopy(obj), patch, kind)


def _merge_map(orig: dict, patch: dict, kind: str) -> dict:
    if patch.get("$patch") == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return {}
    orders = {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith("$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(orig.get(field), list):
                orig[field] = [v for v in orig[field] if v not in (value or [])]
            continue
        if value is None:
            orig.pop(key, None)
        elif isinstance(value, dict) and isinstance(orig.get(key), dict):
            orig[key] = _merge_map(orig[key], value, kind)
        elif isinstance(value, list) and isinstance(orig.get(key), list) and _merge_key(key, kind):
            orig[key] = _merge_list(orig[key], value, _merge_key(key, kind), kind)
        elif isinstance(value, dict):
            orig[key] = _merge_map({}, value, kind)
        elif isinstance(value, list) and _merge_key(key, kind):
            orig[key] = _merge_list([], value, _merge_key(key, kind), kind)
        else:
            orig[key] = value
    for field, order in orders.items():
        orig[field] = _ordered(orig.get(field), order, _merge_key(field, kind))
    return orig


def _merge_key(field: str, kind: str) -> str | None:
    if field == "ports" and kind == "Service":
        return _SERVICE_PORT_KEY
    return MERGE_KEYS.get(field)


def _merge_list(orig: list, patch: list, key: str, kind: str) -> list:
    out = list(orig)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            if isinstance(item, dict) and item.get("$patch") == "replace":
                return [i for i in patch if i is not item]
            out.append(item)
            continue
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
        elif idx is None:
            out.append(_merge_map({}, item, kind))
        else:
            out[idx] = _merge_map(out[idx], item, kind)
    return out


def _ordered(items, order, key):
    """Order ``items`` as ``$setElementOrder`` says; items it does not name keep their place at the end."""
    if not isinstance(items, list) or not isinstance(order, list):
        return items
    if key is None:
        rank = {repr(v): i for i, v in enumerate(order)}
        return sorted(items, key=lambda v: rank.get(repr(v), len(rank)))
    rank = {repr(o.get(key)): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda v: rank.get(repr(v.get(key)) if isinstance(v, dict) else "", len(rank)))
