"""Resolve the placeholders of a KFP v2 container command line (IR notes, section 7).

A command element is either a structural placeholder (JSON text ``{"Concat": [...]}`` or
``{"IfPresent": {...}}``) or a string that may contain simple placeholders ``{{$...}}``.
:func:`resolve_command` resolves structures first (IfPresent lists expand into several argv
elements, a missing branch removes the element), flattens, then substitutes simple placeholders
from an ExecutorInput (section 8.1) and the job/task values in a :class:`PlaceholderContext`.
Anything that still looks like ``{{$...}}`` and cannot be resolved raises SpecError.

Follows kubeflow/pipelines ``sdk/python/kfp/dsl/placeholders.py`` (the emitted forms),
``backend/src/v2/component/launcher_v2.go`` (``getPlaceholders``, URI to path),
``backend/src/v2/driver/util.go`` (IfPresent, runtime-value constants) and
``sdk/python/kfp/dsl/types/artifact_types.py`` (local path of an artifact URI).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from localflow.errors import SpecError
from localflow.pipelines.values import cast_parameter, format_value

__all__ = [
    "PlaceholderContext",
    "resolve_command",
    "resolve_container",
    "resolve_string",
    "resolve_json_placeholders",
    "resolve_runtime_constant",
    "resolve_parameter_values",
    "uri_to_path",
    "path_to_uri",
    "WORKSPACE_MOUNT_PATH",
    "RUNTIME_PLACEHOLDERS",
]

#: Where the SDK expects the pipeline workspace (``kfp.dsl.constants.WORKSPACE_MOUNT_PATH``).
WORKSPACE_MOUNT_PATH = "/kfp-workspace"

#: Job/task placeholder string -> PlaceholderContext attribute (section 7.4).
RUNTIME_PLACEHOLDERS: dict[str, str] = {
    "{{$.pipeline_job_name}}": "pipeline_job_name",
    "{{$.pipeline_job_resource_name}}": "pipeline_job_resource_name",
    "{{$.pipeline_job_uuid}}": "pipeline_job_uuid",
    "{{$.pipeline_job_create_time_utc}}": "pipeline_job_create_time_utc",
    "{{$.pipeline_job_schedule_time_utc}}": "pipeline_job_schedule_time_utc",
    "{{$.pipeline_task_name}}": "pipeline_task_name",
    "{{$.pipeline_task_uuid}}": "pipeline_task_uuid",
    "{{$.pipeline_root}}": "pipeline_root",
    "{{$.workspace_path}}": "workspace_path",
}
_WORKSPACE = "{{$.workspace_path}}"


@dataclass
class PlaceholderContext:
    """Everything a command line of one task execution may refer to.

    ``executor_input`` is the ExecutorInput JSON shape (``{"inputs": {"parameterValues": {...},
    "artifacts": {name: {"artifacts": [RuntimeArtifact]}}}, "outputs": {"parameters": {name:
    {"outputFile": path}}, "artifacts": {...}, "outputFile": path}}``) with parameter values
    already resolved (see :func:`resolve_parameter_values`). ``parameter_types`` maps declared
    input parameter names to their ``parameterType``; ``artifact_inputs`` names the declared
    input artifacts. A declared input with no value resolves to ``""`` (a null value); an
    undeclared and unknown one is an error. The job/task fields are strings (RFC 3339 UTC times
    ``2026-01-02T03:04:05Z``); ``None`` means "not available" and makes the placeholder an error,
    except ``pipeline_job_schedule_time_utc`` which falls back to the creation time.
    ``workspace_path`` is also the mount that ``.path`` of a ``_kfp_workspace`` artifact is
    rebased onto (``/kfp-workspace`` when None).
    """

    executor_input: dict = field(default_factory=dict)
    parameter_types: dict[str, str] = field(default_factory=dict)
    artifact_inputs: frozenset[str] = frozenset()
    pipeline_job_name: str | None = None
    pipeline_job_resource_name: str | None = None
    pipeline_job_uuid: str | None = None
    pipeline_job_create_time_utc: str | None = None
    pipeline_job_schedule_time_utc: str | None = None
    pipeline_task_name: str | None = None
    pipeline_task_uuid: str | None = None
    pipeline_root: str | None = None
    workspace_path: str | None = None

    @classmethod
    def for_component(cls, component: dict, executor_input: dict, **job: str | None) -> "PlaceholderContext":
        """Build a context from a ComponentSpec dict (its ``inputDefinitions``) plus job fields."""
        defs = component.get("inputDefinitions") or {}
        return cls(
            executor_input=executor_input,
            parameter_types={k: v.get("parameterType", "STRING") for k, v in (defs.get("parameters") or {}).items()},
            artifact_inputs=frozenset(defs.get("artifacts") or {}),
            **job,
        )

    def runtime_value(self, placeholder: str, path: str) -> str:
        """Value of one ``{{$.pipeline_*}}``/``{{$.workspace_path}}`` placeholder, or SpecError."""
        attr = RUNTIME_PLACEHOLDERS[placeholder]
        value = getattr(self, attr)
        if value is None and attr == "pipeline_job_schedule_time_utc":
            value = self.pipeline_job_create_time_utc
        if value is None:
            fix = "configure a workspace for the run" if attr == "workspace_path" else None
            raise SpecError(path, f"placeholder {placeholder} has no value in this run", fix=fix)
        return str(value)

    # -- ExecutorInput accessors ------------------------------------------------------------
    @property
    def parameter_values(self) -> dict:
        return (self.executor_input.get("inputs") or {}).get("parameterValues") or {}

    def _artifacts(self, io: str) -> dict:
        return (self.executor_input.get(io) or {}).get("artifacts") or {}

    def available(self) -> str:
        """Human summary of what inputs/outputs exist, for error messages."""
        outs = self.executor_input.get("outputs") or {}

        def names(items) -> str:
            return ", ".join(sorted(items)) or "none"

        return (
            f"input parameters: {names(set(self.parameter_values) | set(self.parameter_types))}; "
            f"input artifacts: {names(set(self._artifacts('inputs')) | set(self.artifact_inputs))}; "
            f"output parameters: {names(outs.get('parameters') or {})}; "
            f"output artifacts: {names(outs.get('artifacts') or {})}"
        )


# ---------------------------------------------------------------------------------------------
# URI <-> local path (section 3.3)
# ---------------------------------------------------------------------------------------------
_REMOTE_PREFIXES = (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/"))


def uri_to_path(
    uri: str,
    *,
    metadata: dict | None = None,
    custom_path: str | None = None,
    workspace_mount: str = WORKSPACE_MOUNT_PATH,
) -> str:
    """Local path of an artifact URI, as the SDK's ``Artifact.path`` computes it.

    ``gs://b/k`` -> ``/gcs/b/k``, ``minio://`` -> ``/minio/``, ``s3://`` -> ``/s3/``,
    ``oci://reg/repo:tag`` -> ``/oci/reg_repo:tag``; anything else (a local path) is returned
    as is. A non-empty ``custom_path`` wins. ``metadata['_kfp_workspace'] is True`` rebases the
    path to ``<workspace_mount>/.artifacts/<path without leading />``.
    (kubeflow/pipelines ``sdk/python/kfp/dsl/types/artifact_types.py``.)
    """
    local = uri
    if custom_path:
        local = custom_path
    else:
        for remote, mount in _REMOTE_PREFIXES:
            if uri.startswith(remote):
                local = mount + uri[len(remote):]
                break
        else:
            if uri.startswith("oci://"):
                local = "/oci/" + uri[len("oci://"):].replace("/", "_")
    if (metadata or {}).get("_kfp_workspace") is True:
        local = workspace_mount.rstrip("/") + "/.artifacts/" + local.lstrip("/")
    return local


def path_to_uri(path: str) -> str:
    """Reverse of :func:`uri_to_path` for the mount prefixes (``/gcs/b/k`` -> ``gs://b/k``;
    ``/oci/a_b/models`` -> ``oci://a/b``); other paths are returned unchanged."""
    for remote, mount in _REMOTE_PREFIXES:
        if path.startswith(mount):
            return remote + path[len(mount):]
    if path.startswith("/oci/"):
        rest = path[len("/oci/"):].replace("_", "/")
        if rest.endswith("/models"):
            rest = rest[: -len("/models")]
        return "oci://" + rest
    return path


# ---------------------------------------------------------------------------------------------
# Simple placeholders
# ---------------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"""\{\{\$(?P<body>(?:'[^']*'|"[^"]*"|[^'"{}])*)\}\}""")
_NAME = r"""\[(?:'(?P<{0}1>[^']*)'|"(?P<{0}2>[^"]*)")\]"""
_IO = re.compile(
    r"\.(?P<io>inputs|outputs)\.(?P<kind>parameters|artifacts)" + _NAME.format("n")
    + r"(?P<attr>\.path|\.uri|\.output_file|\.metadata(?:" + _NAME.format("k") + r")?"
    + r"|\.json_escape\[(?P<esc>[0-9]+)\])?\Z"
)
_JSON_ESCAPE = re.compile(r"\.json_escape\[(?P<esc>[0-9]+)\]\Z")


def _json_escape(text: str, levels: int) -> str:
    """Apply ``levels`` rounds of JSON string escaping (``{{$.json_escape[N]}}``; unverified)."""
    for _ in range(levels):
        text = json.dumps(text, ensure_ascii=False)[1:-1]
    return text


def _executor_input_json(ctx: PlaceholderContext) -> str:
    return json.dumps(ctx.executor_input, separators=(",", ":"), ensure_ascii=False)


def _param_text(ctx: PlaceholderContext, name: str, placeholder: str, path: str) -> str:
    values = ctx.parameter_values
    if name in values:
        value = values[name]
        ptype = ctx.parameter_types.get(name)
        if ptype and value is not None:
            try:
                value = cast_parameter(value, ptype, path)
            except SpecError:
                pass  # format what we were given; the engine validated types already
        return format_value(value)
    if name in ctx.parameter_types:
        return ""  # declared, optional, not supplied: a null value
    raise SpecError(
        path,
        f"placeholder {placeholder} refers to input parameter '{name}', which this task does not have "
        f"({ctx.available()})",
    )


def _artifact_text(ctx, io, name, attr, key, placeholder, path) -> str:
    entry = ctx._artifacts(io).get(name)
    if entry is None:
        if io == "inputs" and name in ctx.artifact_inputs:
            return "[]" if attr is None else ""  # declared optional input, not supplied
        raise SpecError(
            path,
            f"placeholder {placeholder} refers to {io[:-1]} artifact '{name}', which this task does not have "
            f"({ctx.available()})",
        )
    artifacts = (entry.get("artifacts") or []) if isinstance(entry, dict) else entry
    if attr is None:
        return json.dumps(artifacts, separators=(",", ":"), ensure_ascii=False)
    if not artifacts:
        return ""
    first = artifacts[0]
    metadata = first.get("metadata") or {}
    if attr == ".uri":
        return first.get("uri", "")
    if attr == ".path":
        return uri_to_path(first.get("uri", ""), metadata=metadata, custom_path=first.get("customPath"),
                           workspace_mount=ctx.workspace_path or WORKSPACE_MOUNT_PATH)
    if key is None:
        return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
    if key not in metadata:
        raise SpecError(
            path,
            f"placeholder {placeholder}: artifact '{name}' has no metadata key '{key}' "
            f"(keys: {', '.join(sorted(metadata)) or 'none'})",
        )
    return format_value(metadata[key])


def _resolve_one(ctx: PlaceholderContext, placeholder: str, body: str, path: str) -> str:
    if body == "":
        return _executor_input_json(ctx)
    if placeholder in RUNTIME_PLACEHOLDERS:
        return ctx.runtime_value(placeholder, path)
    outputs = ctx.executor_input.get("outputs") or {}
    if body in (".outputs.output_file", ".outputMetadataUri"):
        if "outputFile" not in outputs:
            raise SpecError(path, f"placeholder {placeholder}: the ExecutorInput has no outputs.outputFile")
        return outputs["outputFile"]
    m = _JSON_ESCAPE.match(body)
    if m:
        return _json_escape(_executor_input_json(ctx), int(m["esc"]))
    m = _IO.match(body)
    if m:
        io, kind, attr = m["io"], m["kind"], m["attr"]
        name = m["n1"] if m["n1"] is not None else m["n2"]
        key = m["k1"] if m["k1"] is not None else m["k2"]
        if kind == "parameters" and io == "inputs" and (attr is None or m["esc"] is not None):
            text = _param_text(ctx, name, placeholder, path)
            return _json_escape(text, int(m["esc"])) if m["esc"] is not None else text
        if kind == "parameters" and io == "outputs" and attr == ".output_file":
            spec = (outputs.get("parameters") or {}).get(name)
            if spec is None or "outputFile" not in spec:
                raise SpecError(
                    path,
                    f"placeholder {placeholder} refers to output parameter '{name}', which this task does not have "
                    f"({ctx.available()})",
                )
            return spec["outputFile"]
        if kind == "artifacts" and m["esc"] is None and attr != ".output_file":
            if attr is not None and attr.startswith(".metadata"):
                attr = ".metadata"
            return _artifact_text(ctx, io, name, attr, key, placeholder, path)
    raise SpecError(
        path,
        f"unknown placeholder {placeholder}",
        fix="recompile the pipeline with kfp 2.x; see kfp.dsl placeholders for the supported forms",
    )


def resolve_string(text: str, ctx: PlaceholderContext, path: str) -> str:
    """Substitute every simple ``{{$...}}`` placeholder inside ``text`` (one pass, no rescan of
    substituted values). Raises SpecError at ``path`` for an unknown or unresolvable one."""
    if "{{$" not in text:
        return text
    leftover = _PLACEHOLDER.sub("", text)
    start = leftover.find("{{$")
    if start != -1:
        end = leftover.find("}}", start)
        snippet = leftover[start: end + 2 if end != -1 else len(leftover)]
        raise SpecError(
            path, f"malformed placeholder {snippet!r}", fix="placeholders look like {{$.inputs.parameters['x']}}"
        )
    return _PLACEHOLDER.sub(lambda m: _resolve_one(ctx, m.group(0), m["body"], path), text)


def resolve_json_placeholders(obj: Any, ctx: PlaceholderContext, path: str) -> Any:
    """Resolve placeholders in every string (keys and values) of a JSON-like value, e.g. the
    importer ``metadata`` or container ``resources`` fields. Returns a new value."""
    if isinstance(obj, str):
        return resolve_string(obj, ctx, path)
    if isinstance(obj, list):
        return [resolve_json_placeholders(v, ctx, f"{path}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {
            resolve_string(k, ctx, path) if isinstance(k, str) else k: resolve_json_placeholders(v, ctx, f"{path}.{k}")
            for k, v in obj.items()
        }
    return obj


# ---------------------------------------------------------------------------------------------
# Structural placeholders (section 7.6)
# ---------------------------------------------------------------------------------------------
def _as_struct(element: str) -> dict | None:
    text = element.lstrip()
    if not (text.startswith('{"Concat"') or text.startswith('{"IfPresent"')):
        return None
    try:
        value = json.loads(element)
    except ValueError:
        return None
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("Concat", "IfPresent"):
        return value
    return None


def _present(ctx: PlaceholderContext, name: str) -> bool:
    if ctx.parameter_values.get(name) is not None:
        return True
    entry = ctx._artifacts("inputs").get(name)
    if isinstance(entry, dict):
        return bool(entry.get("artifacts"))
    return bool(entry)


def _struct(node: Any, ctx: PlaceholderContext, path: str, in_concat: bool) -> Any:
    """Resolve one node: returns a string, a list of strings, or None (element removed)."""
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        if in_concat:
            raise SpecError(path, "a list inside Concat is not allowed (IfPresent Then/Else lists cannot be nested in Concat)")
        out: list[str] = []
        for item in node:
            got = _struct(item, ctx, path, in_concat)
            if isinstance(got, list):
                out.extend(got)
            elif got is not None:
                out.append(got)
        return out
    if not isinstance(node, dict) or len(node) != 1:
        raise SpecError(path, f"structural placeholder must be an object with one key Concat or IfPresent (got {node!r})")
    (key, body), = node.items()
    if key == "Concat":
        if not isinstance(body, list):
            raise SpecError(path, f"Concat takes a list (got {type(body).__name__})")
        parts = [_struct(item, ctx, path, True) for item in body]
        return "".join(p for p in parts if p is not None)
    if key == "IfPresent":
        if not isinstance(body, dict) or "InputName" not in body or "Then" not in body:
            raise SpecError(path, f"IfPresent needs InputName and Then (got {body!r})")
        branch = body["Then"] if _present(ctx, body["InputName"]) else body.get("Else")
        if branch is None:
            return None
        return _struct(branch, ctx, path, in_concat)
    raise SpecError(path, f"unknown structural placeholder {key!r} (known: Concat, IfPresent)")


def resolve_command(argv: list[str], ctx: PlaceholderContext, path: str) -> list[str]:
    """Resolve a command or args list into the final argv (section 7).

    Element ``i`` is reported as ``<path>[i]`` in errors (pass e.g.
    ``deploymentSpec.executors['exec-echo'].container.args``). Structures first (``Concat``
    joins, ``IfPresent`` picks Then/Else by whether the input has a non-null value or a
    non-empty artifact list; lists expand, a missing branch drops the element), then simple
    placeholders in each resulting element: ``{{$}}``, input parameters (formatted as
    :func:`~localflow.pipelines.values.format_value`), artifact ``.path``/``.uri``/
    ``.metadata``/``.metadata['k']``/whole list (JSON array of RuntimeArtifacts), output
    parameter files, ``{{$.outputs.output_file}}``, ``{{$.outputMetadataUri}}``,
    ``json_escape[N]`` and the job/task placeholders. Raises SpecError naming the placeholder
    and the inputs that exist.
    """
    out: list[str] = []
    for i, element in enumerate(argv):
        epath = f"{path}[{i}]"
        if not isinstance(element, str):
            raise SpecError(epath, f"command elements must be strings (got {type(element).__name__})")
        struct = _as_struct(element)
        pieces = [element] if struct is None else _struct(struct, ctx, epath, False)
        if pieces is None:
            continue
        if isinstance(pieces, str):
            pieces = [pieces]
        out.extend(resolve_string(p, ctx, epath) for p in pieces)
    return out


def resolve_container(container: dict, ctx: PlaceholderContext, path: str) -> list[str]:
    """``command + args`` of a PipelineContainerSpec dict, resolved; errors name
    ``<path>.command[i]`` / ``<path>.args[i]``."""
    return resolve_command(list(container.get("command") or []), ctx, f"{path}.command") + resolve_command(
        list(container.get("args") or []), ctx, f"{path}.args"
    )


# ---------------------------------------------------------------------------------------------
# runtimeValue constants (sections 7.4 and 7.7)
# ---------------------------------------------------------------------------------------------
_INPUT_PARAM = re.compile(r"""\{\{\$\.inputs\.parameters\[(?:'(?P<a>[^']*)'|"(?P<b>[^"]*)")\]\}\}""")


def resolve_runtime_constant(
    value: Any,
    ctx: PlaceholderContext,
    path: str = "",
    *,
    parameter_values: dict | None = None,
) -> Any:
    """Resolve a ``runtimeValue.constant`` the way the backend driver does.

    Non-strings are returned unchanged. A string that is exactly one job/task placeholder
    (``{{$.pipeline_job_name}}`` ...) becomes its value; ``{{$.workspace_path}}`` is replaced
    anywhere in the string; ``{{$.inputs.parameters['x']}}`` references (the f-string form
    ``pipelinechannel--...``) are replaced with the formatted value of ``x`` from
    ``parameter_values`` (default: the context's ExecutorInput values). Other text, including
    a job placeholder inside a longer string, is left as written (as the backend does).
    Raises SpecError at ``path`` when a referenced parameter has no value.
    """
    if not isinstance(value, str):
        return value
    if value in RUNTIME_PLACEHOLDERS:
        return ctx.runtime_value(value, path)
    if _WORKSPACE in value:
        value = value.replace(_WORKSPACE, ctx.runtime_value(_WORKSPACE, path))
    values = ctx.parameter_values if parameter_values is None else parameter_values

    def sub(m: re.Match) -> str:
        name = m["a"] if m["a"] is not None else m["b"]
        if name not in values:
            raise SpecError(
                path,
                f"constant {value!r} refers to parameter '{name}', which the task does not receive "
                f"(has: {', '.join(sorted(values)) or 'none'})",
            )
        return format_value(values[name])

    return _INPUT_PARAM.sub(sub, value)


def resolve_parameter_values(
    values: dict,
    ctx: PlaceholderContext,
    path: str,
    *,
    constants: set[str] | frozenset[str] | None = None,
) -> dict:
    """Resolve the runtime constants among a task's parameter values (section 7.7).

    ``values`` maps input names to values as wired (constants still holding placeholders);
    ``constants`` names the inputs that came from ``runtimeValue.constant`` (None = every string
    value). Self-references are resolved against ``values`` itself. ``path`` is the task's
    ``inputs.parameters`` path; errors name ``<path>['x']``. Returns a new dict.
    """
    out = dict(values)
    for name, value in values.items():
        if constants is not None and name not in constants:
            continue
        out[name] = resolve_runtime_constant(value, ctx, f"{path}['{name}']", parameter_values=values)
    return out
