"""The runtime a run runs in, and its result: :class:`Runtime`, :func:`open_runtime`, :class:`Run`.

A :class:`Runtime` bundles one workspace's object store, metadata store, scheduler and executor;
a :class:`Run` is what :func:`localflow.api.run` returns for a run of any kind; :func:`log_file` and
:func:`read_logs` find a Pod's container log. The runners (:mod:`localflow.runners`) build on this
module, not on :mod:`localflow.api`, so the API layer imports the runners and never the reverse.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from localflow import dbconn
from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.config import Config, load_config
from localflow.errors import NotFound, RunFailed, SpecError
from localflow.executors import get_executor
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.scheduler import Capacity, Scheduler
from localflow.workspace import Workspace, resolve_workspace

__all__ = ["Run", "Runtime", "open_runtime", "log_file", "read_logs"]


@dataclass
class Runtime:
    """One workspace's live parts. Use :func:`open_runtime` to get one; ``close()`` kills what runs."""

    workspace: Workspace
    store: ObjectStore
    metadata: MetadataStore
    scheduler: Scheduler
    config: Config
    clock: Clock

    def close(self, cancel: bool = True) -> None:
        from localflow.faults import critical

        with critical():  # a Ctrl-C now waits until every Pod is stopped
            try:
                self.scheduler.shutdown(cancel=cancel)
                self.scheduler.executor.close()
            finally:
                self.store.close()
                self.metadata.close()


@contextlib.contextmanager
def open_runtime(workspace: str | os.PathLike | Workspace | None = None, executor: str = "subprocess", *,
                 config: str | os.PathLike | Config | None = None, clock: Clock = SYSTEM_CLOCK,
                 capacity: Capacity | None = None) -> Iterator[Runtime]:
    """Open the workspace (creating it), its stores and a scheduler on ``executor``.

    ``workspace``: directory (default ``$LOCALFLOW_HOME`` or ``./.localflow``); ``config``: a
    ``localflow.yaml`` path or parsed :class:`Config` (default: ``./localflow.yaml`` if present).
    Raises :class:`SpecError` for a bad config or executor name, :class:`ExecutorError` when the
    executor cannot run here (no Docker engine).
    """
    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    ws.ensure()
    cfg = config if isinstance(config, Config) else load_config(config)
    ex = get_executor(executor)
    ex.check()
    store = ObjectStore(ws.db_path, clock=clock)
    metadata = MetadataStore(ws.db_path, clock=clock)
    dbconn.reserve_space(ws.db_path)  # room to record a failure when a task fills the disk
    scheduler = Scheduler(store, ex, ws, images=cfg.images, clock=clock, capacity=capacity, host_paths=cfg.host_paths,
                          max_pods=cfg.max_pods, gpus=cfg.gpus)
    rt = Runtime(ws, store, metadata, scheduler, cfg, clock)
    try:
        yield rt
    finally:
        rt.close()


@dataclass
class Run:
    """The result of :func:`run`.

    - ``id`` (uuid), ``name`` (resource name, ``<pipeline>-<suffix>``), ``kind`` (``PipelineRun``,
      ``PyTorchJob``, ...), ``state`` (SUCCEEDED, FAILED, CANCELED), ``error`` (message or None);
    - ``tasks``: task path -> :class:`~localflow.controllers.pipelinerun.TaskRecord` (pipelines)
      or replica Pod name -> record (training jobs);
    - ``outputs``: the pipeline's outputs: parameter name -> value, artifact name -> artifact
      dict (``uri``, ``metadata``, ``type``) or list of them;
    - ``object``: the Kubernetes-shaped object of the run (``kubectl get -o yaml`` form);
    - ``workspace``: where its logs and artifacts are.
    """

    id: str
    name: str
    kind: str
    state: str
    workspace: Workspace
    tasks: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    error: str | None = None
    object: dict | None = None
    pods: list = field(default_factory=list)

    def __repr__(self) -> str:
        return (f"Run(name={self.name!r}, kind={self.kind!r}, state={self.state!r}, tasks={len(self.tasks)}, "
                f"outputs={sorted(self.outputs)!r}, workspace={str(self.workspace.root)!r})")

    @property
    def succeeded(self) -> bool:
        return self.state == "SUCCEEDED"

    def raise_for_state(self) -> "Run":
        """Raise :class:`RunFailed` unless the run succeeded; returns self."""
        if not self.succeeded:
            raise RunFailed(f"{self.kind} {self.name} {self.state.lower()}: {self.error or 'see localflow describe'}", run=self)
        return self

    def task(self, name: str):
        """The task record by path or by display name (unique), else :class:`NotFound`."""
        if name in self.tasks:
            return self.tasks[name]
        hits = [t for t in self.tasks.values() if getattr(t, "display_name", None) == name or getattr(t, "task", None) == name]
        if len(hits) == 1:
            return hits[0]
        raise NotFound(f"run {self.name} has no task {name!r}" + (" (ambiguous)" if hits else ""),
                       fix=f"tasks: {', '.join(self.tasks)}")

    def logs(self, task: str, container: str | None = None, *, previous: bool = False) -> str:
        """The log text of a task's (latest) Pod, or of a Pod by name (:func:`read_logs`: ``container``
        defaults to the only one or ``main``; ``previous``: the instance before a restart). A task
        served from the cache ran no Pod: its logs are those of the execution that computed the
        cached result (gone once that run is deleted)."""
        ns = ((self.object or {}).get("metadata") or {}).get("namespace") or "default"
        try:
            rec = self.task(task)
        except NotFound:
            return read_logs(self.workspace, task, container, ns, previous=previous)
        pod = getattr(rec, "pod", None)
        if pod is None and getattr(rec, "cached", False) and getattr(rec, "execution_id", None) is not None:
            with MetadataStore(self.workspace.db_path) as md:
                source = (md.get_execution(rec.execution_id).get("properties") or {}).get("cached_from")
                pod = md.get_execution(source).get("pod_name") if source is not None else None
        if pod is None:
            raise NotFound(f"task {task!r} of run {self.name} ran no Pod ({getattr(rec, 'state', '')})")
        return read_logs(self.workspace, pod, container, ns, previous=previous)


