"""One reconcile of a v1 training job, as a pure function: job + its Pods + time -> status and actions.

Mirrors kubeflow/training-operator ``release-1.9``:

- ``pkg/controller.v1/common/job.go`` ``ReconcileJobs``: cleanup of finished jobs per
  ``cleanPodPolicy`` and ``ttlSecondsAfterFinished``; suspend/resume; backoff limit
  (``pkg/core/job.go`` ``PastBackoffLimit``) and ``activeDeadlineSeconds`` (pods deleted, job Failed);
- ``pkg/controller.v1/common/pod.go`` ``ReconcilePods``: create missing replicas, delete out-of-range
  ones, restart failed Pods (``OnFailure``/``Always``, ``ExitCode`` with exit code >= 128) by deleting
  them, fail the job on a non-retryable ``ExitCode`` (1-127), count replica statuses;
- ``UpdateJobStatus`` per kind (``tensorflow/tfjob_controller.go``, ``pytorch/pytorchjob_controller.go``,
  and the same pattern for XGBoost, JAX, Paddle and MPI; training reference section 4).

Local choices: the operator's "reconcile retry count" (work-queue requeues) is replaced by the
number of Pods this controller deleted to restart them (``retries``), so ``backoffLimit`` also
bounds ``ExitCode`` restarts (kubeflow/trainer#2045 reports the operator ignoring it). A Pod that
failed because its program cannot start on this machine at all (Pod ``status.reason``
``ContainerCannotRun`` or ``CreateContainerConfigError``, :data:`UNRUNNABLE_REASONS`: e.g. a
script path only the image would carry) fails the job instead of being recreated, whatever the
restartPolicy: a new Pod would fail the same way at once, forever (a cluster would show
CrashLoopBackOff or ImagePullBackOff instead).
"""
from __future__ import annotations

import calendar
import copy
import time
from dataclasses import dataclass, field

from localflow.clock import rfc3339
from localflow.training.addressing import ordered_types
from localflow.training.conditions import get_condition, has_true, is_finished, is_succeeded, reason, update_conditions
from localflow.training.defaults import replica_specs, total_replicas
from localflow.training.kinds import KINDS, LABEL_REPLICA_INDEX, LABEL_REPLICA_TYPE
from localflow.training.pods import job_labels

__all__ = ["Decision", "reconcile", "exit_code", "is_active", "replica_selector", "MAGIC_EXIT_CODE",
           "parse_time", "created_condition", "UNRUNNABLE_REASONS", "replica_counts", "final_status"]

MAGIC_EXIT_CODE = 0xBEEF  # the operator's "no exit code found"
UNRUNNABLE_REASONS = ("ContainerCannotRun", "CreateContainerConfigError")  # a new Pod would fail the same way


