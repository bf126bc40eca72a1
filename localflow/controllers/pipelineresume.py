"""Resuming a pipeline run whose controller process died: DAG progress recomputed from the metadata.

A pipeline controller keeps no state that only lives in its memory: what it needs to continue a
run is in the workspace. At start it saves the run's pipeline (the PipelineSpec and platform
document it validated, and the run's options) to ``runs/<run id>/pipeline.json``; every task it
runs is an ML Metadata execution named by its task path (``for-loop-2[3].square``) holding its
state, attempt, outputs and artifacts; every DAG instance is a ``system.DAGExecution`` named by its
prefix. :func:`resume_controller` builds a controller for an unfinished Run object from those, and
its :meth:`~localflow.controllers.pipelinerun.PipelineRunController.run` walks the DAGs again from
the root, as the KFP v2 driver re-resolves a DAG (kubeflow/pipelines
``backend/src/v2/driver/driver.go``): conditions and loop items are recomputed from the same
inputs; a task whose newest execution is ``COMPLETE`` or ``CACHED`` is not run again, its outputs
(parameters, artifacts with their ids) are reused (:meth:`PriorRun.restore`); a task whose newest
execution was still ``NEW``/``RUNNING`` when the process died (its Pod's processes died with
that process: localflow's watchdog kills them) gets that execution ``FAILED`` with
:data:`LOST_ERROR` and its Pod ``Failed`` (reason ``Orphaned``), and runs again as a new attempt
(attempts lost this way do not count against ``retryPolicy.maxRetryCount``); a task that had
failed for good stays failed. DAG executions are reused, not duplicated.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from localflow.controllers.ownership import OWNER_PID_ANNOTATION, owner_alive, owner_annotations
from localflow.errors import LocalflowError
from localflow.pipelines.dagstate import DagTask
from localflow.specs.pipeline import PipelineDocument

#: The error a resumed run gives an execution that was unfinished when its controller process died.
LOST_ERROR = "its localflow process died while the task ran; the resumed run starts it again"
_DONE = ("COMPLETE", "CACHED")


def saved_pipeline_path(workspace, run_id: str) -> Path:
    """Where a run's pipeline is saved for a later resume: ``<workspace>/runs/<run id>/pipeline.json``."""
    return Path(workspace.root) / "runs" / str(run_id) / "pipeline.json"


def save_pipeline(workspace, run_id: str, doc: PipelineDocument, *, cache: bool) -> None:
    """Save what :func:`resume_controller` needs to rebuild the run: the validated PipelineSpec, its
    platform document and runtime config, and the ``cache`` option. Written atomically."""
    path = saved_pipeline_path(workspace, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pipelineSpec": doc.spec, "platform": doc.platform,
                               "runtimeConfig": doc.runtime_config, "cache": bool(cache)}))
    os.replace(tmp, path)


class PriorRun:
    """What the metadata holds of one run's earlier controller: its executions by task path.

    ``dags``: DAG instance prefix (``""`` for the root) -> execution id; ``tasks``: task path ->
    its container/importer executions, oldest first. Built by :meth:`load`, which also ends the
    executions left unfinished (``FAILED`` with :data:`LOST_ERROR`) and the run's Pods still
    Pending/Running (``Failed``, reason ``Orphaned``).
    """

    def __init__(self, dags: dict[str, int], tasks: dict[str, list[dict]]):
        self.dags = dags
        self.tasks = tasks

    @classmethod
    def load(cls, metadata, store, run_id: str, namespace: str) -> "PriorRun":
        dags: dict[str, int] = {}
        tasks: dict[str, list[dict]] = {}
        for x in metadata.list_executions(run_id=run_id):
            if x["type"] == "system.DAGExecution":
                dags["" if x["parent_id"] is None else x["name"]] = x["id"]
                continue
            if x["state"] in ("NEW", "RUNNING"):
                x = metadata.update_execution(x["id"], state="FAILED", finished=True, error=LOST_ERROR)
            tasks.setdefault(x["name"], []).append(x)
        for pod in store.list("Pod", namespace, label_selector={"localflow.dev/run-id": run_id}):
            status = dict(pod.get("status") or {})
            if status.get("phase") in ("Succeeded", "Failed"):
                continue
            status.update({"phase": "Failed", "reason": "Orphaned", "message": LOST_ERROR})
            store.update_status("Pod", pod["metadata"]["name"], status, namespace)
        return cls(dags, tasks)

    def restore(self, ctl, t: DagTask) -> bool:
        """End ``t`` from its earlier executions when they decided it (newest ``COMPLETE``/``CACHED``:
        SUCCEEDED with its outputs; ``FAILED`` with no retry left: FAILED); True when they did.
        Otherwise sets ``t.attempt`` and ``t.lost_attempts`` so the next attempt continues the count."""
        execs = self.tasks.get(t.path)
        if not execs:
            return False
        last = execs[-1]
        lost = sum(1 for x in execs if x["error"] == LOST_ERROR or x["state"] == "CANCELED")
        rec = t.record
        if last["state"] in _DONE:
            out = last.get("outputs") or {}
            rec.outputs = {"parameters": dict(out.get("parameters") or {}),
                           "artifacts": {k: list(v) for k, v in (out.get("artifacts") or {}).items()}}
            for arts in rec.outputs["artifacts"].values():
                for a in arts:
                    if a.get("id") is not None:
                        ctl._artifact_ids[a["uri"]] = a["id"]
            rec.execution_id = last["id"]
            rec.pod = last.get("pod_name")
            rec.cached = last["state"] == "CACHED"
            rec.attempts = t.attempt = sum(1 for x in execs if x["state"] != "CACHED")
            rec.started_at = last.get("started_at") or rec.started_at
            ctl._set_state(t, "SUCCEEDED")
            return True
        t.attempt = len(execs)
        t.lost_attempts = lost
        rec.attempts = t.attempt
        max_retries = int((t.spec.get("retryPolicy") or {}).get("maxRetryCount") or 0)
        if last["state"] == "FAILED" and last["error"] != LOST_ERROR and t.attempt - lost > max_retries:
            rec.execution_id = last["id"]
            rec.pod = last.get("pod_name")
            ctl._set_state(t, "FAILED", error=last["error"])
            return True
        return False


