"""How the pipeline controller resolves a task's inputs and a DAG's outputs, as the KFP v2 driver does.

kubeflow/pipelines ``backend/src/v2/driver/resolve.go``: parameters from the parent DAG, upstream
outputs, constants (with placeholders), ``taskFinalStatus``, CEL selectors; declared types cast and
defaults applied; DAG outputs by ``valueFromParameter``/``valueFromOneof``/``artifactSelectors``;
a loop's outputs collected over its iterations; platform values (Secret, ConfigMap, PVC names).
"""
from __future__ import annotations


from localflow.errors import SpecError
from localflow.pipelines import cel, placeholders
from localflow.pipelines.values import cast_parameter, format_value
from localflow.pipelines.dagstate import DagNode, DagTask





class InputsMixin:
    """Inputs of :class:`~localflow.controllers.pipelinerun.PipelineRunController` (a mixin: its attributes are the controller's)."""

    def _task_path(self, t: DagTask) -> str:
        comp = t.node.component_name
        prefix = "root.dag" if comp == "root" else f"components['{comp}'].dag"
        return f"{prefix}.tasks['{t.key}']"

    def _job_ctx(self, t: DagTask, executor_input: dict, component: dict | None = None) -> placeholders.PlaceholderContext:
        job = dict(pipeline_job_name=self.run_name, pipeline_job_resource_name=self.run_name,
                   pipeline_job_uuid=self.run_id, pipeline_job_create_time_utc=self.create_time,
                   pipeline_job_schedule_time_utc=self.create_time, pipeline_task_name=t.key,
                   pipeline_task_uuid=str(t.record.execution_id or t.node.execution_id or ""),
                   pipeline_root=self.run_root, workspace_path=self.run_root)
        if component is not None:
            return placeholders.PlaceholderContext.for_component(component, executor_input, **job)
        return placeholders.PlaceholderContext(executor_input=executor_input, **job)

    def _resolve_inputs(self, t: DagTask, comp: dict, path: str) -> tuple[dict, dict]:
        node = t.node
        comp_path = f"components['{(t.spec.get('componentRef') or {}).get('name')}']"
        completed_strategy = (t.spec.get("triggerPolicy") or {}).get("strategy") == "ALL_UPSTREAM_TASKS_COMPLETED"
        inputs = t.spec.get("inputs") or {}
        params: dict = {}
        constants = set()
        for name, src in (inputs.get("parameters") or {}).items():
            p = f"{path}.inputs.parameters['{name}']"
            if "componentInputParameter" in src:
                parent = src["componentInputParameter"]
                if parent in node.params:
                    params[name] = node.params[parent]
            elif "taskOutputParameter" in src:
                s = src["taskOutputParameter"]
                producer = node.tasks.get(s["producerTask"])
                if producer is None:
                    raise SpecError(p, f"no task {s['producerTask']!r} in this DAG")
                outs = producer.record.outputs["parameters"]
                if s["outputParameterKey"] not in outs and completed_strategy and producer.state != "SUCCEEDED":
                    continue  # ignore_upstream_failure(): the upstream failed, the input's default applies
                if s["outputParameterKey"] not in outs:
                    raise SpecError(p, f"task {producer.path} ({producer.state}) produced no output parameter "
                                       f"{s['outputParameterKey']!r}",
                                    fix="consume outputs of conditional tasks through dsl.OneOf")
                params[name] = outs[s["outputParameterKey"]]
            elif "runtimeValue" in src:
                params[name] = (src["runtimeValue"] or {}).get("constant")
                constants.add(name)
            elif "taskFinalStatus" in src:
                producer = node.tasks.get(src["taskFinalStatus"]["producerTask"])
                params[name] = self._final_status(producer)
            sel = src.get("parameterExpressionSelector")
            if sel and name in params:
                params[name] = cel.apply_selector(sel, params[name], f"{p}.parameterExpressionSelector")
        if constants:
            ctx = self._job_ctx(t, {"inputs": {"parameterValues": params}})
            params = placeholders.resolve_parameter_values(params, ctx, f"{path}.inputs.parameters",
                                                           constants=constants)
        # cast declared inputs, apply defaults
        defs = (comp.get("inputDefinitions") or {}).get("parameters") or {}
        iterator = t.spec.get("parameterIterator") or t.spec.get("artifactIterator") or {}
        for name, d in defs.items():
            if name == iterator.get("itemInput"):
                continue  # bound per iteration
            ptype = d.get("parameterType", "STRING")
            p = f"{path}.inputs.parameters['{name}']"
            if params.get(name) is not None:
                if ptype == "STRING" and not isinstance(params[name], str):
                    # a selector over a struct loop item yields a number: the backend passes its text
                    params[name] = format_value(params[name])
                params[name] = cast_parameter(params[name], ptype, p)
            elif d.get("defaultValue") is not None:
                params[name] = cast_parameter(d["defaultValue"], ptype, f"{comp_path}.inputDefinitions.parameters['{name}'].defaultValue")
            elif ptype in ("TASK_FINAL_STATUS", "TASK_CONFIG"):
                # not wired to a producer (e.g. a component compiled on its own): an empty struct, so
                # the SDK builds a status/config with every field None instead of crashing on null
                params[name] = {}
            elif not d.get("isOptional") and name not in params:
                raise SpecError(p, "required input has no value", fix=f"wire it in the task's inputs or give "
                                                                      f"{comp_path}.inputDefinitions.parameters['{name}'] a default")
        artifacts: dict = {}
        for name, src in (inputs.get("artifacts") or {}).items():
            p = f"{path}.inputs.artifacts['{name}']"
            if "taskOutputArtifact" in src:
                s = src["taskOutputArtifact"]
                producer = node.tasks.get(s["producerTask"])
                if producer is None:
                    raise SpecError(p, f"no task {s['producerTask']!r} in this DAG")
                arts = producer.record.outputs["artifacts"].get(s["outputArtifactKey"])
                if arts is None and completed_strategy and producer.state != "SUCCEEDED":
                    continue
                if arts is None:
                    raise SpecError(p, f"task {producer.path} ({producer.state}) produced no output artifact "
                                       f"{s['outputArtifactKey']!r}")
                artifacts[name] = arts
            elif "componentInputArtifact" in src:
                parent = src["componentInputArtifact"]
                if parent in node.artifacts:
                    artifacts[name] = node.artifacts[parent]
        for name, d in ((comp.get("inputDefinitions") or {}).get("artifacts") or {}).items():
            if name == iterator.get("itemInput") or (d or {}).get("isOptional") or artifacts.get(name):
                continue
            raise SpecError(f"{path}.inputs.artifacts['{name}']", "required input artifact has no value",
                            fix=f"wire an artifact to it or declare {comp_path}.inputDefinitions.artifacts['{name}'] "
                                "optional (Optional[Input[...]] = None)")
        return params, artifacts

    def _final_status(self, producer: DagTask | None) -> dict:
        if producer is None:
            return {}
        state = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED", "SKIPPED": "SKIPPED"}.get(
            producer.state, producer.state)
        err = {}
        if producer.state in ("FAILED", "CANCELED") and producer.record.error:
            err = {"code": 2 if producer.state == "FAILED" else 1, "message": producer.record.error}
        return {"state": state, "error": err, "pipelineJobResourceName": self.run_name,
                "pipelineTaskName": producer.key}

    def _dag_outputs(self, node: DagNode) -> dict:
        dag_outputs = (node.component.get("dag") or {}).get("outputs") or {}
        path = f"components['{node.component_name}'].dag.outputs"
        out = {"parameters": {}, "artifacts": {}}
        for key, sel in (dag_outputs.get("parameters") or {}).items():
            if "valueFromParameter" in sel:
                s = sel["valueFromParameter"]
                producer = node.tasks.get(s["producerSubtask"])
                if producer is not None and s["outputParameterKey"] in producer.record.outputs["parameters"]:
                    out["parameters"][key] = producer.record.outputs["parameters"][s["outputParameterKey"]]
            elif "valueFromOneof" in sel:
                for s in sel["valueFromOneof"].get("parameterSelectors") or []:
                    producer = node.tasks.get(s["producerSubtask"])
                    if producer is not None and producer.state == "SUCCEEDED" and \
                            s["outputParameterKey"] in producer.record.outputs["parameters"]:
                        out["parameters"][key] = producer.record.outputs["parameters"][s["outputParameterKey"]]
                        break
                else:
                    raise SpecError(f"{path}.parameters['{key}'].valueFromOneof",
                                    "no branch of the dsl.OneOf ran, so the output has no value",
                                    fix="make the conditions cover every case (add an Else branch)")
        for key, sel in (dag_outputs.get("artifacts") or {}).items():
            selectors = sel.get("artifactSelectors") or []
            for s in selectors:
                producer = node.tasks.get(s["producerSubtask"])
                if producer is not None and producer.state == "SUCCEEDED" and \
                        s["outputArtifactKey"] in producer.record.outputs["artifacts"]:
                    out["artifacts"][key] = producer.record.outputs["artifacts"][s["outputArtifactKey"]]
                    break
            else:
                if len(selectors) > 1:
                    raise SpecError(f"{path}.artifacts['{key}'].artifactSelectors",
                                    "no branch of the dsl.OneOf ran, so the output has no artifact",
                                    fix="make the conditions cover every case (add an Else branch)")
        return out

    def _loop_outputs(self, t: DagTask) -> dict:
        comp_name, comp = t.loop_component
        dag_outputs = (comp.get("dag") or {}).get("outputs") or {}
        out = {"parameters": {}, "artifacts": {}}
        for key in dag_outputs.get("parameters") or {}:
            # iterations whose producer did not run (a false condition inside the loop) add nothing
            out["parameters"][key] = [n.outputs["parameters"][key] for n in t.iterations
                                      if key in n.outputs["parameters"]]
        for key in dag_outputs.get("artifacts") or {}:
            out["artifacts"][key] = [a for n in t.iterations for a in n.outputs["artifacts"].get(key, [])]
        return out

    def _platform_value(self, t: DagTask, spec: dict, path: str):
        """Value of a TaskInputParameterSpec used by the platform config (a Secret, ConfigMap or
        PVC name) in the task's DAG: a constant, a DAG input or an upstream task's output."""
        if "runtimeValue" in spec:
            return (spec["runtimeValue"] or {}).get("constant")
        if "componentInputParameter" in spec:
            name = spec["componentInputParameter"]
            for values in (t.node.params, t.params):
                if values.get(name) is not None:
                    return values[name]
            defs = ((t.node.component.get("inputDefinitions") or {}).get("parameters") or {}).get(name) or {}
            if defs.get("isOptional"):
                return None  # an optional input left unset: the driver skips what it names (k8s.go)
            raise SpecError(f"{path}.componentInputParameter", f"input {name!r} has no value in this DAG",
                            fix="pass the parameter to the pipeline (-p NAME=VALUE)")
        if "taskOutputParameter" in spec:
            s = spec["taskOutputParameter"]
            producer = t.node.tasks.get(s.get("producerTask"))
            outs = producer.record.outputs["parameters"] if producer is not None else {}
            if s.get("outputParameterKey") not in outs:
                raise SpecError(f"{path}.taskOutputParameter",
                                f"task {s.get('producerTask')!r} has no output {s.get('outputParameterKey')!r} "
                                f"(state {producer.state if producer else 'missing'})")
            return outs[s["outputParameterKey"]]
        raise SpecError(path, f"cannot resolve {spec!r}", fix="use a constant, a pipeline input or a task output")

