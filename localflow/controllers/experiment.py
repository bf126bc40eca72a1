"""The Katib ``Experiment`` controller: trials toward parallelTrialCount, status and completion.

Follows kubeflow/katib ``pkg/controller.v1beta1/experiment/{experiment_controller.go,
experiment_controller_util.go}`` and ``experiment/util/status_util.go`` (``../shared/reference/katib.md``
sections 1 and 9.2):

- first reconcile: only ``Created`` (``ExperimentCreated``) and ``startTime``;
- every later pass lists the trials labelled ``katib.kubeflow.org/experiment=<name>``, buckets them
  (Killed, Failed, Succeeded, EarlyStopped, Running, MetricsUnavailable, else Pending), writes the
  counters and lists and ``currentOptimalTrial`` (lowest/highest objective by the objective's
  strategy, ``unavailable`` skipped), then decides in Katib's order: goal reached
  (``ExperimentGoalReached``), ``maxFailedTrialCount`` (failed + metricsUnavailable,
  ``ExperimentFailed``), ``maxTrialCount`` (``ExperimentMaxTrialsReached``), the suggestion exhausted
  with no active trial (``ExperimentSuggestionEndReached``: grid search ran out), else ``Running``;
- while not completed: ``active = pending + running`` is brought to
  ``min(parallelTrialCount, maxTrialCount - completed)`` -- extra (newest) trials are deleted, new
  ones requested from the Suggestion (``spec.requests = trials + add``, created owned by the
  experiment) and created for every assignment that has no Trial yet. A Failed Suggestion fails the
  experiment ("Suggestion has failed"). Trials, their jobs and Pods are owned, so deleting the
  Experiment cascades.

A completed experiment creates no trials; trials still running finish on their own (Katib does
not stop them either).
"""
from __future__ import annotations

import copy

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.errors import AlreadyExists, NotFound

from .trial import EXPERIMENT_LABEL, changed, has_condition, set_condition, trial_state

__all__ = ["ExperimentReconciler", "experiment_completed", "best_trial"]

API_VERSION = "kubeflow.org/v1beta1"
_BUCKETS = {"Killed": ("trialsKilled", "killedTrialList"), "Failed": ("trialsFailed", "failedTrialList"),
            "Succeeded": ("trialsSucceeded", "succeededTrialList"),
            "EarlyStopped": ("trialsEarlyStopped", "earlyStoppedTrialList"),
            "Running": ("trialsRunning", "runningTrialList"),
            "MetricsUnavailable": ("trialMetricsUnavailable", "metricsUnavailableTrialList"),
            "Pending": ("trialsPending", "pendingTrialList")}


def experiment_completed(exp: dict) -> bool:
    """Whether the experiment has Succeeded or Failed True."""
    return has_condition(exp, "Succeeded") or has_condition(exp, "Failed")


def best_trial(trials: list[dict], spec: dict) -> dict | None:
    """The optimal trial as ``status_util.go`` picks it (list order; unavailable skipped; a value that
    is no number makes that trial the best; else lowest/highest)."""
    from localflow.katib.metrics import UNAVAILABLE, objective_value
    from localflow.specs.katib import objective_strategy

    name, strategy = spec["objective"]["objectiveMetricName"], objective_strategy(spec)
    maximize = spec["objective"]["type"] == "maximize"
    best, best_v = None, None
    for t in trials:
        v = objective_value((t.get("status") or {}).get("observation"), name, strategy)
        if v is None or v == UNAVAILABLE:
            continue
        try:
            f = float(v)
        except ValueError:
            best, best_v = t, None
            continue
        if best_v is None or (f > best_v if maximize else f < best_v):
            best, best_v = t, f
    return best


