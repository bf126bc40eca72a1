"""Run and lineage metadata, modelled on ML Metadata as Kubeflow Pipelines v2 uses it.

Follows google/ml-metadata (``ml_metadata/proto/metadata_store.proto``: Artifact, Execution,
Context, Event, Attribution, Association) and kubeflow/pipelines
``backend/src/v2/metadata/client.go`` (context types ``system.Pipeline``/``system.PipelineRun``,
execution types ``system.ContainerExecution``/``system.DAGExecution``/``system.ImporterExecution``,
states NEW RUNNING COMPLETE CACHED FAILED CANCELED, INPUT/OUTPUT events keyed by the artifact's
input/output name). A ``runs`` table adds what the KFP API server keeps per run.

Lives in the workspace's SQLite file next to the object store, in its own tables
(runs, contexts, executions, artifacts, events, attributions, associations), with its own
connection (WAL, busy_timeout 10 s) guarded by a re-entrant lock; safe to use from many threads
and, through SQLite, from several processes. JSON columns come back as Python objects; every
timestamp is RFC 3339 text from the clock (plus a float ``*_ts`` column used for ordering).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.dbconn import connect, has_tables, immediate, retry_locked
from localflow.errors import NotFound, SpecError

__all__ = ["MetadataStore", "RUN_STATES", "EXECUTION_STATES", "EVENT_TYPES"]

# kubeflow/pipelines backend/api/v2beta1/run.proto RuntimeState
RUN_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "SKIPPED", "FAILED", "CANCELING", "CANCELED", "PAUSED")
# ml_metadata Execution.State as KFP uses it
EXECUTION_STATES = ("NEW", "RUNNING", "COMPLETE", "CACHED", "FAILED", "CANCELED")
EVENT_TYPES = ("INPUT", "OUTPUT")

_TABLES = ("runs", "contexts", "executions", "artifacts", "events", "attributions", "associations")
_JSON_COLUMNS = {"parameters", "outputs", "properties", "inputs", "metadata"}


def _dump(value, path: str):
    if value is None:
        return None
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise SpecError(path, f"is not JSON-serialisable: {err}", fix="use dicts, lists, strings, numbers, booleans") from None


class MetadataStore:
    """Runs, executions, artifacts, contexts and their lineage in the SQLite file ``db_path``.

    Ids of contexts, executions and artifacts are ints; runs are keyed by the caller's string id.
    Errors: :class:`NotFound` for unknown ids, :class:`SpecError` for bad states/types/values.
    """

    def __init__(self, db_path, clock: Clock = SYSTEM_CLOCK):
        self.db_path = str(db_path)
        self.clock = clock
        self._lock = threading.RLock()
        self._conn = connect(self.db_path)
        self._closed = False
        if not has_tables(self._conn, _TABLES):
            retry_locked(self._create_schema)
        self._conn.row_factory = sqlite3.Row

    # ------------------------------------------------------------------ setup

    def _create_schema(self) -> None:
        import sqlite_utils  # only for a new workspace: it imports numpy when present (~0.3 s)

        db = sqlite_utils.Database(self._conn)
        ts = {"created_at": str, "created_ts": float}
        with self._write():
            db["runs"].create(
                {"id": str, "name": str, "kind": str, "pipeline_name": str, "spec_path": str, "state": str,
                 "parameters": str, "outputs": str, "error": str, "executor": str, "namespace": str,
                 **ts, "finished_at": str, "finished_ts": float},
                pk="id", not_null={"name", "kind", "state"}, if_not_exists=True,
            )
            db["runs"].create_index(["name"], if_not_exists=True)
            db["contexts"].create(
                {"id": int, "type": str, "name": str, "properties": str, **ts},
                pk="id", not_null={"type", "name"}, if_not_exists=True,
            )
            db["contexts"].create_index(["type", "name"], unique=True, if_not_exists=True)
            db["executions"].create(
                {"id": int, "run_id": str, "type": str, "name": str, "state": str, "pod_name": str,
                 "inputs": str, "outputs": str, "attempt": int, "fingerprint": str, "parent_id": int,
                 "properties": str, "error": str, **ts, "started_at": str, "started_ts": float,
                 "finished_at": str, "finished_ts": float, "updated_ts": float},
                pk="id", not_null={"type", "name", "state"}, if_not_exists=True,
            )
            db["executions"].create_index(["run_id"], if_not_exists=True)
            db["executions"].create_index(["fingerprint", "state"], if_not_exists=True)
            db["artifacts"].create(
                {"id": int, "uri": str, "schema_title": str, "schema_version": str, "name": str,
                 "metadata": str, "run_id": str, **ts},
                pk="id", not_null={"schema_title"}, if_not_exists=True,
            )
            db["artifacts"].create_index(["run_id"], if_not_exists=True)
            db["events"].create(
                {"id": int, "execution_id": int, "artifact_id": int, "type": str, "key": str, "idx": int, **ts},
                pk="id", not_null={"execution_id", "artifact_id", "type", "key", "idx"}, if_not_exists=True,
            )
            db["events"].create_index(["execution_id", "artifact_id", "type", "key", "idx"], unique=True, if_not_exists=True)
            db["events"].create_index(["artifact_id"], if_not_exists=True)
            db["attributions"].create({"context_id": int, "artifact_id": int}, pk=("context_id", "artifact_id"), if_not_exists=True)
            db["associations"].create({"context_id": int, "execution_id": int}, pk=("context_id", "execution_id"), if_not_exists=True)

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> "MetadataStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def _write(self):
        with self._lock, immediate(self._conn):
            yield self._conn

    def _query(self, sql: str, args=()) -> list[dict]:
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [self._decode(r) for r in rows]

    @staticmethod
    def _decode(row: sqlite3.Row) -> dict:
        out = {}
        for key in row.keys():
            if key.endswith("_ts"):
                continue
            value = row[key]
            if key in _JSON_COLUMNS and value is not None:
                value = json.loads(value)
            out[key] = value
        return out

    def _now(self) -> tuple[str, float]:
        t = self.clock.now()
        return self.clock.rfc3339(t), t

    @staticmethod
    def _check(value, allowed, path: str) -> None:
        if value not in allowed:
            raise SpecError(path, f"{value!r} is not one of {', '.join(allowed)}")

    # ------------------------------------------------------------------ runs

    _RUN_COLUMNS = "id, name, kind, pipeline_name, spec_path, state, parameters, outputs, error, executor, namespace, created_at, finished_at"

    def create_run(
        self,
        run_id: str,
        name: str,
        kind: str,
        *,
        pipeline_name: str | None = None,
        spec_path: str | None = None,
        parameters: dict | None = None,
        executor: str = "subprocess",
        namespace: str = "default",
        state: str = "PENDING",
    ) -> dict:
        """Record a new run (``kind``: ``PipelineRun``, ``PyTorchJob``, ...) in state ``PENDING``;
        returns it as :meth:`get_run` does. Raises :class:`SpecError` when ``run_id`` is taken."""
        self._check(state, RUN_STATES, "run.state")
        at, ts = self._now()
        with self._write() as c:
            if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                raise SpecError("run.id", f"run {run_id!r} already exists", fix="use a new run id")
            c.execute(
                "INSERT INTO runs (id, name, kind, pipeline_name, spec_path, state, parameters, outputs, executor, namespace,"
                " created_at, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?)",
                (run_id, name, kind, pipeline_name, spec_path, state, _dump(parameters or {}, "run.parameters"),
                 executor, namespace, at, ts),
            )
        return self.get_run(run_id)

    def update_run(self, run_id: str, *, state: str | None = None, error: str | None = None, outputs=None, finished: bool = False) -> dict:
        """Change a run's ``state`` (one of :data:`RUN_STATES`), ``error`` text, ``outputs``
        (replaced) and, with ``finished=True``, set ``finished_at``. Returns the run; raises
        :class:`NotFound`."""
        sets, args = [], []
        if state is not None:
            self._check(state, RUN_STATES, "run.state")
            sets.append("state = ?")
            args.append(state)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        if outputs is not None:
            sets.append("outputs = ?")
            args.append(_dump(outputs, "run.outputs"))
        if finished:
            at, ts = self._now()
            sets += ["finished_at = ?", "finished_ts = ?"]
            args += [at, ts]
        with self._write() as c:
            if not c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
                raise self._run_not_found(run_id)
            if sets:
                c.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id = ?", (*args, run_id))
        return self.get_run(run_id)

    @staticmethod
    def _run_not_found(key: str) -> NotFound:
        return NotFound(f"run {key!r} not found", fix="list runs with `localflow get runs`")

    def get_run(self, run_id_or_name: str) -> dict:
        """A run by id, or else the newest run with that name. Keys: id, name, kind,
        pipeline_name, spec_path, state, parameters, outputs, error, executor, namespace,
        created_at, finished_at. Raises :class:`NotFound`."""
        rows = self._query(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?", (run_id_or_name,))
        if not rows:
            rows = self._query(
                f"SELECT {self._RUN_COLUMNS} FROM runs WHERE name = ? ORDER BY created_ts DESC, rowid DESC LIMIT 1",
                (run_id_or_name,),
            )
        if not rows:
            raise self._run_not_found(run_id_or_name)
        return rows[0]

    def list_runs(self) -> list[dict]:
        """Every run, oldest first."""
        return self._query(f"SELECT {self._RUN_COLUMNS} FROM runs ORDER BY created_ts, rowid")

    # ------------------------------------------------------------------ contexts

    def put_context(self, type: str, name: str, properties: dict | None = None) -> int:
        """Id of the context (``type``, ``name``), created if missing (MLMD ``PutContexts`` /
        KFP ``GetOrInsertContext``). ``properties`` are merged into an existing context's."""
        at, ts = self._now()
        with self._write() as c:
            row = c.execute("SELECT id, properties FROM contexts WHERE type = ? AND name = ?", (type, name)).fetchone()
            if row is not None:
                if properties:
                    merged = {**json.loads(row["properties"] or "{}"), **properties}
                    c.execute("UPDATE contexts SET properties = ? WHERE id = ?", (_dump(merged, "context.properties"), row["id"]))
                return int(row["id"])
            cur = c.execute(
                "INSERT INTO contexts (type, name, properties, created_at, created_ts) VALUES (?, ?, ?, ?, ?)",
                (type, name, _dump(properties or {}, "context.properties"), at, ts),
            )
            return int(cur.lastrowid)

    def get_context(self, context_id: int) -> dict:
        """Context dict (id, type, name, properties, created_at); raises :class:`NotFound`."""
        rows = self._query("SELECT * FROM contexts WHERE id = ?", (context_id,))
        if not rows:
            raise NotFound(f"context {context_id} not found")
        return rows[0]

    def _require(self, c, table: str, id_) -> None:
        if not c.execute(f"SELECT 1 FROM {table} WHERE id = ?", (id_,)).fetchone():
            raise NotFound(f"{table[:-1]} {id_} not found")

    def associate(self, context_id: int, execution_id: int) -> None:
        """Link an execution to a context (MLMD Association); idempotent. Raises :class:`NotFound`."""
        with self._write() as c:
            self._require(c, "contexts", context_id)
            self._require(c, "executions", execution_id)
            c.execute("INSERT OR IGNORE INTO associations (context_id, execution_id) VALUES (?, ?)", (context_id, execution_id))

    def attribute(self, context_id: int, artifact_id: int) -> None:
        """Link an artifact to a context (MLMD Attribution); idempotent. Raises :class:`NotFound`."""
        with self._write() as c:
            self._require(c, "contexts", context_id)
            self._require(c, "artifacts", artifact_id)
            c.execute("INSERT OR IGNORE INTO attributions (context_id, artifact_id) VALUES (?, ?)", (context_id, artifact_id))

    def executions_in_context(self, context_id: int) -> list[dict]:
        """Executions associated with a context, oldest first."""
        return self._query(
            f"SELECT {self._EXEC_COLUMNS} FROM executions WHERE id IN (SELECT execution_id FROM associations"
            " WHERE context_id = ?) ORDER BY created_ts, id",
            (context_id,),
        )

    def artifacts_in_context(self, context_id: int) -> list[dict]:
        """Artifacts attributed to a context, oldest first."""
        return self._query(
            f"SELECT {self._ART_COLUMNS} FROM artifacts WHERE id IN (SELECT artifact_id FROM attributions"
            " WHERE context_id = ?) ORDER BY created_ts, id",
            (context_id,),
        )

    # ------------------------------------------------------------------ executions

    _EXEC_COLUMNS = (
        "id, run_id, type, name, state, pod_name, inputs, outputs, attempt, fingerprint, parent_id,"
        " properties, error, created_at, started_at, finished_at"
    )

    def create_execution(
        self,
        run_id: str | None,
        type: str,
        name: str,
        *,
        state: str = "NEW",
        pod_name: str | None = None,
        inputs: dict | None = None,
        attempt: int = 0,
        fingerprint: str | None = None,
        parent_id: int | None = None,
        properties: dict | None = None,
    ) -> int:
        """Record an execution (``type`` e.g. ``system.ContainerExecution``,
        ``system.DAGExecution``, ``system.ImporterExecution``; ``name`` the task name) and return
        its id. ``inputs``: parameter values by name; ``fingerprint``: the cache key;
        ``parent_id``: the enclosing DAG execution. Raises :class:`SpecError` for a bad state."""
        self._check(state, EXECUTION_STATES, "execution.state")
        at, ts = self._now()
        with self._write() as c:
            if parent_id is not None:
                self._require(c, "executions", parent_id)
            cur = c.execute(
                "INSERT INTO executions (run_id, type, name, state, pod_name, inputs, outputs, attempt, fingerprint, parent_id,"
                " properties, created_at, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, type, name, state, pod_name, _dump(inputs or {}, "execution.inputs"), int(attempt), fingerprint,
                 parent_id, _dump(properties or {}, "execution.properties"), at, ts, ts),
            )
            return int(cur.lastrowid)

    def update_execution(
        self,
        execution_id: int,
        *,
        state: str | None = None,
        outputs: dict | None = None,
        pod_name: str | None = None,
        properties: dict | None = None,
        started: bool = False,
        finished: bool = False,
        error: str | None = None,
    ) -> dict:
        """Update an execution: ``state``, ``outputs`` (replaced), ``pod_name``, ``properties``
        (merged into the existing ones), ``error``; ``started``/``finished`` stamp
        ``started_at``/``finished_at`` with the clock. Returns it; raises :class:`NotFound`."""
        sets, args = [], []
        if state is not None:
            self._check(state, EXECUTION_STATES, "execution.state")
            sets.append("state = ?")
            args.append(state)
        if outputs is not None:
            sets.append("outputs = ?")
            args.append(_dump(outputs, "execution.outputs"))
        if pod_name is not None:
            sets.append("pod_name = ?")
            args.append(pod_name)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        at, ts = self._now()
        if started:
            sets += ["started_at = ?", "started_ts = ?"]
            args += [at, ts]
        if finished:
            sets += ["finished_at = ?", "finished_ts = ?"]
            args += [at, ts]
        with self._write() as c:
            row = c.execute("SELECT properties FROM executions WHERE id = ?", (execution_id,)).fetchone()
            if row is None:
                raise NotFound(f"execution {execution_id} not found")
            if properties:
                sets.append("properties = ?")
                args.append(_dump({**json.loads(row["properties"] or "{}"), **properties}, "execution.properties"))
            sets.append("updated_ts = ?")
            args.append(ts)
            c.execute(f"UPDATE executions SET {', '.join(sets)} WHERE id = ?", (*args, execution_id))
        return self.get_execution(execution_id)

    def get_execution(self, execution_id: int) -> dict:
        """Execution dict: id, run_id, type, name, state, pod_name, inputs, outputs, attempt,
        fingerprint, parent_id, properties, error, created_at, started_at, finished_at.
        Raises :class:`NotFound`."""
        rows = self._query(f"SELECT {self._EXEC_COLUMNS} FROM executions WHERE id = ?", (execution_id,))
        if not rows:
            raise NotFound(f"execution {execution_id} not found")
        return rows[0]

    def list_executions(self, run_id: str | None = None, name: str | None = None, state: str | None = None, type: str | None = None) -> list[dict]:
        """Executions matching every given filter, oldest first."""
        where, args = [], []
        for col, val in (("run_id", run_id), ("name", name), ("state", state), ("type", type)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {self._EXEC_COLUMNS} FROM executions" + (" WHERE " + " AND ".join(where) if where else "")
        return self._query(sql + " ORDER BY created_ts, id", args)

    def find_cached(self, fingerprint: str) -> dict | None:
        """The newest ``COMPLETE`` execution with ``fingerprint`` in any run of this workspace, or
        ``None`` (KFP v2 driver cache lookup, ``backend/src/v2/driver/cache.go``).

        Executions that were themselves satisfied from cache (``CACHED``) are not candidates: the
        original ``COMPLETE`` one they copied is. The result is an execution dict plus
        ``output_artifacts``: ``[{"key", "index", "artifact": {...}}]`` for its OUTPUT events.
        """
        if not fingerprint:
            return None
        rows = self._query(
            f"SELECT {self._EXEC_COLUMNS} FROM executions WHERE fingerprint = ? AND state = 'COMPLETE'"
            " ORDER BY COALESCE(finished_ts, updated_ts) DESC, id DESC LIMIT 1",
            (fingerprint,),
        )
        if not rows:
            return None
        ex = rows[0]
        ex["output_artifacts"] = [
            {"key": a["event"]["key"], "index": a["event"]["index"], "artifact": {k: v for k, v in a.items() if k != "event"}}
            for a in self.artifacts_of(ex["id"], "OUTPUT")
        ]
        return ex

    # ------------------------------------------------------------------ artifacts

    _ART_COLUMNS = "id, uri, schema_title, schema_version, name, metadata, run_id, created_at"

    def create_artifact(
        self,
        uri: str,
        schema_title: str,
        name: str,
        *,
        metadata: dict | None = None,
        schema_version: str = "0.0.1",
        run_id: str | None = None,
    ) -> int:
        """Record an artifact (``schema_title`` e.g. ``system.Model``, ``system.Dataset``;
        ``uri`` where its content lives) and return its id."""
        at, ts = self._now()
        with self._write() as c:
            cur = c.execute(
                "INSERT INTO artifacts (uri, schema_title, schema_version, name, metadata, run_id, created_at, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uri, schema_title, schema_version, name, _dump(metadata or {}, "artifact.metadata"), run_id, at, ts),
            )
            return int(cur.lastrowid)

    def update_artifact(self, artifact_id: int, *, metadata: dict | None = None, uri: str | None = None) -> dict:
        """Merge ``metadata`` into the artifact's and/or change its ``uri``; returns it. Raises
        :class:`NotFound`."""
        with self._write() as c:
            row = c.execute("SELECT metadata FROM artifacts WHERE id = ?", (artifact_id,)).fetchone()
            if row is None:
                raise NotFound(f"artifact {artifact_id} not found")
            if metadata is not None:
                merged = {**json.loads(row["metadata"] or "{}"), **metadata}
                c.execute("UPDATE artifacts SET metadata = ? WHERE id = ?", (_dump(merged, "artifact.metadata"), artifact_id))
            if uri is not None:
                c.execute("UPDATE artifacts SET uri = ? WHERE id = ?", (uri, artifact_id))
        return self.get_artifact(artifact_id)

    def get_artifact(self, artifact_id: int) -> dict:
        """Artifact dict: id, uri, schema_title, schema_version, name, metadata, run_id,
        created_at. Raises :class:`NotFound`."""
        rows = self._query(f"SELECT {self._ART_COLUMNS} FROM artifacts WHERE id = ?", (artifact_id,))
        if not rows:
            raise NotFound(f"artifact {artifact_id} not found", fix="list artifacts with `localflow get artifacts`")
        return rows[0]

    def list_artifacts(self, run_id: str | None = None, schema_title: str | None = None) -> list[dict]:
        """Artifacts matching the given filters, oldest first."""
        where, args = [], []
        for col, val in (("run_id", run_id), ("schema_title", schema_title)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = f"SELECT {self._ART_COLUMNS} FROM artifacts" + (" WHERE " + " AND ".join(where) if where else "")
        return self._query(sql + " ORDER BY created_ts, id", args)

    # ------------------------------------------------------------------ events / lineage

    def add_event(self, execution_id: int, artifact_id: int, type: str, key: str, index: int = 0) -> None:
        """Record that ``execution_id`` consumed (``INPUT``) or produced (``OUTPUT``) ``artifact_id``
        under input/output name ``key`` (list position ``index``). Idempotent. Raises
        :class:`NotFound` for unknown ids, :class:`SpecError` for another type."""
        self._check(type, EVENT_TYPES, "event.type")
        at, ts = self._now()
        with self._write() as c:
            self._require(c, "executions", execution_id)
            self._require(c, "artifacts", artifact_id)
            c.execute(
                "INSERT OR IGNORE INTO events (execution_id, artifact_id, type, key, idx, created_at, created_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (execution_id, artifact_id, type, key, int(index), at, ts),
            )

    def lineage(self, artifact_id: int) -> dict:
        """``{"producer": execution | None, "consumers": [execution, ...], "cached_by": [execution, ...]}``
        of an artifact: the execution that wrote it (an OUTPUT event from an execution that was not a
        cache hit; the newest if several), those with INPUT events (oldest first), and the cache hits
        that served it again (CACHED executions with an OUTPUT event to it, as KFP records them).
        Raises :class:`NotFound`."""
        self.get_artifact(artifact_id)
        cols = ", ".join("x." + c.strip() for c in self._EXEC_COLUMNS.split(","))
        outputs = self._query(
            f"SELECT {cols} FROM executions x JOIN events e ON e.execution_id = x.id"
            " WHERE e.artifact_id = ? AND e.type = 'OUTPUT' ORDER BY e.created_ts, e.id",
            (artifact_id,),
        )
        writers = [x for x in outputs if x["state"] != "CACHED"]
        cached = [x for x in outputs if x["state"] == "CACHED"]
        producers = writers[-1:] or outputs[:1]
        consumers = self._query(
            f"SELECT DISTINCT {cols} FROM executions x JOIN events e ON e.execution_id = x.id"
            " WHERE e.artifact_id = ? AND e.type = 'INPUT' ORDER BY x.created_ts, x.id",
            (artifact_id,),
        )
        return {"producer": producers[0] if producers else None, "consumers": consumers, "cached_by": cached}

    def artifacts_of(self, execution_id: int, type: str | None = None) -> list[dict]:
        """Artifacts an execution consumed/produced (``type`` INPUT/OUTPUT or both), each an
        artifact dict plus ``event``: ``{"type", "key", "index"}``; ordered by key, index."""
        if type is not None:
            self._check(type, EVENT_TYPES, "event.type")
        cols = ", ".join("a." + c.strip() for c in self._ART_COLUMNS.split(","))
        sql = (
            f"SELECT {cols}, e.type AS ev_type, e.key AS ev_key, e.idx AS ev_idx FROM artifacts a"
            " JOIN events e ON e.artifact_id = a.id WHERE e.execution_id = ?"
        )
        args: list = [execution_id]
        if type is not None:
            sql += " AND e.type = ?"
            args.append(type)
        out = []
        for row in self._query(sql + " ORDER BY e.type, e.key, e.idx", args):
            row["event"] = {"type": row.pop("ev_type"), "key": row.pop("ev_key"), "index": row.pop("ev_idx")}
            out.append(row)
        return out
