"""``localflow run experiment.yaml``: a Katib Experiment run to completion on an in-process manager.

The API layer of Katib (the kind table's ``runner`` of Experiment; it may import controllers,
nothing below imports it). As :func:`localflow.runners.run_job` runs a batch Job, this registers
the Experiment, Suggestion, Trial and ``batch/v1`` Job reconcilers on one
:class:`~localflow.controllers.manager.ControllerManager`, creates the Experiment and waits until it
is Succeeded or Failed and none of its trials is still running, printing one progress line per
trial state change (``RUNNING trial/<name> lr=0.01``, ``SUCCEEDED trial/<name> accuracy=0.93 ...``).

``localflow serve`` runs an applied Experiment through the same runner in a worker process, as it
runs every runnable kind (:mod:`localflow.server.worker`): an experiment finishes, so it is a run
(with its own signal handling and records), not a controller hosted for ever.

Metadata: the experiment is a run (kind ``Experiment``, id the Experiment's uid, outputs the
optimal trial); each trial is an execution of type ``katib.Trial`` in that run, with its
parameter assignments as inputs and its observation as outputs.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from localflow.controllers.sideobjects import RUN_ID_LABEL, create_side_objects
from localflow.errors import LocalflowError, NotFound, SpecError
from localflow.faults import critical, take_pending
from localflow.runtime import Run, Runtime

__all__ = ["run_experiment", "TrialRecord"]

_STATES = {"Pending": "PENDING", "Running": "RUNNING", "Succeeded": "SUCCEEDED", "Failed": "FAILED",
           "MetricsUnavailable": "FAILED", "Killed": "CANCELED", "EarlyStopped": "SUCCEEDED"}
_EXEC = {"PENDING": "NEW", "RUNNING": "RUNNING", "SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED"}


@dataclass
class TrialRecord:
    """One trial as ``Run.tasks`` and the progress callback see it: ``name`` (the progress line's
    text: ``trial/<name>`` with its assignments and, once done, its objective), ``trial`` its name,
    ``state`` (PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED), ``bucket`` Katib's trial state
    (Succeeded, MetricsUnavailable, ...), ``error``, ``parameters``, ``metrics`` (name -> latest)."""

    name: str
    trial: str
    state: str
    bucket: str
    error: str | None = None
    pod: str | None = None
    parameters: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    execution_id: int | None = None


def _record(trial: dict, objective: str) -> TrialRecord:
    from localflow.controllers.trial import trial_state

    bucket = trial_state(trial)
    state = _STATES[bucket]
    params = {a["name"]: a["value"] for a in (trial.get("spec") or {}).get("parameterAssignments") or []}
    metrics = {m["name"]: m.get("latest") for m in ((trial.get("status") or {}).get("observation") or {}).get("metrics") or []}
    shown = " ".join(f"{k}={v}" for k, v in params.items())
    name = trial["metadata"]["name"]
    error = None
    if bucket in ("Failed", "MetricsUnavailable", "Killed"):
        cond = next((c for c in (trial.get("status") or {}).get("conditions") or [] if c.get("type") == bucket), {})
        error = cond.get("message") or bucket
    label = f"trial/{name} {shown}"
    if state == "SUCCEEDED" and objective in metrics:
        label = f"trial/{name} {objective}={metrics[objective]}  ({shown})"
    return TrialRecord(label, name, state, bucket, error, None, params, metrics)


class _Recorder:
    """The experiment's run and its trials' executions in the metadata store; ``on_trial`` feeds
    ``on_task`` with each trial state change."""

    def __init__(self, rt: Runtime, exp: dict, run_id: str, source, on_task):
        self.md, self.on_task, self.run_id = rt.metadata, on_task, run_id
        meta = exp["metadata"]
        self.objective = exp["spec"]["objective"]["objectiveMetricName"]
        self.records: dict[str, TrialRecord] = {}
        self.md.create_run(run_id, meta["name"], "Experiment", spec_path=source, executor=rt.scheduler.executor.name,
                           namespace=meta.get("namespace") or "default")
        self.md.update_run(run_id, state="RUNNING")

    def on_trial(self, trial: dict) -> None:
        rec = _record(trial, self.objective)
        old = self.records.get(rec.trial)
        if old is not None and old.state == rec.state:
            return
        if old is None:
            rec.execution_id = self.md.create_execution(self.run_id, "katib.Trial", rec.trial, state=_EXEC[rec.state],
                                                        inputs=rec.parameters, properties={"trial": rec.trial})
        else:
            rec.execution_id = old.execution_id
        done = rec.state in ("SUCCEEDED", "FAILED", "CANCELED")
        self.md.update_execution(rec.execution_id, state=_EXEC[rec.state], outputs=rec.metrics if done else None,
                                 started=rec.state == "RUNNING", finished=done, error=rec.error,
                                 properties={"katibState": rec.bucket})
        self.records[rec.trial] = rec
        if self.on_task is not None:
            self.on_task(rec)

    def finish(self, state: str, error: str | None, outputs: dict) -> None:
        self.md.update_run(self.run_id, state=state, error=error, outputs=outputs, finished=True)


def _outcome(exp: dict) -> tuple[str, str | None]:
    for c in reversed((exp.get("status") or {}).get("conditions") or []):
        if c.get("status") == "True" and c.get("type") in ("Succeeded", "Failed"):
            return ("SUCCEEDED" if c["type"] == "Succeeded" else "FAILED"), (
                None if c["type"] == "Succeeded" else f"{c.get('reason')}: {c.get('message')}")
    return "RUNNING", None


def _optimal(exp: dict) -> dict:
    best = (exp.get("status") or {}).get("currentOptimalTrial") or {}
    if not best.get("bestTrialName"):
        return {}
    out = {"bestTrialName": best["bestTrialName"]}
    out.update({a["name"]: a["value"] for a in best.get("parameterAssignments") or []})
    out.update({m["name"]: m.get("latest") for m in (best.get("observation") or {}).get("metrics") or []})
    return out


def run_experiment(docs: list[dict], rt: Runtime, *, namespace: str = "default", on_task=None, timeout: float | None = None,
                   source=None, run_name: str | None = None, params=None, **_) -> Run:
    """Run the first ``kubeflow.org/v1beta1`` Experiment in ``docs`` until it is Succeeded or Failed
    and its trials have ended (see the module docstring). ``run_name`` (``--name``) renames it.

    Returns a Run (``kind`` Experiment, ``state`` SUCCEEDED/FAILED, ``error`` the Failed condition's
    reason and message, ``tasks`` one :class:`TrialRecord` per trial, ``outputs`` the optimal
    trial's name, assignments and metrics). Raises :class:`SpecError` for an invalid experiment
    (nothing runs). A timeout or an interruption stops the trials' jobs and leaves the experiment
    Failed before the exception propagates; the run is recorded FAILED or CANCELED.
    """
    from localflow.controllers.experiment import ExperimentReconciler, experiment_completed
    from localflow.controllers.job import JobReconciler
    from localflow.controllers.manager import MANAGER_ANNOTATION, ControllerManager
    from localflow.controllers.suggestion import SuggestionReconciler
    from localflow.controllers.trial import EXPERIMENT_LABEL, TERMINAL_TRIAL, TrialReconciler, has_condition, set_condition
    from localflow.runners import _apply
    from localflow.specs.katib import load_experiment

    exp = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "Experiment"), None)
    if exp is None:
        raise SpecError(f"{source or 'spec'}", "holds no kubeflow.org/v1beta1 Experiment", fix="add an Experiment")
    if params:
        raise SpecError(f"-p {next(iter(params))}", "an Experiment takes no parameters (only pipelines do)",
                        fix="set the search space in spec.parameters instead")
    exp = copy.deepcopy(exp)
    meta = exp.setdefault("metadata", {})
    meta.setdefault("namespace", namespace)
    if run_name:
        meta["name"] = run_name
    exp = load_experiment(exp)
    ns = meta["namespace"]
    create_side_objects(rt.store, docs, ns)
    with critical():
        obj = _apply(rt.store.create, exp, source)
        name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
        obj = rt.store.patch("Experiment", name, {"metadata": {"labels": {RUN_ID_LABEL: uid}}}, ns)
        rec = _Recorder(rt, obj, uid, source, on_task)
        interrupted = take_pending()
    claim = (obj["metadata"].get("annotations") or {}).get(MANAGER_ANNOTATION)
    mgr = ControllerManager(rt.store, rt.clock, workers=2, identity=claim or None)
    mgr.register(ExperimentReconciler(rt.store, rt.clock))
    mgr.register(SuggestionReconciler(rt.store, rt.clock))
    mgr.register(TrialReconciler(rt.store, rt.workspace.logs_dir, rt.clock))
    jobs = JobReconciler(rt.store, rt.scheduler, rt.clock)
    mgr.register(jobs)
    sel = {EXPERIMENT_LABEL: name}

    def live(trials) -> bool:
        return any(not any(has_condition(t, c) for c in TERMINAL_TRIAL) for t in trials)

    def cancel(why: str) -> dict | None:
        mgr.stop()
        for t in rt.store.list("Trial", ns, label_selector=sel):
            jobs.fail(t["metadata"]["name"], ns, "Canceled", why)
        rt.scheduler.wait_idle(timeout=30)
        try:
            cur = rt.store.get("Experiment", name, ns)
        except NotFound:
            return None
        if not experiment_completed(cur):
            status = copy.deepcopy(cur.get("status") or {})
            now = rt.clock.rfc3339()
            set_condition(status, "Running", "False", "ExperimentFailed", why, now)
            set_condition(status, "Failed", "True", "ExperimentFailed", why, now)
            status["completionTime"] = now
            cur = rt.store.update_status("Experiment", name, status, ns)
        return cur

    try:
        if interrupted:
            raise KeyboardInterrupt
        deadline = None if timeout is None else time.monotonic() + timeout
        with rt.store.watch("Trial", ns, label_selector=sel) as tw, rt.store.watch("Experiment", ns) as ew:
            mgr.start()
            current = rt.store.get("Experiment", name, ns)
            while not (experiment_completed(current) and not live(rt.store.list("Trial", ns, label_selector=sel))):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"Experiment {name} did not finish within {timeout:g} s")
                ev = tw.get(timeout=0.1)
                for e in ([ev] if ev else []) + tw.drain():
                    if e.type != "DELETED":
                        rec.on_trial(e.object)
                for e in ew.drain():
                    if e.object["metadata"]["name"] == name and e.type != "DELETED":
                        current = e.object
                rt.scheduler.raise_fault()
            for t in rt.store.list("Trial", ns, label_selector=sel):
                rec.on_trial(t)
        mgr.stop()
        final = rt.store.get("Experiment", name, ns)
        state, error = _outcome(final)
    except TimeoutError as exc:
        with critical():
            final = cancel(f"it did not finish in time ({exc})")
            rec.finish("FAILED", str(exc), _optimal(final or {}))
        raise
    except LocalflowError:
        with critical():
            final = cancel("localflow failed")
            rec.finish("FAILED", "localflow failed", _optimal(final or {}))
        raise
    except BaseException:
        with critical():
            try:
                cancel("it was canceled: localflow was interrupted")
            finally:
                rec.finish("CANCELED", "interrupted: the run was canceled", {})
        raise
    finally:
        mgr.stop()
    with critical():
        rec.finish(state, error, _optimal(final))
    return Run(id=uid, name=name, kind="Experiment", state=state, workspace=rt.workspace, tasks=dict(rec.records),
               outputs=_optimal(final), error=error, object=final,
               pods=rt.store.list("Pod", ns, label_selector={RUN_ID_LABEL: uid}))
