"""Object shape checks shared by every write of the store: names, namespaces, labels, merge patch.

Follows apimachinery's ``pkg/api/validation/objectmeta.go`` (DNS-1123 names and namespaces,
string-valued labels and annotations, ``generateName`` suffixes from ``pkg/util/rand``) and
RFC 7386 JSON merge patch. Imports only ``localflow.errors`` and :mod:`.kinds`.
"""
from __future__ import annotations

import json
import re
import secrets

from localflow.errors import SpecError

from .kinds import KindInfo, api_group, resolve_kind

__all__ = ["merge_patch", "dumps", "normalise", "generate_name", "object_matches"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery pkg/util/rand


def generate_name(prefix) -> str:
    """``prefix`` plus five random characters, as the API server expands ``generateName``."""
    return str(prefix) + "".join(secrets.choice(_GEN_ALPHABET) for _ in range(5))


def merge_patch(target, patch):
    """Apply an RFC 7386 JSON merge patch: dicts merge recursively, ``None`` deletes a key, any
    other value (lists included) replaces. Returns a new value; inputs are not modified."""
    if not isinstance(patch, dict):
        return json.loads(json.dumps(patch))
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def dumps(obj: dict, path: str) -> str:
    """``obj`` as JSON; :class:`SpecError` at ``path`` when it is not JSON-serialisable."""
    try:
        return json.dumps(obj, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise SpecError(path, f"object is not JSON-serialisable: {err}", fix="use only dicts, lists, strings, numbers, booleans and null") from None


def normalise(obj, verb: str) -> tuple[dict, KindInfo]:
    """Validate the shape of an object for create (``verb="create"`` also fills a name from
    ``metadata.generateName``) or update; returns a private copy and its :class:`KindInfo`.
    Raises :class:`SpecError` naming the field path."""
    if not isinstance(obj, dict):
        raise SpecError("object", f"must be a mapping (got {type(obj).__name__})")
    obj = json.loads(dumps(obj, "object"))
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise SpecError("kind", "is required", fix="set kind, e.g. kind: Pod")
    api_version = obj.get("apiVersion")
    if api_version is not None and not isinstance(api_version, str):
        raise SpecError(f"{kind}.apiVersion", f"must be a string (got {api_version!r})")
    info = resolve_kind(kind, api_version)
    if info.kind != kind:
        raise SpecError("kind", f"{kind!r} is not a Kind name", fix=f"write kind: {info.kind}")
    obj["apiVersion"] = api_version or info.api_version
    obj = {"apiVersion": obj.pop("apiVersion"), "kind": obj.pop("kind"), "metadata": obj.pop("metadata", None), **obj}
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    if not isinstance(meta, dict):
        raise SpecError(f"{kind}.metadata", "must be a mapping")
    if verb == "create" and not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise SpecError(f"{kind}.metadata.name", "is required", fix="set metadata.name (lowercase letters, digits, '-', '.')")
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise SpecError(
            f"{kind}.metadata.name",
            f"{name!r} is not a valid name",
            fix="use at most 253 lowercase letters, digits, '-' or '.', starting and ending with a letter or digit",
        )
    if info.namespaced:
        ns = meta.get("namespace") or "default"
        if not isinstance(ns, str) or len(ns) > 63 or not _DNS_LABEL.match(ns):
            raise SpecError(f"{kind}.metadata.namespace", f"{ns!r} is not a valid namespace", fix="use lowercase letters, digits and '-'")
        meta["namespace"] = ns
    else:
        meta.pop("namespace", None)
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is not None and (not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())):
            raise SpecError(f"{kind}.metadata.{field}", "must map strings to strings", fix='quote values, e.g. "true"')
    refs = meta.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            raise SpecError(f"{kind}.metadata.ownerReferences", "must be a list")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict) or not ref.get("uid"):
                raise SpecError(f"{kind}.metadata.ownerReferences[{i}].uid", "is required")
    return obj, info


def object_matches(obj: dict, info: KindInfo | None, namespace: str | None, owner_uid: str | None) -> bool:
    """True when ``obj`` is of kind ``info`` (any when ``None``), in ``namespace`` (any when
    ``None``; ignored for cluster-scoped kinds) and owned by ``owner_uid`` (when given): the
    non-label filters of ``list`` and ``watch``."""
    if info is not None and (obj.get("kind") != info.kind or api_group(obj.get("apiVersion", "")) != info.group):
        return False
    meta = obj.get("metadata", {})
    if namespace is not None and (info is None or info.namespaced) and meta.get("namespace") != namespace:
        return False
    return owner_uid is None or any(r.get("uid") == owner_uid for r in meta.get("ownerReferences") or [])
