"""``apps/v1 ReplicaSet`` and ``Deployment`` specs: defaulting and validation, as the API server applies them.

Follows kubernetes ``pkg/apis/apps/v1/defaults.go`` (``SetDefaults_ReplicaSet``/``SetDefaults_Deployment``:
``replicas`` 1, ``strategy`` RollingUpdate with ``maxSurge``/``maxUnavailable`` 25%,
``revisionHistoryLimit`` 10, ``progressDeadlineSeconds`` 600, ``minReadySeconds`` 0) and
``pkg/apis/apps/validation/validation.go`` (``ValidateReplicaSetSpec``, ``ValidateDeploymentSpec``,
``ValidateRollingUpdateDeployment``): a non-empty ``selector`` that matches the template's labels
(``spec.template.metadata.labels: Invalid value: ...: `selector` does not match template `labels```),
``restartPolicy`` Always, ``maxSurge`` and ``maxUnavailable`` not both 0, percentages at most 100%
for ``maxUnavailable``, no ``rollingUpdate`` with ``Recreate``.

:func:`load_replicaset` / :func:`load_deployment` return a defaulted copy or raise the first problem as a
:class:`~localflow.errors.SpecError` whose path starts at ``ReplicaSet.spec`` / ``Deployment.spec``.
The controllers are :mod:`localflow.controllers.replicaset` and :mod:`localflow.controllers.deployment`.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from localflow.fakes.selectors import matches, parse_selector
from localflow.errors import SpecError
from localflow.specs.podspec import check_metadata, check_pod_template
from localflow.validation import check_int32, check_mapping

__all__ = ["API_VERSION", "load_replicaset", "load_deployment", "scaled_value"]

API_VERSION = "apps/v1"
_STRATEGIES = ("RollingUpdate", "Recreate")


def scaled_value(path: str, value: Any, total: int, *, round_up: bool) -> int:
    """An ``IntOrString`` (``3`` or ``"25%"``) as a count of ``total`` replicas
    (``intstr.GetScaledValueFromIntOrPercent``: percentages rounded up for maxSurge, down for
    maxUnavailable). Raises :class:`SpecError` at ``path`` for anything else."""
    if isinstance(value, bool):
        value = None
    if isinstance(value, int):
        if value < 0:
            raise SpecError(path, f"Invalid value: {value}: must be greater than or equal to 0", fix="use a count or a percentage like 25%")
        return value
    if isinstance(value, str) and value.endswith("%") and value[:-1].isdigit():
        pct = int(value[:-1])
        return math.ceil(pct * total / 100) if round_up else math.floor(pct * total / 100)
    raise SpecError(path, f"Invalid value: {value!r}: must be an integer or percentage (e.g '5%')",
                    fix="use a count like 1 or a percentage like 25%")


def _load(kind: str, doc: Any) -> dict:
    check_mapping(kind, doc, required=True, what=f"a {kind} manifest")
    if doc.get("apiVersion") != API_VERSION:
        raise SpecError(f"{kind}.apiVersion", f"expected {API_VERSION} (got {doc.get('apiVersion')})", fix=f"set apiVersion: {API_VERSION}")
    obj = copy.deepcopy(doc)
    meta = obj.get("metadata")
    check_metadata(f"{kind}.metadata", meta, name="subdomain" if not (meta or {}).get("generateName") else None)
    spec = check_mapping(f"{kind}.spec", obj.get("spec"), required=True, what=f"a {kind} spec (a mapping with selector and template)")
    check_int32(f"{kind}.spec.replicas", spec.get("replicas"))
    check_int32(f"{kind}.spec.minReadySeconds", spec.get("minReadySeconds"))
    spec.setdefault("replicas", 1)
    spec.setdefault("minReadySeconds", 0)
    sel = check_mapping(f"{kind}.spec.selector", spec.get("selector"), required=True,
                        what="a label selector (matchLabels/matchExpressions)")
    reqs = parse_selector(sel, f"{kind}.spec.selector")
    if not reqs:
        raise SpecError(f"{kind}.spec.selector", "Invalid value: empty selector is invalid for deployment",
                        fix="set selector.matchLabels to the template's labels, e.g. app: web")
    check_pod_template(f"{kind}.spec.template", spec.get("template"))
    tmpl = spec["template"]
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not matches(labels, reqs):
        raise SpecError(f"{kind}.spec.template.metadata.labels",
                        f"Invalid value: {labels!r}: `selector` does not match template `labels`",
                        fix="give the template the labels the selector asks for (selector.matchLabels)")
    restart = tmpl["spec"].setdefault("restartPolicy", "Always")
    if restart != "Always":
        raise SpecError(f"{kind}.spec.template.spec.restartPolicy", f'Unsupported value: "{restart}": supported values: "Always"',
                        fix="remove restartPolicy (Pods of a ReplicaSet always restart); use a batch/v1 Job for work that ends")
    return obj


def load_replicaset(doc: Any) -> dict:
    """Validate an ``apps/v1 ReplicaSet`` document and return a copy with the API server's defaults.

    Raises :class:`SpecError` (path ``ReplicaSet.<field>``) for the first problem, with a fix."""
    return _load("ReplicaSet", doc)


def load_deployment(doc: Any) -> dict:
    """Validate an ``apps/v1 Deployment`` document and return a copy with the API server's defaults
    (``strategy.rollingUpdate`` 25%/25% for RollingUpdate).

    Raises :class:`SpecError` (path ``Deployment.<field>``) for the first problem, with a fix."""
    obj = _load("Deployment", doc)
    spec = obj["spec"]
    check_int32("Deployment.spec.revisionHistoryLimit", spec.get("revisionHistoryLimit"))
    check_int32("Deployment.spec.progressDeadlineSeconds", spec.get("progressDeadlineSeconds"))
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    if spec.get("paused") is not None and not isinstance(spec["paused"], bool):
        raise SpecError("Deployment.spec.paused", f"must be true or false (got {spec['paused']!r})")
    strategy = check_mapping("Deployment.spec.strategy", spec.get("strategy")) or {}
    spec["strategy"] = strategy
    stype = strategy.setdefault("type", "RollingUpdate")
    if stype not in _STRATEGIES:
        raise SpecError("Deployment.spec.strategy.type", f'Unsupported value: "{stype}": supported values: "Recreate", "RollingUpdate"',
                        fix="use RollingUpdate or Recreate")
    if stype == "Recreate":
        if strategy.get("rollingUpdate") is not None:
            raise SpecError("Deployment.spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'",
                            fix="remove rollingUpdate or use type: RollingUpdate")
        return obj
    ru = check_mapping("Deployment.spec.strategy.rollingUpdate", strategy.get("rollingUpdate")) or {}
    strategy["rollingUpdate"] = ru
    ru.setdefault("maxSurge", "25%")
    ru.setdefault("maxUnavailable", "25%")
    # validation.go checks with a total of 100 (percentages) and 0 (counts)
    surge = scaled_value("Deployment.spec.strategy.rollingUpdate.maxSurge", ru["maxSurge"], 100, round_up=True)
    unavail = scaled_value("Deployment.spec.strategy.rollingUpdate.maxUnavailable", ru["maxUnavailable"], 100, round_up=False)
    if isinstance(ru["maxUnavailable"], str) and unavail > 100:
        raise SpecError("Deployment.spec.strategy.rollingUpdate.maxUnavailable",
                        f"Invalid value: {ru['maxUnavailable']!r}: must not be greater than 100%", fix="use at most 100%")
    if surge == 0 and unavail == 0:
        raise SpecError("Deployment.spec.strategy.rollingUpdate.maxUnavailable",
                        "Invalid value: 0: may not be 0 when `maxSurge` is 0", fix="allow maxSurge or maxUnavailable of at least 1")
    return obj
