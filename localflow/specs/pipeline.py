"""Compiled KFP v2 pipelines (PipelineSpec IR): schema validation and reference checks.

:func:`load_pipeline` validates the first document against the kfp-pipeline-spec protobuf
schema (``ml_pipelines.PipelineSpec``; ``deploymentSpec`` against
``PipelineDeploymentConfig``), then checks that every reference resolves (component refs,
executor labels, dependent and producer tasks, component inputs, DAG outputs), that no DAG has
a dependency cycle. CEL in conditions and selectors is checked only when it runs, as the backend
does (the compiler can emit conditions that do not parse). Errors name the field path as the
IR writes it: ``root.dag.tasks['train'].componentRef.name: no component 'comp-y'
(known: comp-x)``.

Follows kubeflow/pipelines ``api/v2alpha1/pipeline_spec.proto`` and
``kubernetes_platform/proto/kubernetes_executor_config.proto`` (platform document fields).
"""
from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from localflow.errors import SpecError, escape
from localflow.specs.loader import PIPELINE_SPEC, detect_kind, load_documents, unwrap_pipeline_job
from localflow.validation import check_dns1123_label, check_dns1123_subdomain, check_local_path

__all__ = ["PipelineDocument", "load_pipeline", "compile_pipeline_func", "KUBERNETES_EXECUTOR_FIELDS"]

#: Fields of one ``KubernetesExecutorConfig`` entry in the kfp-kubernetes platform document.
KUBERNETES_EXECUTOR_FIELDS = frozenset({
    "secretAsVolume", "secretAsEnv", "pvcMount", "nodeSelector", "podMetadata", "imagePullSecret",
    "imagePullPolicy", "configMapAsVolume", "configMapAsEnv", "activeDeadlineSeconds",
    "fieldPathAsEnv", "tolerations", "genericEphemeralVolume", "nodeAffinity", "podAffinity",
    "enabledSharedMemory", "emptyDirMounts", "securityContext", "initContainers",
})

_WELL_KNOWN = frozenset({
    "google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue",
    "google.protobuf.Duration", "google.protobuf.Timestamp", "google.protobuf.Any",
    "google.protobuf.FieldMask", "google.rpc.Status",
})


@dataclass
class PipelineDocument:
    """A loaded, validated pipeline.

    ``spec`` is the PipelineSpec dict (first document; unwrapped from a PipelineJob),
    ``platform`` the ``platforms.kubernetes`` mapping of the second document or None,
    ``proto`` the parsed ``pipeline_spec_pb2.PipelineSpec``, ``name`` ``pipelineInfo.name``,
    ``runtime_config`` the PipelineJob ``runtimeConfig`` (None for a plain PipelineSpec).
    """

    spec: dict
    platform: dict | None
    proto: Any
    name: str
    runtime_config: dict | None = None

    @property
    def components(self) -> dict:
        return self.spec.get("components") or {}

    @property
    def executors(self) -> dict:
        return (self.spec.get("deploymentSpec") or {}).get("executors") or {}

    def component(self, name: str) -> dict:
        """ComponentSpec dict of ``components[name]`` (KeyError when absent; validated already)."""
        return self.components[name]

    def platform_executor(self, executor_label: str) -> dict:
        """kfp-kubernetes config of one executor (``{}`` when the platform document has none)."""
        return (((self.platform or {}).get("deploymentSpec") or {}).get("executors") or {}).get(executor_label) or {}


# ---------------------------------------------------------------------------------------------
# Schema walk (unknown fields and enum values, with IR-style paths)
# ---------------------------------------------------------------------------------------------
def _is_repeated(field) -> bool:
    flag = getattr(field, "is_repeated", None)
    return bool(flag) if flag is not None else field.label == field.LABEL_REPEATED


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_enum(value: Any, enum_type, path: str) -> None:
    names = [v.name for v in enum_type.values]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise SpecError(path, f"expected one of {', '.join(names)} (got {value!r})")
    if isinstance(value, int):
        if enum_type.values_by_number.get(value) is None:
            raise SpecError(path, f"unknown enum number {value} (known: {', '.join(names)})")
    elif value not in enum_type.values_by_name:
        raise SpecError(path, f'unknown value "{value}" (known: {", ".join(names)})')


