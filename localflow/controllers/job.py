"""The ``batch/v1 Job`` controller: a reconciler on the controller manager, with Kubernetes 1.31+ semantics.

Follows kubernetes ``pkg/controller/job/job_controller.go`` (``syncJob``, ``manageJob``,
``trackJobStatusAndRemoveFinalizers``), ``indexed_job_utils.go``, ``pod_failure_policy.go``,
``success_policy.go`` and ``backoff_utils.go``:

- ``completions``/``parallelism``: at most ``min(parallelism, completions - succeeded)`` Pods run
  at once; without ``completions`` the Job is done once any Pod succeeded and none runs.
- ``completionMode: Indexed``: one Pod per pending index ``0..completions-1`` (lowest first), with
  the annotation and label ``batch.kubernetes.io/job-completion-index``, the env var
  ``JOB_COMPLETION_INDEX`` in every container and ``hostname: <job>-<index>``;
  ``status.completedIndexes`` lists the succeeded indexes as intervals (``"0-2,4"``).
- Failures: a Failed Pod (``restartPolicy: Never``) is replaced after the Pod failure backoff
  (10 s doubling per failure since the last success, at most 10 min); more counted failures than
  ``backoffLimit`` -- or, with ``OnFailure``, as many container restarts -- fail the Job
  (``BackoffLimitExceeded``); so does running longer than ``activeDeadlineSeconds``
  (``DeadlineExceeded``) and a ``podFailurePolicy`` rule with action ``FailJob``
  (``PodFailurePolicy``); ``Ignore`` rules keep a failure out of the count.
- Conditions as 1.31+ writes them (``delayTerminalCondition``: ``JobPodReplacementPolicy``/
  ``JobManagedBy`` on): first the interim ``FailureTarget`` (or ``SuccessCriteriaMet``), the Job's
  remaining Pods are stopped, then the terminal ``Failed`` (or ``Complete``, with
  ``completionTime``, same reason and message) once none runs; the Warning Event (or
  ``Completed``) comes with the terminal condition (``recordJobFinished``). Evaluated in
  ``syncJob``'s order: an existing ``SuccessCriteriaMet``, an existing ``FailureTarget``, a
  ``podFailurePolicy`` ``FailJob``, ``backoffLimit``, ``activeDeadlineSeconds``, then
  ``successPolicy``. ``successPolicy`` (Indexed) ends the Job early with reason
  ``SuccessPolicy``. ``suspend: true`` stops the Pods (not counted as failures), condition
  ``Suspended``; resuming resets ``startTime``. ``ttlSecondsAfterFinished`` deletes a finished
  Job and its Pods after that many seconds.

Nothing is kept in memory: counts come from the Job's Pods (found by ownerReference) and go to
``status`` (``active``, ``ready``, ``succeeded``, ``failed``, ``completedIndexes``); Pods the
controller stops carry the annotation ``localflow.dev/job-terminated: <why>``, so a restarted
manager counts them as the last one did. A finished Pod deleted by hand is no longer counted
(Kubernetes keeps it counted through its ``batch.kubernetes.io/job-tracking`` finalizer).
Pods are created through :meth:`localflow.scheduler.Scheduler.submit` and stopped with
:meth:`~localflow.scheduler.Scheduler.kill_pod`.
"""
from __future__ import annotations

import copy

from localflow.clock import SYSTEM_CLOCK, Clock, parse_rfc3339
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.errors import NotFound, SpecError
from localflow.fakes.objectmeta import generate_name
from localflow.specs.job import format_indexes, load_job, parse_indexes

__all__ = ["JobReconciler", "job_finished", "job_pod_record", "backoff_record", "COMPLETION_INDEX", "TERMINATED_ANNOTATION"]

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
TERMINATED_ANNOTATION = "localflow.dev/job-terminated"
POD_BACKOFF_S = 10.0  # job_controller.go: DefaultJobPodFailureBackOff (backoff_utils.go getRemainingTime doubles it)
MAX_POD_BACKOFF_S = 600.0  # job_controller.go: MaxJobPodFailureBackOff
_NOT_FAILURES = ("Suspended", "SuccessPolicy", "Parallelism")  # Pods stopped for these reasons are not failures


