"""A Kubernetes-shaped object store (a fake API server) persisted in SQLite.

Objects are plain dicts (``apiVersion``, ``kind``, ``metadata``, ``spec``, ``status``) as
``kubectl get -o json`` prints them. Semantics follow the API server where a controller can tell:
a global monotonically increasing ``metadata.resourceVersion`` with optimistic concurrency
(kubernetes ``staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go``), ``metadata.generation``
bumped on spec changes, JSON merge patch (RFC 7386), cascading deletion through
``metadata.ownerReferences`` like the garbage collector (kubernetes
``pkg/controller/garbagecollector/garbagecollector.go``), watches, and ``v1 Event`` recording with
de-duplication like client-go ``tools/record/events_cache.go``.

One SQLite connection (WAL, ``busy_timeout`` 10 s, ``check_same_thread=False``) guarded by a
re-entrant lock makes the store thread-safe; every write runs in ``BEGIN IMMEDIATE`` so a second
process (``localflow get pods`` while a run executes) reads committed data and may write too.
Watches are in-process only: they see writes made through this ``ObjectStore`` instance.
"""
from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from contextlib import contextmanager

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.dbconn import connect, has_tables, immediate, retry_locked
from localflow.errors import AlreadyExists, Conflict, NotFound, SpecError

from .kinds import KindInfo, api_group, resolve_kind
from .selectors import Requirement, parse_selector
from .watch import ADDED, DELETED, MODIFIED, Watch, WatchHub

__all__ = ["ObjectStore", "merge_patch"]

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_GEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # apimachinery pkg/util/rand
_PROPAGATIONS = ("Background", "Foreground", "Orphan")
_CONDITION_STATUSES = ("True", "False", "Unknown")


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