def _walk(obj: Any, descriptor, path: str) -> None:
    """Raise SpecError for the first field of ``obj`` the message ``descriptor`` does not know."""
    if descriptor.full_name in _WELL_KNOWN:
        return
    if not isinstance(obj, dict):
        raise SpecError(path or descriptor.name, f"expected a mapping for {descriptor.name} (got {type(obj).__name__})")
    _check_oneofs(obj, descriptor, path)
    by_key = {}
    for field in descriptor.fields:
        by_key[field.json_name] = field
        by_key[field.name] = field
    for key, value in obj.items():
        field = by_key.get(key)
        fpath = _join(path, str(key))
        if field is None:
            known = sorted({f.json_name for f in descriptor.fields})
            raise SpecError(
                path or descriptor.name,
                f'unknown field "{key}"',
                fix=f"known fields of {descriptor.name}: {', '.join(known)}",
            )
        if value is None:
            continue
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            if not isinstance(value, dict):
                raise SpecError(fpath, f"expected a mapping (got {type(value).__name__})")
            value_field = message.fields_by_name["value"]
            for k, v in value.items():
                _walk_value(v, value_field, f"{fpath}['{k}']")
        elif _is_repeated(field):
            if not isinstance(value, list):
                raise SpecError(fpath, f"expected a list (got {type(value).__name__})")
            for i, item in enumerate(value):
                _walk_value(item, field, f"{fpath}[{i}]")
        else:
            _walk_value(value, field, fpath)


_INT_TYPES = frozenset({"TYPE_INT32", "TYPE_INT64", "TYPE_UINT32", "TYPE_UINT64", "TYPE_SINT32",
                        "TYPE_SINT64", "TYPE_FIXED32", "TYPE_FIXED64", "TYPE_SFIXED32", "TYPE_SFIXED64"})


def _type_name(field) -> str:
    for name, number in vars(type(field)).items():
        if name.startswith("TYPE_") and number == field.type:
            return name
    return ""


def _check_scalar(value: Any, field, path: str) -> None:
    kind = _type_name(field)
    if kind in ("TYPE_STRING", "TYPE_BYTES"):
        ok, want = isinstance(value, str), "a string"
    elif kind == "TYPE_BOOL":
        ok, want = isinstance(value, bool), "true or false (without quotes)"
    elif kind in _INT_TYPES:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value) is not None)
        want = "an integer"
    elif kind in ("TYPE_DOUBLE", "TYPE_FLOAT"):
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or value in ("NaN", "Infinity", "-Infinity")
        want = "a number"
    else:
        return
    if not ok:
        raise SpecError(path, f"expected {want} (got {type(value).__name__} {value!r})")


def _walk_value(value: Any, field, path: str) -> None:
    if field.message_type is not None:
        _walk(value, field.message_type, path)
    elif field.enum_type is not None:
        _check_enum(value, field.enum_type, path)
    else:
        _check_scalar(value, field, path)


def _check_oneofs(obj: dict, descriptor, path: str) -> None:
    for oneof in descriptor.oneofs:
        if len(oneof.fields) < 2:
            continue  # proto3 "optional" synthetic oneof
        present = [f.json_name for f in oneof.fields if obj.get(f.json_name, obj.get(f.name)) is not None]
        if len(present) > 1:
            raise SpecError(
                path or descriptor.name,
                f"sets {' and '.join(present)}, but only one of {', '.join(f.json_name for f in oneof.fields)} is allowed",
            )


_AT = re.compile(r' at "?(?P<at>[^"]+?)"?\.?\n?(?: Available|$)')


def _parse_error(exc: Exception) -> SpecError:
    """Turn a ``json_format.ParseError`` into a SpecError with an IR-style path."""
    text = str(exc)
    match = _AT.search(text)
    path = ".".join(re.findall(r"Failed to parse (\w+) field", text))
    if match:
        path = match["at"].rstrip(".")
        path = re.sub(r"^\w+\.", "", path, count=1)  # drop the message name prefix
        path = re.sub(r"\[([^\]'\d][^\]]*)\]", r"['\1']", path)
    reason = text.split(" field: ")[-1]
    reason = _AT.split(reason)[0] if match else reason
    reason = reason.split(" at ")[0].rstrip(".").strip()
    return SpecError(path or "pipeline", reason)


