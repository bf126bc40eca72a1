"""The KFP v2beta1 REST API over the workspace, so ``kfp.Client(host=URL)`` works unchanged.

Routes under ``/apis/v2beta1/`` (mounted by :func:`localflow.apiserver.app.make_app` before the
Kubernetes ``/apis/{group}/{version}`` routes): healthz, experiments, pipelines (multipart upload
``uploadfile``, versions), runs (create, get with ``run_details.task_details``, list with paging,
sorting and filter predicates, ``:terminate``, ``:archive``, ``:unarchive``, ``:retry``, delete).
It follows kubeflow/pipelines ``backend/src/apiserver/server/{run,experiment,pipeline,pipeline_upload}_server.go``
and the ``backend/api/v2beta1/*.proto`` shapes (:mod:`.kfpshapes`).

A run created here is the same ``pipelines.kubeflow.org/v2beta1 Run`` submission ``localflow run
--detach`` stores (:func:`localflow.server.submit._pipeline_submission`: the same checks, the same
object), picked up and run by the server's workers with the same metadata; ``localflow get runs``
lists it. What KFP keeps that a Run object has no field for (experiment, display name, pipeline
version) rides on annotations ``localflow.dev/kfp-*``; experiments and pipelines live in the
``kfp_*`` tables (:mod:`.kfpstore`). Terminate sends SIGTERM to the process running the Run (the
server's worker, or a foreground ``localflow run``), which cancels it as Ctrl-C does: Pods killed,
everything recorded CANCELED.
"""
from __future__ import annotations

import email.parser
import email.policy
import json
import os
import signal
import time
import uuid
from pathlib import Path

import yaml
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from localflow.apiserver import kfpschedule
from localflow.apiserver.kfpshapes import (KfpError, docs_of, experiment_json, list_page, pipeline_json, rfc3339,
                                           run_json, spec_of_docs, task_details, version_json)
from localflow.apiserver.kfpstore import KfpStore
from localflow.errors import LocalflowError, NotFound

__all__ = ["routes", "KFP_PREFIX", "RUN_ID_ANNOTATION"]

KFP_PREFIX = "/apis/v2beta1"
RUN_ID_ANNOTATION = "localflow.dev/kfp-run-id"
_EXPERIMENT = "localflow.dev/kfp-experiment-id"
_DISPLAY = "localflow.dev/kfp-display-name"
_MAX_UPLOAD = 32 << 20


def _json(body, code: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=code, media_type="application/json")


