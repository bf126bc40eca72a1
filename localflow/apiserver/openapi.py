"""A minimal ``/openapi/v3``: enough for ``kubectl apply``'s default ``--validate=strict``.

kubectl downloads the v3 index and, per group-version, a document; when the PATCH operation of a
resource carries a ``fieldValidation`` query parameter and ``x-kubernetes-group-version-kind``,
kubectl leaves field validation to the server (kubectl ``pkg/cmd/util/query_param_verifier_v3.go``,
``fallback_query_param_verifier.go``), which here is the store's admission. Schemas are open
objects (``x-kubernetes-preserve-unknown-fields``) tagged with their GVK: the official CRDs'
``openAPIV3Schema`` are not published yet, so ``kubectl explain`` shows no fields.
"""
from __future__ import annotations

import hashlib
import json

from localflow import kinds as kind_table
from localflow.apiserver import discovery

__all__ = ["index", "document"]


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else "api/v1"


def _schema_name(k: kind_table.Kind) -> str:
    prefix = ".".join(reversed(k.group.split("."))) if k.group else "io.k8s.api.core"
    return f"{prefix}.{k.version}.{k.kind}"


def document(path: str) -> dict | None:
    """The OpenAPI v3 document of ``api/v1`` or ``apis/{group}/{version}``; None when not served."""
    parts = path.strip("/").split("/")
    if parts[:1] == ["api"] and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[:1] == ["apis"] and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    ks = discovery.resources_of(group, version)
    if not ks:
        return None
    paths, schemas = {}, {}
    base = "/" + _gv_path(group, version)
    for k in ks:
        gvk = {"group": k.group, "version": k.version, "kind": k.kind}
        item = f"{base}/namespaces/{{namespace}}/{k.plural}/{{name}}" if k.namespaced else f"{base}/{k.plural}/{{name}}"
        ref = {"$ref": f"#/components/schemas/{_schema_name(k)}"}
        op = {"parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": True}},
                             {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                             {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
              "responses": {"200": {"content": {"application/json": {"schema": ref}}}},
              "x-kubernetes-group-version-kind": gvk}
        paths[item] = {"get": {**op, "x-kubernetes-action": "get"}, "put": {**op, "x-kubernetes-action": "put"},
                       "patch": {**op, "x-kubernetes-action": "patch"}, "delete": {**op, "x-kubernetes-action": "delete"}}
        coll = item.rsplit("/", 1)[0]
        paths[coll] = {"post": {**op, "x-kubernetes-action": "post"}, "get": {**op, "x-kubernetes-action": "list"}}
        schemas[_schema_name(k)] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                    "x-kubernetes-group-version-kind": [gvk],
                                    "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                                                   "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (localflow)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}


def index() -> dict:
    """``/openapi/v3``: ``{paths: {"api/v1": {serverRelativeURL}, "apis/{g}/{v}": ...}}``."""
    out = {}
    for group, versions in discovery.group_versions().items():
        for version in versions:
            p = _gv_path(group, version)
            digest = hashlib.sha256(json.dumps(document(p), sort_keys=True).encode()).hexdigest()[:16].upper()
            out[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={digest}"}
    return {"paths": out}
