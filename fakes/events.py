"""The ``event_index`` table: ``v1 Event`` objects keyed by their involved object and de-dup key.

client-go's EventCorrelator (``tools/record/events_cache.go``) turns a repeated event into a
``count``/``lastTimestamp`` update of the Event it recorded before; ``kubectl describe`` lists an
object's Events by ``involvedObject``. Both are index seeks here, never a scan of every Event:

- ``dedup`` is ``json_array(namespace, involvedObject.uid, .kind, .name, reason, message, type,
  source.component)`` -- the fields the old full-scan query compared;
- ``inv_uid`` / (``inv_kind``, ``inv_name``, ``inv_namespace``) find an object's Events;
- ``last_ts`` (epoch seconds of ``lastTimestamp``) orders them and finds expired ones (the API
  server's Event TTL, ``--event-ttl``, default 1 h).

The row is computed in SQL from the stored body by :data:`INDEX_EVENT`, on every write of an Event
whoever makes it (``record_event``, ``create``, ``patch``, expiry), so the index cannot drift from
the objects. SQL only; the store runs it inside its write transactions.
"""
from __future__ import annotations

import uuid

__all__ = [
    "INDEX_EVENT",
    "INDEX_EXISTING_EVENTS",
    "UNINDEX_EVENT",
    "FIND_DUPLICATE",
    "EVENTS_FOR_UID",
    "EVENTS_FOR_NAME",
    "EXPIRED_EVENTS",
    "dedup_args",
    "new_event",
]


def _text(path: str) -> str:
    return f"coalesce(json_extract(b, '{path}'), '')"


_KEY = "json_array(" + ", ".join(_text(p) for p in (
    "$.metadata.namespace", "$.involvedObject.uid", "$.involvedObject.kind", "$.involvedObject.name",
    "$.reason", "$.message", "$.type", "$.source.component")) + ")"
_LAST_TS = (
    "coalesce(CAST(strftime('%s', coalesce(json_extract(b, '$.lastTimestamp'), json_extract(b, '$.eventTime'),"
    " json_extract(b, '$.firstTimestamp'), json_extract(b, '$.metadata.creationTimestamp'))) AS INTEGER), :now)"
)
_ROW = (
    f"SELECT json_extract(b, '$.metadata.uid'), {_KEY}, {_text('$.involvedObject.uid')}, {_text('$.involvedObject.kind')},"
    f" {_text('$.involvedObject.name')}, {_text('$.involvedObject.namespace')}, {_LAST_TS}, rv"
)
_COLUMNS = "(uid, dedup, inv_uid, inv_kind, inv_name, inv_namespace, last_ts, rv)"

#: Upsert the index row of one Event; parameters ``body`` (the stored JSON), ``rv``, ``now``.
INDEX_EVENT = f"INSERT OR REPLACE INTO event_index {_COLUMNS} {_ROW} FROM (SELECT :body AS b, :rv AS rv)"
#: Index every Event already stored (migration of an older workspace); parameter ``now``.
INDEX_EXISTING_EVENTS = (
    f"INSERT OR IGNORE INTO event_index {_COLUMNS} {_ROW}"
    " FROM (SELECT body AS b, rv FROM objects WHERE grp = '' AND kind = 'Event')"
)
UNINDEX_EVENT = "DELETE FROM event_index WHERE uid = ?"
#: The newest Event with the de-dup key built from :func:`dedup_args`: ``(seq, body)``.
FIND_DUPLICATE = (
    "SELECT o.seq, o.body FROM event_index e JOIN objects o ON o.uid = e.uid"
    " WHERE e.dedup = json_array(?, ?, ?, ?, ?, ?, ?, ?) ORDER BY e.rv DESC LIMIT 1"
)
#: An object's unexpired Events, oldest ``lastTimestamp`` first: params (uid, oldest last_ts).
EVENTS_FOR_UID = (
    "SELECT o.body FROM event_index e JOIN objects o ON o.uid = e.uid"
    " WHERE e.inv_uid = ? AND e.last_ts >= ? ORDER BY e.last_ts, e.rv"
)
#: The same for an object without a uid: params (kind, name, namespace, oldest last_ts).
EVENTS_FOR_NAME = (
    "SELECT o.body FROM event_index e JOIN objects o ON o.uid = e.uid"
    " WHERE e.inv_kind = ? AND e.inv_name = ? AND e.inv_namespace = ? AND e.last_ts >= ? ORDER BY e.last_ts, e.rv"
)
#: Up to ``limit`` Events whose lastTimestamp is older than ``cutoff``: ``(seq, body)``.
EXPIRED_EVENTS = (
    "SELECT o.seq, o.body FROM event_index e JOIN objects o ON o.uid = e.uid"
    " WHERE e.last_ts < :cutoff ORDER BY e.last_ts LIMIT :limit"
)


def dedup_args(namespace: str, ref: dict, reason: str, message: str, type: str, component: str) -> tuple:
    """The parameters of :data:`FIND_DUPLICATE` for an Event in ``namespace`` about ``ref`` (the
    ``involvedObject`` dict), in the order of the index's ``dedup`` key."""
    return (namespace, ref.get("uid", ""), ref.get("kind", ""), ref.get("name", ""), reason, message, type, component)


def new_event(ref: dict, namespace: str, reason: str, message: str, type: str, component: str, now: str) -> dict:
    """A new ``v1 Event`` (count 1) about ``ref`` in ``namespace`` at RFC 3339 time ``now``,
    named ``<involved name>.<16 hex>`` as client-go's recorder names them."""
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref['name']}.{uuid.uuid4().hex[:16]}",
            "namespace": namespace,
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
