"""Cache fingerprints of KFP tasks, as the KFP v2 backend computes its cache key.

Follows kubeflow/pipelines ``backend/src/v2/cacheutils/cache.go`` (``GenerateCacheKey`` and
``GenerateFingerPrint``): SHA-256 over the JSON of the input artifact names, the input parameter
values, the output artifact specs (without URIs), the output parameter types and the container
spec (image and unresolved command + args). A custom ``cacheKey`` replaces the automatic inputs and
is combined with the component's identity. Fingerprints are compared across runs of one workspace
and one pipeline name.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(*, pipeline_name: str, component: dict, executor: dict, parameter_values: dict[str, Any],
                input_artifacts: dict[str, list[dict]], cache_key: str | None = None) -> str:
    """Hex SHA-256 cache key of one task execution.

    ``component``: the ComponentSpec (its ``outputDefinitions`` count); ``executor``: the
    ``deploymentSpec.executors[...]`` entry; ``parameter_values``: resolved input parameters;
    ``input_artifacts``: input name -> list of runtime artifacts (their ``uri`` identifies the
    content, as MLMD artifact names do in the backend).
    """
    outputs = component.get("outputDefinitions") or {}
    container = executor.get("container") or {}
    body: dict[str, Any] = {
        "pipelineName": pipeline_name,
        "outputArtifactsSpec": {k: {"type": v.get("artifactType"), "metadata": v.get("metadata") or {}}
                                for k, v in sorted((outputs.get("artifacts") or {}).items())},
        "outputParametersSpec": {k: v.get("parameterType") for k, v in sorted((outputs.get("parameters") or {}).items())},
    }
    if cache_key:
        body["cacheKey"] = cache_key
        body["component"] = {"image": container.get("image"), "cmdArgs": (container.get("command") or []) + (container.get("args") or [])}
    else:
        body["inputArtifactNames"] = {k: [a.get("uri") for a in v] for k, v in sorted(input_artifacts.items())}
        body["inputParameterValues"] = {k: parameter_values[k] for k in sorted(parameter_values)}
        body["containerSpec"] = {"image": container.get("image"),
                                 "cmdArgs": (container.get("command") or []) + (container.get("args") or [])}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
