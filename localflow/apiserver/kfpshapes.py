"""The JSON shapes of the KFP v2beta1 API (``kfp_server_api`` models, snake_case on the wire) and
the list machinery: filter predicates, ``sort_by`` and page tokens.

Follows kubeflow/pipelines ``backend/api/v2beta1/{run,experiment,pipeline,filter}.proto`` (field
names and enums), ``backend/src/apiserver/filter/filter.go`` (predicate semantics) and
``backend/src/apiserver/list/list.go`` (opaque page tokens that carry the sort and filter). Errors
are grpc-gateway's body ``{"error", "code", "message", "details"}`` with the gRPC code.
"""
from __future__ import annotations

import base64
import calendar
import json
import time

__all__ = ["KfpError", "rfc3339", "experiment_json", "pipeline_json", "version_json", "run_json", "task_details",
           "docs_of", "spec_of_docs", "list_page"]

#: ``filter.proto`` Predicate.Operation, by number and by name.
_OPS = {0: "OPERATION_UNSPECIFIED", 1: "EQUALS", 2: "NOT_EQUALS", 3: "GREATER_THAN", 5: "GREATER_THAN_EQUALS",
        6: "LESS_THAN", 7: "LESS_THAN_EQUALS", 8: "IN", 9: "IS_SUBSTRING"}
#: MLMD execution states as the v2beta1 RuntimeState of a task (``backend/src/apiserver/server/api_converter.go``).
_TASK_STATE = {"NEW": "PENDING", "RUNNING": "RUNNING", "COMPLETE": "SUCCEEDED", "CACHED": "SUCCEEDED",
               "FAILED": "FAILED", "CANCELED": "CANCELED"}
_GRPC = {400: 3, 404: 5, 409: 6, 412: 9, 500: 13, 501: 12}


class KfpError(Exception):
    """An API error: HTTP ``code`` and a one-line ``message`` naming the field and the fix."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def body(self) -> dict:
        """grpc-gateway's error body."""
        return {"error": self.message, "code": _GRPC.get(self.code, 2), "message": self.message, "details": []}


def rfc3339(ts: float | None) -> str | None:
    """Seconds since the epoch as RFC 3339 UTC (None stays None)."""
    return None if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _ts(text: str | None) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))) if text else None
    except (ValueError, TypeError):
        return None


def experiment_json(e: dict) -> dict:
    """A V2beta1Experiment."""
    return {"experiment_id": e["id"], "display_name": e["display_name"], "description": e.get("description") or "",
            "created_at": rfc3339(e["created_ts"]), "namespace": e.get("namespace") or "",
            "storage_state": e["storage_state"]}


def pipeline_json(p: dict) -> dict:
    """A V2beta1Pipeline."""
    return {"pipeline_id": p["id"], "display_name": p["display_name"], "name": p["display_name"],
            "description": p.get("description") or "", "created_at": rfc3339(p["created_ts"]),
            "namespace": p.get("namespace") or ""}


def version_json(v: dict, *, with_spec: bool = True) -> dict:
    """A V2beta1PipelineVersion (``pipeline_spec``: the spec, or ``{pipeline_spec, platform_spec}``)."""
    out = {"pipeline_id": v["pipeline_id"], "pipeline_version_id": v["id"], "display_name": v["display_name"],
           "name": v["display_name"], "description": v.get("description") or "", "created_at": rfc3339(v["created_ts"])}
    if with_spec:
        out["pipeline_spec"] = spec_of_docs(v["spec"])
    return out


def docs_of(pipeline_spec, field: str = "pipeline_spec") -> list[dict]:
    """The compiled documents of a request's ``pipeline_spec``: the PipelineSpec itself, or
    ``{pipeline_spec, platform_spec}`` as kfp sends it with kfp-kubernetes settings."""
    if not isinstance(pipeline_spec, dict) or not pipeline_spec:
        raise KfpError(400, f"{field}: expected the compiled pipeline (a JSON object), got "
                            f"{type(pipeline_spec).__name__}; compile it with kfp's compiler")
    if "pipeline_spec" in pipeline_spec:
        docs = [pipeline_spec["pipeline_spec"]]
        if pipeline_spec.get("platform_spec"):
            docs.append(pipeline_spec["platform_spec"])
        return docs
    return [pipeline_spec]


def spec_of_docs(docs: list) -> dict:
    """The inverse of :func:`docs_of`."""
    docs = [d for d in docs or [] if isinstance(d, dict)]
    if len(docs) > 1:
        return {"pipeline_spec": docs[0], "platform_spec": docs[1]}
    return docs[0] if docs else {}