def job_finished(job: dict) -> tuple[str, str] | None:
    """``("Complete" | "Failed", message)`` once the Job has that condition True, else ``None``."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"], c.get("message") or c.get("reason") or ""
    return None


def backoff_record(job: dict, delay: float, failures: int):
    """What ``localflow run`` prints while the Job waits out the Pod failure backoff: a progress
    record (state RUNNING with an error, so it reads RETRYING) named ``job/<name>``, its message the
    same on every pass of one wait (printed once per wait)."""
    from types import SimpleNamespace

    n = f"{failures} failure{'s' if failures != 1 else ''}"
    return SimpleNamespace(name=f"job/{job['metadata']['name']}", state="RUNNING", pod=None, cached=False,
                           error=f"the next Pod is created after the Pod failure backoff of {delay:g}s ({n} in a row)")


def job_pod_record(pod: dict):
    """The :class:`~localflow.controllers.trainingjob.ReplicaRecord` of one Pod of a Job (kind
    ``pod``, replica type ``Pod``, index its completion index or 0; its first container's exit code)."""
    from localflow.controllers.trainingjob import pod_record

    containers = (pod.get("spec") or {}).get("containers") or [{}]
    index = _index(pod)
    return pod_record(pod, containers[0].get("name", ""), "Pod", index or 0, pod["metadata"]["name"], kind="pod")


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _index(pod: dict) -> int | None:
    raw = (pod["metadata"].get("annotations") or {}).get(COMPLETION_INDEX)
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None


def _finished_at(pod: dict) -> float:
    """When a finished Pod ended, on the kubelet's (injected) clock: its ``Ready`` condition's
    last transition (to False), else its containers' ``finishedAt``, else its creation."""
    st = pod.get("status") or {}
    ready = [parse_rfc3339(c.get("lastTransitionTime")) for c in st.get("conditions") or []
             if c.get("type") == "Ready" and c.get("status") == "False"]
    times = [t for t in ready if t is not None] or [
        t for t in (parse_rfc3339(((cs.get("state") or {}).get("terminated") or {}).get("finishedAt"))
                    for cs in st.get("containerStatuses") or []) if t is not None]
    return max(times) if times else (parse_rfc3339(pod["metadata"].get("creationTimestamp")) or 0.0)


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or [])


def _terminated_by_job(pod: dict) -> str | None:
    return (pod["metadata"].get("annotations") or {}).get(TERMINATED_ANNOTATION)


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[str | None, str | None]:
    """``(action, message)`` of the first ``podFailurePolicy`` rule matching a Failed ``pod``
    (``pod_failure_policy.go`` ``matchPodFailurePolicy``), or ``(None, None)``."""
    if not policy:
        return None, None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    pod_conds = {(c.get("type"), c.get("status")) for c in (pod.get("status") or {}).get("conditions") or []}
    name = f'{pod["metadata"].get("namespace", "default")}/{pod["metadata"]["name"]}'
    for i, rule in enumerate(policy.get("rules") or []):
        codes = rule.get("onExitCodes")
        if codes is not None:
            for cs in statuses:
                if codes.get("containerName") and cs.get("name") != codes["containerName"]:
                    continue
                term = (cs.get("state") or {}).get("terminated") or {}
                code = term.get("exitCode")
                if code is None or int(code) == 0:
                    continue
                hit = int(code) in codes.get("values", []) if codes.get("operator") == "In" else int(code) not in codes.get("values", [])
                if hit:
                    return rule["action"], (f"Container {cs.get('name')} for pod {name} failed with exit code {code} "
                                            f"matching {rule['action']} rule at index {i}")
        else:
            for c in rule.get("onPodConditions") or []:
                if (c.get("type"), c.get("status", "True")) in pod_conds:
                    return rule["action"], f"Pod {name} has condition {c.get('type')} matching {rule['action']} rule at index {i}"
    return None, None


