"""Pre-flight checks of a compiled pipeline: find spec errors before any task runs.

The KFP backend finds a bad trigger condition or an unresolvable placeholder only when the task
that carries it is reached (``backend/src/v2/driver/driver.go`` evaluates conditions,
``launcher_v2.go`` resolves placeholders), after upstream tasks have already spent their time.
These are properties of the spec alone, so localflow checks them up front and reports a
SpecError (exit code 2) naming the field path:

- every ``triggerPolicy.condition`` and ``parameterExpressionSelector`` parses as CEL, and every
  ``inputs.parameter_values['x']`` a condition reads is an input of its task;
- every placeholder in every container executor's ``command``/``args`` resolves against the
  inputs and outputs its component declares, with each optional input both present and absent
  (so both branches of every ``IfPresent`` are checked). The real resolver
  (:mod:`localflow.pipelines.placeholders`) does the work over a stand-in ExecutorInput.

Errors that depend on runtime values (a type mismatch inside a condition, a missing metadata
key of a real artifact) still surface when the task runs.
"""
from __future__ import annotations

import re

from localflow.errors import SpecError
from localflow.pipelines import cel, placeholders
from localflow.pipelines.values import zero_value

__all__ = ["check_pipeline"]

_CONDITION_INPUT = re.compile(r"""parameter_values\[\s*(?:'([^']*)'|"([^"]*)")\s*\]""")
_DRY = "/localflow-dry-run"


class _AnyMetadata(dict):
    """Artifact metadata of the stand-in ExecutorInput: every key exists (values are unknown)."""

    def __init__(self):
        super().__init__({"": ""})

    def __contains__(self, key) -> bool:
        return True

    def __getitem__(self, key):
        return ""


def _dags(spec: dict):
    yield "root.dag", spec.get("root") or {}
    for name, comp in (spec.get("components") or {}).items():
        if "dag" in (comp or {}):
            yield f"components['{name}'].dag", comp


def _check_conditions(spec: dict) -> None:
    for dag_path, comp in _dags(spec):
        for key, task in ((comp.get("dag") or {}).get("tasks") or {}).items():
            tpath = f"{dag_path}.tasks['{key}']"
            inputs = set(((task.get("inputs") or {}).get("parameters") or {}))
            cond = (task.get("triggerPolicy") or {}).get("condition")
            if cond:
                cpath = f"{tpath}.triggerPolicy.condition"
                cel.check_syntax(cond, cpath)
                for m in _CONDITION_INPUT.finditer(cond):
                    name = m.group(1) if m.group(1) is not None else m.group(2)
                    if name not in inputs:
                        raise SpecError(cpath, f"condition {cond!r} reads input '{name}', which task '{key}' does not "
                                               f"have (inputs: {', '.join(sorted(inputs)) or 'none'})",
                                        fix="wire the value into the task's inputs.parameters or recompile the pipeline")
            for name, src in ((task.get("inputs") or {}).get("parameters") or {}).items():
                sel = (src or {}).get("parameterExpressionSelector")
                if sel:
                    cel.check_syntax(sel, f"{tpath}.inputs.parameters['{name}'].parameterExpressionSelector", "selector")


def _stand_in(component: dict, present: bool) -> dict:
    ins = component.get("inputDefinitions") or {}
    outs = component.get("outputDefinitions") or {}
    params = {}
    for k, d in (ins.get("parameters") or {}).items():
        d = d or {}
        if present or not (d.get("isOptional") or "defaultValue" in d):
            params[k] = zero_value(d.get("parameterType", "STRING"))
    arts = {}
    for k, d in (ins.get("artifacts") or {}).items():
        if present or not (d or {}).get("isOptional"):
            arts[k] = {"artifacts": [{"name": k, "uri": f"{_DRY}/{k}", "metadata": _AnyMetadata()}]}
    return {
        "inputs": {"parameterValues": params, "artifacts": arts},
        "outputs": {
            "parameters": {k: {"outputFile": f"{_DRY}/outputs/{k}"} for k in outs.get("parameters") or {}},
            "artifacts": {k: {"artifacts": [{"name": k, "uri": f"{_DRY}/{k}", "metadata": _AnyMetadata()}]}
                          for k in outs.get("artifacts") or {}},
            "outputFile": f"{_DRY}/executor_output.json",
        },
    }


def _check_placeholders(spec: dict) -> None:
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    job = {name: "dry-run" for name in placeholders.RUNTIME_PLACEHOLDERS.values()}
    for comp_name, comp in (spec.get("components") or {}).items():
        label = (comp or {}).get("executorLabel")
        container = (executors.get(label) or {}).get("container") if label else None
        if not container:
            continue
        path = f"deploymentSpec.executors['{label}'].container"
        for present in (True, False):
            ctx = placeholders.PlaceholderContext.for_component(comp, _stand_in(comp, present), **job)
            placeholders.resolve_container(container, ctx, path)


def check_pipeline(spec: dict) -> None:
    """Raise SpecError for the first condition, selector or placeholder in ``spec`` (a
    PipelineSpec dict that passed schema validation) that can never work."""
    _check_conditions(spec)
    _check_placeholders(spec)