class KfpApi:
    """The handlers, over the object store ``store`` of the workspace database ``db_path``."""

    def __init__(self, store, db_path):
        self.store, self.db_path = store, Path(db_path)
        self._kfp: KfpStore | None = None
        self.scheduler = kfpschedule.RecurringScheduler(self)

    @property
    def kfp(self) -> KfpStore:
        """The ``kfp_*`` tables (opened on first use)."""
        if self._kfp is None:
            self._kfp = KfpStore(self.db_path)
        return self._kfp

    @property
    def ws(self):
        """The workspace of the database."""
        from localflow.workspace import resolve_workspace

        return resolve_workspace(self.db_path.parent)

    # ------------------------------------------------------------------ dispatch
    async def __call__(self, request: Request) -> Response:
        parts = [p for p in request.path_params.get("rest", "").split("/") if p]
        m = request.method
        try:
            body = await self._body(request)
            return _json(await run_in_threadpool(self._route, m, parts, request.query_params, body))
        except KfpError as exc:
            return _json(exc.body(), exc.code)
        except NotFound as exc:
            return _json(KfpError(404, str(exc)).body(), 404)
        except LocalflowError as exc:  # SpecError and the like: the one line, as a bad request
            return _json(KfpError(400, str(exc)).body(), 400)

    async def _body(self, request: Request):
        if request.method not in ("POST", "PUT", "PATCH"):
            return None
        raw = await request.body()
        if len(raw) > _MAX_UPLOAD:
            raise KfpError(413, f"request body: {len(raw)} bytes is more than the {_MAX_UPLOAD >> 20} MiB limit")
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            files = {}
            for part in msg.iter_parts() if msg.is_multipart() else []:
                name = part.get_param("name", header="content-disposition")
                files[name] = part.get_payload(decode=True) or b""
            return {"__files__": files}
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise KfpError(400, "request body: not valid JSON") from None

    def _route(self, m: str, parts: list[str], q, body):
        head, rest = (parts[0] if parts else ""), parts[1:]
        if head == "healthz" and m == "GET":
            from localflow import __version__

            return {"commit_sha": "localflow", "tag_name": __version__, "multi_user": False, "pipeline_store": "database"}
        if head == "experiments":
            return self._experiments(m, rest, q, body)
        if head == "pipelines":
            return self._pipelines(m, rest, q, body)
        if head == "runs":
            return self._runs(m, rest, q, body)
        if head == "recurringruns":
            return kfpschedule.handle(self, m, rest, q, body)
        raise KfpError(404, f"{KFP_PREFIX}/{'/'.join(parts)}: no such KFP v2beta1 endpoint")

    # ------------------------------------------------------------------ experiments
    def _experiments(self, m, rest, q, body):
        if not rest:
            if m == "POST":
                name = (body or {}).get("display_name")
                if not isinstance(name, str) or not name.strip():
                    raise KfpError(400, "experiment.display_name: required (a non-empty string)")
                if any(e["display_name"] == name for e in self.kfp.experiments()):
                    raise KfpError(409, f"experiment.display_name: an experiment named {name!r} exists; "
                                        "choose another name or use it")
                return experiment_json(self.kfp.create_experiment(name, body.get("description") or "",
                                                                  body.get("namespace") or ""))
            if m == "GET":
                items = [experiment_json(e) for e in self.kfp.experiments()]
                page, total, nxt = list_page(items, q, id_key="experiment_id", what="experiments")
                return {"experiments": page, "total_size": total, "next_page_token": nxt}
            raise KfpError(405, f"{m} is not allowed on experiments")
        eid, action = _split_action(rest[0])
        e = self.kfp.experiment(eid)
        if e is None:
            raise KfpError(404, f"experiment_id: no experiment {eid!r}; list them with list_experiments()")
        if action in ("archive", "unarchive") and m == "POST":
            self.kfp.set_experiment_state(eid, "ARCHIVED" if action == "archive" else "AVAILABLE")
            return {}
        if m == "GET" and not action:
            return experiment_json(e)
        if m == "DELETE" and not action:
            self.kfp.delete_experiment(eid)
            return {}
        raise KfpError(405, f"{m} is not allowed on experiments/{rest[0]}")

    # ------------------------------------------------------------------ pipelines
    def _pipelines(self, m, rest, q, body):
        if rest == ["upload"] and m == "POST":
            name = q.get("name") or q.get("display_name")
            docs = _uploaded_docs(body)
            if not name:
                name = ((docs[0].get("pipelineInfo") or {}).get("name")) or ""
            if not name:
                raise KfpError(400, "name: required (the pipeline's display name, ?name=...)")
            if any(p["display_name"] == name for p in self.kfp.pipelines()):
                raise KfpError(409, f"name: a pipeline named {name!r} exists; upload a version with "
                                    "upload_pipeline_version, or choose another name")
            p = self.kfp.create_pipeline(name, q.get("description") or "", q.get("namespace") or "")
            self.kfp.create_version(p["id"], name, q.get("description") or "", docs)
            return pipeline_json(p)
        if rest == ["upload_version"] and m == "POST":
            pid = q.get("pipelineid") or ""
            if self.kfp.pipeline(pid) is None:
                raise KfpError(404, f"pipelineid: no pipeline {pid!r}; upload it first with upload_pipeline")
            name = q.get("name") or q.get("display_name")
            if not name:
                raise KfpError(400, "name: required (the version's name, ?name=...)")
            if any(v["display_name"] == name for v in self.kfp.versions(pid)):
                raise KfpError(409, f"name: pipeline {pid} already has a version named {name!r}; choose another name")
            docs = _uploaded_docs(body)
            return version_json(self.kfp.create_version(pid, name, q.get("description") or "", docs))
        if not rest:
            if m == "GET":
                items = [pipeline_json(p) for p in self.kfp.pipelines()]
                page, total, nxt = list_page(items, q, id_key="pipeline_id", what="pipelines")
                return {"pipelines": page, "total_size": total, "next_page_token": nxt}
            raise KfpError(405, "create pipelines with POST /apis/v2beta1/pipelines/upload (multipart field uploadfile)")
        pid = rest[0]
        p = self.kfp.pipeline(pid)
        if p is None:
            raise KfpError(404, f"pipeline_id: no pipeline {pid!r}; list them with list_pipelines()")
        if len(rest) == 1:
            if m == "GET":
                return pipeline_json(p)
            if m == "DELETE":
                self.kfp.delete_pipeline(pid)
                return {}
        elif rest[1] == "versions" and len(rest) == 2 and m == "GET":
            items = [version_json(v, with_spec=False) for v in self.kfp.versions(pid)]
            page, total, nxt = list_page(items, q, id_key="pipeline_version_id", what="pipeline versions")
            return {"pipeline_versions": page, "total_size": total, "next_page_token": nxt}
        elif rest[1] == "versions" and len(rest) == 3:
            v = self.kfp.version(rest[2])
            if v is None or v["pipeline_id"] != pid:
                raise KfpError(404, f"pipeline_version_id: pipeline {pid} has no version {rest[2]!r}")
            if m == "GET":
                return version_json(v)
            if m == "DELETE":
                self.kfp.delete_version(v["id"])
                return {}
        raise KfpError(405, f"{m} is not allowed on pipelines/{'/'.join(rest)}")

    # ------------------------------------------------------------------ runs
    def _runs(self, m, rest, q, body):
        if not rest:
            if m == "POST":
                return self.create_run(body or {})
            if m == "GET":
                return self._list_runs(q)
            raise KfpError(405, f"{m} is not allowed on runs")
        rid, action = _split_action(rest[0])
        obj = self._find_run(rid)
        if not action and m == "GET":
            return self._run_json(obj, details=True)
        if not action and m == "DELETE":
            if (obj.get("status") or {}).get("state") in ("PENDING", "RUNNING", None):
                self._terminate(obj)
            self.store.delete("Run", obj["metadata"]["name"], obj["metadata"].get("namespace") or "default")
            return {}
        if m != "POST":
            raise KfpError(405, f"{m} is not allowed on runs/{rest[0]}")
        if action == "terminate":
            self._terminate(obj)
            return {}
        if action in ("archive", "unarchive"):
            self.kfp.set_run_storage(self._run_id(obj), "ARCHIVED" if action == "archive" else "AVAILABLE")
            return {}
        if action == "retry":
            return self._retry(obj)
        raise KfpError(404, f"runs/{rest[0]}: unknown action {action!r}; use terminate, archive, unarchive or retry")

    def _run_id(self, obj: dict) -> str:
        return (obj["metadata"].get("annotations") or {}).get(RUN_ID_ANNOTATION) or obj["metadata"]["uid"]

    def _runs_all(self) -> list[dict]:
        return self.store.list("Run", None)

    def _find_run(self, rid: str) -> dict:
        for obj in self._runs_all():
            if rid in (self._run_id(obj), obj["metadata"]["uid"], (obj.get("status") or {}).get("runId")):
                return obj
        raise KfpError(404, f"run_id: no run {rid!r}; list them with list_runs()")

    def _run_json(self, obj: dict, *, details: bool, default_eid: str | None = None, states=None) -> dict:
        ann = obj["metadata"].get("annotations") or {}
        rid = self._run_id(obj)
        eid = ann.get(_EXPERIMENT) or default_eid or self.kfp.default_experiment()["id"]
        storage = (states if states is not None else self.kfp.storage_states()).get(rid, "AVAILABLE")
        tasks = None
        if details:
            mid = (obj.get("status") or {}).get("runId")
            executions = []
            if mid:
                from localflow.metadata import MetadataStore

                with MetadataStore(self.db_path) as md:
                    executions = md.list_executions(run_id=mid)
            tasks = task_details(obj, executions, rid)
        return run_json(obj, run_id=rid, experiment_id=eid, storage_state=storage, details=tasks)

    def _list_runs(self, q) -> dict:
        default = self.kfp.default_experiment()["id"]
        states = self.kfp.storage_states()
        items = [self._run_json(o, details=False, default_eid=default, states=states) for o in self._runs_all()]
        if q.get("experiment_id"):
            items = [i for i in items if i["experiment_id"] == q["experiment_id"]]
        page, total, nxt = list_page(items, q, id_key="run_id", what="runs")
        return {"runs": page, "total_size": total, "next_page_token": nxt}

    def create_run(self, body: dict, extra: dict | None = None) -> dict:
        """Store the Run submission of a V2beta1Run request ``body`` (``extra``: more annotations);
        returns the new run's JSON."""
        created = self.store.create(self.prepare_run(body, extra=extra))
        return self._run_json(created, details=True)

    def prepare_run(self, body: dict, *, field: str = "run", extra: dict | None = None) -> dict:
        """The Run object ``localflow run --detach`` would store for ``body``, checked as it checks
        one (KfpError/SpecError naming the field otherwise); nothing is stored."""
        from localflow.pipelines.launcher import k8s_name, random_suffix
        from localflow.server.submit import SUBMISSION_ANNOTATION, _pipeline_submission

        if not isinstance(body, dict):
            raise KfpError(400, f"{field}: expected a JSON object")
        ref = body.get("pipeline_version_reference") or {}
        ann = dict(extra or {})
        if body.get("pipeline_spec"):
            docs = docs_of(body["pipeline_spec"], f"{field}.pipeline_spec")
        elif ref.get("pipeline_version_id") or ref.get("pipeline_id") or body.get("pipeline_version_id"):
            vid = ref.get("pipeline_version_id") or body.get("pipeline_version_id")
            if not vid:
                versions = self.kfp.versions(ref["pipeline_id"])
                if not versions:
                    raise KfpError(404, f"{field}.pipeline_version_reference.pipeline_id: no pipeline "
                                        f"{ref['pipeline_id']!r} with a version; upload it with upload_pipeline")
                vid = versions[-1]["id"]
            v = self.kfp.version(vid)
            if v is None:
                raise KfpError(404, f"{field}.pipeline_version_reference.pipeline_version_id: no pipeline version {vid!r}")
            docs = v["spec"]
            ann.update({"localflow.dev/kfp-pipeline-id": v["pipeline_id"], "localflow.dev/kfp-pipeline-version-id": vid})
        else:
            raise KfpError(400, f"{field}.pipeline_spec: required (the compiled pipeline), or "
                                f"{field}.pipeline_version_reference with an uploaded pipeline version")
        eid = body.get("experiment_id") or self.kfp.default_experiment()["id"]
        if self.kfp.experiment(eid) is None:
            raise KfpError(404, f"{field}.experiment_id: no experiment {eid!r}; create it with create_experiment()")
        rc = body.get("runtime_config") or {}
        if not isinstance(rc, dict):
            raise KfpError(400, f"{field}.runtime_config: expected an object {{parameters, pipeline_root}}")
        params = rc.get("parameters") or {}
        if not isinstance(params, dict):
            raise KfpError(400, f"{field}.runtime_config.parameters: expected an object of parameter names to values")
        docs = json.loads(json.dumps(docs))
        if not isinstance(docs[0], dict) or "root" not in docs[0] or "pipelineInfo" not in docs[0]:
            raise KfpError(400, f"{field}.pipeline_spec: not a compiled KFP pipeline (no pipelineInfo/root); "
                                "send the JSON of kfp.compiler.Compiler's output")
        params = _typed_params(params, docs[0], f"{field}.runtime_config.parameters")
        if rc.get("pipeline_root"):
            if not isinstance(rc["pipeline_root"], str):
                raise KfpError(400, f"{field}.runtime_config.pipeline_root: expected a string (a path or URI)")
            docs[0]["defaultPipelineRoot"] = rc["pipeline_root"]
        display = body.get("display_name") or ""
        if not isinstance(display, str):
            raise KfpError(400, f"{field}.display_name: expected a string")
        ws = self.ws
        ws.ensure()
        options = {"params": params, "executor": "subprocess", "config": None, "cache": True, "install": None,
                   "source": None, "cwd": str(ws.root), "output": None}
        name = f"{k8s_name(display, 50)}-{random_suffix()}" if display.strip() else None
        obj = _pipeline_submission(docs, f"{field}.pipeline_spec", options, ws, "default", name)
        meta = obj["metadata"]
        meta["annotations"] = {**meta["annotations"], SUBMISSION_ANNOTATION: json.dumps(options),
                               RUN_ID_ANNOTATION: str(uuid.uuid4()), _EXPERIMENT: eid, _DISPLAY: display or meta["name"],
                               **ann,
                               **({"localflow.dev/kfp-description": body["description"]} if body.get("description") else {}),
                               **({"localflow.dev/kfp-service-account": body["service_account"]}
                                  if body.get("service_account") else {})}
        obj["spec"]["specPath"] = None
        return obj

    def _terminate(self, obj: dict) -> None:
        """Cancel a run that has not ended: SIGTERM to the process running it (it records CANCELED
        and kills the Pods); a Run no process has picked up yet is ended CANCELED here."""
        from localflow.server.record import alive, server_dir

        if (obj.get("status") or {}).get("state") not in ("PENDING", "RUNNING", None):
            return
        meta = obj["metadata"]

        def running_process() -> str | None:
            ann = (self.store.get("Run", meta["name"], meta.get("namespace") or "default")["metadata"].get("annotations") or {})
            for proc in (ann.get("localflow.dev/owner-pid"), _read(server_dir(self.ws) / "runs" / f"{meta['uid']}.pid")):
                if proc and alive(proc):
                    return proc
            return None

        proc = running_process()
        if proc is None:
            st = dict(obj.get("status") or {})
            st.update(state="CANCELED", finishedAt=rfc3339(time.time()),
                      error={"message": "terminated through the KFP API before it started"})
            self.store.update_status("Run", meta["name"], st, meta.get("namespace") or "default")
            proc = running_process()  # picked up meanwhile: stop that process too
        if proc is not None:
            try:
                os.kill(int(proc.split("@")[0]), signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                pass

    def _retry(self, obj: dict) -> dict:
        """KFP's retry of a FAILED or CANCELED run: the same Run (same run_id, name, spec and
        parameters) submitted again; tasks that succeeded before are cache hits."""
        state = (obj.get("status") or {}).get("state")
        if state not in ("FAILED", "CANCELED"):
            raise KfpError(400, f"run_id: run {self._run_id(obj)} is {state}; only a FAILED or CANCELED run can be retried")
        meta, spec = obj["metadata"], obj.get("spec") or {}
        ann = {k: v for k, v in (meta.get("annotations") or {}).items()
               if k not in ("localflow.dev/owner-pid", "localflow.dev/manager")}
        ann.setdefault(RUN_ID_ANNOTATION, meta["uid"])
        labels = {k: v for k, v in (meta.get("labels") or {}).items() if k == "pipelines.kubeflow.org/pipeline"}
        rc = {"parameters": (spec.get("runtimeConfig") or {}).get("parameters") or {}}
        new = {"apiVersion": obj["apiVersion"], "kind": "Run",
               "metadata": {"name": meta["name"], "namespace": meta.get("namespace") or "default", "labels": labels,
                            "annotations": ann},
               "spec": {k: v for k, v in {**spec, "runtimeConfig": rc}.items()}, "status": {"state": "PENDING"}}
        self.store.delete("Run", meta["name"], meta.get("namespace") or "default")
        self.store.create(new)
        return {}


def _typed_params(params: dict, spec: dict, field: str) -> dict:
    """Parameters sent as strings for typed inputs (an int as ``"5"``) converted as KFP's driver
    reads them; a value that does not parse is refused naming ``field.NAME``."""
    from localflow.pipelines.values import parse_cli_value

    defs = ((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    out = dict(params)
    for k, v in params.items():
        kind = (defs.get(k) or {}).get("parameterType")
        if isinstance(v, str) and kind not in (None, "STRING"):
            try:
                out[k] = parse_cli_value(v, kind, f"{field}.{k}")
            except LocalflowError:
                raise KfpError(400, f"{field}.{k}: {v!r} is not a {kind}; send it as a JSON {kind.split('_')[-1].lower()} "
                                    "value") from None
    return out


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _split_action(segment: str) -> tuple[str, str]:
    """``"ID:terminate"`` -> ``("ID", "terminate")``; ``"ID"`` -> ``("ID", "")``."""
    rid, _, action = segment.partition(":")
    return rid, action


def _uploaded_docs(body) -> list[dict]:
    """The compiled documents of an upload's ``uploadfile`` part (YAML or JSON)."""
    files = (body or {}).get("__files__") if isinstance(body, dict) else None
    if not files or "uploadfile" not in files:
        raise KfpError(400, "uploadfile: required (multipart/form-data field uploadfile holding the compiled pipeline YAML)")
    try:
        docs = [d for d in yaml.safe_load_all(files["uploadfile"].decode("utf-8")) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise KfpError(400, f"uploadfile: not YAML or JSON ({str(exc).splitlines()[0]})") from None
    if len(docs) == 1 and isinstance(docs[0], dict) and "pipeline_spec" in docs[0]:
        docs = docs_of(docs[0], "uploadfile")
    if not docs or not isinstance(docs[0], dict) or "root" not in docs[0] or "pipelineInfo" not in docs[0]:
        raise KfpError(400, "uploadfile: not a compiled KFP pipeline (no pipelineInfo/root); "
                            "compile it with `kfp dsl compile` or kfp.compiler.Compiler")
    return [json.loads(json.dumps(d, default=str)) for d in docs]


def routes(store, db_path) -> list[Route]:
    """The KFP routes, to be placed before the Kubernetes ``/apis/{group}/...`` routes."""
    api = KfpApi(store, db_path)
    if db_path is not None and api.kfp.recurring_runs(enabled_only=True):
        api.scheduler.poke()  # recurring runs of an earlier server go on

    async def endpoint(request: Request) -> Response:
        return await api(request)

    return [Route(KFP_PREFIX + "/{rest:path}", endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]


__all__ += ["KfpApi", "spec_of_docs"]
