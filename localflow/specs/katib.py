"""Katib ``kubeflow.org/v1beta1`` Experiment: defaults, validation and trial-template rendering.

Follows kubeflow/katib (snapshot in ``../shared/reference/katib.md``):

- defaults: ``pkg/apis/controller/experiments/v1beta1/experiment_defaults.go`` (parallelTrialCount 3,
  resumePolicy Never, metricsCollectorSpec StdOut, metricStrategies from the objective type,
  successCondition/failureCondition/primaryPodLabels by trial kind from ``constants.go``);
- validation: ``pkg/webhook/v1beta1/experiment/validator/validator.go`` (name, objective, algorithm,
  parameters and feasibleSpace, counts, trialTemplate and its ``${trialParameters.x}`` placeholders,
  metrics collector) -- every problem one :class:`SpecError` at its field path with the fix;
- rendering: ``pkg/controller.v1beta1/experiment/manifest/generator.go`` (plain-text substitution of
  ``${trialParameters.<name>}`` in the serialized template, ``${trialSpec.Name}`` and friends, then
  ``metadata.name``/``namespace`` set to the trial's).

What localflow does not run yet is refused here by name (NAS, pbt, hyperband, cmaes, sobol,
bayesianoptimization, early stopping, collectors other than StdOut, ConfigMap templates, trial kinds
other than ``batch/v1`` Job), so nothing starts that could not finish as Katib's would.
"""
from __future__ import annotations

import copy
import json
import re

from localflow.errors import SpecError
from localflow.validation import check_known_fields, check_list, check_mapping

__all__ = ["experiment_defaults", "experiment_errors", "load_experiment", "render_trial", "ALGORITHMS",
           "metric_names", "objective_strategy", "grid_values"]

# algorithmName -> accepted settings (Katib's suggestion services' validators; localflow runs them on Optuna)
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "random": ("random_state",),
    "grid": ("random_state", "seed"),
    "tpe": ("random_state", "n_startup_trials", "n_ei_candidates", "gamma", "prior_weight", "n_EI_candidates"),
    "multivariate-tpe": ("random_state", "n_startup_trials", "n_ei_candidates"),
}
_REFUSED_ALGORITHMS = {
    "enas": "is neural architecture search (nasConfig), which localflow does not run",
    "darts": "is neural architecture search (nasConfig), which localflow does not run",
    "pbt": "needs a ReadWriteMany volume shared by a population of trials, which localflow does not run yet",
    "hyperband": "is not run by localflow yet",
    "cmaes": "is not run by localflow yet",
    "sobol": "is not run by localflow yet",
    "bayesianoptimization": "is not run by localflow yet",
}
PARAMETER_TYPES = ("int", "double", "discrete", "categorical")
DISTRIBUTIONS = ("uniform", "logUniform", "normal", "logNormal")
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?")
_PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")
_META_REF = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
_LABEL_REF = re.compile(r"^(.+)\[(.+)]$")
_SPEC_FIELDS = ("parameters", "objective", "algorithm", "earlyStopping", "trialTemplate", "parallelTrialCount",
                "maxTrialCount", "maxFailedTrialCount", "metricsCollectorSpec", "nasConfig", "resumePolicy")
# constants.go: default success/failure conditions of a batch/v1 Job trial
JOB_SUCCESS = 'status.conditions.#(type=="Complete")#|#(status=="True")#'
JOB_FAILURE = 'status.conditions.#(type=="Failed")#|#(status=="True")#'
P = "Experiment.spec"


def experiment_defaults(obj: dict) -> dict:
    """A copy of Experiment ``obj`` with Katib's defaults (``experiment_defaults.go``); a spec that is
    not a mapping is left for validation to name."""
    exp = copy.deepcopy(obj)
    spec = exp.get("spec")
    if not isinstance(spec, dict):
        return exp
    spec.setdefault("parallelTrialCount", 3)
    spec.setdefault("resumePolicy", "Never")
    mc = spec.setdefault("metricsCollectorSpec", {})
    if isinstance(mc, dict):
        col = mc.setdefault("collector", {})
        if isinstance(col, dict):
            col.setdefault("kind", "StdOut")
    obj_ = spec.get("objective")
    if isinstance(obj_, dict):
        strat = {"minimize": "min", "maximize": "max"}.get(obj_.get("type"), "latest")
        have = {s.get("name") for s in obj_.get("metricStrategies") or [] if isinstance(s, dict)}
        names = [obj_.get("objectiveMetricName"), *(obj_.get("additionalMetricNames") or [])]
        extra = [{"name": n, "value": strat} for n in names if isinstance(n, str) and n and n not in have]
        if extra:
            obj_["metricStrategies"] = [*(obj_.get("metricStrategies") or []), *extra]
    tt = spec.get("trialTemplate")
    if isinstance(tt, dict) and isinstance(tt.get("trialSpec"), dict) and tt["trialSpec"].get("kind") == "Job":
        tt.setdefault("successCondition", JOB_SUCCESS)
        tt.setdefault("failureCondition", JOB_FAILURE)
    return exp