@dataclass
class Decision:
    """What one reconcile decided.

    ``status``: the job's new status. ``create``: replicas ``(type, index)`` whose Pods must be
    created (all at once = one gang). ``delete``: Pod names to delete. ``events``:
    ``(type, reason, message)`` to record on the job. ``restarts``: how many of ``delete`` are
    restarts (add them to the retry count). ``delete_job``: the TTL after finishing expired.
    ``requeue_after``: seconds until a deadline or TTL needs another reconcile (None: only Pod
    changes matter).
    """

    status: dict
    create: list[tuple[str, int]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    restarts: int = 0
    delete_job: bool = False
    requeue_after: float | None = None


def parse_time(ts: str | None) -> float | None:
    """RFC 3339 ``2026-01-02T03:04:05Z`` -> epoch seconds (None stays None)."""
    if not ts:
        return None
    return float(calendar.timegm(time.strptime(ts.replace(".000000", "")[:19], "%Y-%m-%dT%H:%M:%S")))


def is_active(pod: dict) -> bool:
    """Pending or Running and not being deleted (``FilterActivePods``)."""
    phase = (pod.get("status") or {}).get("phase", "Pending")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def exit_code(pod: dict, container: str) -> int:
    """Exit code of the terminated container named ``container`` (0xbeef if none), as ``ReconcilePods`` reads it."""
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if cs.get("name") == container and term is not None:
            return int(term.get("exitCode", 0))
    return MAGIC_EXIT_CODE


def replica_selector(job: dict, rtype: str) -> str:
    """``replicaStatuses[].selector``: the label selector of one replica type's Pods."""
    labels = job_labels(job)
    labels[LABEL_REPLICA_TYPE] = rtype.lower()
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def created_condition(job: dict, now: float) -> dict:
    """The job's status after creation: ``Created=True`` (``<Kind>Created``, ``<Kind> <name> is created.``)."""
    kind, name = job["kind"], job["metadata"]["name"]
    status = copy.deepcopy(job.get("status") or {})
    status["conditions"] = update_conditions(status.get("conditions"), "Created", "True", reason(kind, "Created"),
                                             f"{kind} {name} is created.", rfc3339(now))
    status.setdefault("replicaStatuses", {})
    return status


def _main_container(job: dict) -> str:
    info = KINDS[job["kind"]]
    if job["kind"] == "MPIJob":
        return (job.get("spec") or {}).get("mainContainer") or info.container
    return info.container


def _index(pod: dict) -> int:
    try:
        return int(pod["metadata"]["labels"][LABEL_REPLICA_INDEX])
    except (KeyError, ValueError):
        return -1


def _pods_of(job: dict, pods: list[dict], rtype: str) -> list[dict]:
    return [p for p in pods if (p["metadata"].get("labels") or {}).get(LABEL_REPLICA_TYPE) == rtype.lower()]


class _Ctx:
    def __init__(self, job: dict, now: float, status: dict):
        self.job, self.now, self.status = job, now, status
        self.kind, self.name = job["kind"], job["metadata"]["name"]
        self.ns = job["metadata"].get("namespace") or "default"
        self.ts = rfc3339(now)
        self.d = Decision(status=status)

    def cond(self, type_: str, status: str, what: str, message: str) -> None:
        self.status["conditions"] = update_conditions(self.status.get("conditions"), type_, status,
                                                      reason(self.kind, what), message, self.ts)

    def event(self, type_: str, reason_: str, message: str) -> None:
        self.d.events.append((type_, reason_, message))

    def complete(self) -> None:
        self.status.setdefault("completionTime", self.ts)


def _cleanup(ctx: _Ctx, pods: list[dict], policy: str | None) -> None:
    """DeletePodsAndServices: for a finished job honour cleanPodPolicy, otherwise delete every Pod."""
    finished = is_finished(ctx.status)
    if finished and policy == "None":
        return
    for p in pods:
        if p["metadata"].get("deletionTimestamp"):
            continue
        phase = (p.get("status") or {}).get("phase", "Pending")
        if finished and policy == "Running" and phase not in ("Running", "Pending"):
            continue
        ctx.d.delete.append(p["metadata"]["name"])


def _past_backoff_limit(job: dict, pods: list[dict], limit: int) -> bool:
    total = 0
    for rtype, rs in replica_specs(job).items():
        if rs.get("restartPolicy") not in ("OnFailure", "Always", "ExitCode"):
            continue
        for p in _pods_of(job, pods, rtype):
            st = p.get("status") or {}
            if st.get("phase") != "Running":
                continue
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                total += int(cs.get("restartCount") or 0)
    return total > 0 if limit == 0 else total >= limit


def reconcile(job: dict, pods: list[dict], now: float, retries: int = 0) -> Decision:
    """Reconcile a defaulted v1 ``job`` (with its current ``status``) against its ``pods``
    (Pod objects with status) at epoch seconds ``now``; ``retries``: restarts done so far.
    Returns a :class:`Decision`; never mutates its inputs."""
    status = copy.deepcopy(job.get("status") or {})
    if get_condition(status.get("conditions"), "Created") is None:
        status = created_condition(dict(job, status=status), now)
    status.setdefault("replicaStatuses", {})
    ctx = _Ctx(job, now, status)
    spec = job.get("spec") or {}
    run_policy = spec.get("runPolicy") or {}
    clean = run_policy.get("cleanPodPolicy") or "None"

    if is_finished(status):
        _cleanup(ctx, pods, clean)
        if is_succeeded(status):
            for rs in status["replicaStatuses"].values():
                rs["succeeded"] = rs.get("succeeded", 0) + rs.get("active", 0)
                rs["active"] = 0
        _ttl(ctx, run_policy)
        return ctx.d

    if run_policy.get("suspend"):
        _cleanup(ctx, pods, clean)
        for rs in status["replicaStatuses"].values():
            rs["active"] = 0
        msg = f"{ctx.kind} {ctx.name} is suspended."
        if has_true(status.get("conditions"), "Running"):
            ctx.cond("Running", "False", "Suspended", msg)
        if not has_true(status.get("conditions"), "Suspended"):
            ctx.cond("Suspended", "True", "Suspended", msg)
            ctx.event("Normal", reason(ctx.kind, "Suspended"), msg)
        return ctx.d
    if has_true(status.get("conditions"), "Suspended"):
        msg = f"{ctx.kind} {ctx.name} is resumed."
        ctx.cond("Suspended", "False", "Resumed", msg)
        status["startTime"] = ctx.ts
        ctx.event("Normal", reason(ctx.kind, "Resumed"), msg)

    active = sum(1 for p in pods if is_active(p))
    failed = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Failed")
    prev_failed = sum(int(rs.get("failed", 0)) for rs in status["replicaStatuses"].values())
    limit = run_policy.get("backoffLimit")
    failure = None
    if limit is not None:
        exceeds = failed > prev_failed and active != total_replicas(job) and retries + 1 > limit
        if exceeds or _past_backoff_limit(job, pods, limit):
            failure = f"Job {ctx.name} has failed because it has reached the specified backoff limit"
    deadline = run_policy.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))
    if failure is None and deadline is not None and started is not None:
        if now - started >= deadline:
            failure = f"Job {ctx.name} has failed because it was active longer than specified deadline"
        else:
            ctx.d.requeue_after = started + deadline - now
    if failure is not None:
        ctx.complete()
        _cleanup(ctx, pods, clean)  # not finished yet: every Pod goes, whatever cleanPodPolicy says
        ctx.event("Normal", reason(ctx.kind, "Failed"), failure)
        ctx.cond("Failed", "True", "Failed", failure)
        ctx.d.requeue_after = None
        _ttl(ctx, run_policy)
        return ctx.d

    for rtype in ordered_types(job):
        _reconcile_pods(ctx, pods, rtype)
    if not status.get("startTime"):
        status["startTime"] = ctx.ts
        if deadline is not None:
            ctx.d.requeue_after = float(deadline)
    _UPDATE[ctx.kind](ctx, pods)
    for rtype in ordered_types(job):
        st = status["replicaStatuses"][rtype]
        st["selector"] = replica_selector(job, rtype)
    status["lastReconcileTime"] = ctx.ts
    if is_finished(status):
        ctx.d.requeue_after = 0.0  # clean up per cleanPodPolicy on the next pass
    return ctx.d


