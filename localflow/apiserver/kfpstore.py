"""What the KFP v2beta1 API keeps beside the object store: experiments, pipelines and their
versions, and each run's storage state (AVAILABLE/ARCHIVED).

Runs themselves are the workspace's ``pipelines.kubeflow.org/v2beta1 Run`` objects (the ones
``localflow run`` creates); only what has no home on them lives here, in tables ``kfp_*`` of the
workspace database (one SQLite file, :mod:`localflow.dbconn`). The columns follow the KFP API
server's model (kubeflow/pipelines ``backend/src/apiserver/model/experiment.go``,
``pipeline.go``, ``pipeline_version.go``).
"""
from __future__ import annotations

import json
import threading
import time
import uuid

from localflow import dbconn

__all__ = ["KfpStore", "DEFAULT_EXPERIMENT"]

#: The experiment KFP creates on start and files runs without one under (``resource_manager.go``).
DEFAULT_EXPERIMENT = "Default"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kfp_experiments (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, description TEXT,
    namespace TEXT, storage_state TEXT NOT NULL, created_ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kfp_pipelines (id TEXT PRIMARY KEY, display_name TEXT NOT NULL, description TEXT,
    namespace TEXT, created_ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kfp_pipeline_versions (id TEXT PRIMARY KEY, pipeline_id TEXT NOT NULL,
    display_name TEXT NOT NULL, description TEXT, spec TEXT NOT NULL, created_ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS kfp_run_storage (run_id TEXT PRIMARY KEY, storage_state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS kfp_recurring_runs (id TEXT PRIMARY KEY, body TEXT NOT NULL, enabled INTEGER NOT NULL,
    created_ts REAL NOT NULL, updated_ts REAL NOT NULL, last_ts REAL);
"""


class KfpStore:
    """The ``kfp_*`` tables of the workspace database at ``db_path`` (thread-safe: one connection
    behind a lock). Rows come back as dicts; ``created_ts`` is seconds since the epoch."""

    def __init__(self, db_path):
        self._conn = dbconn.connect(str(db_path))
        self._conn.row_factory = _dict_row
        self._lock = threading.Lock()
        with self._lock:
            dbconn.retry_locked(lambda: self._conn.executescript(_SCHEMA))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def _q(self, sql: str, args=()) -> list[dict]:
        with self._lock:
            return dbconn.retry_locked(lambda: self._conn.execute(sql, args).fetchall())

    # ------------------------------------------------------------------ experiments
    def experiments(self) -> list[dict]:
        """Every experiment (the ``Default`` one is created on first use)."""
        self.default_experiment()
        return self._q("SELECT * FROM kfp_experiments ORDER BY created_ts, id")

    def default_experiment(self) -> dict:
        """The ``Default`` experiment, created when absent."""
        rows = self._q("SELECT * FROM kfp_experiments WHERE display_name = ? ORDER BY created_ts LIMIT 1",
                       (DEFAULT_EXPERIMENT,))
        return rows[0] if rows else self.create_experiment(DEFAULT_EXPERIMENT, "", "")

    def create_experiment(self, display_name: str, description: str, namespace: str) -> dict:
        """A new experiment (ids are uuid4, as KFP's)."""
        eid = str(uuid.uuid4())
        self._q("INSERT INTO kfp_experiments VALUES (?, ?, ?, ?, 'AVAILABLE', ?)",
                (eid, display_name, description, namespace, time.time()))
        return self.experiment(eid)

    def experiment(self, eid: str) -> dict | None:
        """The experiment ``eid`` or None."""
        rows = self._q("SELECT * FROM kfp_experiments WHERE id = ?", (eid,))
        return rows[0] if rows else None

    def set_experiment_state(self, eid: str, state: str) -> None:
        """Archive (``ARCHIVED``) or unarchive (``AVAILABLE``) an experiment."""
        self._q("UPDATE kfp_experiments SET storage_state = ? WHERE id = ?", (state, eid))

    def delete_experiment(self, eid: str) -> None:
        """Forget experiment ``eid``."""
        self._q("DELETE FROM kfp_experiments WHERE id = ?", (eid,))

    # ------------------------------------------------------------------ pipelines
    def pipelines(self) -> list[dict]:
        """Every uploaded pipeline."""
        return self._q("SELECT * FROM kfp_pipelines ORDER BY created_ts, id")

    def pipeline(self, pid: str) -> dict | None:
        """The pipeline ``pid`` or None."""
        rows = self._q("SELECT * FROM kfp_pipelines WHERE id = ?", (pid,))
        return rows[0] if rows else None

    def create_pipeline(self, display_name: str, description: str, namespace: str) -> dict:
        """A new pipeline (no version yet)."""
        pid = str(uuid.uuid4())
        self._q("INSERT INTO kfp_pipelines VALUES (?, ?, ?, ?, ?)", (pid, display_name, description, namespace, time.time()))
        return self.pipeline(pid)

    def delete_pipeline(self, pid: str) -> None:
        """Forget pipeline ``pid`` and its versions."""
        self._q("DELETE FROM kfp_pipeline_versions WHERE pipeline_id = ?", (pid,))
        self._q("DELETE FROM kfp_pipelines WHERE id = ?", (pid,))

    def versions(self, pid: str) -> list[dict]:
        """The versions of pipeline ``pid``, oldest first (``spec``: the decoded documents)."""
        return [_spec(r) for r in self._q("SELECT * FROM kfp_pipeline_versions WHERE pipeline_id = ? ORDER BY created_ts, id", (pid,))]

    def version(self, vid: str) -> dict | None:
        """The pipeline version ``vid`` or None."""
        rows = self._q("SELECT * FROM kfp_pipeline_versions WHERE id = ?", (vid,))
        return _spec(rows[0]) if rows else None

    def create_version(self, pid: str, display_name: str, description: str, docs: list) -> dict:
        """A new version of pipeline ``pid`` holding the compiled documents ``docs``."""
        vid = str(uuid.uuid4())
        self._q("INSERT INTO kfp_pipeline_versions VALUES (?, ?, ?, ?, ?, ?)",
                (vid, pid, display_name, description, json.dumps(docs), time.time()))
        return self.version(vid)

    def delete_version(self, vid: str) -> None:
        """Forget pipeline version ``vid``."""
        self._q("DELETE FROM kfp_pipeline_versions WHERE id = ?", (vid,))

    # ------------------------------------------------------------------ runs
    def storage_states(self) -> dict[str, str]:
        """``{run_id: storage_state}`` of the runs archived or unarchived through the API."""
        return {r["run_id"]: r["storage_state"] for r in self._q("SELECT * FROM kfp_run_storage")}

    def set_run_storage(self, run_id: str, state: str) -> None:
        """Record a run's storage state (``AVAILABLE`` or ``ARCHIVED``)."""
        self._q("INSERT OR REPLACE INTO kfp_run_storage VALUES (?, ?)", (run_id, state))


    # ------------------------------------------------------------------ recurring runs
    def recurring_runs(self, *, enabled_only: bool = False) -> list[dict]:
        """Every recurring run (``body``: the decoded V2beta1RecurringRun as created; ``last_ts``:
        the schedule time of its last run, None before the first)."""
        sql = "SELECT * FROM kfp_recurring_runs" + (" WHERE enabled = 1" if enabled_only else "")
        return [_body(r) for r in self._q(sql + " ORDER BY created_ts, id")]

    def recurring_run(self, rid: str) -> dict | None:
        """The recurring run ``rid`` or None."""
        rows = self._q("SELECT * FROM kfp_recurring_runs WHERE id = ?", (rid,))
        return _body(rows[0]) if rows else None

    def create_recurring_run(self, body: dict, enabled: bool) -> dict:
        """A new recurring run of ``body``."""
        rid, now = str(uuid.uuid4()), time.time()
        self._q("INSERT INTO kfp_recurring_runs VALUES (?, ?, ?, ?, ?, NULL)", (rid, json.dumps(body), int(enabled), now, now))
        return self.recurring_run(rid)

    def set_recurring_enabled(self, rid: str, enabled: bool) -> None:
        """Enable or disable recurring run ``rid``."""
        self._q("UPDATE kfp_recurring_runs SET enabled = ?, updated_ts = ? WHERE id = ?", (int(enabled), time.time(), rid))

    def set_recurring_last(self, rid: str, last_ts: float) -> None:
        """Record the schedule time of the run just started for ``rid``."""
        self._q("UPDATE kfp_recurring_runs SET last_ts = ? WHERE id = ?", (last_ts, rid))

    def delete_recurring_run(self, rid: str) -> None:
        """Forget recurring run ``rid`` (its runs stay)."""
        self._q("DELETE FROM kfp_recurring_runs WHERE id = ?", (rid,))


def _body(row: dict) -> dict:
    row = dict(row)
    row["body"] = json.loads(row["body"])
    return row


def _dict_row(cursor, row) -> dict:
    return {d[0]: v for d, v in zip(cursor.description, row)}


def _spec(row: dict) -> dict:
    row = dict(row)
    row["spec"] = json.loads(row["spec"])
    return row