def resume_controller(run_object: dict, *, store, scheduler, metadata, workspace, clock=None, on_task=None,
                      packages=None, storage=None):
    """A :class:`~localflow.controllers.pipelinerun.PipelineRunController` that continues the
    unfinished pipeline Run ``run_object`` (a ``pipelines.kubeflow.org/v2beta1 Run`` from the
    store) when the process that drove it is gone; call its ``run()``.

    Raises :class:`LocalflowError` when the run already ended (its metadata state is not
    PENDING/RUNNING), when the process named by its ``localflow.dev/owner-pid`` annotation still
    runs (two controllers never drive one run), or when its saved pipeline is missing (a run
    started before resumes existed).
    """
    from localflow.clock import SYSTEM_CLOCK
    from localflow.controllers.pipelinerun import PipelineRunController

    meta = run_object.get("metadata") or {}
    name, namespace = meta.get("name"), meta.get("namespace") or "default"
    run_id = (run_object.get("status") or {}).get("runId") or (meta.get("labels") or {}).get("localflow.dev/run-id")
    record = metadata.get_run(run_id)
    if record["state"] not in ("PENDING", "RUNNING"):
        raise LocalflowError(f"run {name} already ended {record['state']}; only an unfinished run can be resumed",
                             fix=f"run the pipeline again (localflow run SPEC --name {name}-2)")
    owner = (meta.get("annotations") or {}).get(OWNER_PID_ANNOTATION)
    if owner and owner != owner_annotations()[OWNER_PID_ANNOTATION] and owner_alive(owner):
        raise LocalflowError(f"run {name} is still driven by localflow process {owner.split('@')[0]}",
                             fix="let that process finish it, or stop it first")
    path = saved_pipeline_path(workspace, run_id)
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LocalflowError(f"run {name} cannot be resumed: its saved pipeline {path} is unreadable ({e})",
                             fix="end it with `localflow gc` and run the pipeline again") from None
    spec = saved["pipelineSpec"]
    doc = PipelineDocument(spec=spec, platform=saved.get("platform"), proto=None,
                           name=spec["pipelineInfo"]["name"], runtime_config=saved.get("runtimeConfig"))
    rspec = run_object.get("spec") or {}
    runtime_config = rspec.get("runtimeConfig") or {}
    ctl = PipelineRunController(doc, parameters=runtime_config.get("parameters") or {}, store=store,
                                scheduler=scheduler, metadata=metadata, workspace=workspace,
                                clock=clock or SYSTEM_CLOCK, cache=saved.get("cache", True), namespace=namespace,
                                run_name=name, spec_path=rspec.get("specPath"), on_task=on_task,
                                packages=packages, storage=storage)
    ctl.run_id = run_id
    ctl.create_time = (run_object.get("status") or {}).get("createdAt") or ctl.create_time
    ctl.run_root = runtime_config.get("pipelineRoot") or ctl.run_root
    ctl.resume_from = run_object
    return ctl