class ExperimentReconciler:
    """Reconciles Katib Experiments (see the module docstring)."""

    kind = "Experiment"
    owns = ("Trial", "Suggestion")

    def __init__(self, store, clock: Clock = SYSTEM_CLOCK):
        self.store, self.clock = store, clock

    def reconcile(self, key) -> float | None:
        """One pass over the Experiment ``key`` = ``("Experiment", namespace, name)``."""
        from localflow.specs.katib import experiment_defaults

        _, ns, name = key
        try:
            exp = self.store.get("Experiment", name, ns)
        except NotFound:
            return None
        spec = experiment_defaults(exp)["spec"]
        now = self.clock.rfc3339()
        status = copy.deepcopy(exp.get("status") or {})
        if not has_condition(exp, "Created"):
            status["startTime"] = now
            set_condition(status, "Created", "True", "ExperimentCreated", "Experiment is created", now)
            self.store.record_event(exp, "ExperimentCreated", "Experiment is created", component="experiment-controller")
            self._write(exp, status)
            return None
        trials = sorted(self.store.list("Trial", ns, label_selector={EXPERIMENT_LABEL: name}),
                        key=lambda t: (t["metadata"].get("creationTimestamp") or "", t["metadata"]["name"]))
        counts = self._summarize(status, trials, spec)
        completed = experiment_completed(exp)
        if not completed:
            completed = self._decide(exp, status, spec, counts, now)
        if not completed:
            self._reconcile_trials(exp, status, spec, trials, counts, now)
        self._write(exp, status)
        return None

    # ------------------------------------------------------------------ status

    def _summarize(self, status: dict, trials: list[dict], spec: dict) -> dict:
        counts = {k: 0 for k in _BUCKETS}
        lists: dict[str, list] = {k: [] for k in _BUCKETS}
        for t in trials:
            b = trial_state(t)
            counts[b] += 1
            lists[b].append(t["metadata"]["name"])
        status["trials"] = len(trials)
        for b, (count_key, list_key) in _BUCKETS.items():
            status[count_key] = counts[b]
            if lists[b]:
                status[list_key] = lists[b]
            else:
                status.pop(list_key, None)
        best = best_trial(trials, spec)
        if best is not None:
            status["currentOptimalTrial"] = {
                "bestTrialName": best["metadata"]["name"],
                "parameterAssignments": copy.deepcopy((best.get("spec") or {}).get("parameterAssignments") or []),
                "observation": copy.deepcopy((best.get("status") or {}).get("observation") or {"metrics": []})}
        else:
            status.setdefault("currentOptimalTrial", {"bestTrialName": "", "parameterAssignments": [],
                                                      "observation": {"metrics": []}})
        counts["total"] = len(trials)
        return counts

    def _finish(self, exp: dict, status: dict, type_: str, reason: str, message: str, now: str) -> bool:
        set_condition(status, "Running", "False", reason, message, now)
        set_condition(status, type_, "True", reason, message, now)
        status["completionTime"] = now
        self.store.record_event(exp, reason, message, type="Normal" if type_ == "Succeeded" else "Warning",
                                component="experiment-controller")
        self._end_suggestion(exp, now)
        return True

    def _end_suggestion(self, exp: dict, now: str) -> None:
        """resumePolicy Never: the Suggestion is Succeeded ("can't be restarted") and its study freed
        (Katib deletes the algorithm's Deployment and Service)."""
        from localflow.katib.suggest import STUDIES

        if (exp.get("spec") or {}).get("resumePolicy", "Never") != "Never":
            return
        STUDIES.pop(exp["metadata"]["uid"], None)
        sug = self._suggestion(exp)
        if sug is None or has_condition(sug, "Failed") or has_condition(sug, "Succeeded"):
            return
        status = copy.deepcopy(sug.get("status") or {})
        set_condition(status, "Running", "False", "Suggestion is succeeded", "Suggestion is succeeded, can't be restarted", now)
        set_condition(status, "Succeeded", "True", "Suggestion is succeeded", "Suggestion is succeeded, can't be restarted", now)
        status["completionTime"] = now
        self.store.update_status("Suggestion", sug["metadata"]["name"], status, sug["metadata"].get("namespace"))

    def _decide(self, exp: dict, status: dict, spec: dict, counts: dict, now: str) -> bool:
        """Katib's completion checks in order (``UpdateExperimentStatusCondition``); True once completed."""
        from localflow.katib.metrics import objective_value
        from localflow.specs.katib import objective_strategy

        sug = self._suggestion(exp)
        if sug is not None and has_condition(sug, "Failed"):
            msg = next((c.get("message") for c in sug["status"].get("conditions") or [] if c.get("type") == "Failed"), "")
            return self._finish(exp, status, "Failed", "ExperimentFailed", msg or "Suggestion has failed", now)
        if counts["total"] == 0:
            set_condition(status, "Running", "True", "ExperimentRunning", "Experiment is running", now)
            return False
        goal = spec["objective"].get("goal")
        best = (status.get("currentOptimalTrial") or {}).get("observation")
        v = objective_value(best, spec["objective"]["objectiveMetricName"], objective_strategy(spec))
        try:
            value = float(v) if v is not None else None
        except ValueError:
            value = None
        if goal is not None and value is not None and \
                (value >= goal if spec["objective"]["type"] == "maximize" else value <= goal):
            return self._finish(exp, status, "Succeeded", "ExperimentGoalReached",
                                "Experiment has succeeded because Objective goal has reached", now)
        failed = counts["Failed"] + counts["MetricsUnavailable"]
        mf = spec.get("maxFailedTrialCount")
        if mf is not None and failed > 0 and failed >= mf:
            return self._finish(exp, status, "Failed", "ExperimentFailed",
                                "Experiment has failed because max failed count has reached", now)
        done = sum(counts[k] for k in ("Succeeded", "Failed", "Killed", "EarlyStopped", "MetricsUnavailable"))
        mx = spec.get("maxTrialCount")
        if mx is not None and done >= mx:
            return self._finish(exp, status, "Succeeded", "ExperimentMaxTrialsReached",
                                "Experiment has succeeded because max trial count has reached", now)
        if self._exhausted(spec, sug, counts["total"]) and counts["Pending"] + counts["Running"] == 0:
            return self._finish(exp, status, "Succeeded", "ExperimentSuggestionEndReached",
                                "Experiment has succeeded because suggestion service has reached the end", now)
        set_condition(status, "Running", "True", "ExperimentRunning", "Experiment is running", now)
        return False

    @staticmethod
    def _exhausted(spec: dict, sug: dict | None, trials: int) -> bool:
        """Grid search has assigned every combination and every assignment has its trial."""
        if spec["algorithm"]["algorithmName"] != "grid" or sug is None:
            return False
        from localflow.katib.suggest import grid_size

        count = int((sug.get("status") or {}).get("suggestionCount") or 0)
        return count >= grid_size(spec) and trials >= count

    # ------------------------------------------------------------------ trials

    def _suggestion(self, exp: dict) -> dict | None:
        try:
            return self.store.get("Suggestion", exp["metadata"]["name"], exp["metadata"].get("namespace") or "default")
        except NotFound:
            return None

    def _owner_ref(self, exp: dict) -> list[dict]:
        m = exp["metadata"]
        return [{"apiVersion": API_VERSION, "kind": "Experiment", "name": m["name"], "uid": m["uid"],
                 "controller": True, "blockOwnerDeletion": True}]

    def _reconcile_trials(self, exp: dict, status: dict, spec: dict, trials: list[dict], counts: dict, now: str) -> None:
        name, ns = exp["metadata"]["name"], exp["metadata"].get("namespace") or "default"
        parallel = spec.get("parallelTrialCount") or 3
        active = counts["Pending"] + counts["Running"]
        if active > parallel:
            extra = [t for t in trials if trial_state(t) in ("Pending", "Running")][parallel - active:]
            for t in extra:
                try:
                    self.store.delete("Trial", t["metadata"]["name"], ns)
                except NotFound:
                    pass
            return
        completed = sum(counts[k] for k in ("Succeeded", "Failed", "Killed", "EarlyStopped"))
        mx = spec.get("maxTrialCount")
        required = parallel if mx is None else min(parallel, mx - completed)
        add = max(0, required - active)
        sug = self._suggestion(exp)
        requests = counts["total"] + add
        if sug is None:
            body = {"apiVersion": API_VERSION, "kind": "Suggestion",
                    "metadata": {"name": name, "namespace": ns, "ownerReferences": self._owner_ref(exp),
                                 "labels": {EXPERIMENT_LABEL: name}},
                    "spec": {"algorithm": copy.deepcopy(spec["algorithm"]), "requests": requests,
                             "resumePolicy": spec.get("resumePolicy", "Never")}}
            try:
                sug = self.store.create(body)
            except AlreadyExists:
                sug = self._suggestion(exp)
        elif add > 0 and int((sug.get("spec") or {}).get("requests") or 0) < requests:
            sug = self.store.patch("Suggestion", name, {"spec": {"requests": requests}}, ns)
        existing = {t["metadata"]["name"] for t in trials}
        for s in ((sug or {}).get("status") or {}).get("suggestions") or []:
            if s["name"] not in existing and add > 0:
                self._create_trial(exp, spec, s)
                add -= 1

    def _create_trial(self, exp: dict, spec: dict, suggestion: dict) -> None:
        from localflow.specs.katib import render_trial

        meta = exp["metadata"]
        ns = meta.get("namespace") or "default"
        assignments = suggestion.get("parameterAssignments") or []
        labels = {EXPERIMENT_LABEL: meta["name"]}
        run_id = (meta.get("labels") or {}).get(RUN_ID_LABEL)
        if run_id:
            labels[RUN_ID_LABEL] = run_id
        tt = spec["trialTemplate"]
        try:
            run_spec = render_trial(exp, suggestion["name"], {a["name"]: a["value"] for a in assignments})
        except Exception as exc:  # noqa: BLE001 - a template that cannot render is recorded, not retried forever
            self.store.record_event(exp, "TrialCreateFailed", str(exc), type="Warning", component="experiment-controller")
            raise
        trial = {"apiVersion": API_VERSION, "kind": "Trial",
                 "metadata": {"name": suggestion["name"], "namespace": ns, "labels": labels,
                              "ownerReferences": self._owner_ref(exp)},
                 "spec": {"objective": copy.deepcopy(spec["objective"]), "parameterAssignments": copy.deepcopy(assignments),
                          "runSpec": run_spec, "primaryContainerName": tt.get("primaryContainerName"),
                          "successCondition": tt.get("successCondition"), "failureCondition": tt.get("failureCondition"),
                          "metricsCollector": copy.deepcopy(spec.get("metricsCollectorSpec") or {}),
                          "retainRun": bool(tt.get("retain", False))}}
        try:
            self.store.create(trial)
        except AlreadyExists:
            return
        self.store.record_event(exp, "TrialCreated", f"Trial {suggestion['name']} is created", component="experiment-controller")

    def _write(self, exp: dict, status: dict) -> None:
        if changed(status, exp):
            status["lastReconcileTime"] = self.clock.rfc3339()
            self.store.update_status("Experiment", exp["metadata"]["name"], status, exp["metadata"].get("namespace"))
