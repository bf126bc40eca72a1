"""Names in a pipeline IR that become host paths, checked before a run starts.

Task keys, output parameter and artifact names become directory and file names of a run
(encoded by :func:`localflow.safepath.encode_component`, so any character stays inside the run's
directory). What no compiled pipeline holds and no file system can name is refused up front with
a :class:`~localflow.errors.SpecError` naming the field: an empty name, ``.`` or ``..``, ``/``,
``\\``, NUL or other control characters, more than 255 bytes. The kfp compiler only writes
sanitized task keys (``[a-z0-9-]``) and Python identifiers for outputs
(kubeflow/pipelines ``sdk/python/kfp/compiler/pipeline_spec_builder.py``), so a refused name was
edited by hand or crafted. The kfp-kubernetes platform config's constant claim names and
``subPath`` values are checked the same way (:func:`check_platform_paths`).
"""
from __future__ import annotations

from localflow.errors import SpecError
from localflow.safepath import MAX_COMPONENT_BYTES, check_component, check_relative

__all__ = ["check_ir_names", "check_platform_paths"]


def _check_name(name, field: str, what: str) -> None:
    if not isinstance(name, str) or not name:
        raise SpecError(field, f"the {what} must be a non-empty string (got {name!r})", fix=f"name the {what}")
    if name in (".", "..") or any(c in name for c in "/\\") or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise SpecError(field, f"{name!r} cannot be a {what}: it must not be '.' or '..' nor contain '/', '\\' "
                               "or control characters",
                        fix=f"rename the {what} (the kfp compiler writes letters, digits, '-' and '_')")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
        raise SpecError(field, f"the {what} is longer than {MAX_COMPONENT_BYTES} bytes", fix=f"shorten the {what}")


def check_ir_names(spec: dict) -> None:
    """Check every DAG task key, every component's output parameter and artifact name, every DAG
    output name and loop item input of a PipelineSpec dict (see the module doc); SpecError at e.g.
    ``root.dag.tasks['../x']`` or ``components['comp-a'].outputDefinitions.artifacts['']``."""
    comps = [("root", spec.get("root") or {})]
    comps += [(f"components['{k}']", c or {}) for k, c in (spec.get("components") or {}).items()
              if isinstance(c, dict)]
    for where, comp in comps:
        if not isinstance(comp, dict):
            continue
        outs = comp.get("outputDefinitions") or {}
        for kind in ("parameters", "artifacts"):
            for name in (outs.get(kind) or {}) if isinstance(outs, dict) else {}:
                what = "output parameter name" if kind == "parameters" else "output artifact name"
                _check_name(name, f"{where}.outputDefinitions.{kind}[{name!r}]", what)
        dag = comp.get("dag") or {}
        if not isinstance(dag, dict):
            continue
        for kind in ("parameters", "artifacts"):
            for name in ((dag.get("outputs") or {}).get(kind) or {}):
                _check_name(name, f"{where}.dag.outputs.{kind}[{name!r}]", "DAG output name")
        for key, task in (dag.get("tasks") or {}).items():
            _check_name(key, f"{where}.dag.tasks[{key!r}]", "task name")
            for it in ("parameterIterator", "artifactIterator"):
                item = ((task or {}).get(it) or {}).get("itemInput") if isinstance(task, dict) else None
                if item is not None:
                    _check_name(item, f"{where}.dag.tasks[{key!r}].{it}.itemInput", "loop item name")


def check_platform_paths(executors: dict, path: str = "platforms.kubernetes.deploymentSpec.executors") -> None:
    """Check the kfp-kubernetes executor configs' constant PVC names (``pvcMount[].constant``,
    ``pvcNameParameter.runtimeValue.constant``: one directory name each), ``subPath`` values
    (relative, no ``..``) and volume names; names given by parameters are checked when the task
    starts (:meth:`localflow.workspace.Workspace.pvc_dir`)."""
    for label, config in (executors or {}).items():
        if not isinstance(config, dict):
            continue
        p = f"{path}[{label!r}]"
        for i, m in enumerate(config.get("pvcMount") or []):
            if not isinstance(m, dict):
                continue
            q = f"{p}.pvcMount[{i}]"
            constant = m.get("constant")
            if constant is None:
                constant = (((m.get("pvcNameParameter") or {}).get("runtimeValue") or {}).get("constant"))
                q_name = f"{q}.pvcNameParameter.runtimeValue.constant"
            else:
                q_name = f"{q}.constant"
            if constant is not None:
                check_component(constant, q_name, what="claim name")
            if m.get("subPath"):
                check_relative(m["subPath"], f"{q}.subPath", what="subPath")
        for key in ("emptyDirMounts", "genericEphemeralVolume"):
            for i, s in enumerate(config.get(key) or []):
                if isinstance(s, dict) and s.get("volumeName") is not None:
                    _check_name(s["volumeName"], f"{p}.{key}[{i}].volumeName", "volume name")