def _float(path: str, value, what: str) -> float:
    try:
        return float(str(value))
    except ValueError:
        raise SpecError(path, f"must be a number written as a string (got {value!r})",
                        fix=f'quote the {what}, e.g. "0.01"') from None


def _parameter_errors(params) -> list[SpecError]:
    errs: list[SpecError] = []
    seen: set = set()
    for i, p in enumerate(params):
        path = f"{P}.parameters[{i}]"
        if not isinstance(p, dict):
            errs.append(SpecError(path, "must be a mapping with name, parameterType and feasibleSpace"))
            continue
        name = p.get("name")
        if not isinstance(name, str) or not name:
            errs.append(SpecError(f"{path}.name", "is required", fix="name the parameter, e.g. name: lr"))
        elif name in seen:
            errs.append(SpecError(f"{path}.name", f"parameter {name!r} is defined twice", fix="give each parameter its own name"))
        seen.add(name)
        kind = p.get("parameterType")
        if kind not in PARAMETER_TYPES:
            errs.append(SpecError(f"{path}.parameterType", f"must be one of {', '.join(PARAMETER_TYPES)} (got {kind!r})",
                                  fix="set parameterType: double (or int, discrete, categorical)"))
            continue
        fs = p.get("feasibleSpace")
        if not isinstance(fs, dict):
            errs.append(SpecError(f"{path}.feasibleSpace", "is required (a mapping)",
                                  fix='give min and max (int, double) or list (discrete, categorical), e.g. {min: "0.01", max: "0.1"}'))
            continue
        fpath = f"{path}.feasibleSpace"
        dist = fs.get("distribution")
        if dist in ("normal", "logNormal"):
            errs.append(SpecError(f"{fpath}.distribution", f"{dist} is not run by localflow yet (Optuna has no normal "
                                  "distribution; Katib samples it with hyperopt)", fix="use distribution: uniform or logUniform"))
        elif dist not in (None, "", *DISTRIBUTIONS):
            errs.append(SpecError(f"{fpath}.distribution", f"must be one of {', '.join(DISTRIBUTIONS)} (got {dist!r})",
                                  fix="set distribution: uniform or leave it out"))
        try:
            if kind in ("int", "double"):
                if fs.get("list") is not None:
                    raise SpecError(f"{fpath}.list", f"is not allowed for parameterType {kind}", fix="use min and max")
                for key in ("min", "max"):
                    if fs.get(key) in (None, ""):
                        raise SpecError(f"{fpath}.{key}", f"is required for parameterType {kind}",
                                        fix=f'set {key}, e.g. {key}: "{1 if key == "max" else 0}"')
                lo, hi = _float(f"{fpath}.min", fs["min"], "min"), _float(f"{fpath}.max", fs["max"], "max")
                if kind == "int":
                    for key in ("min", "max"):
                        if not re.fullmatch(r"[+-]?\d+", str(fs[key]).strip()):
                            raise SpecError(f"{fpath}.{key}", f"must be an integer for parameterType int (got {fs[key]!r})",
                                            fix="use parameterType: double for fractional values")
                if lo > hi:
                    raise SpecError(fpath, f"min ({fs['min']}) is greater than max ({fs['max']})", fix="swap min and max")
                if fs.get("step") not in (None, ""):
                    step = _float(f"{fpath}.step", fs["step"], "step")
                    if step <= 0:
                        raise SpecError(f"{fpath}.step", f"must be > 0 (got {fs['step']})", fix="use a positive step or leave it out")
                if dist in ("logUniform", "logNormal") and lo <= 0:
                    raise SpecError(f"{fpath}.min", f"must be > 0 for distribution {dist} (got {fs['min']})",
                                    fix="raise min above 0 or use distribution: uniform")
            else:
                for key in ("min", "max", "step"):
                    if fs.get(key) not in (None, ""):
                        raise SpecError(f"{fpath}.{key}", f"is not allowed for parameterType {kind}", fix="list the values in list")
                vals = fs.get("list")
                if not isinstance(vals, list) or not vals:
                    raise SpecError(f"{fpath}.list", f"is required for parameterType {kind} (a non-empty list)",
                                    fix='list the values as strings, e.g. list: ["sgd", "adam"]')
        except SpecError as e:
            errs.append(e)
    return errs


