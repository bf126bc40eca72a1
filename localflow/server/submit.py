"""Handing work to the server: create a runnable object that the server picks up and runs.

A *submission* is the object a run would create, stored before anything runs: a pipeline's ``Run``
(``pipelines.kubeflow.org/v2beta1``, ``spec.pipelineSpec`` holding the compiled IR documents,
``status.state: PENDING``) or the training job itself (``TFJob``, ``PyTorchJob``, ..., ``TrainJob``)
without status. Its annotation ``localflow.dev/submission`` carries what ``localflow run`` was
given (parameters as typed, executor, config path, cache, install, the spec path, the working
directory, the file's other documents). Any object of a runnable kind with no live owner is
picked up the same way, so an object created by another writer runs too (the store is the API,
as in Kubernetes; the options then default).

The checks ``localflow run`` makes before it creates anything are made here too, in the command's
process, so a bad spec or parameter is refused at once with the same one line and exit code 2.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from localflow.errors import LocalflowError
from localflow.workspace import Workspace

from .record import server_dir, server_status

__all__ = ["SUBMISSION_ANNOTATION", "MANAGER_ANNOTATION", "runnable_kinds", "submit", "outcome", "ensure_server",
           "submission_of"]

SUBMISSION_ANNOTATION = "localflow.dev/submission"
#: The server (``<pid>@<start time>``) that claimed the object; a claim by a dead server is void.
MANAGER_ANNOTATION = "localflow.dev/manager"


def runnable_kinds() -> list[str]:
    """Kinds the server runs: a pipeline's ``Run``, then every job kind of the kind table
    (:func:`localflow.kinds.runnable`: the ``kubeflow.org/v1`` training jobs, ``TrainJob``, ``Job``)."""
    from localflow import kinds as kind_table

    return ["Run", *(k.kind for k in kind_table.runnable(jobs_only=True))]


def outcome(obj: dict) -> tuple[str | None, str | None]:
    """``(state, message)`` of a finished runnable object (``SUCCEEDED``/``FAILED``/``CANCELED``),
    ``(None, None)`` while it is not finished: the kind table's ``finished`` predicate
    (:mod:`localflow.kinds`: a ``Run``'s ``status.state``, a job's terminal condition)."""
    from localflow import kinds as kind_table

    k = kind_table.entry_of(obj)
    done = k.finished(obj) if k is not None and k.finished is not None else None
    return done if done is not None else (None, None)


def submission_of(obj: dict) -> dict:
    """The options stored with a submitted object (``{}`` for an object created by another writer)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(SUBMISSION_ANNOTATION)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def _config_path(config) -> str | None:
    """The config ``localflow run`` would read, as an absolute path (the server runs elsewhere)."""
    from localflow.config import load_config

    cfg = load_config(config)  # SpecError for a bad config, here and now
    return str(Path(cfg.path).resolve()) if getattr(cfg, "path", None) else None


