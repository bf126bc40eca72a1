"""``batch/v1 Job`` specs: defaulting and validation, as the API server applies them.

Follows kubernetes ``pkg/apis/batch/v1/defaults.go`` (``SetDefaults_Job``: ``parallelism`` and
``completions`` 1 when neither is set, ``parallelism`` 1, ``backoffLimit`` 6, ``completionMode``
NonIndexed, ``suspend`` false, ``podReplacementPolicy`` TerminatingOrFailed -- Failed with a
``podFailurePolicy``) and ``pkg/apis/batch/validation/validation.go`` (``validateJobSpec``:
non-negative counts, a positive ``activeDeadlineSeconds``, ``restartPolicy`` Never or OnFailure,
Indexed needing ``completions`` (at most 100000), ``podFailurePolicy`` rules needing
``restartPolicy: Never``, ``successPolicy`` only for Indexed Jobs), for the fields localflow reads.

:func:`load_job` returns a defaulted copy or raises the first problem as a
:class:`~localflow.errors.SpecError` whose path starts at ``Job.spec``. A Job's controller is
:mod:`localflow.controllers.job`.
"""
from __future__ import annotations

import copy
from typing import Any

from localflow.errors import SpecError
from localflow.specs.podspec import check_metadata, check_pod_template
from localflow.validation import check_int32, check_known_fields, check_list, check_mapping, check_string

__all__ = ["API_VERSION", "load_job", "parse_indexes", "format_indexes", "MAX_INDEXED_COMPLETIONS"]

API_VERSION = "batch/v1"
MAX_INDEXED_COMPLETIONS = 100_000  # validation.go: completions of an Indexed Job
_MODES = ("NonIndexed", "Indexed")
# batch/v1 JobSpec's fields (k8s.io/api batch/v1 types.go, 1.31)
_JOB_SPEC_FIELDS = frozenset({
    "parallelism", "completions", "activeDeadlineSeconds", "podFailurePolicy", "successPolicy", "backoffLimit",
    "backoffLimitPerIndex", "maxFailedIndexes", "selector", "manualSelector", "template", "ttlSecondsAfterFinished",
    "completionMode", "suspend", "podReplacementPolicy", "managedBy"})
_ACTIONS = ("FailJob", "Ignore", "Count")
_OPERATORS = ("In", "NotIn")


def parse_indexes(text: str | None, path: str = "indexes", limit: int | None = None) -> set[int]:
    """Indexes of an interval list as ``status.completedIndexes`` writes it (``"0-2,5,7-9"``)."""
    out: set[int] = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            a, b = int(lo), int(hi) if hi else int(lo)
        except ValueError:
            raise SpecError(path, f"{text!r} is not a list of indexes", fix='write intervals like "0-2,5"') from None
        if a < 0 or b < a or (limit is not None and b >= limit):
            raise SpecError(path, f"{part!r} is not an interval of indexes below {limit}",
                            fix='write ascending intervals like "0-2,5"')
        out.update(range(a, b + 1))
    return out


def format_indexes(indexes) -> str:
    """The compact interval form of a set of indexes: ``{0, 1, 2, 5}`` -> ``"0-2,5"``."""
    parts, run = [], []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [i]
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def load_job(doc: Any) -> dict:
    """Validate a ``batch/v1 Job`` document and return a copy with the API server's defaults.

    Raises :class:`SpecError` (path ``Job.<field>``) for the first problem, with a fix."""
    check_mapping("Job", doc, required=True, what="a Job manifest")
    if doc.get("apiVersion") != API_VERSION:
        raise SpecError("Job.apiVersion", f"expected {API_VERSION} (got {doc.get('apiVersion')})", fix=f"set apiVersion: {API_VERSION}")
    job = copy.deepcopy(doc)
    check_metadata("Job.metadata", job.get("metadata"), name="label" if not (job.get("metadata") or {}).get("generateName") else None)
    spec = check_mapping("Job.spec", job.get("spec"), required=True, what="a Job spec (a mapping with template)")
    check_known_fields("Job.spec", spec, _JOB_SPEC_FIELDS, "a Job spec")
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        check_int32(f"Job.spec.{key}", spec.get(key))
    check_int32("Job.spec.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"), lo=1, hi=2**63 - 1)
    if spec.get("suspend") is not None and not isinstance(spec["suspend"], bool):
        raise SpecError("Job.spec.suspend", f"must be true or false (got {spec['suspend']!r})")
    if spec.get("parallelism") is None and spec.get("completions") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    mode = spec["completionMode"]
    if mode not in _MODES:
        raise SpecError("Job.spec.completionMode", f"Unsupported value: {mode!r}", fix="use NonIndexed or Indexed")
    if mode == "Indexed":
        if spec.get("completions") is None:
            raise SpecError("Job.spec.completions", "Required value: when completion mode is Indexed",
                            fix="set completions to the number of indexes")
        if spec["completions"] > MAX_INDEXED_COMPLETIONS:
            raise SpecError("Job.spec.completions", f"must be less than or equal to {MAX_INDEXED_COMPLETIONS} when "
                            "completion mode is Indexed", fix="lower completions")
    for key in ("backoffLimitPerIndex", "maxFailedIndexes", "managedBy"):
        if spec.get(key) is not None:
            raise SpecError(f"Job.spec.{key}", "is not supported by localflow yet",
                            fix="remove it (backoffLimit counts the failures of every index)")
    check_pod_template("Job.spec.template", spec.get("template"))
    pod_spec = spec["template"]["spec"]
    restart = pod_spec.get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        raise SpecError("Job.spec.template.spec.restartPolicy",
                        "Required value" if restart is None else f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
                        fix="set restartPolicy: Never (a failed Pod is replaced) or OnFailure (restarted in place)")
    _check_pod_failure_policy(spec, restart)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _check_success_policy(spec)
    return job