def _kfp_submodule(name: str):
    """The kfp module ``name`` (``kfp.pipeline_spec.pipeline_spec_pb2``), loaded from its file
    without running ``kfp/__init__.py`` when kfp is not imported yet: that imports kfp's client and
    the kubernetes client (~0.5 s) before a run's first task, and the IR's protobuf module needs
    neither. Registered under its own name, so a later ``from kfp.pipeline_spec import ...`` gets
    this same module; anything unusual (kfp imported already, not a plain file) imports it normally."""
    import importlib
    import importlib.util
    import sys

    if name in sys.modules or "kfp" in sys.modules:
        return importlib.import_module(name)
    found = importlib.util.find_spec("kfp")
    roots = list((found.submodule_search_locations or []) if found else [])
    path = os.path.join(roots[0], *name.split(".")[1:]) + ".py" if len(roots) == 1 else ""
    if not os.path.isfile(path):
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _validate_schema(spec: dict):
    from google.protobuf import json_format

    pipeline_spec_pb2 = _kfp_submodule("kfp.pipeline_spec.pipeline_spec_pb2")

    _walk(spec, pipeline_spec_pb2.PipelineSpec.DESCRIPTOR, "")
    deployment = spec.get("deploymentSpec")
    if deployment is not None:
        _walk(deployment, pipeline_spec_pb2.PipelineDeploymentConfig.DESCRIPTOR, "deploymentSpec")
        try:
            json_format.ParseDict(deployment, pipeline_spec_pb2.PipelineDeploymentConfig())
        except json_format.ParseError as exc:
            err = _parse_error(exc)
            raise SpecError(_join("deploymentSpec", err.path), err.message.split(": ", 1)[-1]) from None
    try:
        return json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    except json_format.ParseError as exc:
        raise _parse_error(exc) from None


# ---------------------------------------------------------------------------------------------
# Reference checks
# ---------------------------------------------------------------------------------------------
def _known(names) -> str:
    return ", ".join(sorted(names)) or "none"


def _component_specs(spec: dict) -> Iterator[tuple[str, dict]]:
    yield "root", spec.get("root") or {}
    for name, comp in (spec.get("components") or {}).items():
        yield f"components['{name}']", comp or {}


def _outputs_of(spec: dict, task: dict) -> tuple[dict, dict]:
    comp = (spec.get("components") or {}).get((task.get("componentRef") or {}).get("name")) or {}
    outs = comp.get("outputDefinitions") or {}
    return outs.get("parameters") or {}, outs.get("artifacts") or {}


def _check_producer(spec, tasks, ref, task_key, out_key, kind, path, owner=None):
    producer = ref.get(task_key)
    if producer not in tasks or producer == owner:
        why = "a task cannot consume its own output" if producer == owner else f"no task '{producer}' in this DAG"
        raise SpecError(f"{path}.{task_key}", f"{why} (known: {_known(set(tasks) - {owner})})")
    key = ref.get(out_key)
    params, artifacts = _outputs_of(spec, tasks[producer])
    declared = params if kind == "parameters" else artifacts
    if key not in declared:
        raise SpecError(
            f"{path}.{out_key}",
            f"task '{producer}' has no output {kind[:-1]} '{key}' (known: {_known(declared)})",
        )


