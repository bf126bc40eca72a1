"""Suggestion algorithms on Optuna's samplers, as Katib's suggestion services run them.

Follows kubeflow/katib ``pkg/suggestion/v1beta1/optuna/base_service.py``: one Optuna study per
experiment, ``study.ask(fixed_distributions=...)`` per requested assignment (int/double as
``IntDistribution``/``FloatDistribution`` with ``step`` and ``log`` for ``logUniform``, discrete and
categorical as ``CategoricalDistribution``), ``study.tell(number, value)`` once a trial has its
objective; ``grid`` is Optuna's ``GridSampler`` over Katib's combinations
(:func:`localflow.specs.katib.grid_values`); ``random_state`` seeds the sampler.

Like Katib's algorithm service (a Deployment holding the study in memory), a :class:`Suggester`
keeps its study in memory (:data:`STUDIES`, per experiment uid). A process that has none (a
restarted server) rebuilds it from the Suggestion's assignments: random and grid by asking again in
the same seeded order (the same assignments), tpe by enqueuing the earlier assignments with their
results. Nothing here writes: the Suggestion reconciler stores what it returns.
"""
from __future__ import annotations

import threading

from localflow.specs.katib import grid_values

__all__ = ["Suggester", "suggester_for", "STUDIES", "grid_size"]

_LOCK = threading.Lock()
STUDIES: dict[str, "Suggester"] = {}


def grid_size(spec: dict) -> int:
    """The number of grid combinations of ``spec.parameters``."""
    n = 1
    for p in spec["parameters"]:
        n *= len(grid_values(p))
    return n


class Suggester:
    """The study of one experiment (``spec``: the defaulted Experiment spec). ``names``: trial names
    in the order their assignments were asked; ``told``: the names whose results the study has."""

    def __init__(self, spec: dict):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.spec = spec
        alg = spec["algorithm"]
        self.name = alg["algorithmName"]
        settings = {s["name"]: str(s.get("value", "")) for s in alg.get("algorithmSettings") or []}
        seed = settings.get("random_state", settings.get("seed"))
        seed = int(seed) if seed not in (None, "") else None
        samplers = optuna.samplers
        if self.name == "random":
            sampler = samplers.RandomSampler(seed=seed)
        elif self.name == "grid":
            sampler = samplers.GridSampler({p["name"]: grid_values(p) for p in spec["parameters"]}, seed=seed)
        else:  # tpe, multivariate-tpe
            kw = {"seed": seed}
            if settings.get("n_startup_trials"):
                kw["n_startup_trials"] = int(settings["n_startup_trials"])
            ei = settings.get("n_ei_candidates") or settings.get("n_EI_candidates")
            if ei:
                kw["n_ei_candidates"] = int(ei)
            if self.name == "multivariate-tpe":
                kw.update(multivariate=True, constant_liar=True)
            sampler = samplers.TPESampler(**kw)
        direction = "maximize" if spec["objective"]["type"] == "maximize" else "minimize"
        self.study = optuna.create_study(sampler=sampler, direction=direction)
        self.dists = self._distributions()
        self.names: list[str] = []
        self.numbers: dict[str, int] = {}
        self.told: set[str] = set()

    def _distributions(self) -> dict:
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        out = {}
        for p in self.spec["parameters"]:
            fs, kind = p["feasibleSpace"], p["parameterType"]
            log = fs.get("distribution") == "logUniform"
            step = fs.get("step") if fs.get("step") not in (None, "") else None
            if kind == "int":
                out[p["name"]] = IntDistribution(int(fs["min"]), int(fs["max"]), log=log, step=1 if log else int(step or 1))
            elif kind == "double":
                out[p["name"]] = FloatDistribution(float(fs["min"]), float(fs["max"]), log=log,
                                                   step=None if log or step is None else float(step))
            else:
                values = [str(v) for v in fs["list"]]
                out[p["name"]] = CategoricalDistribution(values if self.name != "grid" else grid_values(p))
        return out

    def _format(self, name: str, value) -> str:
        kind = next(p["parameterType"] for p in self.spec["parameters"] if p["name"] == name)
        if kind == "int":
            return str(int(value))
        if kind == "double":
            return format(float(value), ".12g")
        return str(value)

    def exhausted(self) -> bool:
        """Grid search has asked every combination (other algorithms never run out)."""
        return self.name == "grid" and len(self.names) >= grid_size(self.spec)

    def restore(self, suggestions: list[dict], results: dict[str, float | None]) -> None:
        """Rebuild the study from stored assignments (``[{name, parameterAssignments}]``, in order)
        and the finished trials' objective values (``None``: the trial failed)."""
        if self.name in ("random", "grid"):
            self.ask([s["name"] for s in suggestions])  # the same seeded sequence
        else:
            for s in suggestions:
                params = {a["name"]: a["value"] for a in s.get("parameterAssignments") or []}
                fixed = {}
                for k, v in params.items():
                    kind = next((p["parameterType"] for p in self.spec["parameters"] if p["name"] == k), None)
                    fixed[k] = int(v) if kind == "int" else float(v) if kind == "double" else v
                self.study.enqueue_trial(fixed, skip_if_exists=False)
                t = self.study.ask(self.dists)
                self.names.append(s["name"])
                self.numbers[s["name"]] = t.number
        self.tell(results)

    def ask(self, names: list[str]) -> list[list[dict]]:
        """One assignment list ``[{name, value}]`` per trial name in ``names``."""
        out = []
        for trial_name in names:
            t = self.study.ask(self.dists)
            self.names.append(trial_name)
            self.numbers[trial_name] = t.number
            out.append([{"name": k, "value": self._format(k, v)} for k, v in t.params.items()])
        return out

    def tell(self, results: dict[str, float | None]) -> None:
        """Give the study the results of finished trials (``None``: failed), once per trial."""
        from optuna.trial import TrialState

        for trial_name, value in results.items():
            if trial_name in self.told or trial_name not in self.numbers:
                continue
            self.told.add(trial_name)
            if self.name in ("random", "grid"):
                # they sample without the history; GridSampler's after_trial calls study.stop() once the
                # grid is used up, which Optuna only allows inside optimize()
                continue
            if value is None:
                self.study.tell(self.numbers[trial_name], state=TrialState.FAIL)
            else:
                self.study.tell(self.numbers[trial_name], float(value))


def suggester_for(uid: str, spec: dict, suggestions: list[dict], results: dict[str, float | None]) -> Suggester:
    """The in-memory study of experiment ``uid``, rebuilt from ``suggestions`` when this process has none."""
    with _LOCK:
        s = STUDIES.get(uid)
        if s is None or len(s.names) != len(suggestions):
            s = Suggester(spec)
            s.restore(suggestions, results)
            STUDIES[uid] = s
        return s
