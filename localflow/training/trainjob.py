"""One reconcile of a TrainJob (pure): its replicated jobs' Pods -> TrainJob status and actions.

The cluster chain TrainJob -> JobSet -> Jobs -> Pods is folded into one step, keeping what the
user sees (kubeflow/trainer ``pkg/runtime/framework/plugins/jobset/jobset.go`` ``Status``,
``pkg/apis/trainer/v1alpha1/trainjob_types.go``, ``pkg/constants/constants.go``; JobSet
``AllJobsCompleted``/``FailedJobs``; Kubernetes Job ``backoffLimit``):

- replicated jobs start when their ``dependsOn`` are met (``Complete``: succeeded; ``Ready``: all
  Pods running);
- a Job fails when its failed Pods exceed ``backoffLimit`` (restartPolicy Never: failed Pods are
  replaced) or, with OnFailure, when container restarts reach it; locally also at once when a Pod
  failed because its program cannot start on this machine (``ContainerCannotRun``, see
  :data:`localflow.training.policy.UNRUNNABLE_REASONS`): the message then names the Pod and why;
- conditions (``metav1.Condition``): ``Complete`` (``AllJobsCompleted``, ``jobset completed
  successfully``), ``Failed`` (``FailedJobs``, ``jobset failed due to one or more job failures``;
  ``DeadlineExceeded``, ``TrainJob exceeded its active deadline``), ``Suspended``
  (``Suspended``/``Resumed``, ``TrainJob is suspended``/``TrainJob is resumed``);
- ``jobsStatus``: per replicated job ``{name, ready, succeeded, failed, active, suspended}`` (Job counts).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from localflow.clock import rfc3339
from localflow.training.policy import UNRUNNABLE_REASONS
from localflow.training.runtimes import LABEL_COMPLETION_INDEX, LABEL_REPLICATED_JOB, ReplicatedJobPlan

__all__ = ["TrainJobState", "TrainJobDecision", "reconcile_trainjob", "set_condition", "is_terminal",
           "final_trainjob_status"]

COMPLETE_REASON, COMPLETE_MESSAGE = "AllJobsCompleted", "jobset completed successfully"
FAILED_REASON, FAILED_MESSAGE = "FailedJobs", "jobset failed due to one or more job failures"
DEADLINE_REASON, DEADLINE_MESSAGE = "DeadlineExceeded", "TrainJob exceeded its active deadline"


@dataclass
class TrainJobState:
    """What the controller remembers between reconciles: ``started_at`` (epoch seconds; resets on
    resume), failed Pod uids already counted per replicated job."""

    started_at: float | None = None
    counted: dict[str, set] = field(default_factory=dict)


@dataclass
class TrainJobDecision:
    """``status``; ``create``: Pod manifests to submit (one gang); ``delete``: Pod names;
    ``events``: ``(type, reason, message)``; ``requeue_after``: seconds until the deadline."""

    status: dict
    create: list[dict] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    requeue_after: float | None = None


def set_condition(conds: list[dict] | None, type_: str, status: str, reason: str, message: str, now: str) -> list[dict]:
    """``meta.SetStatusCondition``: replace in place (new lastTransitionTime only when status changes) or append."""
    out = copy.deepcopy(conds or [])
    for c in out:
        if c["type"] == type_:
            if c["status"] != status:
                c["lastTransitionTime"] = now
            c.update(status=status, reason=reason, message=message)
            return out
    out.append({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now})
    return out


def _true(status: dict, type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in status.get("conditions") or [])


def is_terminal(status: dict | None) -> bool:
    """Complete=True or Failed=True."""
    return _true(status or {}, "Complete") or _true(status or {}, "Failed")


def _phase(p: dict) -> str:
    return (p.get("status") or {}).get("phase", "Pending")


def _job_state(plan: ReplicatedJobPlan, pods: list[dict], state: TrainJobState, d: TrainJobDecision) -> dict:
    """Evaluate one replicated job: returns ``{started, succeeded, failed, active, ready}``."""
    mine = {(p["metadata"].get("labels") or {}).get(LABEL_COMPLETION_INDEX): p for p in pods
            if (p["metadata"].get("labels") or {}).get(LABEL_REPLICATED_JOB) == plan.name}
    counted = state.counted.setdefault(plan.name, set())
    for p in mine.values():
        if _phase(p) == "Failed":
            counted.add(p["metadata"].get("uid") or p["metadata"]["name"])
    restarts = sum(int(cs.get("restartCount") or 0) for p in mine.values() if _phase(p) == "Running"
                   for cs in (p.get("status") or {}).get("containerStatuses") or [])
    limit = plan.backoff_limit
    unrunnable = [p for p in mine.values() if _phase(p) == "Failed" and (p.get("status") or {}).get("reason") in UNRUNNABLE_REASONS]
    failed = bool(unrunnable) or len(counted) > limit or (restarts >= limit if limit > 0 else restarts > 0)
    n = len(plan.pods)
    succeeded = n > 0 and all(_phase(mine.get(str(i), {})) == "Succeeded" for i in range(n))
    active = [p for p in mine.values() if _phase(p) in ("Pending", "Running")]
    ready = n > 0 and all(_phase(mine.get(str(i), {})) == "Running" for i in range(n))
    if not failed and mine:
        for pod in plan.pods:  # Never-policy Pods that failed are replaced (same index)
            cur = mine.get((pod["metadata"]["labels"] or {}).get(LABEL_COMPLETION_INDEX))
            if cur is not None and _phase(cur) == "Failed":
                d.delete.append(cur["metadata"]["name"])
                d.create.append(copy.deepcopy(pod))
    why = None
    if unrunnable:
        st = unrunnable[0].get("status") or {}
        why = f"pod {unrunnable[0]['metadata']['name']} cannot run here ({st['reason']}): {st.get('message') or 'no message'}"
    return {"started": bool(mine), "succeeded": succeeded, "failed": failed, "active": bool(active), "ready": ready,
            "active_pods": [p["metadata"]["name"] for p in active], "why": why}


def reconcile_trainjob(tj: dict, plans: list[ReplicatedJobPlan], pods: list[dict], now: float,
                       state: TrainJobState) -> TrainJobDecision:
    """Reconcile ``tj`` (with status) given its rendered ``plans`` and current ``pods`` at ``now``.
    ``state`` is updated in place (failure counts, start time)."""
    status = copy.deepcopy(tj.get("status") or {})
    d = TrainJobDecision(status=status)
    ts = rfc3339(now)
    spec = tj.get("spec") or {}
    if is_terminal(status):
        return d
    if spec.get("suspend"):
        d.delete = [p["metadata"]["name"] for p in pods]
        if not _true(status, "Suspended"):
            status["conditions"] = set_condition(status.get("conditions"), "Suspended", "True", "Suspended",
                                                 "TrainJob is suspended", ts)
            d.events.append(("Normal", "Suspended", "TrainJob is suspended"))
        status["jobsStatus"] = [{"name": p.name, "ready": 0, "succeeded": 0, "failed": 0, "active": 0, "suspended": 1}
                                for p in plans]
        state.started_at = None
        return d
    if _true(status, "Suspended"):
        status["conditions"] = set_condition(status["conditions"], "Suspended", "False", "Resumed", "TrainJob is resumed", ts)
        d.events.append(("Normal", "Resumed", "TrainJob is resumed"))
    if state.started_at is None:
        state.started_at = now
    deadline = spec.get("activeDeadlineSeconds")
    if deadline:
        if now - state.started_at >= deadline:
            status["conditions"] = set_condition(status.get("conditions"), "Failed", "True", DEADLINE_REASON,
                                                 DEADLINE_MESSAGE, ts)
            d.events.append(("Warning", DEADLINE_REASON, DEADLINE_MESSAGE))
            d.delete = [p["metadata"]["name"] for p in pods if _phase(p) in ("Pending", "Running")]
            return d
        d.requeue_after = state.started_at + deadline - now
    states = {}
    jobs_status = []
    for plan in plans:
        st = _job_state(plan, pods, state, d)
        states[plan.name] = st
        if not st["started"]:
            deps_ok = all((states.get(dep) or {}).get("succeeded" if cond == "Complete" else "ready")
                          for dep, cond in plan.depends_on)
            if deps_ok:
                d.create.extend(copy.deepcopy(plan.pods))
        jobs_status.append({"name": plan.name, "ready": int(st["ready"]), "succeeded": int(st["succeeded"]),
                            "failed": int(st["failed"]), "active": int(st["active"] and not st["failed"]),
                            "suspended": 0})
    status["jobsStatus"] = jobs_status
    if any(s["failed"] for s in states.values()):
        why = next((s["why"] for s in states.values() if s["why"]), None)
        message = f"{FAILED_MESSAGE}: {why}" if why else FAILED_MESSAGE
        status["conditions"] = set_condition(status.get("conditions"), "Failed", "True", FAILED_REASON, message, ts)
        d.events.append(("Warning", FAILED_REASON, message))
        d.create = []
        d.delete = sorted({n for s in states.values() for n in s["active_pods"]})
        d.requeue_after = None
    elif plans and all(s["succeeded"] for s in states.values()):
        status["conditions"] = set_condition(status.get("conditions"), "Complete", "True", COMPLETE_REASON,
                                             COMPLETE_MESSAGE, ts)
        d.events.append(("Normal", COMPLETE_REASON, COMPLETE_MESSAGE))
        d.requeue_after = None
    return d


def final_trainjob_status(tj: dict, now: float, message: str) -> dict:
    """The status of a TrainJob whose Pods were stopped from outside its controller (``localflow run``
    interrupted, or its localflow process died and ``localflow gc`` cleaned up), as the controller
    would leave it once they are gone: an unfinished TrainJob gets ``Failed=True`` (reason
    ``FailedJobs``, the JobSet's, with ``message``; kubeflow/trainer has no cancel condition), and every
    replicated job that had not succeeded is counted failed with nothing ready or active in
    ``jobsStatus``. A finished TrainJob keeps its conditions. Pure; returns a new status dict."""
    status = copy.deepcopy(tj.get("status") or {})
    if not is_terminal(status):
        status["conditions"] = set_condition(status.get("conditions"), "Failed", "True", FAILED_REASON, message,
                                             rfc3339(now))
    for js in status.get("jobsStatus") or []:
        if not js.get("succeeded") and (js.get("active") or js.get("ready") or js.get("failed")):
            js["failed"] = 1
        js["active"], js["ready"] = 0, 0
    return status