def _match_success_policy(policy: dict | None, completions: int, done: set[int]) -> str | None:
    """The ``SuccessCriteriaMet`` message when a ``successPolicy`` rule holds (``success_policy.go``)."""
    for i, rule in enumerate((policy or {}).get("rules") or []):
        wanted = parse_indexes(rule.get("succeededIndexes"), limit=completions) if rule.get("succeededIndexes") is not None else None
        count = rule.get("succeededCount")
        if wanted is not None and count is None and wanted <= done:
            return f"Matched rules at index {i}"
        have = len(done & wanted) if wanted is not None else len(done)
        if count is not None and have >= count:
            return f"Matched rules at index {i}"
    return None


def _condition(type_: str, status: str, reason: str, message: str, now: str) -> dict:
    return {"type": type_, "status": status, "lastProbeTime": now, "lastTransitionTime": now, "reason": reason, "message": message}


class JobReconciler:
    """Reconciles ``batch/v1`` Jobs (see the module docstring); register it on a
    :class:`~localflow.controllers.manager.ControllerManager`.

    ``store``: the object store; ``scheduler``: creates and kills the Pods; ``clock``: times,
    deadlines and backoff; ``pod_backoff``/``max_pod_backoff``: seconds of the Pod failure backoff;
    ``on_backoff(job, delay_s, failures)`` is called on each pass that holds a Pod back for the
    backoff (upstream only logs ``Delaying pod creation for job due to backoff`` in ``manageJob``,
    no Event: ``localflow run`` shows it as a progress line, :func:`backoff_record`).
    ``reconcile(key)`` returns the seconds until the next deadline, backoff or TTL is due, or None.
    """

    kind = "Job"
    owns = ("Pod",)

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK, *, pod_backoff: float = POD_BACKOFF_S,
                 max_pod_backoff: float = MAX_POD_BACKOFF_S, on_backoff=None):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.pod_backoff, self.max_pod_backoff = float(pod_backoff), float(max_pod_backoff)
        self.on_backoff = on_backoff

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, key) -> float | None:
        """One level-triggered pass over the Job ``key`` = ``("Job", namespace, name)``."""
        _, ns, name = key
        try:
            job = self.store.get("Job", name, ns)
        except NotFound:
            return None
        if job_finished(job):
            return self._ttl(job)
        try:
            spec = load_job(job)["spec"]
        except SpecError as err:
            return self._write(job, self._finish_now(job, "Failed", "Invalid", err.message))
        uid = job["metadata"]["uid"]
        pods = [p for p in self.store.list("Pod", ns, owner_uid=uid)
                if any(r.get("uid") == uid and r.get("controller") for r in p["metadata"].get("ownerReferences") or [])]
        now_s, now = self.clock.now(), self.clock.rfc3339()
        status = copy.deepcopy(job.get("status") or {})
        conds = status.setdefault("conditions", [])
        by_type = {c.get("type"): c for c in conds}
        indexed = spec["completionMode"] == "Indexed"
        completions = spec.get("completions")
        active = [p for p in pods if _phase(p) in ("Pending", "Running")]
        succeeded = [p for p in pods if _phase(p) == "Succeeded"]
        success_met = by_type.get("SuccessCriteriaMet", {}).get("status") == "True"
        failed, fail_job, retried = [], None, []  # counted failures; every failure the backoff follows
        for p in pods:
            if _phase(p) != "Failed" or (_terminated_by_job(p) in _NOT_FAILURES):
                continue
            if success_met and _terminated_by_job(p):
                continue
            retried.append(p)
            action, msg = match_pod_failure_policy(spec.get("podFailurePolicy"), p)
            if action == "FailJob" and fail_job is None:
                fail_job = msg
            if action != "Ignore":
                failed.append(p)
        if indexed:
            done = {i for i in map(_index, succeeded) if i is not None and i < completions}
            status["succeeded"] = len(done)
            status["completedIndexes"] = format_indexes(done)
        else:
            done = set()
            status["succeeded"] = len(succeeded)
        status["failed"] = len(failed)
        status.setdefault("uncountedTerminatedPods", {})
        suspended = spec.get("suspend") is True
        if not status.get("startTime") and not suspended:
            status["startTime"] = now
        requeue: list[float] = []

        # what ends the Job (syncJob's finishedCondition)
        target = None
        if success_met:
            target = by_type["SuccessCriteriaMet"]
        elif by_type.get("FailureTarget", {}).get("status") == "True":
            target = by_type["FailureTarget"]
        elif fail_job:
            target = _condition("FailureTarget", "True", "PodFailurePolicy", fail_job, now)
        elif len(failed) > spec["backoffLimit"] or self._past_backoff_on_failure(spec, active):
            target = _condition("FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit", now)
        elif spec.get("activeDeadlineSeconds") and not suspended and status.get("startTime"):
            left = (parse_rfc3339(status["startTime"]) or now_s) + spec["activeDeadlineSeconds"] - now_s
            if left <= 0:
                target = _condition("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline", now)
            else:
                requeue.append(left)
        if target is None and indexed:
            msg = _match_success_policy(spec.get("successPolicy"), completions, done)
            if msg:
                target = _condition("SuccessCriteriaMet", "True", "SuccessPolicy", msg, now)

        if target is not None:
            if target["type"] not in by_type:  # the interim condition; the Event comes with the terminal one
                conds.append(target)
                by_type[target["type"]] = target
            why = "SuccessPolicy" if target["type"] == "SuccessCriteriaMet" else target["reason"]
            self._stop(active, why)
        else:
            if suspended:
                self._stop(active, "Suspended")
                if by_type.get("Suspended", {}).get("status") != "True":
                    self._set(conds, by_type, "Suspended", "True", "JobSuspended", "Job suspended", now)
                    self.store.record_event(job, "Suspended", "Job suspended", component="job-controller")
            else:
                if by_type.get("Suspended", {}).get("status") == "True":
                    self._set(conds, by_type, "Suspended", "False", "JobResumed", "Job resumed", now)
                    self.store.record_event(job, "Resumed", "Job resumed", component="job-controller")
                    status["startTime"] = now
                try:
                    wait = self._manage(job, spec, active, succeeded, retried, done, now_s)
                except _CreateFailed as err:  # the template can never run here: a true record, not a retry loop
                    self._stop(active, "FailedCreate")
                    self.store.record_event(job, "FailedCreate", err.err.message, type="Warning", component="job-controller")
                    target = _condition("FailureTarget", "True", "FailedCreate", err.err.message, now)
                    conds.append(target)
                    wait = None
                if wait is not None:
                    requeue.append(wait)
                active = [p for p in self.store.list("Pod", ns, owner_uid=uid) if _phase(p) in ("Pending", "Running")]
                if completions is None:
                    complete = status["succeeded"] > 0 and not active
                else:
                    complete = status["succeeded"] >= completions and not active
                if complete and target is None:
                    target = _condition("SuccessCriteriaMet", "True", "CompletionsReached",
                                        "Reached expected number of succeeded pods", now)
                    conds.append(target)
                    by_type[target["type"]] = target

        status["active"] = len(active)
        status["ready"] = sum(1 for p in active if _ready(p))
        if target is not None and not active:  # every Pod ended: the terminal condition
            final = "Complete" if target["type"] == "SuccessCriteriaMet" else "Failed"
            conds.append(_condition(final, "True", target["reason"], target["message"], now))
            if final == "Complete":
                status["completionTime"] = now
                self.store.record_event(job, "Completed", "Job completed", component="job-controller")
            else:
                self.store.record_event(job, target["reason"], target["message"], type="Warning", component="job-controller")
            self._write(job, status)
            return self._ttl(self.store.get("Job", name, ns))
        self._write(job, status)
        return min(requeue) if requeue else None

    # ------------------------------------------------------------------ parts

    @staticmethod
    def _set(conds: list, by_type: dict, type_: str, status: str, reason: str, message: str, now: str) -> None:
        cur = by_type.get(type_)
        if cur is None:
            cur = by_type[type_] = _condition(type_, status, reason, message, now)
            conds.append(cur)
            return
        if cur.get("status") != status:
            cur["lastTransitionTime"] = now
        cur.update(status=status, reason=reason, message=message, lastProbeTime=now)

    @staticmethod
    def _past_backoff_on_failure(spec: dict, active: list) -> bool:
        """``pastBackoffLimitOnFailure``: with OnFailure, the active Pods' container restarts reach backoffLimit."""
        if spec["template"]["spec"].get("restartPolicy") != "OnFailure":
            return False
        restarts = sum(int(cs.get("restartCount") or 0) for p in active
                       for key in ("initContainerStatuses", "containerStatuses")
                       for cs in (p.get("status") or {}).get(key) or [])
        return restarts > 0 if spec["backoffLimit"] == 0 else restarts >= spec["backoffLimit"]

    def _manage(self, job: dict, spec: dict, active: list, succeeded: list, failed: list, done: set, now_s: float):
        """Create or stop Pods toward the wanted number (``manageJob``); returns seconds until the
        Pod failure backoff lets the next Pod be created, or None."""
        completions, parallelism = spec.get("completions"), spec["parallelism"]
        if completions is None:
            want = len(active) if succeeded else parallelism
        else:
            remaining = completions - (len(done) if spec["completionMode"] == "Indexed" else len(succeeded))
            want = max(0, min(remaining, parallelism))
        if len(active) > want:
            extra = sorted(active, key=lambda p: (_phase(p) == "Running", p["metadata"].get("creationTimestamp", "")))
            self._stop(extra[: len(active) - want], "Parallelism")
            return None
        if len(active) == want:
            return None
        last_success = max((_finished_at(p) for p in succeeded), default=0.0)
        recent = [p for p in failed if _finished_at(p) >= last_success]
        if recent:
            delay = min(self.pod_backoff * 2 ** (len(recent) - 1), self.max_pod_backoff)
            left = max(_finished_at(p) for p in recent) + delay - now_s
            if left > 0:
                if self.on_backoff is not None:  # upstream: logger.Info("Delaying pod creation for job due to backoff")
                    self.on_backoff(job, delay, len(recent))
                return left
        if spec["completionMode"] == "Indexed":
            busy = {_index(p) for p in active}
            pending = [i for i in range(completions) if i not in done and i not in busy]
            todo = pending[: want - len(active)]
        else:
            todo = [None] * (want - len(active))
        for index in todo:
            pod = self._pod(job, spec, index)
            try:
                self.scheduler.submit(pod)
            except SpecError as err:
                raise _CreateFailed(err) from err
            self.store.record_event(job, "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}", component="job-controller")
        return None

    def _pod(self, job: dict, spec: dict, index: int | None) -> dict:
        """The Pod for one completion of ``job`` (``index`` for Indexed Jobs), from its template."""
        meta, tmpl = job["metadata"], copy.deepcopy(spec["template"])
        tmeta = tmpl.get("metadata") or {}
        name = meta["name"]
        labels = dict(tmeta.get("labels") or {})
        labels.update({"batch.kubernetes.io/controller-uid": meta["uid"], "batch.kubernetes.io/job-name": name,
                       "controller-uid": meta["uid"], "job-name": name,
                       RUN_ID_LABEL: (meta.get("labels") or {}).get(RUN_ID_LABEL) or meta["uid"]})
        annotations = dict(tmeta.get("annotations") or {})
        pod_spec = tmpl["spec"]
        if index is not None:
            labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
            pod_spec.setdefault("hostname", f"{name}-{index}"[:63].rstrip("-"))
            for key in ("initContainers", "containers"):
                for c in pod_spec.get(key) or []:
                    env = [e for e in c.get("env") or [] if e.get("name") != "JOB_COMPLETION_INDEX"]
                    c["env"] = [*env, {"name": "JOB_COMPLETION_INDEX", "value": str(index)}]
        prefix = f"{name}-{index}-" if index is not None else f"{name}-"
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": generate_name(prefix), "namespace": meta.get("namespace") or "default",
                             "labels": labels, "annotations": annotations,
                             "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"],
                                                  "controller": True, "blockOwnerDeletion": True}]},
                "spec": pod_spec}

    def _stop(self, pods: list, why: str) -> None:
        """Stop ``pods`` (the API server's delete of active Pods): mark why, then kill them."""
        for p in pods:
            name, ns = p["metadata"]["name"], p["metadata"].get("namespace") or "default"
            if _terminated_by_job(p) is None:
                try:
                    self.store.patch("Pod", name, {"metadata": {"annotations": {TERMINATED_ANNOTATION: why}}}, ns)
                except NotFound:
                    continue
            self.scheduler.kill_pod(name, ns, "Killed")

    def fail(self, name: str, namespace: str, reason: str, message: str) -> dict | None:
        """End the Job now (``localflow run`` interrupted or timed out): stop its active Pods and
        write ``FailureTarget`` and ``Failed`` with ``reason``/``message``; returns the Job, or
        None when it is gone. A finished Job is left as it is."""
        try:
            job = self.store.get("Job", name, namespace)
        except NotFound:
            return None
        if job_finished(job):
            return job
        uid = job["metadata"]["uid"]
        self._stop([p for p in self.store.list("Pod", namespace, owner_uid=uid) if _phase(p) in ("Pending", "Running")],
                   reason)
        status = self._finish_now(job, "Failed", reason, message)
        status["active"] = 0
        self._write(job, status)
        return self.store.get("Job", name, namespace)

    def _finish_now(self, job: dict, final: str, reason: str, message: str) -> dict:
        status = copy.deepcopy(job.get("status") or {})
        now = self.clock.rfc3339()
        conds = status.setdefault("conditions", [])
        conds.append(_condition("FailureTarget" if final == "Failed" else "SuccessCriteriaMet", "True", reason, message, now))
        conds.append(_condition(final, "True", reason, message, now))
        self.store.record_event(job, reason, message, type="Warning", component="job-controller")
        return status

    def _write(self, job: dict, status: dict) -> None:
        if status != (job.get("status") or {}):
            self.store.update_status("Job", job["metadata"]["name"], status, job["metadata"].get("namespace"))

    def _ttl(self, job: dict) -> float | None:
        """Delete a finished Job ``ttlSecondsAfterFinished`` after it finished (the TTL-after-finished
        controller); returns the seconds left, or None."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return None
        st = job.get("status") or {}
        ended = parse_rfc3339(st.get("completionTime")) or max(
            (parse_rfc3339(c.get("lastTransitionTime")) or 0.0 for c in st.get("conditions") or [] if c.get("type") in ("Complete", "Failed")),
            default=0.0)
        left = ended + float(ttl) - self.clock.now()
        if left > 0:
            return left
        try:
            self.store.delete("Job", job["metadata"]["name"], job["metadata"].get("namespace"))
        except NotFound:
            pass
        return None


class _CreateFailed(Exception):
    """A Pod of the Job could not be created (its template can never run here)."""

    def __init__(self, err: SpecError):
        super().__init__(err.message)
        self.err = err
