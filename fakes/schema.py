"""The object store's tables in the workspace SQLite file, and the migration of older workspaces.

Tables (all created with ``IF NOT EXISTS``, so opening is idempotent and safe when several
processes open a fresh file at once):

- ``objects`` (uid, grp, kind, namespace, name, rv, seq, body): the current objects; ``seq``
  orders them by creation.
- ``object_counters`` (name, value): ``resourceVersion`` (the newest one handed out),
  ``logCompacted`` (the oldest resourceVersion a watch may resume from) and ``logBytes`` (the
  change log's body bytes, so compaction never sums the log).
- ``object_log`` (rv, type, grp, kind, namespace, name, ts, size, body): one row per write, in the
  same transaction (see :mod:`.changelog`); ``rv`` is the rowid, so "anything newer than N" is a
  range read of the primary key.
- ``event_index`` (uid, dedup, inv_uid, inv_kind, inv_name, inv_namespace, last_ts, rv): one row
  per ``v1 Event`` object, keyed for client-go's de-duplication and ``kubectl describe`` (see
  :mod:`.events`).

A workspace written before the change log existed has only ``objects`` and ``object_counters``:
opening it adds the other tables, starts the log at the current resourceVersion (older ones
answer 410 Gone) and indexes the Events it already holds.
"""
from __future__ import annotations

import sqlite3

from localflow.dbconn import has_tables, immediate, retry_locked

from .events import INDEX_EXISTING_EVENTS

__all__ = ["TABLES", "ensure_schema"]

TABLES = ("objects", "object_counters", "object_log", "event_index")

# The first two tables keep the exact shape the earlier (sqlite-utils made) schema had.
_DDL = (
    'CREATE TABLE IF NOT EXISTS "objects" ("uid" TEXT PRIMARY KEY, "grp" TEXT NOT NULL, "kind" TEXT NOT NULL,'
    ' "namespace" TEXT NOT NULL, "name" TEXT NOT NULL, "rv" INTEGER NOT NULL, "seq" INTEGER NOT NULL, "body" TEXT NOT NULL)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "idx_objects_grp_kind_namespace_name" ON "objects" ("grp", "kind", "namespace", "name")',
    'CREATE INDEX IF NOT EXISTS "idx_objects_kind_namespace_seq" ON "objects" ("kind", "namespace", "seq")',
    'CREATE TABLE IF NOT EXISTS "object_counters" ("name" TEXT PRIMARY KEY, "value" INTEGER)',
    "INSERT OR IGNORE INTO object_counters (name, value) VALUES ('resourceVersion', 0)",
    'CREATE TABLE IF NOT EXISTS "object_log" ("rv" INTEGER PRIMARY KEY, "type" TEXT NOT NULL, "grp" TEXT NOT NULL,'
    ' "kind" TEXT NOT NULL, "namespace" TEXT NOT NULL, "name" TEXT NOT NULL, "ts" REAL NOT NULL,'
    ' "size" INTEGER NOT NULL, "body" TEXT NOT NULL)',
    # An existing workspace's history was never logged: the log starts at its current version.
    "INSERT OR IGNORE INTO object_counters (name, value)"
    " SELECT 'logCompacted', value FROM object_counters WHERE name = 'resourceVersion'",
    "INSERT OR IGNORE INTO object_counters (name, value) VALUES ('logBytes', 0)",
    'CREATE TABLE IF NOT EXISTS "event_index" ("uid" TEXT PRIMARY KEY, "dedup" TEXT NOT NULL, "inv_uid" TEXT NOT NULL,'
    ' "inv_kind" TEXT NOT NULL, "inv_name" TEXT NOT NULL, "inv_namespace" TEXT NOT NULL,'
    ' "last_ts" INTEGER NOT NULL, "rv" INTEGER NOT NULL)',
    'CREATE INDEX IF NOT EXISTS "idx_event_index_dedup" ON "event_index" ("dedup", "rv")',
    'CREATE INDEX IF NOT EXISTS "idx_event_index_inv_uid" ON "event_index" ("inv_uid", "last_ts", "rv")',
    'CREATE INDEX IF NOT EXISTS "idx_event_index_inv_name" ON "event_index"'
    ' ("inv_kind", "inv_name", "inv_namespace", "last_ts", "rv")',
    'CREATE INDEX IF NOT EXISTS "idx_event_index_last_ts" ON "event_index" ("last_ts")',
)


def ensure_schema(conn: sqlite3.Connection, now: float) -> None:
    """Create the store's tables, or add the missing ones to an older workspace, in one
    ``BEGIN IMMEDIATE`` transaction (retried while another process holds the file's lock).
    ``now`` (epoch seconds) stands in for Events that carry no timestamp. Cheap when the schema
    is complete: one ``sqlite_master`` query."""
    if has_tables(conn, TABLES):
        return

    def create() -> None:
        with immediate(conn):
            for stmt in _DDL:
                conn.execute(stmt)
            conn.execute(INDEX_EXISTING_EVENTS, {"now": int(now)})

    retry_locked(create)