def _find_cycle(edges: dict) -> list | None:
    """One cycle of the directed graph ``edges`` (node -> successors, in insertion order) as its
    nodes in order, or None: a depth-first search, as ``networkx.find_cycle`` does (without the
    ~0.1 s import of networkx before every run)."""
    state: dict = {}  # node -> 1 on the current path, 2 done
    for start in edges:
        if start in state:
            continue
        path, stack = [start], [iter(edges.get(start, ()))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return None


def _check_dag(spec: dict, comp_path: str, comp: dict) -> None:
    components = spec.get("components") or {}
    dag = comp.get("dag") or {}
    tasks = dag.get("tasks") or {}
    inputs = comp.get("inputDefinitions") or {}
    in_params, in_artifacts = inputs.get("parameters") or {}, inputs.get("artifacts") or {}
    graph: dict = {t: {} for t in tasks}  # task -> dependents (a dict: ordered, no duplicate edges)
    for tname, task in tasks.items():  # component refs first: later checks look through them
        tpath = f"{comp_path}.dag.tasks['{tname}']"
        ref = ((task or {}).get("componentRef") or {}).get("name")
        if not ref:
            raise SpecError(f"{tpath}.componentRef.name", "is missing", fix="every task names the component it runs")
        if ref not in components:
            raise SpecError(f"{tpath}.componentRef.name", f"no component '{ref}' (known: {_known(components)})")
    for tname, task in tasks.items():
        tpath = f"{comp_path}.dag.tasks['{tname}']"
        task = task or {}
        ref = task["componentRef"]["name"]
        for i, dep in enumerate(task.get("dependentTasks") or []):
            if dep not in tasks or dep == tname:
                why = "a task cannot depend on itself" if dep == tname else f"no task '{dep}' in this DAG"
                raise SpecError(f"{tpath}.dependentTasks[{i}]", f"{why} (known: {_known(set(tasks) - {tname})})")
            graph.setdefault(dep, {})[tname] = None
        task_inputs = task.get("inputs") or {}
        for pname, pspec in (task_inputs.get("parameters") or {}).items():
            ppath = f"{tpath}.inputs.parameters['{pname}']"
            pspec = pspec or {}
            if "taskOutputParameter" in pspec:
                _check_producer(spec, tasks, pspec["taskOutputParameter"] or {}, "producerTask",
                                "outputParameterKey", "parameters", f"{ppath}.taskOutputParameter", tname)
                graph.setdefault(pspec["taskOutputParameter"]["producerTask"], {})[tname] = None
            if "componentInputParameter" in pspec and pspec["componentInputParameter"] not in in_params:
                raise SpecError(
                    f"{ppath}.componentInputParameter",
                    f"{comp_path} has no input parameter '{pspec['componentInputParameter']}' (known: {_known(in_params)})",
                )
            if "taskFinalStatus" in pspec:
                producer = (pspec["taskFinalStatus"] or {}).get("producerTask")
                if producer not in tasks or producer == tname:
                    raise SpecError(f"{ppath}.taskFinalStatus.producerTask",
                                    f"no task '{producer}' in this DAG (known: {_known(set(tasks) - {tname})})")
                graph.setdefault(producer, {})[tname] = None
        for aname, aspec in (task_inputs.get("artifacts") or {}).items():
            apath = f"{tpath}.inputs.artifacts['{aname}']"
            aspec = aspec or {}
            if "taskOutputArtifact" in aspec:
                _check_producer(spec, tasks, aspec["taskOutputArtifact"] or {}, "producerTask",
                                "outputArtifactKey", "artifacts", f"{apath}.taskOutputArtifact", tname)
                graph.setdefault(aspec["taskOutputArtifact"]["producerTask"], {})[tname] = None
            if "componentInputArtifact" in aspec and aspec["componentInputArtifact"] not in in_artifacts:
                raise SpecError(
                    f"{apath}.componentInputArtifact",
                    f"{comp_path} has no input artifact '{aspec['componentInputArtifact']}' (known: {_known(in_artifacts)})",
                )
        _check_task_wiring(spec, components[ref], ref, task, tpath)
    _check_dag_outputs(spec, comp_path, dag, tasks)
    cycle = _find_cycle(graph)
    if cycle is None:
        return
    loop = " -> ".join(cycle + [cycle[0]])
    raise SpecError(f"{comp_path}.dag.tasks", f"dependency cycle: {loop}", fix="remove one of the .after() or data edges")


def _check_task_wiring(spec: dict, target: dict, ref: str, task: dict, tpath: str) -> None:
    """Iterator inputs exist, and every required input of the component is wired."""
    task_inputs = task.get("inputs") or {}
    params, artifacts = task_inputs.get("parameters") or {}, task_inputs.get("artifacts") or {}
    defs = target.get("inputDefinitions") or {}
    def_params, def_artifacts = defs.get("parameters") or {}, defs.get("artifacts") or {}
    bound: set[str] = set()
    for kind, declared_here in (("parameterIterator", params), ("artifactIterator", artifacts)):
        it = task.get(kind)
        if not it:
            continue
        items = it.get("items") or {}
        source = items.get("inputParameter") if kind == "parameterIterator" else items.get("inputArtifact")
        key = "inputParameter" if kind == "parameterIterator" else "inputArtifact"
        if source is not None and source not in declared_here:
            raise SpecError(f"{tpath}.{kind}.items.{key}",
                            f"the task has no input '{source}' (known: {_known(declared_here)})")
        item = it.get("itemInput")
        if item not in def_params and item not in def_artifacts:
            raise SpecError(f"{tpath}.{kind}.itemInput",
                            f"component '{ref}' has no input '{item}' (known: {_known(set(def_params) | set(def_artifacts))})")
        bound.add(item)
    for name, pdef in def_params.items():
        pdef = pdef or {}
        if name in params or name in bound or pdef.get("isOptional") or "defaultValue" in pdef:
            continue
        raise SpecError(f"{tpath}.inputs.parameters",
                        f"required input parameter '{name}' of component '{ref}' is not wired",
                        fix="recompile the pipeline; the task must pass every required input")
    for name, adef in def_artifacts.items():
        if name in artifacts or name in bound or (adef or {}).get("isOptional"):
            continue
        raise SpecError(f"{tpath}.inputs.artifacts",
                        f"required input artifact '{name}' of component '{ref}' is not wired",
                        fix="recompile the pipeline; the task must pass every required input")


def _check_dag_outputs(spec: dict, comp_path: str, dag: dict, tasks: dict) -> None:
    outputs = dag.get("outputs") or {}
    for name, out in (outputs.get("parameters") or {}).items():
        opath = f"{comp_path}.dag.outputs.parameters['{name}']"
        out = out or {}
        selectors = []
        if "valueFromParameter" in out:
            selectors.append((f"{opath}.valueFromParameter", out["valueFromParameter"] or {}))
        if "valueFromOneof" in out:
            for i, sel in enumerate((out["valueFromOneof"] or {}).get("parameterSelectors") or []):
                selectors.append((f"{opath}.valueFromOneof.parameterSelectors[{i}]", sel or {}))
        for spath, sel in selectors:
            _check_producer(spec, tasks, sel, "producerSubtask", "outputParameterKey", "parameters", spath)
    for name, out in (outputs.get("artifacts") or {}).items():
        for i, sel in enumerate((out or {}).get("artifactSelectors") or []):
            _check_producer(spec, tasks, sel or {}, "producerSubtask", "outputArtifactKey", "artifacts",
                            f"{comp_path}.dag.outputs.artifacts['{name}'].artifactSelectors[{i}]")


def _check_references(spec: dict) -> None:
    info = spec.get("pipelineInfo") or {}
    if not info.get("name"):
        raise SpecError("pipelineInfo.name", "is missing", fix="give the pipeline a name: @dsl.pipeline(name=...)")
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    uses: dict = {}  # component -> the components its DAG's tasks run
    for comp_path, comp in _component_specs(spec):
        if "dag" in comp and "executorLabel" in comp:
            raise SpecError(comp_path, "has both dag and executorLabel (exactly one is allowed)")
        if "executorLabel" in comp:
            label = comp["executorLabel"]
            if label not in executors:
                raise SpecError(f"{comp_path}.executorLabel", f"no executor '{label}' (known: {_known(executors)})")
        elif "dag" in comp:
            _check_dag(spec, comp_path, comp)
            me = comp_path[len("components['"):-2] if comp_path != "root" else "<root>"
            for task in ((comp.get("dag") or {}).get("tasks") or {}).values():
                uses.setdefault(me, {})[(task.get("componentRef") or {}).get("name")] = None
        else:
            raise SpecError(comp_path, "has neither dag nor executorLabel", fix="recompile the pipeline with kfp 2.x")
    cycle = _find_cycle(uses)
    if cycle:
        loop = " -> ".join(cycle + [cycle[0]])
        raise SpecError("components", f"components contain themselves: {loop}")


def _check_platform(doc: dict, spec: dict, source: str) -> dict | None:
    platforms = doc.get("platforms")
    if not isinstance(platforms, dict):
        raise SpecError(f"{source}: document 2", "expected a platform document with a top-level 'platforms' key",
                        fix="only the kfp-kubernetes platform config may follow the PipelineSpec")
    kube = platforms.get("kubernetes")
    if kube is None:
        return None
    if not isinstance(kube, dict):
        raise SpecError("platforms.kubernetes", f"expected a mapping (got {type(kube).__name__})")
    for key in kube:
        if key not in ("deploymentSpec", "pipelineConfig"):
            raise SpecError("platforms.kubernetes", f'unknown field "{key}"', fix="known fields: deploymentSpec, pipelineConfig")
    known = (spec.get("deploymentSpec") or {}).get("executors") or {}
    for label, entry in ((kube.get("deploymentSpec") or {}).get("executors") or {}).items():
        path = f"platforms.kubernetes.deploymentSpec.executors['{label}']"
        if label not in known:
            raise SpecError(path, f"no executor '{label}' in deploymentSpec.executors (known: {_known(known)})")
        if entry is not None and not isinstance(entry, dict):
            raise SpecError(path, f"expected a mapping (got {type(entry).__name__})")
        for field in entry or {}:
            if field not in KUBERNETES_EXECUTOR_FIELDS:
                raise SpecError(path, f'unknown field "{field}"',
                                fix=f"known fields: {', '.join(sorted(KUBERNETES_EXECUTOR_FIELDS))}")
        _check_platform_entry(entry or {}, path)
    return kube


def _check_platform_entry(entry: dict, path: str) -> None:
    """Types of one kfp-kubernetes entry (its protobuf schema, when kfp-kubernetes is installed) and
    the names and paths the API server would check: volume names DNS-1123 labels, Secret/ConfigMap/PVC
    names DNS-1123 subdomains, ``mountPath`` set, ``subPath`` relative without ``..``."""
    try:
        from kfp.kubernetes import kubernetes_executor_config_pb2 as kec
    except ImportError:
        kec = None
    if kec is not None:
        known = {f.json_name for f in kec.KubernetesExecutorConfig.DESCRIPTOR.fields}
        _walk({k: v for k, v in entry.items() if k in known}, kec.KubernetesExecutorConfig.DESCRIPTOR, path)
    for field, name_key, check in (("pvcMount", "constant", check_dns1123_subdomain),
                                   ("secretAsVolume", "secretName", check_dns1123_subdomain),
                                   ("configMapAsVolume", "configMapName", check_dns1123_subdomain),
                                   ("emptyDirMounts", "volumeName", check_dns1123_label),
                                   ("genericEphemeralVolume", "volumeName", check_dns1123_label)):
        items = entry.get(field) or []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                raise SpecError(f"{path}.{field}[{i}]", f"expected a mapping (got {type(item).__name__})")
            ipath = f"{path}.{field}[{i}]"
            if item.get(name_key) not in (None, ""):
                check(f"{ipath}.{name_key}", item[name_key])
            if field == "pvcMount" and item.get("pvcNameParameter") is None and \
                    not any(item.get(k) for k in ("constant", "taskOutputParameter", "componentInputParameter")):
                raise SpecError(f"{ipath}.pvcNameParameter", "Required value: the claim to mount is not named",
                                fix="recompile with kubernetes.mount_pvc(task, pvc_name=..., mount_path=...)")
            mount = item.get("mountPath")
            if not isinstance(mount, str) or not mount or "\x00" in mount:
                raise SpecError(f"{ipath}.mountPath", "Required value: must be a path in the container",
                                fix="pass mount_path='/data' (an absolute path)")
            check_local_path(f"{ipath}.subPath", item.get("subPath"))


_NAME_MAX = 128  # localflow's limit on IR names: file names derived from them stay under NAME_MAX (255)


def _check_name(path: str, name) -> None:
    text = str(name)
    if not text.strip():
        raise SpecError(path, "Required value: a name must not be empty", fix="recompile the pipeline with a named task/output")
    if len(text) > _NAME_MAX:
        raise SpecError(path, f"must be no more than {_NAME_MAX} characters (got {len(text)})",
                        fix="shorten the component, task or output name")
    if escape(text) != text:
        raise SpecError(path, "must not contain control characters", fix="rename it with printable characters")


def _check_names(spec: dict) -> None:
    """Every name the IR keys by (components, tasks, inputs, outputs, executors): non-empty, at most
    128 characters, printable. Host paths built from them are encoded elsewhere; this keeps what a
    user reads (progress lines, errors) and the encoded file names sane."""
    if isinstance(spec.get("pipelineInfo"), dict) and spec["pipelineInfo"].get("name") is not None:
        _check_name("pipelineInfo.name", spec["pipelineInfo"]["name"])
    for label in ((spec.get("deploymentSpec") or {}).get("executors") or {}):
        _check_name(f"deploymentSpec.executors['{label}']", label)
    for comp_path, comp in _component_specs(spec):
        if comp_path != "root":
            _check_name(comp_path, comp_path[len("components['"):-2])
        for section in ("inputDefinitions", "outputDefinitions"):
            for kind in ("parameters", "artifacts"):
                for name in ((comp.get(section) or {}).get(kind) or {}):
                    _check_name(f"{comp_path}.{section}.{kind}['{name}']", name)
        dag = comp.get("dag") or {}
        for tname in dag.get("tasks") or {}:
            _check_name(f"{comp_path}.dag.tasks['{tname}']", tname)
        for kind in ("parameters", "artifacts"):
            for name in ((dag.get("outputs") or {}).get(kind) or {}):
                _check_name(f"{comp_path}.dag.outputs.{kind}['{name}']", name)


def load_pipeline(docs: list[dict], source: str = "pipeline.yaml") -> PipelineDocument:
    """Validate the documents of a compiled pipeline file and return a :class:`PipelineDocument`.

    ``docs`` comes from :func:`~localflow.specs.loader.load_documents`: a PipelineSpec (or a
    PipelineJob wrapping one) and optionally a ``platforms:`` document. Raises SpecError naming
    the field path for: unknown fields and enum values (``parameterType``...), protobuf type
    errors, a missing ``pipelineInfo.name``, unresolved ``componentRef``/``executorLabel``/
    ``dependentTasks``/``producerTask``/``producerSubtask``/``componentInputParameter``/output
    keys, unwired required inputs, dependency cycles, and platform entries for
    unknown executors or with unknown fields.
    """
    if not docs:
        raise SpecError(source, "holds no YAML document", fix="pass the file written by kfp.compiler.Compiler().compile")
    spec, runtime_config = unwrap_pipeline_job(docs[0])
    kind = detect_kind(docs[0], "")
    if kind != PIPELINE_SPEC:
        raise SpecError(f"{source}: document 1", f"is a {kind}, not a compiled KFP pipeline")
    if len(docs) > 2:
        raise SpecError(f"{source}: document 3", "a compiled pipeline has at most two documents (PipelineSpec, platforms)")
    proto = _validate_schema(spec)
    _check_names(spec)
    _check_references(spec)
    platform = _check_platform(docs[1], spec, source) if len(docs) == 2 else None
    return PipelineDocument(spec=spec, platform=platform, proto=proto, name=spec["pipelineInfo"]["name"],
                            runtime_config=runtime_config)


def compile_pipeline_func(func: Callable, *, pipeline_parameters: dict | None = None) -> list[dict]:
    """Compile a ``@dsl.pipeline`` function (or a component) with the kfp compiler and return
    its YAML documents, as :func:`~localflow.specs.loader.load_documents` would read them.

    Compiles to a temporary file that is removed afterwards. Raises SpecError (path
    ``pipeline``) when kfp is not installed or the compiler rejects the function.
    """
    try:
        from kfp import compiler
    except ImportError:
        raise SpecError("pipeline", "compiling a pipeline function needs the kfp SDK",
                        fix="pip install 'kfp>=2.7'") from None
    name = getattr(func, "name", None) or getattr(func, "__name__", "pipeline")
    with tempfile.TemporaryDirectory(prefix="localflow-compile-") as tmp:
        path = os.path.join(tmp, "pipeline.yaml")
        try:
            compiler.Compiler().compile(func, path, pipeline_parameters=pipeline_parameters)
        except Exception as exc:  # noqa: BLE001 - the compiler raises many unrelated types
            raise SpecError(f"pipeline '{name}'", f"kfp compiler rejected it: {exc}",
                            fix="decorate the function with @dsl.pipeline (or pass a component)") from None
        return load_documents(path)