def _objective_errors(o) -> list[SpecError]:
    path = f"{P}.objective"
    if not isinstance(o, dict):
        return [SpecError(path, "is required", fix="set objective: {type: maximize, objectiveMetricName: accuracy}")]
    errs = []
    if o.get("type") not in ("minimize", "maximize"):
        errs.append(SpecError(f"{path}.type", f"must be minimize or maximize (got {o.get('type')!r})", fix="set type: maximize"))
    name = o.get("objectiveMetricName")
    if not isinstance(name, str) or not name:
        errs.append(SpecError(f"{path}.objectiveMetricName", "is required",
                              fix="name the metric the trial prints, e.g. objectiveMetricName: accuracy"))
    extra = o.get("additionalMetricNames") or []
    if not isinstance(extra, list) or not all(isinstance(x, str) and x for x in extra):
        errs.append(SpecError(f"{path}.additionalMetricNames", "must be a list of metric names"))
    elif name in extra:
        errs.append(SpecError(f"{path}.additionalMetricNames", f"must not contain the objective metric {name!r}",
                              fix=f"remove {name} from additionalMetricNames"))
    if o.get("goal") is not None and not isinstance(o.get("goal"), (int, float)) or isinstance(o.get("goal"), bool):
        errs.append(SpecError(f"{path}.goal", f"must be a number (got {o.get('goal')!r})", fix="set goal: 0.99, or leave it out"))
    for i, s in enumerate(o.get("metricStrategies") or []):
        if not isinstance(s, dict) or s.get("value") not in ("min", "max", "latest"):
            errs.append(SpecError(f"{path}.metricStrategies[{i}].value", "must be min, max or latest",
                                  fix="set value: max (or min, latest)"))
    return errs


def _count_errors(spec: dict) -> list[SpecError]:
    errs = []
    for key in ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount"):
        v = spec.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < (0 if key == "maxFailedTrialCount" else 1)):
            low = "0" if key == "maxFailedTrialCount" else "1"
            errs.append(SpecError(f"{P}.{key}", f"must be an integer >= {low} (got {v!r})", fix=f"set {key}: {low} or more"))
    if errs:
        return errs
    mx = spec.get("maxTrialCount")
    if mx is not None:
        if spec.get("parallelTrialCount", 3) > mx:
            errs.append(SpecError(f"{P}.parallelTrialCount", f"must be <= maxTrialCount ({mx}) (got {spec['parallelTrialCount']})",
                                  fix=f"set parallelTrialCount: {mx} or lower"))
        if (spec.get("maxFailedTrialCount") or 0) > mx:
            errs.append(SpecError(f"{P}.maxFailedTrialCount", f"must be <= maxTrialCount ({mx}) (got {spec['maxFailedTrialCount']})",
                                  fix=f"set maxFailedTrialCount: {mx} or lower"))
    return errs


def grid_values(param: dict) -> list[str]:
    """The values grid search enumerates for one parameter (Katib's ``convert_to_combinations``):
    ``min..max`` by ``step`` (ints: step 1 by default), or the list. SpecError for a double without step."""
    fs = param["feasibleSpace"]
    if param["parameterType"] in ("discrete", "categorical"):
        return [str(v) for v in fs["list"]]
    if param["parameterType"] == "int":
        step = int(fs.get("step") or 1)
        return [str(v) for v in range(int(fs["min"]), int(fs["max"]) + 1, step)]
    if fs.get("step") in (None, ""):
        raise SpecError(f"{P}.parameters[{param['name']}].feasibleSpace.step", "is required for a double parameter with "
                        "algorithm grid", fix='set a step, e.g. step: "0.01" (kubeflow/katib#1472)')
    lo, hi, step = float(fs["min"]), float(fs["max"]), float(fs["step"])
    n = int((hi - lo) / step + 1e-9)
    return [format(round(lo + i * step, 12), "g") for i in range(n + 1)]


