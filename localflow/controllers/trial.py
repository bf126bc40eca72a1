"""The Katib ``Trial`` controller: one trial job per Trial, its status and its metrics.

Follows kubeflow/katib ``pkg/controller.v1beta1/trial/{trial_controller.go,trial_controller_util.go}``
and ``trial/util/job_util.go`` (see ``../shared/reference/katib.md`` section 9.1):

- first reconcile: condition ``Created`` (``TrialCreated``, "Trial is created"), then the job
  ``spec.runSpec`` is created, named after the trial and owned by it. The pod webhook's part
  (``pkg/webhook/v1beta1/pod/inject_webhook.go``) is done on the job's Pod template: labels
  ``katib.kubeflow.org/trial``/``experiment`` and env ``KATIB_TRIAL_NAME`` in the primary container;
- the job is judged by ``failureCondition`` first, then ``successCondition`` (GJSON,
  :func:`localflow.katib.metrics.job_condition`); an existing undecided job makes the trial
  ``Running`` (``TrialRunning``);
- job Failed -> ``Failed`` (``TrialFailed. Job reason: <r>``); job Succeeded -> the StdOut
  collector parses the primary container's log of the trial's Pods
  (:func:`localflow.katib.metrics.parse_text`), writes ``status.observation``, and the trial is
  ``Succeeded`` when the objective has a value, else ``MetricsUnavailable``;
- a completed trial deletes its job unless ``retainRun`` (its Pods' logs stay in the workspace).

Nothing is kept in memory: everything is read from the store (and the log files) on every pass.
"""
from __future__ import annotations

import copy

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.errors import AlreadyExists, NotFound

__all__ = ["TrialReconciler", "set_condition", "has_condition", "changed", "trial_state", "EXPERIMENT_LABEL", "TRIAL_LABEL",
           "TERMINAL_TRIAL"]

EXPERIMENT_LABEL = "katib.kubeflow.org/experiment"
TRIAL_LABEL = "katib.kubeflow.org/trial"
TERMINAL_TRIAL = ("Killed", "Failed", "Succeeded", "EarlyStopped", "MetricsUnavailable")


def has_condition(obj: dict, type_: str) -> bool:
    """Whether ``obj`` has condition ``type_`` with status True."""
    return any(c.get("type") == type_ and c.get("status") == "True" for c in (obj.get("status") or {}).get("conditions") or [])


def set_condition(status: dict, type_: str, state: str, reason: str, message: str, now: str) -> None:
    """Set condition ``type_`` in ``status`` as Katib's ``setCondition`` does (transition time only
    when the status changes)."""
    conds = status.setdefault("conditions", [])
    for c in conds:
        if c.get("type") == type_:
            if (c.get("status"), c.get("reason"), c.get("message")) == (state, reason, message):
                return
            if c.get("status") != state:
                c["lastTransitionTime"] = now
            c.update(status=state, reason=reason, message=message, lastUpdateTime=now)
            return
    conds.append({"type": type_, "status": state, "reason": reason, "message": message,
                  "lastUpdateTime": now, "lastTransitionTime": now})


def changed(status: dict, obj: dict) -> bool:
    """Whether ``status`` differs from ``obj``'s beyond ``lastReconcileTime`` (a pass that changed
    nothing writes nothing, so it does not trigger itself again)."""
    old = dict(obj.get("status") or {})
    return {k: v for k, v in status.items() if k != "lastReconcileTime"} != \
        {k: v for k, v in old.items() if k != "lastReconcileTime"}


def trial_state(trial: dict) -> str:
    """The experiment's bucket of a trial (first match wins): Killed, Failed, Succeeded,
    EarlyStopped, Running, MetricsUnavailable, else Pending."""
    for t in ("Killed", "Failed", "Succeeded", "EarlyStopped", "Running", "MetricsUnavailable"):
        if has_condition(trial, t):
            return t
    return "Pending"


def _completed(trial: dict) -> bool:
    return any(has_condition(trial, t) for t in TERMINAL_TRIAL)