def _dumps(obj: dict, path: str) -> str:
    try:
        return json.dumps(obj, sort_keys=False, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise SpecError(path, f"object is not JSON-serialisable: {err}", fix="use only dicts, lists, strings, numbers, booleans and null") from None


class ObjectStore:
    """Fake Kubernetes API server state in the SQLite file ``db_path``.

    Every method returns fresh deep copies; callers may mutate results freely. Errors:
    :class:`SpecError` for malformed objects or unknown kinds, :class:`NotFound`,
    :class:`AlreadyExists`, :class:`Conflict` (stale ``resourceVersion``).
    ``kind`` arguments accept anything :func:`localflow.fakes.kinds.resolve_kind` does (``Pod``,
    ``pods``, ``po``). For cluster-scoped kinds the ``namespace`` argument is ignored.
    """

    def __init__(self, db_path, clock: Clock = SYSTEM_CLOCK):
        self.db_path = str(db_path)
        self.clock = clock
        self._lock = threading.RLock()
        self._hub = WatchHub()
        self._conn = connect(self.db_path)
        self._closed = False
        if not has_tables(self._conn, ("objects", "object_counters")):
            retry_locked(self._create_schema)

    # ------------------------------------------------------------------ setup

    def _create_schema(self) -> None:
        import sqlite_utils  # only for a new workspace: it imports numpy when present (~0.3 s)

        db = sqlite_utils.Database(self._conn)
        with self._lock, immediate(self._conn):
            db["objects"].create(
                {"uid": str, "grp": str, "kind": str, "namespace": str, "name": str, "rv": int, "seq": int, "body": str},
                pk="uid",
                not_null={"grp", "kind", "namespace", "name", "rv", "seq", "body"},
                if_not_exists=True,
            )
            db["objects"].create_index(["grp", "kind", "namespace", "name"], unique=True, if_not_exists=True)
            db["objects"].create_index(["kind", "namespace", "seq"], if_not_exists=True)
            db["object_counters"].create({"name": str, "value": int}, pk="name", if_not_exists=True)
            self._conn.execute("INSERT OR IGNORE INTO object_counters (name, value) VALUES ('resourceVersion', 0)")

    def close(self) -> None:
        """Close every watch and the database connection. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._hub.close_all()
            self._conn.close()

    def __enter__(self) -> "ObjectStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self):
        """A write transaction; yields a list to which (type, object) watch events are appended.
        Events are published after COMMIT while the lock is still held, so every watch receives
        them in resourceVersion order."""
        with self._lock:
            events: list[tuple[str, dict]] = []
            with immediate(self._conn):
                yield events
            for type_, obj in events:
                self._hub.publish(type_, obj)

    def _next_rv(self) -> int:
        row = self._conn.execute(
            "UPDATE object_counters SET value = value + 1 WHERE name = 'resourceVersion' RETURNING value"
        ).fetchone()
        return int(row[0])

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion handed out (``"0"`` for an empty store)."""
        with self._lock:
            row = self._conn.execute("SELECT value FROM object_counters WHERE name = 'resourceVersion'").fetchone()
        return str(row[0] if row else 0)

    @staticmethod
    def _ns(info: KindInfo, namespace: str | None) -> str:
        return (namespace or "default") if info.namespaced else ""

    def _row(self, info: KindInfo, name: str, ns: str):
        return self._conn.execute(
            "SELECT uid, rv, seq, body FROM objects WHERE grp = ? AND kind = ? AND namespace = ? AND name = ?",
            (info.group, info.kind, ns, name),
        ).fetchone()

    def _not_found(self, info: KindInfo, name: str, ns: str) -> NotFound:
        where = f' in namespace "{ns}"' if ns else ""
        return NotFound(f'{info.kind} "{name}" not found{where}', fix=f"list them with `localflow get {info.plural}`")

    def _load(self, info: KindInfo, name: str, ns: str) -> tuple[dict, int]:
        row = self._row(info, name, ns)
        if row is None:
            raise self._not_found(info, name, ns)
        return json.loads(row[3]), row[2]

    def _store(self, obj: dict, seq: int, path: str) -> dict:
        """Write ``obj`` (metadata.uid set) with a new resourceVersion; returns it."""
        rv = self._next_rv()
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        body = _dumps(obj, path)
        self._conn.execute(
            "INSERT OR REPLACE INTO objects (uid, grp, kind, namespace, name, rv, seq, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (meta["uid"], api_group(obj["apiVersion"]), obj["kind"], meta.get("namespace") or "", meta["name"], rv, seq or rv, body),
        )
        return obj

    def _normalise(self, obj, verb: str) -> tuple[dict, KindInfo]:
        """Validate the shape of an object for create/update; returns a private copy and its kind."""
        if not isinstance(obj, dict):
            raise SpecError("object", f"must be a mapping (got {type(obj).__name__})")
        obj = json.loads(_dumps(obj, "object"))
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
            meta["name"] = str(meta["generateName"]) + "".join(secrets.choice(_GEN_ALPHABET) for _ in range(5))
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

    # ------------------------------------------------------------------ CRUD

    def create(self, obj: dict) -> dict:
        """Create ``obj``; returns the stored object.

        Fills ``metadata.uid`` (uuid4), ``metadata.namespace`` (``default``; removed for
        cluster-scoped kinds), ``metadata.resourceVersion``, ``metadata.creationTimestamp``
        (``clock.rfc3339()``), ``metadata.generation`` 1; ``metadata.generateName`` makes a name
        when none is given; ``apiVersion`` defaults to the registered one. Raises
        :class:`AlreadyExists` when (group, kind, namespace, name) is taken, :class:`SpecError` for
        a missing ``kind``/``metadata.name`` or an unknown kind. Emits ``ADDED``.
        """
        obj, info = self._normalise(obj, "create")
        meta = obj["metadata"]
        for key in ("resourceVersion", "deletionTimestamp"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self.clock.rfc3339()
        meta["generation"] = 1
        with self._write() as events:
            ns = meta.get("namespace", "")
            for _ in range(8):  # a generated name that is taken gets another suffix
                if not meta.get("generateName") or self._row(info, meta["name"], ns) is None:
                    break
                meta["name"] = str(meta["generateName"]) + "".join(secrets.choice(_GEN_ALPHABET) for _ in range(5))
            if self._row(info, meta["name"], ns) is not None:
                where = f' in namespace "{ns}"' if ns else ""
                raise AlreadyExists(
                    f'{info.kind} "{meta["name"]}" already exists{where}',
                    fix=f"delete it first (`localflow delete {info.plural} {meta['name']}`) or choose another name",
                )
            self._store(obj, 0, info.kind)
            events.append((ADDED, obj))
        return json.loads(json.dumps(obj))

    def get(self, kind: str, name: str, namespace: str | None = "default") -> dict:
        """The object ``kind``/``namespace``/``name``; raises :class:`NotFound`."""
        info = resolve_kind(kind)
        with self._lock:
            obj, _ = self._load(info, name, self._ns(info, namespace))
        return obj

    def list(
        self,
        kind: str | None = None,
        namespace: str | None = "default",
        label_selector=None,
        owner_uid: str | None = None,
    ) -> list[dict]:
        """Objects ordered by creation. ``kind=None``: every kind; ``namespace=None``: every
        namespace (cluster-scoped objects are listed only then, or when ``kind`` is
        cluster-scoped); ``label_selector``: a kubectl string (``a=b,c!=d,e in (x,y),!f``) or a
        dict; ``owner_uid``: only objects with an ownerReference to that uid."""
        reqs = parse_selector(label_selector)
        where, args = [], []
        if kind is not None:
            info = resolve_kind(kind)
            where += ["grp = ?", "kind = ?"]
            args += [info.group, info.kind]
            if info.namespaced and namespace is not None:
                where.append("namespace = ?")
                args.append(namespace)
        elif namespace is not None:
            where.append("namespace = ?")
            args.append(namespace)
        if owner_uid is not None:
            where.append(
                "EXISTS (SELECT 1 FROM json_each(objects.body, '$.metadata.ownerReferences') r"
                " WHERE json_extract(r.value, '$.uid') = ?)"
            )
            args.append(owner_uid)
        sql = "SELECT body FROM objects" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        out = []
        for (body,) in rows:
            obj = json.loads(body)
            if _labels_match(obj, reqs):
                out.append(obj)
        return out

    def update(self, obj: dict) -> dict:
        """Replace the stored object with ``obj`` (whole object, status included).

        If ``obj`` carries ``metadata.resourceVersion`` it must equal the stored one, else
        :class:`Conflict` (re-read and retry). ``metadata.uid``, if given, must match.
        ``uid`` and ``creationTimestamp`` are kept; ``generation`` bumps when ``spec`` changed.
        Raises :class:`NotFound`. Emits ``MODIFIED``.
        """
        new, info = self._normalise(obj, "update")
        meta = new["metadata"]
        with self._write() as events:
            ns = meta.get("namespace", "")
            old, seq = self._load(info, meta["name"], ns)
            old_meta = old["metadata"]
            self._check_rv(info, old, meta.get("resourceVersion"))
            if meta.get("uid") and meta["uid"] != old_meta["uid"]:
                raise Conflict(
                    f'{info.kind} "{meta["name"]}": uid {meta["uid"]} does not match the stored object ({old_meta["uid"]})',
                    fix="the object was deleted and re-created; re-read it",
                )
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta.get("creationTimestamp")
            meta["generation"] = int(old_meta.get("generation", 1)) + (1 if new.get("spec") != old.get("spec") else 0)
            self._store(new, seq, info.kind)
            events.append((MODIFIED, new))
        return json.loads(json.dumps(new))

    @staticmethod
    def _check_rv(info: KindInfo, old: dict, rv) -> None:
        if rv is not None and str(rv) != old["metadata"]["resourceVersion"]:
            raise Conflict(
                f'Operation cannot be fulfilled on {info.resource} "{old["metadata"]["name"]}": the object has been '
                f"modified (resourceVersion {rv} is stale, now {old['metadata']['resourceVersion']})",
                fix="re-read the object and apply the change again",
            )

    def _mutate(self, kind: str, name: str, namespace: str | None, fn) -> dict:
        """Load, let ``fn(obj)`` return the new object (or ``None`` for no change), store, emit."""
        info = resolve_kind(kind)
        with self._write() as events:
            ns = self._ns(info, namespace)
            obj, seq = self._load(info, name, ns)
            new = fn(info, obj)
            if new is None:
                return obj
            self._store(new, seq, info.kind)
            events.append((MODIFIED, new))
        return json.loads(json.dumps(new))

    def patch(self, kind: str, name: str, patch: dict, namespace: str | None = "default") -> dict:
        """Apply a JSON merge patch (RFC 7386) to the object; returns it.

        ``metadata.resourceVersion`` in the patch is a precondition (stale -> :class:`Conflict`);
        ``uid``, ``name``, ``namespace``, ``creationTimestamp``, ``kind`` and ``apiVersion`` cannot
        change. ``generation`` bumps when ``spec`` changed. Raises :class:`NotFound`. Emits ``MODIFIED``.
        """
        if not isinstance(patch, dict):
            raise SpecError("patch", f"a merge patch must be a mapping (got {type(patch).__name__})")

        def apply(info: KindInfo, old: dict) -> dict:
            rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch.get("metadata"), dict) else None
            self._check_rv(info, old, rv)
            new = merge_patch(old, patch)
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = {}
            for key in ("uid", "name", "namespace", "creationTimestamp"):
                if key in old["metadata"]:
                    new["metadata"][key] = old["metadata"][key]
            new["kind"], new["apiVersion"] = old["kind"], old["apiVersion"]
            checked, _ = self._normalise(new, "update")
            checked["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + (
                1 if checked.get("spec") != old.get("spec") else 0
            )
            return checked

        return self._mutate(kind, name, namespace, apply)

    def update_status(self, kind: str, name: str, status: dict, namespace: str | None = "default") -> dict:
        """Replace ``.status`` (the status subresource); ``generation`` is unchanged. Emits ``MODIFIED``."""
        if not isinstance(status, dict):
            raise SpecError("status", f"must be a mapping (got {type(status).__name__})")
        status = json.loads(_dumps(status, "status"))

        def apply(info: KindInfo, obj: dict) -> dict:
            obj["status"] = status
            return obj

        return self._mutate(kind, name, namespace, apply)

    def set_condition(
        self,
        kind: str,
        name: str,
        type: str,
        status,
        reason: str = "",
        message: str = "",
        namespace: str | None = "default",
    ) -> dict:
        """Upsert ``status.conditions[]`` entry ``type`` with ``{type, status, reason, message,
        lastUpdateTime, lastTransitionTime}``; returns the object.

        As kubeflow/common ``pkg/util/status.go`` (``UpdateJobConditions``/``setCondition``):
        when status, reason and message are all unchanged nothing is written (no new
        resourceVersion, no event); ``lastTransitionTime`` moves only when ``status`` changes.
        ``status`` is ``"True"``, ``"False"``, ``"Unknown"`` or a bool. Conditions of other types
        are left alone (job controllers apply their own exclusivity rules).
        """
        if isinstance(status, bool):
            status = "True" if status else "False"
        if status not in _CONDITION_STATUSES:
            raise SpecError(f"status.conditions[{type}].status", f"{status!r} is not a condition status", fix="use True, False or Unknown")
        if not isinstance(type, str) or not type:
            raise SpecError("status.conditions[].type", "is required")

        def apply(info: KindInfo, obj: dict):
            st = obj.get("status")
            if not isinstance(st, dict):
                st = obj["status"] = {}
            conds = st.get("conditions")
            if not isinstance(conds, list):
                conds = st["conditions"] = []
            now = self.clock.rfc3339()
            for cond in conds:
                if cond.get("type") == type:
                    if cond.get("status") == status and cond.get("reason", "") == reason and cond.get("message", "") == message:
                        return None
                    if cond.get("status") != status:
                        cond["lastTransitionTime"] = now
                    cond.update(status=status, reason=reason, message=message, lastUpdateTime=now)
                    return obj
            conds.append(
                {"type": type, "status": status, "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now}
            )
            return obj

        return self._mutate(kind, name, namespace, apply)

    # ------------------------------------------------------------------ delete

    def delete(self, kind: str, name: str, namespace: str | None = "default", propagation: str = "Background") -> dict:
        """Delete the object and return its last state. Raises :class:`NotFound`.

        ``propagation`` as ``DeleteOptions.propagationPolicy``: ``Background`` and ``Foreground``
        delete, recursively, every object whose ``metadata.ownerReferences`` all point at deleted
        or absent objects; a dependent that still has a live owner only loses the reference
        (the garbage collector's rule). ``Background`` emits the owner's ``DELETED`` first,
        ``Foreground`` the dependents' first. ``Orphan`` deletes only the object and strips the
        references to it from its dependents (``MODIFIED``). There are no finalizers: deletion is
        immediate.
        """
        if propagation not in _PROPAGATIONS:
            raise SpecError("propagationPolicy", f"unknown policy {propagation!r}", fix="use " + ", ".join(_PROPAGATIONS))
        info = resolve_kind(kind)
        with self._write() as events:
            ns = self._ns(info, namespace)
            row = self._row(info, name, ns)
            if row is None:
                raise self._not_found(info, name, ns)
            root = json.loads(row[3])
            deleted = [root]
            gone = {root["metadata"]["uid"]}
            self._conn.execute("DELETE FROM objects WHERE uid = ?", (row[0],))
            modified: list[dict] = []
            pending = [root["metadata"]["uid"]]
            while pending:
                owner = pending.pop(0)
                for uid, seq, body in self._conn.execute(
                    "SELECT uid, seq, body FROM objects WHERE EXISTS (SELECT 1 FROM json_each(objects.body,"
                    " '$.metadata.ownerReferences') r WHERE json_extract(r.value, '$.uid') = ?) ORDER BY seq",
                    (owner,),
                ).fetchall():
                    dep = json.loads(body)
                    refs = dep["metadata"].get("ownerReferences") or []
                    live = [r for r in refs if r.get("uid") not in gone and self._exists(r.get("uid"))]
                    if propagation == "Orphan" or live:
                        keep = [r for r in refs if r.get("uid") not in gone]
                        if keep:
                            dep["metadata"]["ownerReferences"] = keep
                        else:
                            dep["metadata"].pop("ownerReferences", None)
                        self._store(dep, seq, dep["kind"])
                        modified.append(dep)
                    else:
                        self._conn.execute("DELETE FROM objects WHERE uid = ?", (uid,))
                        gone.add(uid)
                        deleted.append(dep)
                        pending.append(uid)
            order = deleted if propagation != "Foreground" else deleted[::-1]
            events += [(MODIFIED, o) for o in modified] + [(DELETED, o) for o in order]
        return root

    def _exists(self, uid) -> bool:
        return uid is not None and self._conn.execute("SELECT 1 FROM objects WHERE uid = ?", (uid,)).fetchone() is not None

    # ------------------------------------------------------------------ watch

    def watch(self, kind: str | None = None, namespace: str | None = None, label_selector=None, owner_uid: str | None = None) -> Watch:
        """Open a :class:`Watch` of changes made through this store from now on (in-process only).

        Filters as :meth:`list` (``namespace=None``: all namespaces). A watch sees no change made
        before it opened: open the watch first and then list, or use :meth:`list_and_watch`.
        Close it (or use ``with``) when done.
        """
        info = resolve_kind(kind) if kind is not None else None
        reqs = parse_selector(label_selector)

        def wanted(obj: dict) -> bool:
            if info is not None and (obj.get("kind") != info.kind or api_group(obj.get("apiVersion", "")) != info.group):
                return False
            meta = obj.get("metadata", {})
            if namespace is not None and (info is None or info.namespaced) and meta.get("namespace") != namespace:
                return False
            if owner_uid is not None and not any(r.get("uid") == owner_uid for r in meta.get("ownerReferences") or []):
                return False
            return _labels_match(obj, reqs)

        with self._lock:
            return self._hub.open(wanted)

    def list_and_watch(self, kind: str | None = None, namespace: str | None = None, label_selector=None, owner_uid: str | None = None):
        """``(objects, watch)`` taken atomically: every in-process change after the list is in the
        watch, and none before it."""
        with self._lock:
            w = self.watch(kind, namespace, label_selector, owner_uid)
            return self.list(kind, namespace, label_selector, owner_uid), w

    # ------------------------------------------------------------------ events

    def record_event(self, involved: dict, reason: str, message: str, type: str = "Normal", component: str = "localflow") -> dict:
        """Record a ``v1 Event`` about ``involved`` (any stored object dict); returns the Event.

        The Event has ``involvedObject`` {apiVersion, kind, name, namespace, uid}, ``reason``,
        ``message``, ``type`` (``Normal``/``Warning``), ``count``, ``firstTimestamp``,
        ``lastTimestamp``, ``source.component`` and the name ``<involved name>.<hex>``, in the
        involved object's namespace (``default`` for cluster-scoped ones). An event identical in
        (involved object, reason, message, type, component) bumps ``count`` and
        ``lastTimestamp`` instead, as client-go's EventCorrelator does (kubectl shows ``x3``).
        """
        if type not in ("Normal", "Warning"):
            raise SpecError("Event.type", f"{type!r} is not an event type", fix="use Normal or Warning")
        meta = (involved or {}).get("metadata") or {}
        if not involved or not involved.get("kind") or not meta.get("name"):
            raise SpecError("involvedObject", "needs kind and metadata.name", fix="pass the stored object")
        ref = {
            "apiVersion": involved.get("apiVersion", ""),
            "kind": involved["kind"],
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
        }
        ev_ns = ref["namespace"] or "default"
        now = self.clock.rfc3339()
        with self._write() as events:
            row = self._conn.execute(
                "SELECT seq, body FROM objects WHERE grp = '' AND kind = 'Event' AND namespace = ?"
                " AND json_extract(body, '$.involvedObject.uid') = ? AND json_extract(body, '$.involvedObject.kind') = ?"
                " AND json_extract(body, '$.involvedObject.name') = ? AND json_extract(body, '$.reason') = ?"
                " AND json_extract(body, '$.message') = ? AND json_extract(body, '$.type') = ?"
                " AND json_extract(body, '$.source.component') = ? ORDER BY rv DESC LIMIT 1",
                (ev_ns, ref["uid"], ref["kind"], ref["name"], reason, message, type, component),
            ).fetchone()
            if row is not None:
                ev = json.loads(row[1])
                ev["count"] = int(ev.get("count", 1)) + 1
                ev["lastTimestamp"] = now
                self._store(ev, row[0], "Event")
                events.append((MODIFIED, ev))
            else:
                ev = {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {
                        "name": f"{ref['name']}.{uuid.uuid4().hex[:16]}",
                        "namespace": ev_ns,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": now,
                        "generation": 1,
                    },
                    "involvedObject": ref,
                    "reason": reason,
                    "message": message,
                    "type": type,
                    "count": 1,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "source": {"component": component},
                    "reportingComponent": component,
                }
                self._store(ev, 0, "Event")
                events.append((ADDED, ev))
        return json.loads(json.dumps(ev))

    def events_for(self, obj: dict) -> list[dict]:
        """Events about ``obj`` (matched by uid, or kind/name/namespace when it has none), oldest
        ``lastTimestamp`` first, as ``kubectl describe`` lists them."""
        meta = obj.get("metadata") or {}
        if meta.get("uid"):
            cond, args = "json_extract(body, '$.involvedObject.uid') = ?", [meta["uid"]]
        else:
            cond = (
                "json_extract(body, '$.involvedObject.kind') = ? AND json_extract(body, '$.involvedObject.name') = ?"
                " AND json_extract(body, '$.involvedObject.namespace') = ?"
            )
            args = [obj.get("kind"), meta.get("name"), meta.get("namespace", "")]
        with self._lock:
            rows = self._conn.execute(
                f"SELECT body FROM objects WHERE grp = '' AND kind = 'Event' AND {cond}"
                " ORDER BY json_extract(body, '$.lastTimestamp'), rv",
                args,
            ).fetchall()
        return [json.loads(b) for (b,) in rows]


def _labels_match(obj: dict, reqs: list[Requirement]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)