def _algorithm_errors(spec: dict) -> list[SpecError]:
    alg = spec.get("algorithm")
    path = f"{P}.algorithm"
    if not isinstance(alg, dict) or not alg.get("algorithmName"):
        return [SpecError(f"{path}.algorithmName", "is required", fix=f"set algorithmName: random (or {', '.join(ALGORITHMS)})")]
    name = alg["algorithmName"]
    if name in _REFUSED_ALGORITHMS:
        return [SpecError(f"{path}.algorithmName", f"{name} {_REFUSED_ALGORITHMS[name]}",
                          fix=f"use one of {', '.join(ALGORITHMS)}")]
    if name not in ALGORITHMS:
        return [SpecError(f"{path}.algorithmName", f"unknown algorithm {name!r}", fix=f"use one of {', '.join(ALGORITHMS)}")]
    errs = []
    for i, s in enumerate(alg.get("algorithmSettings") or []):
        if not isinstance(s, dict) or s.get("name") not in ALGORITHMS[name]:
            got = s.get("name") if isinstance(s, dict) else s
            errs.append(SpecError(f"{path}.algorithmSettings[{i}].name", f"unknown setting {got} for algorithm {name}",
                                  fix=f"settings of {name}: {', '.join(ALGORITHMS[name])}"))
            continue
        v = str(s.get("value", ""))
        if s["name"] in ("random_state", "seed", "n_startup_trials", "n_ei_candidates", "n_EI_candidates") and \
                not re.fullmatch(r"\d+", v):
            errs.append(SpecError(f"{path}.algorithmSettings[{i}].value", f"{s['name']} must be an integer >= 0 (got {v!r})",
                                  fix=f'set value: "10"'))
    if name == "grid" and not errs and isinstance(spec.get("parameters"), list):
        total = 1
        for p in spec["parameters"]:
            try:
                total *= len(grid_values(p))
            except SpecError as e:
                return [e]
            except (KeyError, TypeError, ValueError):
                return []
        mx = spec.get("maxTrialCount")
        if isinstance(mx, int) and mx > total:
            errs.append(SpecError(f"{P}.maxTrialCount", f"is {mx} but the grid has only {total} combinations",
                                  fix=f"set maxTrialCount: {total} or lower, or widen the grid"))
    return errs


def metric_names(spec: dict) -> list[str]:
    """The objective metric first, then the additional metrics (what the collector looks for)."""
    o = spec["objective"]
    return [o["objectiveMetricName"], *(o.get("additionalMetricNames") or [])]


def objective_strategy(spec: dict) -> str:
    """The metric strategy of the objective metric (``min``/``max``/``latest``)."""
    o = spec["objective"]
    for s in o.get("metricStrategies") or []:
        if s.get("name") == o["objectiveMetricName"]:
            return s.get("value", "latest")
    return {"minimize": "min", "maximize": "max"}.get(o.get("type"), "latest")


