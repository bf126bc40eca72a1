"""The REST verbs of the Kubernetes API over the object store, one function per verb.

Paths (``staging/src/k8s.io/apiserver/pkg/endpoints/installer.go``): a collection is
``/api/v1[/namespaces/{ns}]/{plural}`` or ``/apis/{group}/{version}[/namespaces/{ns}]/{plural}``,
an item appends ``/{name}``, a subresource ``/{name}/status`` or ``/{name}/log`` (Pods). Every write
goes through the store, so through the same admission as the CLI and the controllers. What each
verb answers follows ``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{get,create,update,patch,delete,watch}.go``:
POST 201, a list ``{kind: <Kind>List, metadata: {resourceVersion, continue}}``, DELETE the deleted
object, errors a ``Status`` (:mod:`.status`).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from localflow import kinds as kind_table
from localflow.apiserver import patches
from localflow.apiserver.status import ApiError, from_error
from localflow.errors import Conflict, LocalflowError, NotFound

__all__ = ["dry_run", "Target", "parse_path", "field_matcher", "list_objects", "get_object", "create_object",
           "replace_object", "patch_object", "delete_object", "delete_collection", "parse_bool", "present"]


def parse_bool(value: str | None) -> bool:
    """A query boolean as Go's ``strconv.ParseBool`` reads it (``1``, ``t``, ``true``, ``True``, ...);
    clients up to ``kubernetes`` 36 send ``watch=True``."""
    return (value or "").lower() in ("1", "t", "true")


@dataclass(frozen=True)
class Target:
    """What a resource path names: the ``kind`` entry, ``namespace`` (None: every namespace, or a
    cluster-scoped kind), ``name`` (None: the collection), ``subresource`` (``status``, ``log``)."""

    kind: kind_table.Kind
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_path(group: str, version: str, parts: list[str]) -> Target:
    """The :class:`Target` of the path segments after ``/api/v1`` or ``/apis/{group}/{version}``;
    raises a 404 :class:`ApiError` for anything the kind table does not serve."""
    namespace = None
    if len(parts) >= 3 and parts[0] == "namespaces":
        namespace, parts = parts[1], parts[2:]
    if not parts or len(parts) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    plural = parts[0]
    k = next((k for k in kind_table.KINDS if k.group == group and k.version == version and k.plural == plural), None)
    if k is None:
        gv = f"{group}/{version}" if group else version
        raise ApiError(404, "NotFound", f'the server could not find the requested resource ({plural} in {gv})')
    if not k.namespaced:
        namespace = None
    name = parts[1] if len(parts) > 1 else None
    sub = parts[2] if len(parts) > 2 else None
    if sub is not None and sub not in ("status",) + (("log",) if k.kind == "Pod" and not k.group else ()):
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({plural}/{sub})")
    return Target(k, namespace, name, sub)


def present(obj: dict) -> dict:
    """``obj`` as the API serves it. A Pod's container statuses always carry ``imageID`` (kubelet
    reports ``""`` until an image is resolved, ``pkg/kubelet/kubelet_pods.go`` convertToAPIContainerStatuses),
    and clients' models require it (``kubernetes`` ``V1ContainerStatus``: image_id must not be None);
    the subprocess executor resolves no image, so it stays ``""``."""
    status = obj.get("status") if obj.get("kind") == "Pod" else None
    if not isinstance(status, dict):
        return obj
    fix = any(isinstance(cs, dict) and "imageID" not in cs
              for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")
              for cs in status.get(key) or ())
    if not fix:
        return obj
    status = dict(status)
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        if status.get(key):
            status[key] = [{**cs, "imageID": cs.get("imageID", "")} if isinstance(cs, dict) else cs for cs in status[key]]
    return {**obj, "status": status}


def builtin_objects(t: Target) -> list[dict]:
    """The objects this cluster has without anyone storing them: the built-in
    ``ClusterTrainingRuntime`` objects (:data:`localflow.training.runtimes.BUILTIN_RUNTIMES`), as
    kubeflow/trainer's ``manifests/base/runtimes`` install them on a cluster, so clients that list
    runtimes before posting a TrainJob (``kubeflow`` 0.5 ``TrainerClient``) find them. Read-only:
    a stored runtime of the same name is served instead (and is what TrainJobs use)."""
    if t.kind.kind != "ClusterTrainingRuntime":
        return []
    from localflow.training.runtimes import BUILTIN_RUNTIMES

    out = []
    for name, rt in BUILTIN_RUNTIMES.items():
        obj = json.loads(json.dumps(rt))
        meta = obj["metadata"]
        meta.update(uid=f"localflow-builtin-{name}", resourceVersion="1", generation=1,
                    creationTimestamp="1970-01-01T00:00:00Z")
        meta.setdefault("annotations", {})["localflow.dev/builtin"] = "true"
        out.append(obj)
    return out


def _with_builtins(t: Target, items: list[dict], label_selector: str | None) -> list[dict]:
    extra = builtin_objects(t)
    if not extra:
        return items
    from localflow.fakes.selectors import matches

    stored = {o["metadata"]["name"] for o in items}
    extra = [o for o in extra if o["metadata"]["name"] not in stored
             and (not label_selector or matches(o["metadata"].get("labels"), label_selector))]
    return sorted(items + extra, key=lambda o: o["metadata"]["name"])


# ---------------------------------------------------------------- selectors


def _field_value(obj: dict, path: str):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def field_matcher(selector: str | None):
    """A predicate for a ``fieldSelector`` (``a.b=x,c!=y``; ``==`` too), or None for none. Any
    dotted field path is compared as a string (``metadata.name``, ``metadata.namespace``,
    ``involvedObject.uid``, ``status.phase``, ``spec.nodeName``, ...), a missing field as ``""``,
    as the fields each kind's ``GetAttrs`` exposes do (pkg/registry/core/*/strategy.go)."""
    if not selector:
        return None
    reqs = []
    for term in selector.split(","):
        term = term.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                key, value = term.split(op, 1)
                reqs.append((key.strip(), op == "!=", value.strip()))
                break
        else:
            raise ApiError(400, "BadRequest", f'invalid field selector "{term}": use field=value or field!=value')

    def match(obj: dict) -> bool:
        for key, negate, value in reqs:
            got = _field_value(obj, key)
            got = "" if got is None else (str(got).lower() if isinstance(got, bool) else str(got))
            if (got == value) == negate:
                return False
        return True

    return match


