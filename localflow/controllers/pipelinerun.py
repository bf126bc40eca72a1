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
import time
import uuid
from typing import Callable

from localflow import dbconn
from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.ownership import owner_annotations
from localflow.errors import LocalflowError, SpecError
from localflow.faults import SchedulerFault, critical, describe, is_disk_full, run_fault_message, with_space_note
from localflow.pipelines import cel, platform
from localflow.pipelines.names import check_ir_names, check_platform_paths
from localflow.pipelines.preflight import check_pipeline
from localflow.pipelines.launcher import k8s_name as _k8s_name, random_suffix as _suffix
from localflow.pipelines.packages import PackageInstaller
from localflow.pipelines.storage import StorageMap
from localflow.pipelines.values import resolve_input_definitions
from localflow.safepath import safe_join
from localflow.specs.pipeline import PipelineDocument
from localflow.controllers.pipelineinputs import InputsMixin
from localflow.controllers.pipelineresume import PriorRun, save_pipeline
from localflow.controllers.pipelinetasks import ExecutorTasksMixin
from localflow.pipelines.dagstate import LF_RUN_LABEL, MLMD_STATE, RUN_API_VERSION, RUN_ID_LABEL, TERMINAL, DagNode, DagTask, TaskRecord

#: Least seconds between two writes of a running Run's status summary (its task changes are batched).
STATUS_INTERVAL_S = 0.3


class PipelineRunController(InputsMixin, ExecutorTasksMixin):
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
        self._pods: dict[str, DagTask] = {}
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._artifact_ids: dict[str, int] = {}
        self.state = "PENDING"
        self.error: str | None = None
        self.outputs: dict = {"parameters": {}, "artifacts": {}}
        self.run_object: dict | None = None
        self._nodes: list[DagNode] = []  # every DAG instance, for their executions' end on cancel/fault
        self._recorded = False  # the run is in the metadata (a fault from here on is recorded)
        self.resume_from: dict | None = None  # the Run object of a resumed run (pipelineresume.resume_controller)
        self._prior: PriorRun | None = None  # its earlier executions, read when the resumed run starts
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
                if self.resume_from is None:
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
                    save_pipeline(self.workspace, self.run_id, self.doc, cache=self.cache)
                else:  # a resumed run: its object and records exist; this process drives it from now on
                    meta = self.resume_from["metadata"]
                    self.run_object = self.store.patch("Run", self.run_name, {"metadata": {
                        "annotations": {**(meta.get("annotations") or {}), **owner_annotations()}}}, self.namespace)
                    self._recorded = True
                    self._prior = PriorRun.load(md, self.store, self.run_id, self.namespace)
                self.pipeline_ctx = md.put_context("system.Pipeline", self.pipeline_name)
                self.run_ctx = md.put_context("system.PipelineRun", self.run_name, {"run_id": self.run_id})
                self.state = "RUNNING"
                md.update_run(self.run_id, state="RUNNING")
                self._write_run_status()
                watch = self.store.watch(kind="Pod", namespace=self.namespace,
                                         label_selector={LF_RUN_LABEL: self.run_id})
                root_exec = self._prior.dags.get("") if self._prior is not None else None
                if root_exec is None:
                    root_exec = md.create_execution(self.run_id, "system.DAGExecution", self.pipeline_name,
                                                    state="RUNNING", inputs={"parameters": self.params})
                    md.associate(self.run_ctx, root_exec)
                    md.update_execution(root_exec, started=True)
                self.root = DagNode("root", self.spec.get("root") or {}, dict(self.params), {}, "", None, root_exec)
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
    def _advance(self, node: DagNode, changed: DagTask | None = None) -> None:
        """Start (or skip) every task of ``node`` whose upstream tasks have all ended, then end the
        node when all its tasks have. ``changed``: the task that just ended; only its dependents can
        have become ready (None: look at every task, when the node starts)."""
        if node.done:
            return
        candidates = node.tasks.values() if changed is None else node.dependents.get(changed.key, ())
        for t in candidates:
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
                continue
            self._start_task(t)
        if node.open == 0:
            self._finish_node(node)

    def _start_task(self, t: DagTask) -> None:
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
            elif self._prior is not None and self._prior.restore(self, t):
                return  # a resumed run: an earlier controller decided this task
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

    def _skip(self, t: DagTask, error: str) -> None:
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

    def _new_node(self, comp_name, comp, params, artifacts, prefix, owner, dirs=()) -> DagNode:
        exec_id = self._prior.dags.get(prefix) if self._prior is not None else None
        if exec_id is None:
            exec_id = self.metadata.create_execution(self.run_id, "system.DAGExecution", prefix, state="RUNNING",
                                                     inputs={"parameters": params},
                                                     parent_id=owner.node.execution_id if owner else None)
            self.metadata.associate(self.run_ctx, exec_id)
            self.metadata.update_execution(exec_id, started=True)
        node = DagNode(comp_name, comp, dict(params), dict(artifacts), prefix, owner, exec_id, tuple(dirs))
        self._nodes.append(node)
        for task in node.tasks.values():
            self.tasks[task.path] = task.record
        return node

    def _finish_node(self, node: DagNode) -> None:
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
        self.metadata.update_execution(node.execution_id, state=MLMD_STATE[node.state], outputs=node.outputs,
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

    # ------------------------------------------------------------------ loops
    def _start_loop(self, t: DagTask, comp_name: str, comp: dict, path: str) -> None:
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

    def _launch_iterations(self, t: DagTask) -> None:
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

    def _iteration_done(self, t: DagTask, node: DagNode, error: str | None) -> None:
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

    # ------------------------------------------------------------------ states
    def _set_state(self, t: DagTask, state: str, error: str | None = None) -> None:
        rec = t.record
        if state in TERMINAL and rec.state not in TERMINAL:
            t.node.open -= 1
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
            self._advance(t.node, t)

    def _fail(self, t: DagTask, message: str | None) -> None:
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
        mlmd = MLMD_STATE[state]
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