def task_details(obj: dict, executions: list[dict], run_id: str) -> list[dict]:
    """``run_details.task_details`` of a Run: one PipelineTaskDetail per MLMD execution (container
    and DAG executions, the root DAG included, as KFP lists them), plus the tasks the Run's final
    status lists without an execution (SKIPPED ones)."""
    out, names = [], set()
    by_id = {x["id"]: x for x in executions}
    for x in executions:
        state = _TASK_STATE.get(x["state"], "RUNTIME_STATE_UNSPECIFIED")
        parent = by_id.get(x.get("parent_id"))
        d = {"run_id": run_id, "task_id": str(x["id"]), "display_name": x["name"], "create_time": x.get("created_at"),
             "start_time": x.get("started_at"), "end_time": x.get("finished_at"), "state": state,
             "execution_id": str(x["id"]), "pod_name": x.get("pod_name") or "",
             "parent_task_id": str(parent["id"]) if parent else "",
             "child_tasks": [{"task_id": str(c["id"]), "pod_name": c.get("pod_name") or ""}
                             for c in executions if c.get("parent_id") == x["id"]],
             "state_history": [{"update_time": x.get("finished_at") or x.get("started_at") or x.get("created_at"),
                                "state": state}]}
        if x.get("error"):
            d["error"] = {"code": 2, "message": x["error"]}
        out.append({k: v for k, v in d.items() if v is not None})
        names.add(x["name"])
    for t in ((obj.get("status") or {}).get("runDetails") or {}).get("taskDetails") or []:
        if t.get("taskId") in names or t.get("displayName") in names:
            continue
        d = {"run_id": run_id, "task_id": t.get("taskId", ""), "display_name": t.get("displayName") or t.get("taskId", ""),
             "state": t.get("state"), "pod_name": t.get("podName", ""), "start_time": t.get("startTime"),
             "end_time": t.get("endTime"), "child_tasks": []}
        if (t.get("error") or {}).get("message"):
            d["error"] = {"code": 2, "message": t["error"]["message"]}
        out.append({k: v for k, v in d.items() if v is not None})
    return out


def run_json(obj: dict, *, run_id: str, experiment_id: str, storage_state: str, details: list[dict] | None,
             canceling: bool = False) -> dict:
    """A V2beta1Run from a Run object (state, times and error from its status)."""
    meta, spec, st = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    ann = meta.get("annotations") or {}
    state = st.get("state") or "PENDING"
    if canceling and state in ("PENDING", "RUNNING"):
        state = "CANCELING"
    rc = spec.get("runtimeConfig") or {}
    created = meta.get("creationTimestamp")
    out = {"run_id": run_id, "experiment_id": experiment_id,
           "display_name": ann.get("localflow.dev/kfp-display-name") or spec.get("displayName") or meta["name"],
           "storage_state": storage_state, "description": ann.get("localflow.dev/kfp-description", ""),
           "pipeline_spec": spec_of_docs(spec.get("pipelineSpec") or []),
           "runtime_config": {"parameters": rc.get("parameters") or {},
                              **({"pipeline_root": rc["pipelineRoot"]} if rc.get("pipelineRoot") else {})},
           "service_account": ann.get("localflow.dev/kfp-service-account", ""),
           "created_at": created, "scheduled_at": created, "state": state,
           "state_history": [{"update_time": st.get("finishedAt") or created, "state": state}]}
    if ann.get("localflow.dev/kfp-pipeline-version-id"):
        out["pipeline_version_reference"] = {"pipeline_id": ann.get("localflow.dev/kfp-pipeline-id", ""),
                                             "pipeline_version_id": ann["localflow.dev/kfp-pipeline-version-id"]}
    if ann.get("localflow.dev/kfp-recurring-run-id"):
        out["recurring_run_id"] = ann["localflow.dev/kfp-recurring-run-id"]
        out["scheduled_at"] = ann.get("localflow.dev/kfp-scheduled-at") or created
    if st.get("finishedAt"):
        out["finished_at"] = st["finishedAt"]
    if (st.get("error") or {}).get("message"):
        out["error"] = {"code": 2, "message": st["error"]["message"], "details": []}
    if details is not None:
        out["run_details"] = {"task_details": details}
    return out


