"""Discovery documents for every kind in the kind table (:mod:`localflow.kinds`).

Both forms client-go asks for (``staging/src/k8s.io/client-go/discovery/discovery_client.go``):

- aggregated discovery, ``apidiscovery.k8s.io/v2`` ``APIGroupDiscoveryList`` (KEP-3352, GA in
  Kubernetes 1.30): ``/api`` and ``/apis`` each answer the whole list when the ``Accept`` header
  asks for it (``application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList``), and the
  response's ``Content-Type`` says which form was sent;
- legacy discovery: ``/api`` (``APIVersions``), ``/apis`` (``APIGroupList``), ``/api/v1`` and
  ``/apis/{group}/{version}`` (``APIResourceList``).

Shapes follow ``staging/src/k8s.io/api/apidiscovery/v2/types.go`` and
``staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go`` (APIResource, APIGroup).
"""
from __future__ import annotations

from localflow import kinds as kind_table

__all__ = ["AGGREGATED_CONTENT_TYPE", "wants_aggregated", "group_versions", "resources_of", "api_versions",
           "api_group_list", "api_resource_list", "aggregated", "VERBS"]

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
#: What every resource here supports (the store has no finalizers, so deletecollection is plain).
VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
#: Kinds that exist only as a record (a Run's document kind) have no REST resource of their own.
_STATUS_VERBS = ["get", "patch", "update"]


def wants_aggregated(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for ``APIGroupDiscoveryList`` v2 (v2beta1 is answered as v2)."""
    accept = (accept or "").replace(" ", "")
    return "as=APIGroupDiscoveryList" in accept and "g=apidiscovery.k8s.io" in accept


def group_versions() -> dict[str, list[str]]:
    """``{group: [version, ...]}`` in table order (the core group is ``""``); the first version of
    a group is its preferred one."""
    out: dict[str, list[str]] = {}
    for k in kind_table.KINDS:
        versions = out.setdefault(k.group, [])
        if k.version not in versions:
            versions.append(k.version)
    return out


def resources_of(group: str, version: str) -> list[kind_table.Kind]:
    """The table's kinds served at ``group/version``."""
    return [k for k in kind_table.KINDS if k.group == group and k.version == version]


def _subresources(k: kind_table.Kind) -> list[str]:
    subs = ["status"]
    if k.group == "" and k.kind == "Pod":
        subs.append("log")
    return subs


def api_resource(k: kind_table.Kind) -> list[dict]:
    """The legacy ``APIResource`` entries of one kind: the resource, then ``plural/status`` (and
    ``pods/log``)."""
    main = {"name": k.plural, "singularName": k.singular or k.kind.lower(), "namespaced": k.namespaced,
            "kind": k.kind, "verbs": VERBS}
    if k.short_names:
        main["shortNames"] = list(k.short_names)
    if k.categories:
        main["categories"] = list(k.categories)
    out = [main]
    for sub in _subresources(k):
        out.append({"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                    "kind": "Pod" if sub == "log" else k.kind, "verbs": ["get"] if sub == "log" else _STATUS_VERBS})
    return out


def api_versions(server_address: str) -> dict:
    """``GET /api`` (legacy): ``APIVersions``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group_list() -> dict:
    """``GET /apis`` (legacy): ``APIGroupList`` of every non-core group."""
    groups = []
    for group, versions in group_versions().items():
        if not group:
            continue
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": gvs, "preferredVersion": gvs[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


#: Namespaces are not stored: every namespace an object uses exists (``GET``/``LIST`` only, see app.py).
_NAMESPACES = {"name": "namespaces", "singularName": "namespace", "namespaced": False, "kind": "Namespace",
               "verbs": ["get", "list"], "shortNames": ["ns"]}


def api_resource_list(group: str, version: str) -> dict | None:
    """``GET /api/v1`` or ``/apis/{group}/{version}``: ``APIResourceList``; None when not served."""
    ks = resources_of(group, version)
    if not ks:
        return None
    extra = [_NAMESPACES] if not group else []
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": [r for k in ks for r in api_resource(k)] + extra}


def _aggregated_resource(k: kind_table.Kind) -> dict:
    gvk = {"group": k.group, "version": k.version, "kind": k.kind}
    res = {"resource": k.plural, "responseKind": gvk, "scope": "Namespaced" if k.namespaced else "Cluster",
           "singularResource": k.singular or k.kind.lower(), "verbs": VERBS}
    if k.short_names:
        res["shortNames"] = list(k.short_names)
    if k.categories:
        res["categories"] = list(k.categories)
    res["subresources"] = [
        {"subresource": sub, "verbs": ["get"] if sub == "log" else _STATUS_VERBS,
         "responseKind": {"group": "", "version": "v1", "kind": "Pod"} if sub == "log" else gvk}
        for sub in _subresources(k)]
    return res


def aggregated(core: bool) -> dict:
    """``APIGroupDiscoveryList`` v2: for ``/api`` (``core``) the core group only, else every other group."""
    items = []
    for group, versions in group_versions().items():
        if bool(group) == core:
            continue
        ns = [{"resource": "namespaces", "responseKind": {"group": "", "version": "v1", "kind": "Namespace"},
               "scope": "Cluster", "singularResource": "namespace", "verbs": ["get", "list"], "shortNames": ["ns"]}]
        items.append({"metadata": {"name": group, "creationTimestamp": None},
                      "versions": [{"version": v, "freshness": "Current",
                                    "resources": [_aggregated_resource(k) for k in resources_of(group, v)]
                                    + (ns if not group else [])}
                                   for v in versions]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items}