# ---------------------------------------------------------------- verbs


def list_objects(store, t: Target, *, label_selector: str | None = None, field_selector: str | None = None,
                 limit: int | None = None, continue_token: str | None = None) -> tuple[list[dict], str, str | None]:
    """``(items, resourceVersion, continue)`` of a collection. Paging: ``limit`` items per page, the
    ``continue`` token names the next offset and the list's resourceVersion (a page after the
    first lists the store again; objects created between pages can shift it, unlike etcd's
    snapshot reads)."""
    offset, rv = 0, None
    if continue_token:
        try:
            offset, rv = json.loads(base64.urlsafe_b64decode(continue_token.encode()).decode())
        except (ValueError, TypeError):
            raise ApiError(410, "Expired", "the provided continue parameter is not valid: relist without it") from None
    try:
        items, list_rv = store.list_with_rv(_kind_ref(t), t.namespace, label_selector or None)
    except LocalflowError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from None
    items = _with_builtins(t, items, label_selector)
    match = field_matcher(field_selector)
    if match is not None:
        items = [o for o in items if match(o)]
    items = [present(o) for o in items[offset:]]
    nxt = None
    if limit and limit > 0 and len(items) > limit:
        items = items[:limit]
        nxt = base64.urlsafe_b64encode(json.dumps([offset + limit, rv or list_rv]).encode()).decode()
    return items, rv or list_rv, nxt


def _kind_ref(t: Target) -> str:
    """The name :meth:`ObjectStore` methods resolve to exactly this kind (``plural.group``)."""
    return f"{t.kind.plural}.{t.kind.group}" if t.kind.group else t.kind.plural


def get_object(store, t: Target) -> dict:
    """The object a path names; 404 when absent."""
    try:
        return present(store.get(_kind_ref(t), t.name, t.namespace))
    except NotFound as exc:
        found = next((o for o in builtin_objects(t) if o["metadata"]["name"] == t.name), None)
        if found is not None:
            return found
        raise from_error(exc, kind=t.kind.plural, group=t.kind.group, name=t.name or "") from None
    except LocalflowError as exc:
        raise from_error(exc, kind=t.kind.plural, group=t.kind.group, name=t.name or "") from None