def replica_counts(job: dict, pods: list[dict], *, gone: bool = False) -> dict[str, dict]:
    """``replicaStatuses`` counted from ``pods`` as they are: ``{<ReplicaType>: {active, succeeded,
    failed, selector}}``. With ``gone`` the Pods are known to be stopped although their phase may
    not say so (their kubelet died): every Pod that did not succeed counts as failed, none active."""
    out = {}
    for rtype in ordered_types(job):
        counts = {"active": 0, "succeeded": 0, "failed": 0}
        for p in _pods_of(job, pods, rtype):
            phase = (p.get("status") or {}).get("phase", "Pending")
            if phase == "Succeeded":
                counts["succeeded"] += 1
            elif phase == "Failed" or gone:
                counts["failed"] += 1
            elif phase == "Running":
                counts["active"] += 1
        counts["selector"] = replica_selector(job, rtype)
        out[rtype] = counts
    return out


def final_status(job: dict, pods: list[dict], now: float, message: str) -> dict:
    """The status of a job whose Pods were stopped from outside the operator — ``localflow run``
    was interrupted, or the localflow process running it died and ``localflow gc`` cleaned up —
    as the operator would leave it once those Pods are gone.

    The training operator has no cancel (kubeflow/training-operator ``pkg/util/status.go`` knows
    Created, Running, Restarting, Succeeded, Suspended, Failed; ``runPolicy.suspend`` would be
    resumable, which a dead run is not), so an unfinished job gets ``Failed=True`` with reason
    ``<Kind>Failed`` and ``message`` (``Running`` flips to False, ``completionTime`` is set). For
    a job not Succeeded, ``replicaStatuses`` are recounted with nothing active (:func:`replica_counts`
    with ``gone``); a Succeeded job's last active replicas count as succeeded, as
    ``ReconcileJobs`` does for a finished job. Pure; returns a new status dict.
    """
    status = copy.deepcopy(job.get("status") or {})
    ts = rfc3339(now)
    if is_succeeded(status):
        for rs in (status.get("replicaStatuses") or {}).values():
            rs["succeeded"] = int(rs.get("succeeded", 0)) + int(rs.get("active", 0))
            rs["active"] = 0
    else:
        if not is_finished(status):
            status["conditions"] = update_conditions(status.get("conditions"), "Failed", "True",
                                                     reason(job["kind"], "Failed"), message, ts)
        status["replicaStatuses"] = replica_counts(job, pods, gone=True)
    status.setdefault("completionTime", ts)
    status["lastReconcileTime"] = ts
    return status