def log_file(workspace: str | os.PathLike | Workspace | None, pod: str, container: str | None = None,
             namespace: str = "default", *, previous: bool = False) -> Path:
    """The log file ``kubectl logs POD [-c CONTAINER] [-p]`` would print (:mod:`localflow.logfiles`).

    ``container`` defaults to the Pod's only container, or ``main``; ``previous`` picks the
    container instance before the current one (a container restarted in place). Raises
    :class:`NotFound` for a missing workspace, Pod or container, a container that never started
    (with its reason) and, with ``previous``, kubectl's ``previous terminated container "C" in pod
    "P" not found``; :class:`SpecError` (path ``container``) when the Pod has several containers and
    none was named.
    """
    from localflow import logfiles

    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    if not ws.db_path.exists():
        raise NotFound(f"no localflow workspace at {ws.root}", fix="run something first (`localflow run SPEC`) or pass --workspace")
    with ObjectStore(ws.db_path) as store:
        try:
            obj = store.get("Pod", pod, namespace)
        except NotFound:  # deleted by its controller (cleanPodPolicy): its logs stay until its owner goes
            obj = logfiles.find_deleted(ws.logs_dir, namespace, pod)
            if obj is None:
                raise
    spec = obj.get("spec") or {}
    main = [c.get("name") for c in spec.get("containers") or []]
    every = main + [c.get("name") for c in spec.get("initContainers") or []]
    if container is None:  # kubectl's default: the only (or the default) regular container
        if len(main) != 1 and "main" not in main:
            raise SpecError("container", f"pod {pod} has containers {', '.join(map(str, main))}",
                            fix=f"name one of them: {', '.join(map(str, main))}")
        container = main[0] if len(main) == 1 else "main"
    elif container not in every:
        raise NotFound(f"pod {pod} has no container {container!r}", fix=f"containers: {', '.join(map(str, every))}")
    path = logfiles.pod_log(ws.logs_dir, obj, container, previous=previous)
    if path is not None and path.exists():
        return path
    if previous:
        raise NotFound(f'previous terminated container "{container}" in pod "{pod}" not found')
    st = obj.get("status") or {}
    statuses = (st.get("containerStatuses") or []) + (st.get("initContainerStatuses") or [])
    term = next(((cs.get("state") or {}).get("terminated") or {} for cs in statuses if cs.get("name") == container), {})
    why = (f": {term.get('reason')}" + (f": {term['message']}" if term.get("message") else "")) if term else ""
    if not why and st.get("phase") in (None, "Pending"):
        why = ": the Pod is Pending"
    raise NotFound(f"container {container!r} of pod {pod} never started{why}")


def read_logs(workspace: str | os.PathLike | Workspace | None, pod: str, container: str | None = None,
              namespace: str = "default", *, previous: bool = False) -> str:
    """Text of a container's log (:func:`log_file` picks the file and raises its errors)."""
    return log_file(workspace, pod, container, namespace, previous=previous).read_text(errors="replace")