def _check_pod_failure_policy(spec: dict, restart: str) -> None:
    policy = check_mapping("Job.spec.podFailurePolicy", spec.get("podFailurePolicy"))
    if policy is None:
        return
    if restart != "Never":
        raise SpecError("Job.spec.template.spec.restartPolicy", "only \"Never\" is supported when podFailurePolicy is specified",
                        fix="set restartPolicy: Never")
    rules = check_list("Job.spec.podFailurePolicy.rules", policy.get("rules"), required=True)
    names = {c.get("name") for c in spec["template"]["spec"].get("containers") or []}
    for i, rule in enumerate(rules):
        p = f"Job.spec.podFailurePolicy.rules[{i}]"
        check_mapping(p, rule, required=True)
        action = rule.get("action")
        if action not in _ACTIONS:
            hint = " (FailIndex needs backoffLimitPerIndex, which localflow does not support)" if action == "FailIndex" else ""
            raise SpecError(f"{p}.action", f"Unsupported value: {action!r}{hint}", fix="use " + ", ".join(_ACTIONS))
        codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions")
        if (codes is None) == (conds is None):
            raise SpecError(p, "specify exactly one of onExitCodes and onPodConditions",
                            fix="match container exit codes (onExitCodes) or Pod conditions (onPodConditions)")
        if codes is not None:
            check_mapping(f"{p}.onExitCodes", codes, required=True)
            if codes.get("containerName") is not None and codes["containerName"] not in names:
                raise SpecError(f"{p}.onExitCodes.containerName", f"{codes['containerName']!r} names no container of the template",
                                fix="use one of: " + ", ".join(sorted(n for n in names if n)))
            if codes.get("operator") not in _OPERATORS:
                raise SpecError(f"{p}.onExitCodes.operator", f"Unsupported value: {codes.get('operator')!r}", fix="use In or NotIn")
            values = check_list(f"{p}.onExitCodes.values", codes.get("values"), required=True)
            if not values or any(not isinstance(v, int) or isinstance(v, bool) for v in values) or len(set(values)) != len(values):
                raise SpecError(f"{p}.onExitCodes.values", "must be a non-empty list of distinct integers",
                                fix="list exit codes, e.g. [1, 42]")
            if codes["operator"] == "In" and 0 in values:
                raise SpecError(f"{p}.onExitCodes.values", "must not contain 0 for the In operator", fix="remove 0")
        else:
            for j, c in enumerate(check_list(f"{p}.onPodConditions", conds, required=True)):
                check_mapping(f"{p}.onPodConditions[{j}]", c, required=True)
                check_string(f"{p}.onPodConditions[{j}].type", c.get("type"))
                c.setdefault("status", "True")


def _check_success_policy(spec: dict) -> None:
    policy = check_mapping("Job.spec.successPolicy", spec.get("successPolicy"))
    if policy is None:
        return
    if spec["completionMode"] != "Indexed":
        raise SpecError("Job.spec.successPolicy", "requires completionMode Indexed", fix="set completionMode: Indexed")
    rules = check_list("Job.spec.successPolicy.rules", policy.get("rules"), required=True)
    if not rules:
        raise SpecError("Job.spec.successPolicy.rules", "Required value: at least one rule", fix="add a rule")
    for i, rule in enumerate(rules):
        p = f"Job.spec.successPolicy.rules[{i}]"
        check_mapping(p, rule, required=True)
        if rule.get("succeededIndexes") is None and rule.get("succeededCount") is None:
            raise SpecError(p, "specify succeededIndexes, succeededCount or both", fix='e.g. succeededIndexes: "0"')
        idx = parse_indexes(check_string(f"{p}.succeededIndexes", rule.get("succeededIndexes"), required=False),
                            f"{p}.succeededIndexes", spec["completions"]) if rule.get("succeededIndexes") is not None else None
        count = check_int32(f"{p}.succeededCount", rule.get("succeededCount"))
        if count is not None and count > (len(idx) if idx is not None else spec["completions"]):
            raise SpecError(f"{p}.succeededCount", "must not be greater than the number of indexes it counts",
                            fix="lower succeededCount")