class TrialReconciler:
    """Reconciles Katib Trials (see the module docstring). ``logs_dir``: the workspace's container
    log directory (:attr:`localflow.workspace.Workspace.logs_dir`), where the collector reads."""

    kind = "Trial"
    owns = ("Job",)

    def __init__(self, store, logs_dir, clock: Clock = SYSTEM_CLOCK):
        self.store, self.logs_dir, self.clock = store, logs_dir, clock

    def reconcile(self, key) -> float | None:
        """One pass over the Trial ``key`` = ``("Trial", namespace, name)``."""
        from localflow.katib.metrics import job_condition

        _, ns, name = key
        try:
            trial = self.store.get("Trial", name, ns)
        except NotFound:
            return None
        spec = trial.get("spec") or {}
        run_spec = spec.get("runSpec") or {}
        job_kind = run_spec.get("kind", "Job")
        job = self._job(job_kind, name, ns)
        if _completed(trial):
            if job is not None and not spec.get("retainRun"):
                self._delete_job(job_kind, name, ns)
            return None
        now = self.clock.rfc3339()
        status = copy.deepcopy(trial.get("status") or {})
        if not has_condition(trial, "Created"):
            status.setdefault("startTime", now)
            set_condition(status, "Created", "True", "TrialCreated", "Trial is created", now)
            self.store.record_event(trial, "TrialCreated", "Trial is created", component="trial-controller")
        if job is None:
            job = self._create_job(trial, run_spec)
        decided = job_condition(job, spec.get("successCondition") or "", spec.get("failureCondition") or "")
        if decided is None:
            if not has_condition({"status": status}, "Running"):
                set_condition(status, "Running", "True", "TrialRunning", "Trial is running", now)
                self.store.record_event(trial, "JobRunning", f"Job {name} is running", component="trial-controller")
        elif decided[0] == "Failed":
            jr, jm = decided[1].get("reason") or "", decided[1].get("message") or ""
            set_condition(status, "Running", "False", "TrialFailed", "Trial has failed", now)
            set_condition(status, "Failed", "True", f"TrialFailed. Job reason: {jr}" if jr else "TrialFailed",
                          f"Trial has failed. Job message: {jm}" if jm else "Trial has failed", now)
            status["completionTime"] = now
            self.store.record_event(trial, "JobFailed", f"Job {name} has failed: {jm or jr}", type="Warning",
                                    component="trial-controller")
        else:
            obs = self._collect(trial, spec)
            status["observation"] = obs
            from localflow.katib.metrics import UNAVAILABLE

            objective = (spec.get("objective") or {}).get("objectiveMetricName")
            latest = next((m.get("latest") for m in obs["metrics"] if m.get("name") == objective), None)
            jr, jm = decided[1].get("reason") or "", decided[1].get("message") or ""
            if latest not in (None, UNAVAILABLE):
                set_condition(status, "Running", "False", "TrialSucceeded", "Trial has succeeded", now)
                set_condition(status, "Succeeded", "True", f"TrialSucceeded. Job reason: {jr}" if jr else "TrialSucceeded",
                              f"Trial has succeeded. Job message: {jm}" if jm else "Trial has succeeded", now)
                self.store.record_event(trial, "JobSucceeded", f"Job {name} has succeeded", component="trial-controller")
            else:
                set_condition(status, "Running", "False", "MetricsUnavailable", "Metrics are not available", now)
                set_condition(status, "MetricsUnavailable", "True", "MetricsUnavailable",
                              f"Metrics are not available: objective metric {objective} is not found in the logs of "
                              f"container {spec.get('primaryContainerName')}", now)
                self.store.record_event(trial, "MetricsUnavailable", "Metrics are not available", type="Warning",
                                        component="trial-controller")
            status["completionTime"] = now
        if changed(status, trial):
            status["lastReconcileTime"] = now
            self.store.update_status("Trial", name, status, ns)
        return None

    # ------------------------------------------------------------------ parts

    def _job(self, kind: str, name: str, ns: str) -> dict | None:
        try:
            return self.store.get(kind, name, ns)
        except NotFound:
            return None

    def _create_job(self, trial: dict, run_spec: dict) -> dict:
        meta, spec = trial["metadata"], trial["spec"]
        job = copy.deepcopy(run_spec)
        jmeta = job.setdefault("metadata", {})
        jmeta.update(name=meta["name"], namespace=meta.get("namespace") or "default")
        labels = jmeta.setdefault("labels", {})
        exp = (meta.get("labels") or {}).get(EXPERIMENT_LABEL, "")
        run_id = (meta.get("labels") or {}).get(RUN_ID_LABEL)
        if run_id:
            labels[RUN_ID_LABEL] = run_id
        jmeta["ownerReferences"] = [{"apiVersion": trial["apiVersion"], "kind": "Trial", "name": meta["name"],
                                     "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]
        tmpl = job.setdefault("spec", {}).setdefault("template", {})
        tlabels = tmpl.setdefault("metadata", {}).setdefault("labels", {})
        tlabels.update({TRIAL_LABEL: meta["name"], EXPERIMENT_LABEL: exp})
        for c in (tmpl.get("spec") or {}).get("containers") or []:
            if c.get("name") == spec.get("primaryContainerName"):
                c["env"] = [*(e for e in c.get("env") or [] if e.get("name") != "KATIB_TRIAL_NAME"),
                            {"name": "KATIB_TRIAL_NAME", "value": meta["name"]}]
        try:
            created = self.store.create(job)
        except AlreadyExists:
            return self.store.get(job["kind"], meta["name"], jmeta["namespace"])
        self.store.record_event(trial, "JobCreated", f"Job {meta['name']} is created", component="trial-controller")
        return created

    def _delete_job(self, kind: str, name: str, ns: str) -> None:
        try:
            self.store.delete(kind, name, ns, propagation="Foreground")
        except NotFound:
            pass

    def _collect(self, trial: dict, spec: dict) -> dict:
        """The trial's observation from its Pods' primary-container logs (oldest Pod first)."""
        from localflow import logfiles
        from localflow.katib.metrics import observation, parse_text

        ns, name = trial["metadata"].get("namespace") or "default", trial["metadata"]["name"]
        pods = sorted(self.store.list("Pod", ns, label_selector={TRIAL_LABEL: name}),
                      key=lambda p: p["metadata"].get("creationTimestamp") or "")
        text = []
        for pod in pods:
            path = logfiles.pod_log(self.logs_dir, pod, spec.get("primaryContainerName") or "")
            if path is not None and path.exists():
                text.append(path.read_text(errors="replace"))
        objective = spec.get("objective") or {}
        names = [objective.get("objectiveMetricName"), *(objective.get("additionalMetricNames") or [])]
        filters = ((((spec.get("metricsCollector") or {}).get("source") or {}).get("filter") or {})
                   .get("metricsFormat")) or None
        logs = parse_text("\n".join(text), names, filters)
        return observation(logs, objective.get("metricStrategies") or [{"name": n, "value": "latest"} for n in names])
