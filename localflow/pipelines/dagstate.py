"""The state of one pipeline run's DAGs: what the controller knows about each DAG instance and task.

:class:`TaskRecord` is what a run reports about one task (``Run.tasks``); :class:`DagNode` is one
running instance of a DAG component and :class:`DagTask` one task in it, as the KFP v2 driver sees
them (kubeflow/pipelines ``backend/src/v2/driver/driver.go``). Used by
:mod:`localflow.controllers.pipelinerun`; a resumed run rebuilds them from the metadata
(:mod:`localflow.controllers.pipelineresume`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

RUN_API_VERSION = "pipelines.kubeflow.org/v2beta1"
TERMINAL = frozenset({"SUCCEEDED", "SKIPPED", "FAILED", "CANCELED"})
RUN_ID_LABEL = "pipeline/runid"
LF_RUN_LABEL = "localflow.dev/run-id"
#: ML Metadata execution state of a task (or DAG) that ended in a Run API state.
MLMD_STATE = {"SUCCEEDED": "COMPLETE", "FAILED": "FAILED", "CANCELED": "CANCELED", "SKIPPED": "COMPLETE"}


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


class DagNode:
    """One running instance of a DAG component (root, group, nested pipeline, loop iteration)."""

    def __init__(self, component_name: str, component: dict, params: dict, artifacts: dict, prefix: str,
                 owner: "DagTask | None", execution_id: int | None, dirs: tuple = ()):
        self.component_name = component_name
        self.dirs = dirs  # raw task keys and loop indices from the root: the node's place on disk
        self.component = component
        self.params = params
        self.artifacts = artifacts
        self.prefix = prefix
        self.owner = owner
        self.execution_id = execution_id
        dag = component.get("dag") or {}
        self.tasks: dict[str, DagTask] = {}
        for key, spec in (dag.get("tasks") or {}).items():
            self.tasks[key] = DagTask(self, key, spec)
        # who waits on whom, so a task's end looks only at its dependents (not every task: O(N^2))
        self.dependents: dict[str, list[DagTask]] = {}
        for t in self.tasks.values():
            for d in t.deps:
                if d in self.tasks:
                    self.dependents.setdefault(d, []).append(t)
        self.open = len(self.tasks)  # tasks not yet in a TERMINAL state
        self.done = False
        self.state = "RUNNING"
        self.outputs: dict = {"parameters": {}, "artifacts": {}}


class DagTask:
    """One task of a DAG instance and its runtime book-keeping."""

    def __init__(self, node: DagNode, key: str, spec: dict):
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
        self.lost_attempts = 0  # attempts a dead controller left unfinished (they retry for free)
        self.child: DagNode | None = None
        self.iterations: list[DagNode] = []
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


def duration(value, default: float) -> float:
    """Parse a protobuf JSON Duration (``'1.5s'``) or a number of seconds."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    m = re.fullmatch(r"\s*([0-9.]+)\s*s?\s*", str(value))
    return float(m.group(1)) if m else default
