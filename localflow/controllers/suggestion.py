"""The Katib ``Suggestion`` controller: assignments for the trials an Experiment asks for.

Follows kubeflow/katib ``pkg/controller.v1beta1/suggestion/suggestion_controller.go`` and
``suggestionclient/suggestionclient.go`` (``../shared/reference/katib.md`` sections 1 and 9.3):
whenever ``spec.requests > status.suggestionCount`` the algorithm is asked for
``requests - suggestionCount`` assignments, given every trial of the experiment (the finished ones'
objective values are told to the study first); the assignments are appended to
``status.suggestions`` under new trial names ``<experiment>-<8 random characters>`` and
``status.suggestionCount`` updated. Conditions ``Created`` (``SuggestionCreated``) and ``Running``
(``SuggestionRunning``); an algorithm error makes the Suggestion ``Failed`` (``SuggestionFailed``),
which fails the experiment. Katib runs the algorithm as a Deployment + gRPC Service; here it runs in
the manager's process (:mod:`localflow.katib.suggest`, Optuna), so ``DeploymentReady`` is not written.
Grid search stops at the number of combinations (the experiment then ends with
``ExperimentSuggestionEndReached``).
"""
from __future__ import annotations

import copy
import secrets

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.errors import NotFound

from .trial import EXPERIMENT_LABEL, changed, has_condition, set_condition

__all__ = ["SuggestionReconciler", "trial_results", "trial_name"]

# the Kubernetes random-string alphabet (k8s.io/apimachinery/pkg/util/rand): lowercase consonants and digits
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def trial_name(experiment: str) -> str:
    """``<experiment>-<8 random characters>``, as Katib names trials (``utilrand.String(8)``)."""
    return f"{experiment}-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def trial_results(trials: list[dict], spec: dict) -> dict[str, float | None]:
    """Objective values of the finished trials by name (``None``: failed or without metrics), as the
    suggestion service is told them."""
    from localflow.katib.metrics import objective_value
    from localflow.specs.katib import objective_strategy

    out: dict[str, float | None] = {}
    name, strategy = spec["objective"]["objectiveMetricName"], objective_strategy(spec)
    for t in trials:
        tname = t["metadata"]["name"]
        if has_condition(t, "Succeeded"):
            v = objective_value((t.get("status") or {}).get("observation"), name, strategy)
            try:
                out[tname] = float(v)
            except (TypeError, ValueError):
                out[tname] = None
        elif any(has_condition(t, c) for c in ("Failed", "MetricsUnavailable", "Killed", "EarlyStopped")):
            out[tname] = None
    return out


class SuggestionReconciler:
    """Reconciles Katib Suggestions (see the module docstring)."""

    kind = "Suggestion"
    owns = ()

    def __init__(self, store, clock: Clock = SYSTEM_CLOCK):
        self.store, self.clock = store, clock

    def reconcile(self, key) -> float | None:
        """One pass over the Suggestion ``key`` = ``("Suggestion", namespace, name)``."""
        from localflow.katib.suggest import suggester_for
        from localflow.specs.katib import experiment_defaults

        _, ns, name = key
        try:
            sug = self.store.get("Suggestion", name, ns)
            exp = self.store.get("Experiment", name, ns)
        except NotFound:
            return None
        if has_condition(sug, "Failed") or has_condition(sug, "Succeeded"):
            return None
        now = self.clock.rfc3339()
        status = copy.deepcopy(sug.get("status") or {})
        if not has_condition(sug, "Created"):
            status.setdefault("startTime", now)
            set_condition(status, "Created", "True", "SuggestionCreated", "Suggestion is created", now)
        if not has_condition({"status": status}, "Running"):
            set_condition(status, "Running", "True", "SuggestionRunning", "Suggestion is running", now)
        requests = int((sug.get("spec") or {}).get("requests") or 0)
        have = list(status.get("suggestions") or [])
        want = requests - len(have)
        if want > 0:
            spec = experiment_defaults(exp)["spec"]
            trials = self.store.list("Trial", ns, label_selector={EXPERIMENT_LABEL: name})
            try:
                s = suggester_for(exp["metadata"]["uid"], spec, have, trial_results(trials, spec))
                s.tell(trial_results(trials, spec))
                if s.name == "grid":
                    from localflow.katib.suggest import grid_size

                    want = min(want, grid_size(spec) - len(s.names))
                names = [trial_name(name) for _ in range(max(0, want))]
                for tname, assignment in zip(names, s.ask(names)):
                    have.append({"name": tname, "parameterAssignments": assignment})
            except Exception as exc:  # noqa: BLE001 - an algorithm fault is the Suggestion's Failed condition
                set_condition(status, "Running", "False", "SuggestionFailed", f"Suggestion has failed: {exc}", now)
                set_condition(status, "Failed", "True", "SuggestionFailed", f"Suggestion has failed: {exc}", now)
                status["completionTime"] = now
            status["suggestions"] = have
            status["suggestionCount"] = len(have)
        status.setdefault("suggestionCount", len(have))
        if changed(status, sug):
            status["lastReconcileTime"] = now
            self.store.update_status("Suggestion", name, status, ns)
        return None
