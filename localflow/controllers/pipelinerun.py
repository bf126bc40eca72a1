"""The pipeline run controller: executes a compiled KFP v2 PipelineSpec with the backend's semantics.

One :class:`PipelineRunController` drives one run. It walks the root DAG and every nested DAG
(condition groups, loops, exit handlers, nested pipelines) as the KFP v2 driver does
(kubeflow/pipelines ``backend/src/v2/driver/driver.go``, ``resolve.go``): a task starts when its
``dependentTasks`` are done and its ``triggerPolicy`` (strategy and CEL condition) allows it;
executor tasks become Pods handed to the :class:`~localflow.scheduler.Scheduler`, so independent
tasks run concurrently; outputs are collected as ``launcher_v2.go`` collects them (executor output
file first, then output parameter files, then pre-assigned artifact URIs). What the launcher does
(ExecutorInput, the task Pod, output collection) is in :mod:`localflow.pipelines.launcher`; this
module is the driver's side and records what the launcher returns. Everything is recorded
as ML Metadata executions, artifacts and events, and the run is mirrored as a
``pipelines.kubeflow.org/v2beta1 Run`` object whose status lists task details.

The controller is event-driven: it reacts to Pod watch events from the fake object store and to
its own timers (retry backoff), on one thread, the caller's.

Task states are those of the KFP v2beta1 Run API (``backend/api/v2beta1/run.proto`` RuntimeState):
PENDING, RUNNING, SUCCEEDED, SKIPPED, FAILED, CANCELED. A cache hit is ``SUCCEEDED`` with
``cached: true`` (MLMD state ``CACHED``). A task on a false branch (every task inside a skipped
group is recorded), or downstream of a task that failed or was skipped without
``ALL_UPSTREAM_TASKS_COMPLETED``, is ``SKIPPED``. An execution is ``NEW`` while its Pod waits for
admission and ``RUNNING`` once the Pod runs. Spec errors that do not depend on runtime values
(conditions, placeholders) are found before anything runs (:mod:`localflow.pipelines.preflight`);
the kfp-kubernetes platform document is mapped by :mod:`localflow.pipelines.platform`.
"""
from __future__ import annotations

import heapq
import itertools
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from localflow import dbconn
from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.ownership import owner_annotations
from localflow.errors import LocalflowError, SpecError
from localflow.faults import SchedulerFault, critical, describe, is_disk_full, run_fault_message, with_space_note
from localflow.pipelines import cel, launcher, placeholders, platform
from localflow.pipelines.names import check_ir_names, check_platform_paths
from localflow.pipelines.preflight import check_pipeline
from localflow.pipelines.cache import fingerprint
from localflow.pipelines.launcher import k8s_name as _k8s_name, random_suffix as _suffix
from localflow.pipelines.packages import PackageInstaller
from localflow.pipelines.storage import StorageMap
from localflow.scheduler import PYTHON_ANNOTATION
from localflow.pipelines.values import cast_parameter, format_value, resolve_input_definitions
from localflow.safepath import safe_join
from localflow.specs.pipeline import PipelineDocument

RUN_API_VERSION = "pipelines.kubeflow.org/v2beta1"
TERMINAL = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
RUN_ID_LABEL = "pipeline/runid"
LF_RUN_LABEL = "localflow.dev/run-id"
#: Least seconds between two writes of a running Run's status summary (its task changes are batched).
STATUS_INTERVAL_S = 0.3
_MLMD_STATE = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED", "SKIPPED": "COMPLETE"}


@dataclass
class TaskRecord:
    """What a run reports about one task (one entry of ``Run.tasks``).

    ``name`` is the task's path in the run: DAG keys joined by ``.``, loop iterations as
    ``for-loop-2[0]`` (``condition-1.echo``, ``for-loop-2[1].square``). ``outputs`` is
    ``{"parameters": {name: value}, "artifacts": {name: [RuntimeArtifact dict]}}``.
    ``kind``: ``container``, ``importer``, ``pvc`` (kfp-kubernetes CreatePVC/DeletePVC), ``dag``,
    ``loop`` or ``iteration``.
    """

    name: str
    task: str
    display_name: str
    kind: str
    state: str = "PENDING"
    cached: bool = False
    pod: str | None = None
    execution_id: int | None = None
    attempts: int = 0
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=lambda: {"parameters": {}, "artifacts": {}})
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


class _Node:
    """One running instance of a DAG component (root, group, nested pipeline, loop iteration)."""

    def __init__(self, component_name: str, component: dict, params: dict, artifacts: dict, prefix: str,
                 owner: "_Task | None", execution_id: int | None, dirs: tuple = ()):
        self.component_name = component_name
        self.dirs = dirs  # raw task keys and loop indices from the root: the node's place on disk
        self.component = component
        self.params = params
        self.artifacts = artifacts
        self.prefix = prefix
        self.owner = owner
        self.execution_id = execution_id
        dag = component.get("dag") or {}
        self.tasks: dict[str, _Task] = {}
        for key, spec in (dag.get("tasks") or {}).items():
            self.tasks[key] = _Task(self, key, spec)
        self.done = False
        self.state = "RUNNING"
        self.outputs: dict = {"parameters": {}, "artifacts": {}}


class _Task:
    """One task of a DAG instance and its runtime book-keeping."""

    def __init__(self, node: _Node, key: str, spec: dict):
        self.node = node
        self.key = key
        self.spec = spec
        path = f"{node.prefix}.{key}" if node.prefix else key
        self.path = path
        self.dirs = node.dirs + (key,)  # never split the dotted path: a key may hold '.' (or '/')
        display = (spec.get("taskInfo") or {}).get("name") or key
        self.record = TaskRecord(name=path, task=key, display_name=display, kind="container")
        self.params: dict = {}
        self.artifacts: dict = {}
        self.attempt = 0
        self.child: _Node | None = None
        self.iterations: list[_Node] = []
        self.pending_items: list[tuple[int, Any]] = []
        self.loop_running = 0
        self.loop_limit = 0
        self.exec_ctx: dict | None = None
        self.exec_running = True  # False while the execution is NEW (its Pod not yet running)
        # dependentTasks plus every producer this task reads an output of: the backend adds those
        # implicitly (backend/src/v2/compiler/argocompiler/dag.go addImplicitDependencies)
        deps = list(spec.get("dependentTasks") or [])
        inputs = spec.get("inputs") or {}
        for src in (inputs.get("parameters") or {}).values():
            producer = ((src or {}).get("taskOutputParameter") or {}).get("producerTask")
            if producer and producer not in deps:
                deps.append(producer)
        for src in (inputs.get("artifacts") or {}).values():
            producer = ((src or {}).get("taskOutputArtifact") or {}).get("producerTask")
            if producer and producer not in deps:
                deps.append(producer)
        self.deps = deps

    @property
    def state(self) -> str:
        return self.record.state


