"""The pipeline controller's executor tasks: container Pods, importers, kfp-kubernetes PVC operations, the cache.

The driver's side of ``backend/src/v2/driver/driver.go`` (cache lookup, the execution record) and
of ``backend/src/v2/component/launcher_v2.go`` / ``importer_launcher.go`` (what
:mod:`localflow.pipelines.launcher` builds and collects), recorded as ML Metadata executions,
artifacts and events. Pod watch events end container tasks; failed attempts retry with the
``retryPolicy`` backoff.
"""
from __future__ import annotations

import os
import re

from localflow.errors import LocalflowError, SpecError
from localflow.pipelines import launcher, placeholders, platform
from localflow.pipelines.cache import fingerprint
from localflow.pipelines.launcher import k8s_name as _k8s_name, random_suffix as _suffix
from localflow.scheduler import PYTHON_ANNOTATION
from localflow.pipelines.dagstate import LF_RUN_LABEL, RUN_API_VERSION, RUN_ID_LABEL, DagTask, duration





class ExecutorTasksMixin:
    """ExecutorTasks of :class:`~localflow.controllers.pipelinerun.PipelineRunController` (a mixin: its attributes are the controller's)."""

    def _start_container(self, t: DagTask, comp: dict, label: str, executor: dict, *, retry: bool = False) -> None:
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

    def _pod_manifest(self, t: DagTask, label: str, container: dict, argv: list[str], ctx, path: str) -> dict:
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

    def _run_pvc_operation(self, t: DagTask, comp: dict, op: str, path: str) -> None:
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
            t.exec_ctx = None  # kept for retries only: a 5,000-task run must not hold every executor input
            self._set_state(t, "SUCCEEDED")
        else:
            self._container_failed(t, launcher.pod_failure(pod, launcher.log_tail(self.workspace.logs_dir, pod)), pod)

    def _container_failed(self, t: DagTask, message: str, pod: dict) -> None:
        self.metadata.update_execution(t.record.execution_id, state="FAILED", finished=True, error=message)
        policy = t.spec.get("retryPolicy") or {}
        max_retries = int(policy.get("maxRetryCount") or 0)
        reason = ((pod.get("status") or {}).get("reason") or "")
        if t.attempt - t.lost_attempts <= max_retries and reason != "Canceled" and self.state == "RUNNING":
            n = t.attempt - 1
            wait = duration(policy.get("backoffDuration"), 0.0) * float(policy.get("backoffFactor") or 2.0) ** n
            wait = min(wait, duration(policy.get("backoffMaxDuration"), 3600.0))
            t.record.error = f"attempt {t.attempt} failed: {message}; retrying in {wait:g}s"
            self._notify(t.record)
            ctx = t.exec_ctx
            self._at(wait, lambda: self._retry(t, ctx))
            return
        self._fail(t, message)

    def _retry(self, t: DagTask, ctx: dict) -> None:
        if t.state != "RUNNING" or self.state != "RUNNING":
            return
        try:
            self._start_container(t, ctx["component"], ctx["label"], ctx["executor"], retry=True)
        except LocalflowError as e:
            self._fail(t, e.args[0])

    def _collect_outputs(self, t: DagTask) -> None:
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

    def _outputs_for_md(self, t: DagTask) -> dict:
        return {"parameters": t.record.outputs["parameters"],
                "artifacts": {k: [dict(a) for a in v] for k, v in t.record.outputs["artifacts"].items()}}

    def _use_cache(self, t: DagTask, hit: dict) -> None:
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

    def _run_importer(self, t: DagTask, comp: dict, imp: dict, path: str) -> None:
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