def submit(spec, params: dict | None, executor: str, ws: Workspace, *, config=None, cache: bool = True,
           install: bool | None = None, namespace: str = "default", run_name: str | None = None,
           output: str | None = None) -> dict:
    """Create the submission of ``spec`` in ``ws`` and return the stored object.

    Raises what ``localflow run`` raises before it creates anything (:class:`SpecError` for a bad
    spec, parameter, name or config; :class:`AlreadyExists` when the job's name is taken).
    """
    from localflow import api, runners
    from localflow.fakes import ObjectStore
    from localflow.training.kinds import KINDS
    from localflow.validation import check_dns1123_label, check_dns1123_subdomain

    kind, docs, source = api.load_spec(spec)
    check_dns1123_label("namespace", namespace)
    check_dns1123_subdomain("run_name", run_name, required=False)
    api._runner(kind, source)  # SpecError naming the runnable kinds for a kind localflow cannot run
    options = {"params": dict(params or {}), "executor": executor, "config": _config_path(config), "cache": cache,
               "install": install, "source": source, "cwd": os.getcwd(), "output": output}
    ws.ensure()
    with ObjectStore(ws.db_path) as store:
        if kind == "PipelineSpec":
            obj = _pipeline_submission(docs, source, options, ws, namespace, run_name)
            return store.create(obj)
        job = next((d for d in docs if isinstance(d, dict) and d.get("kind") in runnable_kinds()[1:]), None)
        if job is None:
            raise runners._refusal(docs, source)
        runners._refuse_params(params, job["kind"])
        job = runners._named(job, run_name, namespace)
        if job["kind"] == "TrainJob":
            if (job.get("spec") or {}).get("suspend") is True:
                runners._refuse_suspended(job, "TrainJob.spec.suspend")
        elif job["kind"] in KINDS:
            from localflow.specs.training import load_job

            if ((job.get("spec") or {}).get("runPolicy") or {}).get("suspend") is True:
                runners._refuse_suspended(job, f"{job['kind']}.spec.runPolicy.suspend")
            load_job(copy.deepcopy(job))  # the spec's checks, before anything is stored
        others = [d for d in docs if d is not job and isinstance(d, dict) and d.get("kind") != job["kind"]]
        options["docs"] = others
        job.pop("status", None)
        meta = job["metadata"]
        meta["annotations"] = {**(meta.get("annotations") or {}), SUBMISSION_ANNOTATION: json.dumps(options)}
        return runners._apply(store.create, job, source)


def _pipeline_submission(docs, source, options, ws, namespace, run_name) -> dict:
    """The ``Run`` of a pipeline, checked as :func:`localflow.runners.run_pipeline` checks it."""
    from localflow.controllers.pipelinerun import RUN_API_VERSION, PipelineRunController
    from localflow.pipelines.launcher import k8s_name
    from localflow.pipelines.values import parse_cli_value
    from localflow.specs.pipeline import load_pipeline

    doc = load_pipeline(docs, source or "pipeline.yaml")
    given = dict(options["params"])
    defs = ((doc.spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for k, v in list(given.items()):
        if isinstance(v, str) and k in defs and defs[k].get("parameterType") != "STRING":
            given[k] = parse_cli_value(v, defs[k].get("parameterType"), f"-p {k}")
    ctl = PipelineRunController(doc, parameters=given, store=None, scheduler=None, metadata=None, workspace=ws,
                                namespace=namespace, run_name=run_name, spec_path=source)
    return {"apiVersion": RUN_API_VERSION, "kind": "Run",
            "metadata": {"name": ctl.run_name, "namespace": namespace,
                         "labels": {"pipelines.kubeflow.org/pipeline": k8s_name(ctl.pipeline_name, 63)},
                         "annotations": {SUBMISSION_ANNOTATION: json.dumps(options)}},
            "spec": {"displayName": ctl.run_name, "pipelineName": ctl.pipeline_name,
                     "pipelineSpec": json.loads(json.dumps(docs, default=str)),
                     "runtimeConfig": {"parameters": json.loads(json.dumps(ctl.params, default=str))},
                     "specPath": source},
            "status": {"state": "PENDING"}}


def ensure_server(ws: Workspace, timeout: float = 30.0) -> tuple[dict, bool]:
    """The workspace's server status, starting ``localflow serve`` detached in the background when
    none runs (its output to ``<workspace>/server/serve.log``). Returns ``(status, started)``;
    raises :class:`LocalflowError` with the log's last line when it does not come up in ``timeout``."""
    status = server_status(ws)
    if status["running"]:
        return status, False
    ws.ensure()
    d = server_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    log = d / "serve.log"
    with open(log, "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen([sys.executable, "-m", "localflow", "serve", "--workspace", str(ws.root)],
                                stdin=devnull, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=str(ws.root))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = server_status(ws)
        if status["running"]:
            return status, True
        if proc.poll() is not None:
            status = server_status(ws)  # another server won the race: use it
            if status["running"]:
                return status, False
            break
        time.sleep(0.05)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    if proc.poll() is None:
        proc.kill()
    raise LocalflowError(f"the localflow server did not start: {lines[-1] if lines else 'no output'}",
                         fix=f"see {log}, or start it yourself: localflow serve -W {ws.root}")