def _ttl(ctx: _Ctx, run_policy: dict) -> None:
    ttl = run_policy.get("ttlSecondsAfterFinished")
    done = parse_time(ctx.status.get("completionTime"))
    if ttl is None or done is None:
        return
    if ctx.now >= done + ttl:
        ctx.d.delete_job = True
    else:
        ctx.d.requeue_after = done + ttl - ctx.now


def _reconcile_pods(ctx: _Ctx, pods: list[dict], rtype: str) -> None:
    job = ctx.job
    rs = replica_specs(job)[rtype]
    n = int(rs.get("replicas", 1))
    policy = rs.get("restartPolicy")
    mine = _pods_of(job, pods, rtype)
    counts = {"active": 0, "succeeded": 0, "failed": 0}
    ctx.status["replicaStatuses"][rtype] = counts
    by_index: dict[int, list[dict]] = {}
    for p in mine:
        by_index.setdefault(_index(p), []).append(p)
    for i in range(max([n] + [k + 1 for k in by_index])):
        group = by_index.get(i) or []
        if not group:
            if i < n:
                ctx.d.create.append((rtype, i))
            continue
        pod = group[0]
        name = pod["metadata"]["name"]
        if i >= n:
            ctx.d.delete.append(name)
        st = pod.get("status") or {}
        phase = st.get("phase", "Pending")
        code = exit_code(pod, _main_container(job))
        if code != MAGIC_EXIT_CODE:
            ctx.event("Normal", "ExitedWithCode", f"Pod: {ctx.ns}.{name} exited with code {code}")
        if phase == "Failed" and not pod["metadata"].get("deletionTimestamp"):
            if st.get("reason") in UNRUNNABLE_REASONS:
                msg = (f"{ctx.kind} {ctx.name} is failed because 1 {rtype} replica(s) failed: pod {name} cannot run "
                       f"here ({st['reason']}): {st.get('message') or 'no message'}")
                ctx.event("Warning", reason(ctx.kind, "Failed"), msg)
                ctx.complete()
                ctx.cond("Failed", "True", "Failed", msg)
            elif policy in ("OnFailure", "Always") or (policy == "ExitCode" and code >= 128):
                if name not in ctx.d.delete:
                    ctx.d.delete.append(name)
                    ctx.d.restarts += 1
                msg = f"job {ctx.name} is restarting because {rtype} replica(s) failed."
                ctx.event("Warning", reason(ctx.kind, "Restarting"), msg)
                ctx.cond("Restarting", "True", "Restarting", msg)
            elif policy == "ExitCode":
                msg = f'job "{ctx.name}" is failing because "{rtype}" replica(s) failed.'
                ctx.event("Warning", reason(ctx.kind, "Failed"), msg)
                ctx.complete()
                ctx.cond("Failed", "True", "Failed", msg)
        if phase == "Running":
            if pod["metadata"].get("deletionTimestamp"):
                counts["failed"] += 1
            else:
                counts["active"] += 1
        elif phase == "Succeeded":
            counts["succeeded"] += 1
        elif phase == "Failed":
            counts["failed"] += 1


def _counts(ctx: _Ctx, rtype: str) -> tuple[int, int, int, int]:
    st = ctx.status["replicaStatuses"][rtype]
    replicas = int(replica_specs(ctx.job)[rtype].get("replicas", 1))
    return replicas, st["active"], st["succeeded"], st["failed"]


def _succeed(ctx: _Ctx, message: str) -> None:
    ctx.event("Normal", reason(ctx.kind, "Succeeded"), message)
    ctx.complete()
    ctx.cond("Succeeded", "True", "Succeeded", message)


def _fail(ctx: _Ctx, message: str) -> None:
    ctx.event("Normal", reason(ctx.kind, "Failed"), message)
    ctx.complete()
    ctx.cond("Failed", "True", "Failed", message)


def _worker0_succeeded(ctx: _Ctx, pods: list[dict]) -> bool:
    for p in _pods_of(ctx.job, pods, "Worker"):
        if _index(p) == 0 and (p.get("status") or {}).get("phase") == "Succeeded":
            return exit_code(p, KINDS[ctx.kind].container) in (0, MAGIC_EXIT_CODE)
    return False


