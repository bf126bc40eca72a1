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
Each write also appends to the change log in the same transaction (:mod:`.changelog`; deletes
take a resourceVersion and log a tombstone), so watches see the writes of every process on the
file and can resume from a resourceVersion (:mod:`.watch`); Events are indexed by involved object
and de-dup key and expire after ``event_ttl`` (:mod:`.events`). Tables: :mod:`.schema`.
"""
from __future__ import annotations

import json
import threading
import uuid
from contextlib import contextmanager

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.dbconn import connect, immediate, snapshot
from localflow.errors import AlreadyExists, Conflict, NotFound, SpecError

from . import admission, changelog
from .changelog import LogLimits
from .events import EVENTS_FOR_NAME, EVENTS_FOR_UID, EXPIRED_EVENTS, FIND_DUPLICATE, INDEX_EVENT, UNINDEX_EVENT, dedup_args, new_event
from .kinds import KindInfo, api_group, resolve_kind
from .objectmeta import dumps, generate_name, merge_patch, normalise, object_matches
from .schema import ensure_schema
from .selectors import Requirement, parse_selector
from .watch import ADDED, DELETED, MODIFIED, Watch, WatchHub

__all__ = ["ObjectStore", "merge_patch"]

_PROPAGATIONS = ("Background", "Foreground", "Orphan")
_CONDITION_STATUSES = ("True", "False", "Unknown")


class ObjectStore:
    """Fake Kubernetes API server state in the SQLite file ``db_path``.

    Every method returns fresh deep copies; callers may mutate results freely. Errors:
    :class:`SpecError` for malformed objects or unknown kinds, :class:`NotFound`,
    :class:`AlreadyExists`, :class:`Conflict` (stale ``resourceVersion``).
    ``kind`` arguments accept anything :func:`localflow.fakes.kinds.resolve_kind` does (``Pod``,
    ``pods``, ``po``). For cluster-scoped kinds the ``namespace`` argument is ignored.

    ``event_ttl``: seconds (store clock) an Event is kept after its ``lastTimestamp``, as the API
    server's ``--event-ttl`` (default 1 h; ``None`` keeps Events forever). ``log_limits``: bounds
    of the change log (:class:`~localflow.fakes.changelog.LogLimits`). ``poll_interval``: seconds
    between the watch poller's checks for writes by other processes. Opening a workspace made by
    an older localflow adds the missing tables (:func:`~localflow.fakes.schema.ensure_schema`).
    """

    def __init__(
        self,
        db_path,
        clock: Clock = SYSTEM_CLOCK,
        *,
        event_ttl: float | None = 3600.0,
        log_limits: LogLimits | None = None,
        poll_interval: float = 0.01,
    ):
        self.db_path = str(db_path)
        self.clock = clock
        self.event_ttl = event_ttl
        self.log_limits = log_limits or LogLimits()
        self._lock = threading.RLock()
        self._hub = WatchHub(self.db_path, poll_interval)
        self._conn = connect(self.db_path)
        self._closed = False
        self._writes = 0
        self._bytes_since_compaction = 0
        self._maintaining = False
        ensure_schema(self._conn, clock.now())

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
        """A write transaction; yields the list to which :meth:`_store`/:meth:`_log_deleted`
        append their ``(rv, type, body, object)`` changes. They are published after COMMIT while
        the lock is still held, so every watch receives them in resourceVersion order. Every
        ``compact_every`` writes, or once a sixteenth of ``max_bytes`` was logged since the last
        time, the log is compacted and old Events expire (:meth:`maintain`)."""
        with self._lock:
            events: list[tuple] = []
            with immediate(self._conn):
                yield events
            if not events:
                return
            self._hub.publish(events, self._fill)
            self._writes += 1
            self._bytes_since_compaction += sum(len(e[2]) for e in events)
            limits = self.log_limits
            due = not self._maintaining and (
                self._writes % limits.compact_every == 0
                or (limits.max_bytes is not None and self._bytes_since_compaction * 16 >= limits.max_bytes))
        if due:
            self.maintain()

    def _fill(self, since: int, until: int) -> list:
        return changelog.rows_since(self._conn, since, until)

    def _next_rv(self) -> int:
        row = self._conn.execute(
            "UPDATE object_counters SET value = value + 1 WHERE name = 'resourceVersion' RETURNING value"
        ).fetchone()
        return int(row[0])

    @property
    def resource_version(self) -> str:
        """The newest resourceVersion handed out (``"0"`` for an empty store)."""
        with self._lock:
            return str(changelog.current_rv(self._conn))

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

    def _store(self, obj: dict, seq: int, path: str, type_: str, events: list) -> dict:
        """Write ``obj`` (metadata.uid set) with a new resourceVersion, log it as ``type_`` and
        queue the change on ``events``; returns ``obj``."""
        rv = self._next_rv()
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        body = dumps(obj, path)
        grp, ns = api_group(obj["apiVersion"]), meta.get("namespace") or ""
        self._conn.execute(
            "INSERT OR REPLACE INTO objects (uid, grp, kind, namespace, name, rv, seq, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (meta["uid"], grp, obj["kind"], ns, meta["name"], rv, seq or rv, body),
        )
        changelog.append(self._conn, rv, type_, grp, obj["kind"], ns, meta["name"], self.clock.now(), body)
        if grp == "" and obj["kind"] == "Event":
            self._conn.execute(INDEX_EVENT, {"body": body, "rv": rv, "now": int(self.clock.now())})
        events.append((rv, type_, body, obj))
        return obj

    @staticmethod
    def _copy(obj: dict, events: list) -> dict:
        """A private copy of ``obj`` as just stored: decoded from its logged JSON (``events``) rather
        than encoded again."""
        for change in reversed(events):
            if change[3] is obj:
                return json.loads(change[2])
        return json.loads(json.dumps(obj))

    def _remove_row(self, uid: str, obj: dict) -> None:
        self._conn.execute("DELETE FROM objects WHERE uid = ?", (uid,))
        if obj.get("kind") == "Event" and api_group(obj.get("apiVersion", "")) == "":
            self._conn.execute(UNINDEX_EVENT, (uid,))

    def _log_deleted(self, obj: dict, events: list) -> None:
        """The tombstone of a removed object: its last state with a new resourceVersion."""
        rv = self._next_rv()
        meta = obj["metadata"]
        meta["resourceVersion"] = str(rv)
        body = json.dumps(obj)
        changelog.append(self._conn, rv, DELETED, api_group(obj["apiVersion"]), obj["kind"], meta.get("namespace") or "",
                         meta["name"], self.clock.now(), body)
        events.append((rv, DELETED, body, obj))

    # ------------------------------------------------------------------ CRUD

    def create(self, obj: dict) -> dict:
        """Create ``obj``; returns the stored object.

        Fills ``metadata.uid`` (uuid4), ``metadata.namespace`` (``default``; removed for
        cluster-scoped kinds), ``metadata.resourceVersion``, ``metadata.creationTimestamp``
        (``clock.rfc3339()``), ``metadata.generation`` 1; ``metadata.generateName`` makes a name
        when none is given; ``apiVersion`` defaults to the registered one. Raises
        :class:`AlreadyExists` when (group, kind, namespace, name) is taken, :class:`SpecError` for
        a missing ``kind``/``metadata.name`` or an unknown kind, and what the kind's admission hooks
        raise (:mod:`.admission`: defaulting, then validation; a Secret's ``stringData`` is
        encoded into ``data``). Emits ``ADDED``.
        """
        obj, info = normalise(obj, "create")
        obj = admission.admit(info.group, obj)
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
                meta["name"] = generate_name(meta["generateName"])
            if self._row(info, meta["name"], ns) is not None:
                where = f' in namespace "{ns}"' if ns else ""
                raise AlreadyExists(
                    f'{info.kind} "{meta["name"]}" already exists{where}',
                    fix=f"delete it first (`localflow delete {info.plural} {meta['name']}`) or choose another name",
                )
            self._store(obj, 0, info.kind, ADDED, events)
        return self._copy(obj, events)

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

    def list_with_rv(
        self,
        kind: str | None = None,
        namespace: str | None = "default",
        label_selector=None,
        owner_uid: str | None = None,
    ) -> tuple[list[dict], str]:
        """``(objects, resourceVersion)``: :meth:`list` and the resourceVersion of the state it
        read, taken in one read transaction (the list's ``metadata.resourceVersion`` in the API).
        ``watch(..., since=rv)`` then continues exactly after the list, from any process."""
        with self._lock, snapshot(self._conn):
            rv = changelog.current_rv(self._conn)
            items = self.list(kind, namespace, label_selector, owner_uid)
        return items, str(rv)

    def update(self, obj: dict) -> dict:
        """Replace the stored object with ``obj`` (whole object, status included).

        If ``obj`` carries ``metadata.resourceVersion`` it must equal the stored one, else
        :class:`Conflict` (re-read and retry). ``metadata.uid``, if given, must match.
        ``uid`` and ``creationTimestamp`` are kept; ``generation`` bumps when ``spec`` changed.
        The kind's admission hooks run when more than metadata and status changed
        (:mod:`.admission`). Raises :class:`NotFound`. Emits ``MODIFIED``.
        """
        new, info = normalise(obj, "update")
        meta = new["metadata"]
        with self._write() as events:
            ns = meta.get("namespace", "")
            old, seq = self._load(info, meta["name"], ns)
            old_meta = old["metadata"]
            self._check_rv(info, old, meta.get("resourceVersion"))
            new = admission.admit(info.group, new, old)
            meta = new["metadata"]
            if meta.get("uid") and meta["uid"] != old_meta["uid"]:
                raise Conflict(
                    f'{info.kind} "{meta["name"]}": uid {meta["uid"]} does not match the stored object ({old_meta["uid"]})',
                    fix="the object was deleted and re-created; re-read it",
                )
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta.get("creationTimestamp")
            meta["generation"] = int(old_meta.get("generation", 1)) + (1 if new.get("spec") != old.get("spec") else 0)
            self._store(new, seq, info.kind, MODIFIED, events)
        return self._copy(new, events)

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
            self._store(new, seq, info.kind, MODIFIED, events)
        return self._copy(new, events)

    def patch(self, kind: str, name: str, patch: dict, namespace: str | None = "default") -> dict:
        """Apply a JSON merge patch (RFC 7386) to the object; returns it.

        ``metadata.resourceVersion`` in the patch is a precondition (stale -> :class:`Conflict`);
        ``uid``, ``name``, ``namespace``, ``creationTimestamp``, ``kind`` and ``apiVersion`` cannot
        change. ``generation`` bumps when ``spec`` changed; the kind's admission hooks run on the
        patched object as on :meth:`update`. Raises :class:`NotFound`. Emits ``MODIFIED``.
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
            checked, _ = normalise(new, "update")
            checked = admission.admit(info.group, checked, old)
            checked["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + (
                1 if checked.get("spec") != old.get("spec") else 0
            )
            return checked

        return self._mutate(kind, name, namespace, apply)

    def update_status(self, kind: str, name: str, status: dict, namespace: str | None = "default") -> dict:
        """Replace ``.status`` (the status subresource); ``generation`` is unchanged; no admission
        hook runs (status writes skip spec validation). Emits ``MODIFIED``."""
        if not isinstance(status, dict):
            raise SpecError("status", f"must be a mapping (got {type(status).__name__})")
        status = json.loads(dumps(status, "status"))

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
        """Delete the object and return its last state (with the deletion's resourceVersion).
        Raises :class:`NotFound`.

        ``propagation`` as ``DeleteOptions.propagationPolicy``: ``Background`` and ``Foreground``
        delete, recursively, every object whose ``metadata.ownerReferences`` all point at deleted
        or absent objects; a dependent that still has a live owner only loses the reference
        (the garbage collector's rule). ``Background`` emits the owner's ``DELETED`` first,
        ``Foreground`` the dependents' first. ``Orphan`` deletes only the object and strips the
        references to it from its dependents (``MODIFIED``). There are no finalizers: deletion is
        immediate. Every deleted object takes a new resourceVersion, in the order its
        ``DELETED`` is emitted, and leaves that tombstone in the change log.
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
            self._remove_row(row[0], root)
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
                        self._store(dep, seq, dep["kind"], MODIFIED, events)
                    else:
                        self._remove_row(uid, dep)
                        gone.add(uid)
                        deleted.append(dep)
                        pending.append(uid)
            for obj in deleted if propagation != "Foreground" else deleted[::-1]:
                self._log_deleted(obj, events)
        return json.loads(json.dumps(root))

    def _exists(self, uid) -> bool:
        return uid is not None and self._conn.execute("SELECT 1 FROM objects WHERE uid = ?", (uid,)).fetchone() is not None

    # ------------------------------------------------------------------ watch

    def watch(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        label_selector=None,
        owner_uid: str | None = None,
        since=None,
    ) -> Watch:
        """Open a :class:`Watch` of changes made by any process on this workspace file.

        Filters as :meth:`list` (``namespace=None``: all namespaces). ``since=None``: changes
        after now. ``since=rv`` (a resourceVersion, e.g. from :meth:`list_with_rv` or
        :attr:`Watch.resource_version`): first every logged change after ``rv``, then the live
        stream, without gap or duplicate. Raises :class:`localflow.errors.Gone` ("410 Gone …
        relist") when the log no longer reaches back to ``rv``. Changes made through this store
        arrive at once; other processes' within ``poll_interval`` plus a log read. Close the
        watch (or use ``with``) when done.
        """
        info = resolve_kind(kind) if kind is not None else None
        reqs = parse_selector(label_selector)
        if since is not None:
            try:
                since = int(str(since))
            except ValueError:
                raise SpecError("resourceVersion", f"{since!r} is not a resourceVersion", fix="pass the metadata.resourceVersion of a list or an object") from None

        def wanted(obj: dict) -> bool:
            return object_matches(obj, info, namespace, owner_uid) and _labels_match(obj, reqs)

        with self._lock:
            newest = changelog.current_rv(self._conn)
            start = newest if since is None else since
            if not 0 <= start <= newest:
                raise SpecError("resourceVersion", f"{start} is not a version of this store (newest: {newest})",
                                fix="pass a resourceVersion this workspace returned, or none to watch from now")

            def replay() -> list:
                # One read transaction: compaction by another process cannot cut in between.
                out = []
                with snapshot(self._conn):
                    changelog.check_resumable(self._conn, start)
                    rv = start
                    while True:
                        rows = changelog.rows_since(self._conn, rv)
                        out += rows
                        if len(rows) < 1000:
                            return out
                        rv = rows[-1][0]

            return self._hub.open(wanted, start, replay)

    def list_and_watch(self, kind: str | None = None, namespace: str | None = None, label_selector=None, owner_uid: str | None = None):
        """``(objects, watch)``: every change after the list is in the watch, and none before it
        (:meth:`list_with_rv` then :meth:`watch` with ``since``)."""
        items, rv = self.list_with_rv(kind, namespace, label_selector, owner_uid)
        return items, self.watch(kind, namespace, label_selector, owner_uid, since=rv)

    # ------------------------------------------------------------------ maintenance

    def maintain(self) -> dict:
        """Compact the change log to :attr:`log_limits` and delete expired Events now; returns
        ``{"log_rows_removed": n, "events_expired": m}``. Writes run this every
        ``log_limits.compact_every`` writes, so callers rarely need to."""
        self._maintaining = True
        self._bytes_since_compaction = 0
        try:
            with self._write() as events:
                expired = self._expire_events(events)
                removed = changelog.compact(self._conn, self.log_limits, self.clock.now())
        finally:
            self._maintaining = False
        return {"log_rows_removed": removed, "events_expired": expired}

    def log_stats(self) -> dict:
        """``{"entries", "bytes", "oldest", "newest"}`` of the change log: ``oldest`` is the
        oldest resourceVersion a watch can resume from."""
        with self._lock, snapshot(self._conn):
            return changelog.log_stats(self._conn)

    def _expire_events(self, events: list, limit: int = 500) -> int:
        """Delete up to ``limit`` Events older than ``event_ttl`` (an index range read: free
        when none is due), each leaving a ``DELETED`` tombstone as a TTL expiry in etcd does."""
        if not self.event_ttl:
            return 0
        cutoff = int(self.clock.now() - self.event_ttl)
        rows = self._conn.execute(EXPIRED_EVENTS, {"cutoff": cutoff, "limit": limit}).fetchall()
        for _, body in rows:
            ev = json.loads(body)
            self._remove_row(ev["metadata"]["uid"], ev)
            self._log_deleted(ev, events)
        return len(rows)

    # ------------------------------------------------------------------ events

    def record_event(self, involved: dict, reason: str, message: str, type: str = "Normal", component: str = "localflow") -> dict:
        """Record a ``v1 Event`` about ``involved`` (any stored object dict); returns the Event.

        The Event has ``involvedObject`` {apiVersion, kind, name, namespace, uid}, ``reason``,
        ``message``, ``type`` (``Normal``/``Warning``), ``count``, ``firstTimestamp``,
        ``lastTimestamp``, ``source.component`` and the name ``<involved name>.<hex>``, in the
        involved object's namespace (``default`` for cluster-scoped ones). An event identical in
        (involved object, reason, message, type, component) bumps ``count`` and
        ``lastTimestamp`` instead, as client-go's EventCorrelator does (kubectl shows ``x3``);
        the match is one seek in ``event_index``. Expired Events (``event_ttl``) are deleted
        first, so an event repeated after the TTL starts a new Event.
        """
        if type not in ("Normal", "Warning"):
            raise SpecError("Event.type", f"{type!r} is not an event type", fix="use Normal or Warning")
        meta = (involved or {}).get("metadata") or {}
        if not involved or not involved.get("kind") or not meta.get("name"):
            raise SpecError("involvedObject", "needs kind and metadata.name", fix="pass the stored object")
        ref = {"apiVersion": involved.get("apiVersion", ""), "kind": involved["kind"], "name": meta["name"],
               "namespace": meta.get("namespace", ""), "uid": meta.get("uid", "")}
        ev_ns = ref["namespace"] or "default"
        now = self.clock.rfc3339()
        with self._write() as events:
            self._expire_events(events)
            row = self._conn.execute(FIND_DUPLICATE, dedup_args(ev_ns, ref, reason, message, type, component)).fetchone()
            if row is not None:
                ev = json.loads(row[1])
                ev["count"] = int(ev.get("count", 1)) + 1
                ev["lastTimestamp"] = now
                self._store(ev, row[0], "Event", MODIFIED, events)
            else:
                ev = new_event(ref, ev_ns, reason, message, type, component, now)
                self._store(ev, 0, "Event", ADDED, events)
        return self._copy(ev, events)

    def events_for(self, obj: dict) -> list[dict]:
        """Unexpired Events about ``obj`` (matched by uid, or kind/name/namespace when it has
        none), oldest ``lastTimestamp`` first, as ``kubectl describe`` lists them; an index
        range read of ``event_index``."""
        meta = obj.get("metadata") or {}
        oldest = int(self.clock.now() - self.event_ttl) if self.event_ttl else -(2**62)
        if meta.get("uid"):
            sql, args = EVENTS_FOR_UID, (meta["uid"], oldest)
        else:
            sql, args = EVENTS_FOR_NAME, (obj.get("kind") or "", meta.get("name") or "", meta.get("namespace") or "", oldest)
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [json.loads(b) for (b,) in rows]


def _labels_match(obj: dict, reqs: list[Requirement]) -> bool:
    if not reqs:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(r.matches(labels) for r in reqs)