class PipelineRunController:
    """Runs one pipeline to completion. Construct, then call :meth:`run`.

    ``doc``: a loaded :class:`~localflow.specs.pipeline.PipelineDocument`; ``parameters``: pipeline
    input values (Python values, or strings from ``-p`` already parsed); ``store``/``scheduler``/
    ``metadata``/``workspace``: the runtime; ``cache``: honour ``cachingOptions`` (``--no-cache``
    turns it off); ``on_task``: called with a :class:`TaskRecord` on every task state change
    (progress display). Raises :class:`SpecError` from the constructor for bad parameters and for
    conditions, selectors or placeholders that can never work (:mod:`localflow.pipelines.preflight`).
    """

    def __init__(self, doc: PipelineDocument, *, parameters: dict | None, store, scheduler, metadata, workspace,
                 clock: Clock = SYSTEM_CLOCK, cache: bool = True, namespace: str = "default",
                 run_name: str | None = None, spec_path: str | None = None,
                 on_task: Callable[[TaskRecord], None] | None = None,
                 packages: PackageInstaller | None = None, storage: StorageMap | None = None):
        self.doc = doc
        self.spec = doc.spec
        self.platform = (doc.platform or {}).get("deploymentSpec", {}).get("executors", {}) if doc.platform else {}
        self.store, self.scheduler, self.metadata, self.workspace = store, scheduler, metadata, workspace
        self.clock = clock
        self.cache = cache
        self.namespace = namespace
        self.on_task = on_task
        self.components = self.spec.get("components") or {}
        self.executors = (self.spec.get("deploymentSpec") or {}).get("executors") or {}
        self.pipeline_name = doc.name
        root = self.spec.get("root") or {}
        check_pipeline(self.spec)
        check_ir_names(self.spec)  # names that become paths of the run
        check_platform_paths(self.platform)
        for name, d in ((root.get("inputDefinitions") or {}).get("artifacts") or {}).items():
            if not (d or {}).get("isOptional"):
                raise SpecError(f"root.inputDefinitions.artifacts['{name}']",
                                "the pipeline needs an input artifact, and a run can only be given parameters",
                                fix="import the file inside the pipeline with dsl.importer(artifact_uri=...) "
                                    "or run the pipeline as a component of another one")
        self.params = resolve_input_definitions(root.get("inputDefinitions"), dict(parameters or {}),
                                                "root.inputDefinitions")
        self.run_id = str(uuid.uuid4())
        self.run_name = run_name or f"{_k8s_name(self.pipeline_name, 57)}-{_suffix()}"
        self.create_time = clock.rfc3339()
        self.packages = packages
        self.storage = storage or StorageMap()
        # a remote pipeline_root mapped by storage: in localflow.yaml holds the outputs; else the workspace
        self.pipeline_root = (doc.runtime_config or {}).get("gcsOutputDirectory") or self.spec.get("defaultPipelineRoot")
        mapped_root = self.storage.run_root(self.pipeline_root)
        # sanitized name and a uuid: nothing from the spec reaches the path raw
        if mapped_root:
            self.run_root = str(safe_join(mapped_root, _k8s_name(self.pipeline_name, 100), self.run_id,
                                          field="pipelineInfo.name"))
        else:
            self.run_root = str(safe_join(workspace.root, "artifacts", _k8s_name(self.pipeline_name, 100),
                                          self.run_id, field="pipelineInfo.name"))
        self.spec_path = spec_path
        self.tasks: dict[str, TaskRecord] = {}
        self._pods: dict[str, _Task] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._artifact_ids: dict[str, int] = {}
        self.state = "PENDING"
        self.error: str | None = None
        self.outputs: dict = {"parameters": {}, "artifacts": {}}
        self.run_object: dict | None = None
        self._nodes: list[_Node] = []  # every DAG instance, for their executions' end on cancel/fault
        self._recorded = False  # the run is in the metadata (a fault from here on is recorded)
        self._status_dirty = False  # task states changed since the Run status was last written
        self._status_due = 0.0  # time.monotonic() from which the next batched status may be written

    # ------------------------------------------------------------------ public
    def run(self) -> str:
        """Execute the run; returns its final state (SUCCEEDED, FAILED or CANCELED).

        Ctrl-C (KeyboardInterrupt) cancels: running Pods are killed, the run, its executions and
        DAG executions end CANCELED and the interrupt is re-raised after everything is recorded.
        An unexpected error mid-run (a bug, a full disk, a kubelet thread that failed) kills the
        Pods and ends everything FAILED with one line naming the workspace and the cause
        (:func:`localflow.faults.run_fault_message`); the run is returned FAILED. Other
        :class:`LocalflowError` s are recorded the same way, then re-raised. The recording is a
        :func:`~localflow.faults.critical` section: an interrupt never cuts it short.
        """
        md = self.metadata
        watch = None
        try:
            with critical():
                # the object first: a name that is taken or invalid is refused before anything is recorded
                self.run_object = self.store.create({
                    "apiVersion": RUN_API_VERSION, "kind": "Run",
                    "metadata": {"name": self.run_name, "namespace": self.namespace,
                                 "labels": {RUN_ID_LABEL: self.run_id, LF_RUN_LABEL: self.run_id,
                                            "pipelines.kubeflow.org/pipeline": _k8s_name(self.pipeline_name, 63)},
                                 "annotations": owner_annotations()},
                    "spec": {"displayName": self.run_name, "pipelineName": self.pipeline_name,
                             "runtimeConfig": {"parameters": self.params, "pipelineRoot": self.run_root},
                             "specPath": self.spec_path},
                    "status": {"state": "PENDING", "runId": self.run_id, "createdAt": self.create_time}})
                md.create_run(self.run_id, self.run_name, "PipelineRun", pipeline_name=self.pipeline_name,
                              spec_path=self.spec_path, parameters=self.params, executor=self.scheduler.executor.name,
                              namespace=self.namespace)
                self._recorded = True
                self.pipeline_ctx = md.put_context("system.Pipeline", self.pipeline_name)
                self.run_ctx = md.put_context("system.PipelineRun", self.run_name, {"run_id": self.run_id})
                self.state = "RUNNING"
                md.update_run(self.run_id, state="RUNNING")
                self._write_run_status()
                watch = self.store.watch(kind="Pod", namespace=self.namespace,
                                         label_selector={LF_RUN_LABEL: self.run_id})
                root_exec = md.create_execution(self.run_id, "system.DAGExecution", self.pipeline_name,
                                                state="RUNNING", inputs={"parameters": self.params})
                md.associate(self.run_ctx, root_exec)
                md.update_execution(root_exec, started=True)
                self.root = _Node("root", self.spec.get("root") or {}, dict(self.params), {}, "", None, root_exec)
                self._nodes.append(self.root)
            self._advance(self.root)
            while not self.root.done:
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - self.clock.monotonic())
                due = self._status_wait()
                if due is not None:
                    timeout = due if timeout is None else min(timeout, due)
                ev = watch.get(timeout=timeout if timeout is not None else 1.0)
                if ev is not None:
                    self._on_pod_event(ev)
                if self._status_dirty and time.monotonic() >= self._status_due:
                    self._write_run_status()
                self._fire_timers()
                self.scheduler.raise_fault(self._pods)  # a Pod whose end could not be written
        except KeyboardInterrupt:
            if not self._recorded:
                raise
            with critical():
                self._cancel("CANCELED: interrupted")
                try:
                    self._finish()
                except LocalflowError:
                    pass  # exits 130 even when the end could not be recorded (gc ends it later)
            raise
        except Exception as e:
            if not self._recorded:
                raise
            with critical():
                self._abort(e)
                self._finish()
            if isinstance(e, LocalflowError) and not isinstance(e, SchedulerFault):
                raise
            return self.state
        except BaseException:  # SystemExit
            if self._recorded:
                with critical():
                    self._cancel("CANCELED: localflow is exiting")
                    self._finish()
            raise
        finally:
            if watch is not None:
                watch.close()
        with critical():
            self._finish()
        return self.state

    def cancel(self) -> None:
        """Cancel from another thread: kill running Pods; the run ends CANCELED."""
        self._cancel("CANCELED")

    # ------------------------------------------------------------------ DAG walking
    def _advance(self, node: _Node) -> None:
        if node.done:
            return
        progressed = True
        while progressed:
            progressed = False
            for t in node.tasks.values():
                if t.state != "PENDING":
                    continue
                deps = [node.tasks[d] for d in t.deps if d in node.tasks]
                if any(d.state not in TERMINAL for d in deps):
                    continue
                strategy = (t.spec.get("triggerPolicy") or {}).get("strategy") or "ALL_UPSTREAM_TASKS_SUCCEEDED"
                # the backend compiles dependencies to Argo `depends: <task>.Succeeded`
                # (backend/src/v2/compiler/argocompiler/dag.go): a skipped upstream blocks too
                bad = [d for d in deps if d.state in ("FAILED", "CANCELED", "SKIPPED")]
                if bad and strategy != "ALL_UPSTREAM_TASKS_COMPLETED":
                    self._skip(t, f"upstream task {bad[0].path} {bad[0].state.lower()}")
                    progressed = True
                    continue
                self._start_task(t)
                progressed = True
        if all(t.state in TERMINAL for t in node.tasks.values()):
            self._finish_node(node)

    def _start_task(self, t: _Task) -> None:
        spec = t.spec
        comp_name = (spec.get("componentRef") or {}).get("name")
        comp = self.components.get(comp_name) or {}
        t.record.started_at = self.clock.rfc3339()
        path = self._task_path(t)
        try:
            t.params, t.artifacts = self._resolve_inputs(t, comp, path)
            cond = (spec.get("triggerPolicy") or {}).get("condition")
            if cond and not cel.evaluate_condition(cond, t.params, f"{path}.triggerPolicy.condition"):
                self._skip(t, "condition was false")
                return
            t.record.inputs = {"parameters": dict(t.params),
                               "artifacts": {k: [a["uri"] for a in v] for k, v in t.artifacts.items()}}
            if "parameterIterator" in spec or "artifactIterator" in spec:
                self._start_loop(t, comp_name, comp, path)
            elif "dag" in comp:
                t.record.kind = "dag"
                self._set_state(t, "RUNNING")
                t.child = self._new_node(comp_name, comp, t.params, t.artifacts, t.path, t, t.dirs)
                self._advance(t.child)
            else:
                label = comp.get("executorLabel")
                executor = self.executors.get(label) or {}
                if "importer" in executor:
                    self._run_importer(t, comp, executor["importer"], path)
                elif (executor.get("container") or {}).get("image") in platform.PVC_OPERATIONS:
                    self._run_pvc_operation(t, comp, platform.PVC_OPERATIONS[executor["container"]["image"]], path)
                elif "container" in executor:
                    self._start_container(t, comp, label, executor)
                else:
                    kind = next(iter(executor), "nothing")
                    raise SpecError(f"deploymentSpec.executors['{label}']",
                                    f"executor kind {kind!r} cannot run locally",
                                    fix="localflow runs container and importer executors")
        except LocalflowError as e:
            self._fail(t, e.args[0] if e.args else str(e))

    def _skip(self, t: _Task, error: str) -> None:
        """End a task SKIPPED; a skipped group's tasks are recorded SKIPPED too (they never start)."""
        spec = t.spec
        comp = self.components.get((spec.get("componentRef") or {}).get("name")) or {}
        if "parameterIterator" in spec or "artifactIterator" in spec:
            t.record.kind = "loop"  # its items were never resolved: no iterations to list
        elif "dag" in comp:
            t.record.kind = "dag"
            self._record_skipped_dag(comp, t.path, f"in skipped group {t.path}")
        else:
            label = comp.get("executorLabel")
            t.record.kind = "importer" if "importer" in (self.executors.get(label) or {}) else "container"
        self._set_state(t, "SKIPPED", error=error)

    def _record_skipped_dag(self, comp: dict, prefix: str, error: str) -> None:
        now = self.clock.rfc3339()
        for key, spec in ((comp.get("dag") or {}).get("tasks") or {}).items():
            sub = self.components.get((spec.get("componentRef") or {}).get("name")) or {}
            looped = "parameterIterator" in spec or "artifactIterator" in spec
            kind = "loop" if looped else "dag" if "dag" in sub else \
                "importer" if "importer" in (self.executors.get(sub.get("executorLabel")) or {}) else "container"
            rec = TaskRecord(name=f"{prefix}.{key}", task=key, display_name=(spec.get("taskInfo") or {}).get("name") or key,
                             kind=kind, state="SKIPPED", error=error, finished_at=now)
            self.tasks[rec.name] = rec
            if self.on_task is not None:
                self.on_task(rec)
            if kind == "dag":
                self._record_skipped_dag(sub, rec.name, error)

    def _new_node(self, comp_name, comp, params, artifacts, prefix, owner, dirs=()) -> _Node:
        exec_id = self.metadata.create_execution(self.run_id, "system.DAGExecution", prefix, state="RUNNING",
                                                 inputs={"parameters": params}, parent_id=owner.node.execution_id if owner else None)
        self.metadata.associate(self.run_ctx, exec_id)
        self.metadata.update_execution(exec_id, started=True)
        node = _Node(comp_name, comp, dict(params), dict(artifacts), prefix, owner, exec_id, tuple(dirs))
        self._nodes.append(node)
        for task in node.tasks.values():
            self.tasks[task.path] = task.record
        return node

    def _finish_node(self, node: _Node) -> None:
        if node.done:
            return
        node.done = True
        failed = [t for t in node.tasks.values() if t.state in ("FAILED", "CANCELED")]
        node.state = "FAILED" if failed else "SUCCEEDED"
        error = None
        if failed:
            first = failed[0]
            error = f"task {first.path} {first.state.lower()}" + (f": {first.record.error}" if first.record.error else "")
        else:
            try:
                node.outputs = self._dag_outputs(node)
            except LocalflowError as e:
                node.state, error = "FAILED", e.args[0]
        self.metadata.update_execution(node.execution_id, state=_MLMD_STATE[node.state], outputs=node.outputs,
                                       finished=True, error=error)
        owner = node.owner
        if owner is None:
            self.state = node.state
            self.error = error
            self.outputs = node.outputs
            return
        if owner.record.kind == "loop":
            self._iteration_done(owner, node, error)
            return
        owner.record.outputs = node.outputs
        if node.state == "FAILED":
            self._fail(owner, error)
        else:
            self._set_state(owner, "SUCCEEDED")

    def _dag_outputs(self, node: _Node) -> dict:
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

    # ------------------------------------------------------------------ inputs
    def _resolve_inputs(self, t: _Task, comp: dict, path: str) -> tuple[dict, dict]:
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

    def _final_status(self, producer: _Task | None) -> dict:
        if producer is None:
            return {}
        state = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED", "SKIPPED": "SKIPPED"}.get(
            producer.state, producer.state)
        err = {}
        if producer.state in ("FAILED", "CANCELED") and producer.record.error:
            err = {"code": 2 if producer.state == "FAILED" else 1, "message": producer.record.error}
        return {"state": state, "error": err, "pipelineJobResourceName": self.run_name,
                "pipelineTaskName": producer.key}

    # ------------------------------------------------------------------ loops
    def _start_loop(self, t: _Task, comp_name: str, comp: dict, path: str) -> None:
        t.record.kind = "loop"
        spec = t.spec
        if "parameterIterator" in spec:
            it = spec["parameterIterator"]
            items_src = it.get("items") or {}
            if "raw" in items_src:
                try:
                    items = json.loads(items_src["raw"])
                except ValueError as e:
                    raise SpecError(f"{path}.parameterIterator.items.raw", f"not a JSON list: {e}") from None
            else:
                name = items_src.get("inputParameter")
                items = t.params.get(name)
                if isinstance(items, str):
                    try:
                        items = json.loads(items)
                    except ValueError:
                        raise SpecError(f"{path}.parameterIterator.items.inputParameter",
                                        f"input {name!r} is not a JSON list: {items[:60]!r}") from None
            if not isinstance(items, list):
                raise SpecError(f"{path}.parameterIterator.items", f"loop items must be a list (got {type(items).__name__})")
            bind = [(it["itemInput"], "param", item) for item in items]
        else:
            it = spec["artifactIterator"]
            arts = t.artifacts.get((it.get("items") or {}).get("inputArtifact"), [])
            bind = [(it["itemInput"], "artifact", [a]) for a in arts]
        t.pending_items = list(enumerate(bind))
        t.loop_limit = int((spec.get("iteratorPolicy") or {}).get("parallelismLimit") or 0)
        t.iterations = [None] * len(bind)  # type: ignore[list-item]
        t.loop_component = (comp_name, comp)
        self._set_state(t, "RUNNING")
        if not bind:
            t.record.outputs = self._loop_outputs(t)
            self._set_state(t, "SUCCEEDED")
            return
        self._launch_iterations(t)

    def _launch_iterations(self, t: _Task) -> None:
        comp_name, comp = t.loop_component
        while t.pending_items and (t.loop_limit == 0 or t.loop_running < t.loop_limit):
            i, (item_input, kind, value) = t.pending_items.pop(0)
            params, arts = dict(t.params), dict(t.artifacts)
            if kind == "param":
                params[item_input] = value
            else:
                arts[item_input] = value
            child = self._new_node(comp_name, comp, params, arts, f"{t.path}[{i}]", t, t.dirs + (str(i),))
            rec = TaskRecord(name=child.prefix, task=t.key, display_name=f"{t.record.display_name}[{i}]",
                             kind="iteration", state="RUNNING", started_at=self.clock.rfc3339(),
                             inputs={"parameters": {item_input: value} if kind == "param" else {},
                                     "artifacts": {item_input: [a["uri"] for a in value]} if kind != "param" else {}})
            self.tasks[child.prefix] = rec
            child.iteration_record = rec
            t.iterations[i] = child
            t.loop_running += 1
            self._notify(rec)
            self._advance(child)

    def _iteration_done(self, t: _Task, node: _Node, error: str | None) -> None:
        rec = node.iteration_record
        rec.state = node.state
        rec.error = error
        rec.outputs = node.outputs
        rec.finished_at = self.clock.rfc3339()
        self._notify(rec)
        t.loop_running -= 1
        if t.state == "RUNNING":
            self._launch_iterations(t)
        if t.loop_running == 0 and not t.pending_items:
            failed = [n for n in t.iterations if n is not None and n.state == "FAILED"]
            if failed or any(n is None for n in t.iterations):
                bad = failed[0] if failed else None
                self._fail(t, f"iteration {bad.prefix} failed: {bad.iteration_record.error}" if bad else "iterations canceled")
            else:
                t.record.outputs = self._loop_outputs(t)
                self._set_state(t, "SUCCEEDED")

    def _loop_outputs(self, t: _Task) -> dict:
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

    # ------------------------------------------------------------------ executor tasks
    def _task_path(self, t: _Task) -> str:
        comp = t.node.component_name
        prefix = "root.dag" if comp == "root" else f"components['{comp}'].dag"
        return f"{prefix}.tasks['{t.key}']"

    def _job_ctx(self, t: _Task, executor_input: dict, component: dict | None = None) -> placeholders.PlaceholderContext:
        job = dict(pipeline_job_name=self.run_name, pipeline_job_resource_name=self.run_name,
                   pipeline_job_uuid=self.run_id, pipeline_job_create_time_utc=self.create_time,
                   pipeline_job_schedule_time_utc=self.create_time, pipeline_task_name=t.key,
                   pipeline_task_uuid=str(t.record.execution_id or t.node.execution_id or ""),
                   pipeline_root=self.run_root, workspace_path=self.run_root)
        if component is not None:
            return placeholders.PlaceholderContext.for_component(component, executor_input, **job)
        return placeholders.PlaceholderContext(executor_input=executor_input, **job)

    def _start_container(self, t: _Task, comp: dict, label: str, executor: dict, *, retry: bool = False) -> None:
        t.record.kind = "container"
        path = f"deploymentSpec.executors['{label}'].container"
        container = executor["container"]
        if not retry:
            caching = t.spec.get("cachingOptions") or {}
            fp = fingerprint(pipeline_name=self.pipeline_name, component=comp, executor=executor,
                             parameter_values=t.params, input_artifacts=t.artifacts, cache_key=caching.get("cacheKey"))
            t.fingerprint = fp
            if self.cache and caching.get("enableCache"):
                hit = self.metadata.find_cached(fp)
                if hit is not None:
                    self._use_cache(t, hit)
                    return
        t.attempt += 1
        t.record.attempts = t.attempt
        task_root = launcher.prepare_task_root(self.run_root, t.dirs, t.attempt)
        executor_input = launcher.executor_input(t.params, t.artifacts, comp, task_root)
        # what the task is handed names local paths for mapped remote URIs (metadata keeps the URIs)
        executor_input = self.storage.localize_executor_input(executor_input, self._task_path(t))
        exec_id = self.metadata.create_execution(
            self.run_id, "system.ContainerExecution", t.path, state="NEW", inputs=t.record.inputs,
            attempt=t.attempt - 1, fingerprint=t.fingerprint, parent_id=t.node.execution_id,
            properties={"task": t.key, "display_name": t.record.display_name, "image": container.get("image")})
        self.metadata.associate(self.run_ctx, exec_id)
        t.record.execution_id = exec_id
        for k, arts in t.artifacts.items():
            for i, a in enumerate(arts):
                aid = self._artifact_ids.get(a["uri"])
                if aid is not None:
                    self.metadata.add_event(exec_id, aid, "INPUT", k, i)
        ctx = self._job_ctx(t, executor_input, comp)
        argv = placeholders.resolve_container(container, ctx, path)
        image = container.get("image") or ""
        python = None
        if self.scheduler.executor.name == "subprocess":
            local = launcher.local_lightweight(container, ctx, path, image, self.scheduler.images,
                                               getattr(self.scheduler.executor, "python", None),
                                               packages=self.packages, task=t.path)
            if local is not None:
                argv, python = local, local[0]
        pod = self._pod_manifest(t, label, container, argv, ctx, path)
        if python is not None and self.packages is not None and python.startswith(self.packages.cache_dir + os.sep):
            # the task runs on a packages venv: the kubelet gives its container that interpreter
            # (its shim's python, its warm zygote)
            pod["metadata"]["annotations"][PYTHON_ANNOTATION] = python
        # the storage: directories at their own paths: bind-mounted by docker (and a sandbox), writable
        # where a mapped pipeline_root puts the outputs
        launcher.mount_directories(pod, [d for d in self.storage.directories() if os.path.isdir(d)])
        t.exec_ctx = {"executor_input": executor_input, "task_root": task_root, "component": comp, "label": label,
                      "executor": executor}
        pod = self.scheduler.submit(pod)
        t.record.pod = pod["metadata"]["name"]
        self._pods[t.record.pod] = t
        # the execution stays NEW while its Pod waits for admission; RUNNING once the Pod runs
        self.metadata.update_execution(exec_id, pod_name=t.record.pod)
        t.exec_running = False
        self._set_state(t, "RUNNING")

    def _pod_manifest(self, t: _Task, label: str, container: dict, argv: list[str], ctx, path: str) -> dict:
        # <run>-<task>[-<loop index>...]-<suffix> within 63 characters: the task's own name, not its DAG
        # path, so a task inside an ExitHandler or a sub-DAG is recognisable (the run's name gives way first)
        task = _k8s_name("-".join([t.key, *re.findall(r"\[(\d+)\]", t.path)]), 30)
        name = f"{_k8s_name(self.run_name, 63 - len(task) - 7)}-{task}-{_suffix()}"
        main = launcher.main_container(container, argv, ctx, path)
        labels = {RUN_ID_LABEL: self.run_id, LF_RUN_LABEL: self.run_id,
                  "pipelines.kubeflow.org/v2_component": "true",
                  "workflows.argoproj.io/workflow": self.run_name,
                  "pipelines.kubeflow.org/task_name": _k8s_name(t.key, 63)}
        annotations = {"pipelines.kubeflow.org/task_path": t.path, "pipelines.kubeflow.org/task_display_name": t.record.display_name}
        plat = self.platform.get(label) or {}
        patch = platform.apply_executor_config(plat, lambda sp, p: self._platform_value(t, sp, p),
                                               f"platforms.kubernetes.deploymentSpec.executors['{label}']") if plat else None
        owner = self.run_object["metadata"]
        return launcher.task_pod(main, name=name, namespace=self.namespace, labels=labels, annotations=annotations,
                                 owner={"apiVersion": RUN_API_VERSION, "kind": "Run", "name": owner["name"],
                                        "uid": owner["uid"], "controller": True},
                                 artifacts_root=str(self.workspace.artifacts_dir), patch=patch)

    def _platform_value(self, t: _Task, spec: dict, path: str):
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

    def _run_pvc_operation(self, t: _Task, comp: dict, op: str, path: str) -> None:
        """kfp-kubernetes CreatePVC / DeletePVC, done by the engine as the backend driver does
        (``backend/src/v2/driver/k8s.go`` ``createPVC``/``deletePVC``): the claim is a
        ``PersistentVolumeClaim`` object plus the workspace directory ``pvc/<name>``. Never cached."""
        import shutil

        t.record.kind = "pvc"
        exec_id = self.metadata.create_execution(self.run_id, "system.ContainerExecution", t.path, state="RUNNING",
                                                 inputs=t.record.inputs, parent_id=t.node.execution_id,
                                                 properties={"task": t.key, "operation": f"{op}pvc"})
        self.metadata.associate(self.run_ctx, exec_id)
        self.metadata.update_execution(exec_id, started=True)
        t.record.execution_id = exec_id
        if op == "create":
            name = platform.pvc_name(t.params, f"{path}.inputs.parameters")
            self.workspace.pvc_dir(name, f"{path}.inputs.parameters['pvc_name']")  # one directory name, or refused
            if self._exists("PersistentVolumeClaim", name):
                raise SpecError(f"{path}.inputs.parameters['pvc_name']", f"PersistentVolumeClaim {name!r} already exists",
                                fix=f"delete it first (localflow delete pvc {name}) or use pvc_name_suffix")
            self.store.create({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                               "metadata": {"name": name, "namespace": self.namespace,
                                            "annotations": {str(k): str(v) for k, v in (t.params.get("annotations") or {}).items()},
                                            "labels": {RUN_ID_LABEL: self.run_id}},
                               "spec": {"accessModes": list(t.params.get("access_modes") or []),
                                        "resources": {"requests": {"storage": str(t.params.get("size") or "")}},
                                        "storageClassName": t.params.get("storage_class_name") or "standard"},
                               "status": {"phase": "Bound"}})
            os.makedirs(self.workspace.pvc_dir(name), exist_ok=True)
            t.record.outputs = {"parameters": {"name": name}, "artifacts": {}}
        else:
            name = t.params.get("pvc_name")
            if not name:
                raise SpecError(f"{path}.inputs.parameters['pvc_name']", "DeletePVC needs the name of a PVC")
            if self._exists("PersistentVolumeClaim", name):
                self.store.delete("PersistentVolumeClaim", name, self.namespace)
            shutil.rmtree(self.workspace.pvc_dir(name, f"{path}.inputs.parameters['pvc_name']"), ignore_errors=True)
        self.metadata.update_execution(exec_id, state="COMPLETE", outputs=self._outputs_for_md(t), finished=True)
        self._set_state(t, "SUCCEEDED")

    def _exists(self, kind: str, name: str) -> bool:
        try:
            self.store.get(kind, name, self.namespace)
            return True
        except LocalflowError:
            return False

    def _on_pod_event(self, ev) -> None:
        pod = ev.object
        name = pod["metadata"]["name"]
        t = self._pods.get(name)
        if t is None:
            return
        phase = (pod.get("status") or {}).get("phase")
        if ev.type == "DELETED" and phase not in ("Succeeded", "Failed"):
            phase = "Failed"
        if phase in ("Running", "Succeeded") and not t.exec_running and t.record.execution_id is not None:
            t.exec_running = True
            self.metadata.update_execution(t.record.execution_id, state="RUNNING", started=True)
        if phase not in ("Succeeded", "Failed"):
            return
        del self._pods[name]
        if t.state != "RUNNING":
            return
        if phase == "Succeeded":
            try:
                self._collect_outputs(t)
            except LocalflowError as e:
                self._container_failed(t, e.args[0], pod)
                return
            self.metadata.update_execution(t.record.execution_id, state="COMPLETE", outputs=self._outputs_for_md(t),
                                           finished=True)
            self._set_state(t, "SUCCEEDED")
        else:
            self._container_failed(t, launcher.pod_failure(pod, launcher.log_tail(self.workspace.logs_dir, pod)), pod)

    def _container_failed(self, t: _Task, message: str, pod: dict) -> None:
        self.metadata.update_execution(t.record.execution_id, state="FAILED", finished=True, error=message)
        policy = t.spec.get("retryPolicy") or {}
        max_retries = int(policy.get("maxRetryCount") or 0)
        reason = ((pod.get("status") or {}).get("reason") or "")
        if t.attempt <= max_retries and reason != "Canceled" and self.state == "RUNNING":
            n = t.attempt - 1
            wait = _duration(policy.get("backoffDuration"), 0.0) * float(policy.get("backoffFactor") or 2.0) ** n
            wait = min(wait, _duration(policy.get("backoffMaxDuration"), 3600.0))
            t.record.error = f"attempt {t.attempt} failed: {message}; retrying in {wait:g}s"
            self._notify(t.record)
            ctx = t.exec_ctx
            self._at(wait, lambda: self._retry(t, ctx))
            return
        self._fail(t, message)

    def _retry(self, t: _Task, ctx: dict) -> None:
        if t.state != "RUNNING" or self.state != "RUNNING":
            return
        try:
            self._start_container(t, ctx["component"], ctx["label"], ctx["executor"], retry=True)
        except LocalflowError as e:
            self._fail(t, e.args[0])

    def _collect_outputs(self, t: _Task) -> None:
        """Collect the task's outputs (:func:`localflow.pipelines.launcher.collect_outputs`) and record
        each output artifact in metadata: an artifact, an OUTPUT event, attribution to the run."""
        ctx = t.exec_ctx
        params, arts = launcher.collect_outputs(ctx["executor_input"], ctx["component"], f"task {t.path}",
                                                root=self.run_root)
        for k, result in arts.items():
            for i, a in enumerate(result):
                aid = self.metadata.create_artifact(a["uri"], (a.get("type") or {}).get("schemaTitle", "system.Artifact"),
                                                    k, metadata=a["metadata"],
                                                    schema_version=(a.get("type") or {}).get("schemaVersion", "0.0.1"),
                                                    run_id=self.run_id)
                self._artifact_ids[a["uri"]] = aid
                self.metadata.add_event(t.record.execution_id, aid, "OUTPUT", k, i)
                self.metadata.attribute(self.run_ctx, aid)
                a["id"] = aid
        t.record.outputs = {"parameters": params, "artifacts": arts}

    def _outputs_for_md(self, t: _Task) -> dict:
        return {"parameters": t.record.outputs["parameters"],
                "artifacts": {k: [dict(a) for a in v] for k, v in t.record.outputs["artifacts"].items()}}

    def _use_cache(self, t: _Task, hit: dict) -> None:
        outputs = hit.get("outputs") or {"parameters": {}, "artifacts": {}}
        exec_id = self.metadata.create_execution(
            self.run_id, "system.ContainerExecution", t.path, state="CACHED", inputs=t.record.inputs,
            fingerprint=t.fingerprint, parent_id=t.node.execution_id,
            properties={"task": t.key, "display_name": t.record.display_name, "cached_from": hit["id"]})
        self.metadata.associate(self.run_ctx, exec_id)
        self.metadata.update_execution(exec_id, outputs=outputs, started=True, finished=True)
        for k, arts in (outputs.get("artifacts") or {}).items():
            for i, a in enumerate(arts):
                if a.get("id") is not None:
                    self._artifact_ids[a["uri"]] = a["id"]
                    self.metadata.add_event(exec_id, a["id"], "OUTPUT", k, i)
        t.record.execution_id = exec_id
        t.record.cached = True
        t.record.outputs = {"parameters": dict(outputs.get("parameters") or {}),
                            "artifacts": {k: list(v) for k, v in (outputs.get("artifacts") or {}).items()}}
        self._set_state(t, "SUCCEEDED")

    def _run_importer(self, t: _Task, comp: dict, imp: dict, path: str) -> None:
        """Importer semantics (kubeflow/pipelines ``backend/src/v2/component/importer_launcher.go``)."""
        t.record.kind = "importer"
        p = f"deploymentSpec.executors['{comp.get('executorLabel')}'].importer"
        ctx = self._job_ctx(t, {"inputs": {"parameterValues": t.params}}, comp)
        uri, meta, type_schema = launcher.importer_source(imp, t.params, ctx, p)
        exec_id = self.metadata.create_execution(self.run_id, "system.ImporterExecution", t.path, state="RUNNING",
                                                 inputs=t.record.inputs, parent_id=t.node.execution_id,
                                                 properties={"task": t.key, "artifact_uri": uri})
        self.metadata.associate(self.run_ctx, exec_id)
        aid = None
        if not imp.get("reimport"):
            for a in self.metadata.list_artifacts(schema_title=type_schema.get("schemaTitle")):
                if a.get("uri") == uri and (a.get("metadata") or {}) == meta:
                    aid = a["id"]
                    break
        if aid is None:
            aid = self.metadata.create_artifact(uri, type_schema.get("schemaTitle", "system.Artifact"), "artifact",
                                                metadata=meta, schema_version=type_schema.get("schemaVersion", "0.0.1"),
                                                run_id=self.run_id)
        self.metadata.add_event(exec_id, aid, "OUTPUT", "artifact", 0)
        self.metadata.attribute(self.run_ctx, aid)
        self._artifact_ids[uri] = aid
        art = {"name": "artifact", "type": type_schema, "uri": uri, "metadata": meta, "id": aid}
        t.record.execution_id = exec_id
        t.record.outputs = {"parameters": {}, "artifacts": {"artifact": [art]}}
        self.metadata.update_execution(exec_id, state="COMPLETE", outputs=self._outputs_for_md(t), started=True, finished=True)
        self._set_state(t, "SUCCEEDED")

    # ------------------------------------------------------------------ states
    def _set_state(self, t: _Task, state: str, error: str | None = None) -> None:
        rec = t.record
        rec.state = state
        if error is not None:
            rec.error = error
        if state in TERMINAL:
            rec.finished_at = self.clock.rfc3339()
            if state == "SKIPPED" and rec.execution_id is None:
                pass
        self.tasks[rec.name] = rec
        self._notify(rec)
        if state in TERMINAL:
            self._advance(t.node)

    def _fail(self, t: _Task, message: str | None) -> None:
        if t.state in TERMINAL:
            return
        if t.record.execution_id is not None and t.record.kind in ("container", "importer"):
            self.metadata.update_execution(t.record.execution_id, state="FAILED", finished=True, error=message)
        self._set_state(t, "FAILED", error=message)

    def _notify(self, rec: TaskRecord) -> None:
        self._status_dirty = True
        if time.monotonic() >= self._status_due:
            self._write_run_status()
        if self.on_task is not None:
            self.on_task(rec)

    def _status_wait(self) -> float | None:
        """Seconds until the batched Run status is due (None: nothing to write)."""
        return max(0.0, self._status_due - time.monotonic()) if self._status_dirty else None

    def _write_run_status(self) -> None:
        """Write the Run object's status: while the run goes on a small summary (state and a count of
        tasks per state), written at most every :data:`STATUS_INTERVAL_S` (the task states live in
        the task Pods and executions; rewriting every task on every change cost O(N²) for N
        tasks); once the run has ended, the KFP ``runDetails.taskDetails`` list of every task."""
        if self.run_object is None:
            return
        self._status_dirty = False
        self._status_due = time.monotonic() + STATUS_INTERVAL_S
        status = {"state": self.state, "runId": self.run_id, "createdAt": self.create_time}
        if self.state in TERMINAL:
            status["runDetails"] = {"taskDetails": [
                {"taskId": r.name, "displayName": r.display_name, "state": r.state,
                 **({"cached": True} if r.cached else {}), **({"podName": r.pod} if r.pod else {}),
                 **({"error": {"message": r.error}} if r.error and r.state in ("FAILED", "SKIPPED") else {}),
                 **({"startTime": r.started_at} if r.started_at else {}),
                 **({"endTime": r.finished_at} if r.finished_at else {})}
                for r in self.tasks.values()]}
            status["finishedAt"] = self.clock.rfc3339()
            if self.error:
                status["error"] = {"message": self.error}
        else:
            counts: dict[str, int] = {}
            for r in self.tasks.values():
                counts[r.state] = counts.get(r.state, 0) + 1
            status["taskCounts"] = dict(sorted(counts.items()))
        self.store.update_status("Run", self.run_name, status, self.namespace)

    def _cancel(self, message: str) -> None:
        """Kill the run's Pods and end it CANCELED: every unfinished task, execution and DAG execution."""
        self._end_all("CANCELED", message, pod_reason="Canceled")

    def _abort(self, exc: BaseException) -> None:
        """End the run FAILED after an unexpected error ``exc``: Pods killed, every unfinished task,
        execution and DAG execution FAILED with one line naming the workspace and the cause. A full
        disk first frees the database's space reserve so the record fits."""
        if is_disk_full(exc):
            dbconn.release_reserve(self.workspace.db_path)
        if isinstance(exc, LocalflowError) and not isinstance(exc, SchedulerFault):
            message = describe(exc)
        else:
            message = run_fault_message(self.workspace, exc)
        if os.environ.get("LOCALFLOW_DEBUG"):
            import traceback

            traceback.print_exception(exc)
        self._end_all("FAILED", message, pod_reason="Error")

    def _end_all(self, state: str, message: str, *, pod_reason: str) -> None:
        """End everything still open in ``state`` (CANCELED or FAILED) with ``message``. Each record
        is written on its own: one that fails (a disk still full) does not stop the others."""
        self.state = state
        self.error = message
        mlmd = _MLMD_STATE[state]
        for name in list(self._pods):
            self._try(self.scheduler.kill_pod, name, self.namespace, pod_reason)
        now = self.clock.rfc3339()
        for rec in self.tasks.values():
            if rec.state in ("PENDING", "RUNNING"):
                rec.state = state
                rec.finished_at = now
                if state == "FAILED":
                    rec.error = rec.error or message
                if rec.execution_id is not None and rec.kind in ("container", "importer", "pvc"):
                    self._try(self.metadata.update_execution, rec.execution_id, state=mlmd, finished=True,
                              error=message)
        for node in self._nodes:
            if not node.done:
                node.done = True
                node.state = state
                self._try(self.metadata.update_execution, node.execution_id, state=mlmd, finished=True, error=message)
        self._pods.clear()
        self._timers.clear()

    def _try(self, fn, *args, **kwargs) -> None:
        """Write one record of a run that is ending on a fault or a cancel; a failure is remembered
        (:meth:`_finish` reports it) instead of interrupting the other records."""
        try:
            fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self._unrecorded = getattr(self, "_unrecorded", None) or exc

    def _finish(self) -> None:
        """Write the run's end (metadata and Run object). Raises :class:`LocalflowError` naming the
        workspace when even that cannot be written (the disk stays full): ``localflow gc`` ends the
        run's records later."""
        if self.state not in ("CANCELED", "FAILED") and getattr(self, "root", None) is not None \
                and self.root.state == "FAILED":
            self.state = "FAILED"
        if self.state == "FAILED":
            self.error = with_space_note(self.workspace, self.error)
        try:
            self.metadata.update_run(self.run_id, state=self.state, error=self.error, outputs=self.outputs,
                                     finished=True)
            self._write_run_status()
        except Exception as exc:  # noqa: BLE001
            self._unrecorded = exc
        if getattr(self, "_unrecorded", None) is not None:
            raise LocalflowError(f"run {self.run_name} {self.state}: {self.error}; its end could not be recorded in "
                                 f"workspace {self.workspace.root}: {describe(self._unrecorded)}",
                                 fix="free space there, then `localflow gc` ends its records")

    # ------------------------------------------------------------------ timers
    def _at(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (self.clock.monotonic() + delay, next(self._seq), fn))

    def _fire_timers(self) -> None:
        while self._timers and self._timers[0][0] <= self.clock.monotonic():
            _, _, fn = heapq.heappop(self._timers)
            fn()


# ---------------------------------------------------------------------------------------------
def _duration(value, default: float) -> float:
    """Parse a protobuf JSON Duration (``'1.5s'``) or a number of seconds."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*s?\s*", str(value))
    return float(m.group(1)) if m else default