def _update_tf(ctx: _Ctx, pods: list[dict]) -> None:
    """TFJob: Chief/Master decides; otherwise worker 0 (default successPolicy) or all workers (AllWorkers)."""
    spec = ctx.job.get("spec") or {}
    types = ordered_types(ctx.job)
    chief = any(t in ("Chief", "Master") for t in types)
    running_msg = f"TFJob {ctx.ns}/{ctx.name} is running."
    done_msg = f"TFJob {ctx.ns}/{ctx.name} successfully completed."
    for rtype in types:
        replicas, running, succeeded, failed = _counts(ctx, rtype)
        expected = replicas - succeeded
        if chief:
            if rtype in ("Chief", "Master"):
                if running > 0:
                    ctx.cond("Running", "True", "Running", running_msg)
                if expected == 0 and not is_finished(ctx.status):
                    _succeed(ctx, done_msg)
        elif rtype == "Worker":
            if (expected == 0 or (_worker0_succeeded(ctx, pods) and spec.get("successPolicy") != "AllWorkers")):
                if not is_finished(ctx.status):
                    _succeed(ctx, done_msg)
            elif running > 0:
                ctx.cond("Running", "True", "Running", running_msg)
        if failed > 0:
            restarting = get_condition(ctx.status.get("conditions"), "Restarting")
            if restarting is not None:
                ctx.status["conditions"] = update_conditions(
                    ctx.status["conditions"], "Restarting", "True", restarting["reason"], restarting["message"], ctx.ts)
            elif spec.get("enableDynamicWorker") and rtype == "Worker":
                continue
            elif not is_finished(ctx.status):
                _fail(ctx, f"TFJob {ctx.ns}/{ctx.name} has failed because {failed} {rtype} replica(s) failed.")


def _update_generic(ctx: _Ctx, pods: list[dict]) -> None:
    """PyTorchJob pattern, shared by XGBoost, JAX, Paddle and MPI: the master role decides success
    (Master; Launcher for MPI; worker 0 for JAX); without one, all workers (any worker for elastic
    PyTorch). Failed replicas with ``replicas > succeeded + running`` restart the job unless the
    replica's restartPolicy is Never, which fails it."""
    kind, spec = ctx.kind, ctx.job.get("spec") or {}
    types = ordered_types(ctx.job)
    head = next((t for t in ("Master", "Launcher") if t in types), None)
    running_msg = f"{kind} {ctx.name} is running."
    done_msg = f"{kind} {ctx.name} is successfully completed."
    for rtype in ([head] if head else []) + [t for t in types if t != head]:
        replicas, running, succeeded, failed = _counts(ctx, rtype)
        expected = replicas - succeeded
        if head is not None:
            if rtype == head:
                if running > 0:
                    ctx.cond("Running", "True", "Running", running_msg)
                if expected == 0 and not is_finished(ctx.status):
                    _succeed(ctx, done_msg)
                    return
        elif rtype == "Worker":
            elastic = kind == "PyTorchJob" and spec.get("elasticPolicy") is not None
            worker0 = kind == "JAXJob" and _worker0_succeeded(ctx, pods)
            if expected == 0 or (elastic and succeeded > 0) or worker0:
                if not is_finished(ctx.status):
                    _succeed(ctx, done_msg)
                    return
            elif running > 0:
                ctx.cond("Running", "True", "Running", running_msg)
        if failed > 0 and replicas > succeeded + running:
            policy = replica_specs(ctx.job)[rtype].get("restartPolicy")
            if is_finished(ctx.status):  # failed by the Pod reconcile (non-retryable ExitCode, cannot run)
                continue
            if policy != "Never":
                msg = f"{kind} {ctx.name} is restarting because {failed} {rtype} replica(s) failed."
                ctx.event("Warning", reason(kind, "Restarting"), msg)
                ctx.cond("Restarting", "True", "Restarting", msg)
            elif not is_finished(ctx.status):
                _fail(ctx, f"{kind} {ctx.name} is failed because {failed} {rtype} replica(s) failed.")


_UPDATE = {"TFJob": _update_tf, "PyTorchJob": _update_generic, "XGBoostJob": _update_generic,
           "JAXJob": _update_generic, "PaddleJob": _update_generic, "MPIJob": _update_generic}