# ---------------------------------------------------------------------- listing
def _predicates(raw: str | None) -> list[dict]:
    if not raw:
        return []
    try:
        doc = json.loads(raw)
    except ValueError:
        raise KfpError(400, f"filter: not JSON ({raw[:60]!r}); send "
                            '{"predicates": [{"key": ..., "operation": "EQUALS", "string_value": ...}]}') from None
    preds = doc.get("predicates") if isinstance(doc, dict) else None
    if not isinstance(preds, list):
        raise KfpError(400, "filter.predicates: expected a list of predicates")
    out = []
    for i, p in enumerate(preds):
        if not isinstance(p, dict) or not p.get("key"):
            raise KfpError(400, f"filter.predicates[{i}].key: required")
        op = p.get("operation", p.get("op"))
        name = _OPS.get(op) if isinstance(op, int) else (op if op in _OPS.values() else None)
        if name in (None, "OPERATION_UNSPECIFIED"):
            raise KfpError(400, f"filter.predicates[{i}].operation: {op!r} is not one of "
                                f"{', '.join(v for v in _OPS.values() if v != 'OPERATION_UNSPECIFIED')}")
        value = None
        for k in ("string_value", "stringValue", "int_value", "intValue", "long_value", "longValue",
                  "timestamp_value", "timestampValue", "bool_value", "boolValue"):
            if k in p:
                value = p[k]
                break
        for k in ("string_values", "stringValues", "int_values", "intValues", "long_values", "longValues"):
            if k in p:
                value = list((p[k] or {}).get("values") or [])
                break
        out.append({"key": p["key"], "op": name, "value": value})
    return out


def _field(item: dict, key: str, id_key: str):
    key = {"name": "display_name", "id": id_key, "run_id": id_key}.get(key, key)
    return item.get(key)


def _matches(item: dict, pred: dict, id_key: str) -> bool:
    v, want, op = _field(item, pred["key"], id_key), pred["value"], pred["op"]
    if pred["key"] in ("created_at", "finished_at", "scheduled_at"):
        v = _ts(v)
        want = [(_ts(w) if isinstance(w, str) else w) for w in want] if isinstance(want, list) else (
            _ts(want) if isinstance(want, str) else want)
    if op == "IN":
        return v in (want or [])
    if op == "IS_SUBSTRING":
        return str(want) in str(v or "")
    if op == "EQUALS":
        return v == want or str(v) == str(want)
    if op == "NOT_EQUALS":
        return not (v == want or str(v) == str(want))
    if v is None or want is None:
        return False
    try:
        return {"GREATER_THAN": v > want, "GREATER_THAN_EQUALS": v >= want,
                "LESS_THAN": v < want, "LESS_THAN_EQUALS": v <= want}[op]
    except TypeError:
        return False


def list_page(items: list[dict], query, *, id_key: str, what: str) -> tuple[list[dict], int, str]:
    """Filter, sort and page ``items`` (JSON shapes, oldest first) per ``page_token``/``page_size``/``sort_by``/
    ``filter`` of ``query``; returns ``(page, total_size, next_page_token)``."""
    token = query.get("page_token") or ""
    state = {}
    if token:
        try:
            state = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
            int(state["offset"])
        except Exception:
            raise KfpError(400, f"page_token: {token[:40]!r} is not a token this server gave; "
                                "pass next_page_token of the previous page") from None
    sort_by = query.get("sort_by") or state.get("sort_by") or ""
    raw_filter = query.get("filter") or state.get("filter") or ""
    try:
        size = int(query.get("page_size") or 0)
    except ValueError:
        raise KfpError(400, f"page_size: {query.get('page_size')!r} is not an integer") from None
    if size < 0:
        raise KfpError(400, f"page_size: {size} is negative; pass a positive size")
    preds = _predicates(raw_filter)
    parts = sort_by.split()
    key, desc = (parts[0] if parts else "created_at"), (len(parts) > 1 and parts[1].lower() == "desc")
    if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
        raise KfpError(400, f"sort_by: {sort_by!r}; expected 'FIELD' or 'FIELD desc'")
    known = set().union(*(i.keys() for i in items)) | {"name", "id", "created_at"} if items else {"name", "id", "created_at", key}
    if key not in known:
        raise KfpError(400, f"sort_by: {what} have no field {key!r}; sort by created_at, name or id")
    kept = [(n, i) for n, i in enumerate(items) if all(_matches(i, p, id_key) for p in preds)]
    # ties (created_at has whole seconds) keep the items' own order, oldest first (reversed for desc)
    kept.sort(key=lambda e: (str(_field(e[1], key, id_key) or ""), e[0]), reverse=desc)
    kept = [i for _, i in kept]
    offset = int(state.get("offset") or 0)
    page = kept[offset:offset + size] if size else kept[offset:]
    nxt = ""
    if size and offset + size < len(kept):
        nxt = base64.urlsafe_b64encode(json.dumps({"offset": offset + size, "sort_by": sort_by,
                                                   "filter": raw_filter}).encode()).decode().rstrip("=")
    return page, len(kept), nxt