def _template_errors(spec: dict) -> list[SpecError]:
    path = f"{P}.trialTemplate"
    tt = spec.get("trialTemplate")
    if not isinstance(tt, dict):
        return [SpecError(path, "is required", fix="set trialTemplate with primaryContainerName, trialParameters and trialSpec")]
    if tt.get("configMap") is not None:
        return [SpecError(f"{path}.configMap", "a trial template from a ConfigMap is not run by localflow yet",
                          fix="put the job inline under trialTemplate.trialSpec")]
    ts = tt.get("trialSpec")
    if not isinstance(ts, dict):
        return [SpecError(f"{path}.trialSpec", "is required (the job each trial runs)", fix="set trialSpec: a batch/v1 Job")]
    if not ts.get("apiVersion") or not ts.get("kind"):
        return [SpecError(f"{path}.trialSpec", "must have apiVersion and kind", fix="set apiVersion: batch/v1 and kind: Job")]
    if (ts.get("apiVersion"), ts.get("kind")) != ("batch/v1", "Job"):
        return [SpecError(f"{path}.trialSpec.kind", f"trials of kind {ts.get('apiVersion')}/{ts.get('kind')} are not run by "
                          "localflow yet", fix="use a batch/v1 Job as the trial")]
    meta = ts.get("metadata") or {}
    for key in ("name", "namespace"):
        if isinstance(meta, dict) and meta.get(key):
            return [SpecError(f"{path}.trialSpec.metadata.{key}", "must not be set: every trial's job is named after the trial",
                              fix=f"remove metadata.{key}")]
    errs = []
    primary = tt.get("primaryContainerName")
    containers = (((ts.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    names = [c.get("name") for c in containers if isinstance(c, dict)]
    if not primary:
        errs.append(SpecError(f"{path}.primaryContainerName", "is required",
                              fix=f"name the training container{', e.g. ' + names[0] if names else ''}"))
    elif primary not in names:
        errs.append(SpecError(f"{path}.primaryContainerName", f"{primary!r} is not a container of the trial's Pod template "
                              f"(containers: {', '.join(map(str, names)) or 'none'})",
                              fix=f"set primaryContainerName: {names[0]}" if names else "add the container"))
    tps = tt.get("trialParameters")
    if not isinstance(tps, list) or not tps:
        errs.append(SpecError(f"{path}.trialParameters", "is required (a list of {name, reference})",
                              fix="add trialParameters: [{name: learningRate, reference: lr}]"))
        return errs
    pnames = {p.get("name") for p in spec.get("parameters") or [] if isinstance(p, dict)}
    text = json.dumps(ts)
    declared, refs = set(), set()
    for i, tp in enumerate(tps):
        tpath = f"{path}.trialParameters[{i}]"
        if not isinstance(tp, dict) or not tp.get("name") or not tp.get("reference"):
            errs.append(SpecError(tpath, "needs name and reference", fix="set name (used as ${trialParameters.NAME}) and reference"))
            continue
        n, ref = tp["name"], tp["reference"]
        if "{" in n or "}" in n:
            errs.append(SpecError(f"{tpath}.name", f"must not contain {{ or }} (got {n!r})"))
        if n in declared:
            errs.append(SpecError(f"{tpath}.name", f"{n!r} is declared twice", fix="give each trial parameter its own name"))
        if ref in refs:
            errs.append(SpecError(f"{tpath}.reference", f"{ref!r} is referenced twice", fix="reference each parameter once"))
        declared.add(n)
        refs.add(ref)
        if not _META_REF.match(ref) and pnames and ref not in pnames:
            errs.append(SpecError(f"{tpath}.reference", f"{ref!r} is not a parameter of spec.parameters "
                                  f"({', '.join(sorted(map(str, pnames)))})", fix="reference a parameter by its name"))
        if "${trialParameters." + n + "}" not in text:
            errs.append(SpecError(f"{tpath}.name", f"${{trialParameters.{n}}} does not appear in trialSpec",
                                  fix=f"use ${{trialParameters.{n}}} in the job (e.g. in a container's args), or remove it"))
    for m in _PLACEHOLDER.finditer(text):
        if m.group(1) not in declared:
            errs.append(SpecError(f"{path}.trialSpec", f"uses ${{trialParameters.{m.group(1)}}}, which trialParameters does not "
                                  "declare", fix=f"add {{name: {m.group(1)}, reference: <parameter>}} to trialParameters"))
            break
    if not errs:
        from localflow.specs.job import load_job

        sample = {p: "1" for p in declared}
        try:
            load_job(render_trial({"metadata": {"namespace": "default"}, "spec": spec}, "trial-check", sample,
                                  by_trial_parameter=True))
        except SpecError as e:
            sub = e.path[len("Job"):] if e.path.startswith("Job") else f".{e.path}"
            errs.append(SpecError(f"{path}.trialSpec{sub}", e.message[len(e.path) + 2:] or e.message, fix=e.fix))
    return errs


def experiment_errors(obj) -> list[SpecError]:
    """Every problem of Experiment ``obj`` (defaulted or not), each a :class:`SpecError` at its
    field path with the fix; empty when it can run."""
    if not isinstance(obj, dict):
        return [SpecError("Experiment", "must be a mapping")]
    name = (obj.get("metadata") or {}).get("name")
    errs: list[SpecError] = []
    if isinstance(name, str) and (not _NAME.match(name) or len(name) > 40):
        errs.append(SpecError("Experiment.metadata.name", f"{name!r} must start with a lowercase letter and have at most 40 "
                              "characters (Katib's webhook)", fix="rename it, e.g. random-search"))
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*errs, SpecError(P, "is required (a mapping)", fix="add spec with objective, algorithm, parameters, trialTemplate")]
    try:
        check_known_fields(P, spec, _SPEC_FIELDS, "an Experiment spec")
    except SpecError as e:
        errs.append(e)
    if spec.get("nasConfig") is not None:
        errs.append(SpecError(f"{P}.nasConfig", "neural architecture search is not run by localflow",
                              fix="tune hyperparameters with spec.parameters instead"))
    if spec.get("earlyStopping") is not None:
        errs.append(SpecError(f"{P}.earlyStopping", "early stopping (medianstop) is not run by localflow yet",
                              fix="remove earlyStopping; trials then run to their end"))
    if spec.get("resumePolicy") not in (None, "Never", "LongRunning", "FromVolume"):
        errs.append(SpecError(f"{P}.resumePolicy", f"must be Never, LongRunning or FromVolume (got {spec['resumePolicy']!r})",
                              fix="set resumePolicy: Never"))
    errs += _objective_errors(spec.get("objective"))
    params = spec.get("parameters")
    if not isinstance(params, list) or not params:
        errs.append(SpecError(f"{P}.parameters", "is required (a non-empty list)",
                              fix='add parameters: [{name: lr, parameterType: double, feasibleSpace: {min: "0.01", max: "0.1"}}]'))
    else:
        errs += _parameter_errors(params)
    errs += _count_errors(spec)
    if not errs:
        errs += _algorithm_errors(spec)
    mc = spec.get("metricsCollectorSpec") or {}
    kind = ((mc.get("collector") or {}) if isinstance(mc, dict) else {}).get("kind", "StdOut")
    if kind != "StdOut":
        errs.append(SpecError(f"{P}.metricsCollectorSpec.collector.kind", f"collector {kind} is not run by localflow yet",
                              fix="use kind: StdOut (the trial prints name=value lines)"))
    elif isinstance(mc, dict) and (mc.get("source") or {}).get("filter"):
        for i, f in enumerate(((mc["source"].get("filter") or {}).get("metricsFormat")) or []):
            try:
                if re.compile(f).groups < 2:
                    raise re.error("fewer than two groups")
            except re.error as e:
                errs.append(SpecError(f"{P}.metricsCollectorSpec.source.filter.metricsFormat[{i}]",
                                      f"must be a regular expression with two groups (name, value): {e}",
                                      fix=r"e.g. ([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"))
    errs += _template_errors(spec)
    return errs


def load_experiment(doc: dict) -> dict:
    """The defaulted Experiment, or the first :class:`SpecError` of :func:`experiment_errors`."""
    check_mapping("Experiment", doc, required=True, what="an Experiment manifest")
    exp = experiment_defaults(doc)
    errs = experiment_errors(exp)
    if errs:
        raise errs[0]
    return exp


def _metadata_value(ref: str, template: dict, trial_name: str, namespace: str) -> str:
    key = _META_REF.match(ref).group(1)
    if key == "Name":
        return trial_name
    if key == "Namespace":
        return namespace
    if key == "Kind":
        return str(template.get("kind", ""))
    if key == "APIVersion":
        return str(template.get("apiVersion", ""))
    m = _LABEL_REF.match(key)
    if m and m.group(1) in ("Labels", "Annotations"):
        got = ((template.get("metadata") or {}).get(m.group(1).lower()) or {}).get(m.group(2))
        if got is None:
            raise SpecError(f"{P}.trialTemplate.trialSpec.metadata.{m.group(1).lower()}", f"has no key {m.group(2)!r} "
                            f"referenced by {ref}", fix=f"add {m.group(2)} to the template's {m.group(1).lower()}")
        return str(got)
    raise SpecError(f"{P}.trialTemplate.trialParameters", f"unknown trial metadata reference {ref}",
                    fix="use ${trialSpec.Name}, Namespace, Kind, APIVersion, Labels[key] or Annotations[key]")


def render_trial(experiment: dict, trial_name: str, assignments: dict[str, str], *, by_trial_parameter=False) -> dict:
    """The trial's job: the template with every ``${trialParameters.<name>}`` replaced as plain text
    by the assignment its ``reference`` names (or the trial metadata), named after the trial
    (``generator.go``). ``assignments``: parameter name -> value string (``by_trial_parameter``:
    keyed by trial parameter name instead, for validation)."""
    spec, ns = experiment["spec"], (experiment.get("metadata") or {}).get("namespace") or "default"
    tt = spec["trialTemplate"]
    template = tt["trialSpec"]
    text = json.dumps(template)
    for tp in tt.get("trialParameters") or []:
        ref = tp["reference"]
        if _META_REF.match(ref):
            value = _metadata_value(ref, template, trial_name, ns)
        else:
            key = tp["name"] if by_trial_parameter else ref
            if key not in assignments:
                raise SpecError(f"{P}.trialTemplate.trialParameters", f"no assignment for parameter {ref!r}",
                                fix="reference a parameter of spec.parameters")
            value = str(assignments[key])
        text = text.replace("${trialParameters." + tp["name"] + "}", json.dumps(value)[1:-1])
    job = json.loads(text)
    meta = job.setdefault("metadata", {})
    meta.update(name=trial_name, namespace=ns)
    return job