def _check_body(t: Target, body, *, name: str | None = None) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the request body must be a JSON object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind is not None and kind != t.kind.kind or api_version is not None and api_version != t.kind.api_version:
        raise ApiError(400, "BadRequest", f"the body is {api_version or '?'} {kind or '?'}, but the path is for "
                                          f"{t.kind.api_version} {t.kind.kind}")
    body = {**body, "kind": t.kind.kind, "apiVersion": t.kind.api_version}
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise ApiError(422, "Invalid", "metadata: must be an object")
    if t.kind.namespaced:
        ns = meta.get("namespace")
        if ns and t.namespace and ns != t.namespace:
            raise ApiError(400, "BadRequest", f"the namespace of the provided object ({ns}) does not match the "
                                              f"namespace sent on the request ({t.namespace})")
        meta["namespace"] = t.namespace or ns or "default"
    if name is not None:
        if meta.get("name") and meta["name"] != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta['name']}) does not match the name on "
                                              f"the URL ({name})")
        meta["name"] = name
    return body


def create_object(store, t: Target, body) -> dict:
    """POST: the created object (201); 409 AlreadyExists, 422 Invalid (admission's field path)."""
    body = _check_body(t, body)
    try:
        return store.create(body)
    except LocalflowError as exc:
        name = (body.get("metadata") or {}).get("name") or ""
        raise from_error(exc, kind=t.kind.kind, group=t.kind.group, name=name) from None


def replace_object(store, t: Target, body) -> dict:
    """PUT of an item or its ``status``: 409 Conflict on a stale ``metadata.resourceVersion``."""
    body = _check_body(t, body, name=t.name)
    try:
        if t.subresource == "status":
            old = store.get(_kind_ref(t), t.name, t.namespace)
            rv = body["metadata"].get("resourceVersion")
            if rv is not None and str(rv) != old["metadata"]["resourceVersion"]:
                raise Conflict(f'Operation cannot be fulfilled on {t.kind.plural} "{t.name}": the object has been modified')
            return store.update_status(_kind_ref(t), t.name, body.get("status") or {}, t.namespace)
        return store.update(body)
    except LocalflowError as exc:
        raise from_error(exc, kind=t.kind.kind, group=t.kind.group, name=t.name or "") from None


def patch_object(store, t: Target, content_type: str, body) -> tuple[dict, bool]:
    """PATCH of an item or its status in one of :data:`patches.CONTENT_TYPES`; ``(object,
    created)`` — server-side apply creates an absent object (201). Conflicting concurrent writes
    are retried, as the API server retries a patch on a resourceVersion conflict."""
    ctype = (content_type or "").split(";")[0].strip()
    if ctype not in patches.CONTENT_TYPES:
        raise ApiError(415, "UnsupportedMediaType", f'the body of the request was in an unknown format - accepted '
                                                    f'media types include: {", ".join(patches.CONTENT_TYPES)}')
    if ctype == patches.STRATEGIC and t.kind.group not in ("", "apps", "batch"):
        raise ApiError(415, "UnsupportedMediaType", "strategic merge patch is not supported for custom resources: "
                                                    "use application/merge-patch+json")
    ref = _kind_ref(t)
    for _ in range(5):
        try:
            try:
                old = store.get(ref, t.name, t.namespace)
            except NotFound:
                if ctype != patches.APPLY or t.subresource:
                    raise
                return create_object(store, Target(t.kind, t.namespace, None, None), _check_body(t, body, name=t.name)), True
            if ctype == patches.MERGE or ctype == patches.APPLY:
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                if t.subresource == "status":
                    new = patches.strategic_merge(old, {"status": body.get("status")}) if "status" in body else old
                    return store.update_status(ref, t.name, new.get("status") or {}, t.namespace), False
                patch = dict(body)
                if ctype == patches.APPLY:
                    patch.pop("kind", None), patch.pop("apiVersion", None)
                return store.patch(ref, t.name, patch, t.namespace), False
            new = patches.json_patch(old, body) if ctype == patches.JSON else patches.strategic_merge(old, body, kind=t.kind.kind)
            if t.subresource == "status":
                return store.update_status(ref, t.name, new.get("status") or {}, t.namespace), False
            meta = new.setdefault("metadata", {})
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
            return store.update(new), False
        except Conflict:
            if isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion"):
                raise from_error(Conflict(f'Operation cannot be fulfilled on {t.kind.plural} "{t.name}": the object '
                                          f'has been modified; please apply your changes to the latest version'),
                                 kind=t.kind.kind, group=t.kind.group, name=t.name or "") from None
            continue  # someone else wrote in between: patch the newer object
        except LocalflowError as exc:
            raise from_error(exc, kind=t.kind.kind, group=t.kind.group, name=t.name or "") from None
    raise ApiError(409, "Conflict", f'{t.kind.plural} "{t.name}": too many concurrent writes; try again')


def _propagation(body) -> str:
    if isinstance(body, dict):
        policy = body.get("propagationPolicy")
        if policy is None and body.get("orphanDependents") is True:
            return "Orphan"
        return policy or "Background"
    return "Background"


def delete_object(store, t: Target, body=None) -> dict:
    """DELETE of an item: the deleted object; ``propagationPolicy`` (Background, Foreground,
    Orphan) as the garbage collector applies it (:meth:`ObjectStore.delete`)."""
    try:
        return store.delete(_kind_ref(t), t.name, t.namespace, propagation=_propagation(body))
    except LocalflowError as exc:
        raise from_error(exc, kind=t.kind.plural, group=t.kind.group, name=t.name or "") from None


def delete_collection(store, t: Target, body=None, *, label_selector=None, field_selector=None) -> tuple[list[dict], str]:
    """DELETE of a collection (``deletecollection``): ``(deleted objects, resourceVersion)``."""
    items, _, _ = list_objects(store, t, label_selector=label_selector, field_selector=field_selector)
    out = []
    for obj in items:
        try:
            out.append(store.delete(_kind_ref(t), obj["metadata"]["name"], obj["metadata"].get("namespace"),
                                    propagation=_propagation(body)))
        except NotFound:
            continue  # deleted meanwhile, e.g. by the cascade of an earlier item
    return out, store.resource_version


def dry_run(store, t: Target, method: str, body, content_type: str = "") -> tuple[dict, int]:
    """``?dryRun=All``: what the write would return, through the same admission, and nothing stored
    (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go`` ``dryRun``). ``(object, code)``."""
    import uuid

    from localflow.fakes import admission
    from localflow.fakes.objectmeta import merge_patch, normalise

    try:
        if method == "POST" or (method == "PATCH" and (content_type or "").startswith(patches.APPLY)
                                and not _exists(store, t)):
            obj, info = normalise(_check_body(t, body, name=t.name), "create")
            obj = admission.admit(info.group, obj)
            if _exists(store, Target(t.kind, t.namespace, obj["metadata"]["name"], None)):
                raise from_error(_already_exists(t, obj["metadata"]["name"]), kind=t.kind.kind, group=t.kind.group,
                                 name=obj["metadata"]["name"])
            obj["metadata"].setdefault("uid", str(uuid.uuid4()))
            obj["metadata"]["generation"] = 1
            return obj, 201
        old = store.get(_kind_ref(t), t.name, t.namespace)
        if method == "DELETE":
            return old, 200
        if method == "PUT":
            new = _check_body(t, body, name=t.name)
        else:
            ctype = (content_type or "").split(";")[0].strip()
            if ctype == patches.JSON:
                new = patches.json_patch(old, body)
            elif ctype == patches.STRATEGIC:
                new = patches.strategic_merge(old, body, kind=t.kind.kind)
            else:
                new = merge_patch(old, body)
        checked, info = normalise({**new, "kind": t.kind.kind, "apiVersion": t.kind.api_version}, "update")
        return admission.admit(info.group, checked, old), 200
    except LocalflowError as exc:
        raise from_error(exc, kind=t.kind.kind, group=t.kind.group, name=t.name or "") from None


def _already_exists(t: Target, name: str):
    from localflow.errors import AlreadyExists

    return AlreadyExists(f'{t.kind.plural}.{t.kind.group or "core"} "{name}" already exists')


def _exists(store, t: Target) -> bool:
    if t.name is None:
        return False
    try:
        store.get(_kind_ref(t), t.name, t.namespace)
        return True
    except NotFound:
        return False
