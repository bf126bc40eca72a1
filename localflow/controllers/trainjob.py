"""Controller for trainer.kubeflow.org/v1alpha1 TrainJobs (Trainer v2).

Resolves the referenced runtime (a TrainingRuntime/ClusterTrainingRuntime in the store, else a
built-in such as ``torch-distributed``), renders it into Pods
(:func:`localflow.training.runtimes.trainjob_plan`) and reconciles with the pure
:func:`localflow.training.trainjob.reconcile_trainjob`, as kubeflow/trainer's TrainJob controller
(``pkg/controller/trainjob_controller.go``) does through a JobSet.
"""
from __future__ import annotations

import threading
import time

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.ownership import owner_annotations
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.controllers.trainingjob import CANCEL_GRACE_S, PodChange, ReplicaRecord, _deliver, pod_record, stop_pods
from localflow.errors import NotFound, Unschedulable
from localflow.quantity import format_cpu, format_memory
from localflow.scheduler import pod_requests
from localflow.specs.training import validate_runtime, validate_trainjob
from localflow.training.ports import PortAllocator
from localflow.training.runtimes import (LABEL_COMPLETION_INDEX, LABEL_JOBSET_NAME, LABEL_REPLICATED_JOB, ReplicatedJobPlan,
                                         num_nodes, resolve_runtime, trainjob_plan)
from localflow.training.trainjob import (TrainJobDecision, TrainJobState, final_trainjob_status, is_terminal,
                                         reconcile_trainjob, set_condition)

__all__ = ["TrainJobController", "node_record", "node_records"]

_POLL_S = 0.25


class TrainJobController:
    """Runs TrainJobs. ``store``/``scheduler``/``clock``/``ports``/``gpus`` as for
    :class:`~localflow.controllers.trainingjob.TrainingJobController`.

    :meth:`apply_runtime` stores a TrainingRuntime/ClusterTrainingRuntime; :meth:`apply` creates a
    TrainJob and starts what its runtime allows; :meth:`run_until_done` reconciles until
    ``Complete`` or ``Failed``; :meth:`suspend`/:meth:`resume` flip ``spec.suspend``.
    """

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK, *, ports: PortAllocator | None = None,
                 gpus: int | None = None):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.ports = ports or PortAllocator()
        self.gpus = gpus
        self._plans: dict[tuple[str, str], list[ReplicatedJobPlan]] = {}
        self._state: dict[tuple[str, str], TrainJobState] = {}
        self._emitted: dict[tuple[str, str], set] = {}
        self._lock = threading.RLock()

    def apply_runtime(self, runtime: dict) -> dict:
        """Validate and store (create or replace) a training runtime; returns the stored object."""
        validate_runtime(runtime, gpus=self.gpus)
        ns = (runtime.get("metadata") or {}).get("namespace") or "default"
        try:
            old = self.store.get(runtime["kind"], runtime["metadata"]["name"], ns)
            self.store.delete(runtime["kind"], old["metadata"]["name"], ns)
        except NotFound:
            pass
        return self.store.create(runtime)

    def _lookup(self, kind: str, name: str, ns: str | None) -> dict | None:
        try:
            return self.store.get(kind, name, ns)
        except NotFound:
            return None

    def apply(self, tj: dict) -> dict:
        """Validate the TrainJob against its runtime, create it and its first Pods (one gang).

        Raises :class:`~localflow.errors.SpecError` (nothing created) or
        :class:`~localflow.errors.Unschedulable` (the job is Failed, no Pod started).
        """
        runtime = resolve_runtime(tj, self._lookup)
        validate_trainjob(tj, runtime, gpus=self.gpus)
        doc = dict(tj)
        meta = dict(doc.get("metadata") or {})
        meta.setdefault("namespace", "default")
        meta["annotations"] = {**(meta.get("annotations") or {}), **owner_annotations()}
        doc["metadata"] = meta
        doc["status"] = {}
        obj = self.store.create(doc)
        if RUN_ID_LABEL not in (obj["metadata"].get("labels") or {}):  # the run id is the TrainJob's uid
            obj = self.store.patch("TrainJob", meta["name"], {"metadata": {"labels": {RUN_ID_LABEL: obj["metadata"]["uid"]}}},
                                   meta["namespace"])
        key = (meta["namespace"], meta["name"])
        self._check_node_count(obj, runtime)
        plans = trainjob_plan(obj, runtime, self.scheduler.addressing, self.ports)
        with self._lock:
            self._plans[key] = plans
            self._state[key] = TrainJobState()
        for plan in plans:  # every step's gang must fit before the first one starts (no half-run job)
            self._check_fits(obj, plan, plans)
        return self.reconcile(meta["name"], meta["namespace"])[0]

    def _check_node_count(self, tj: dict, runtime: dict) -> None:
        """Refuse (Failed, :class:`Unschedulable`) a TrainJob whose nodes can never run at once on
        this node (more than kubelet's ``maxPods``) before any of their Pod manifests is built."""
        check = getattr(self.scheduler, "check_pod_count", None)
        if check is None:
            return
        meta = tj["metadata"]
        field = "TrainJob.spec.trainer.numNodes" if ((tj.get("spec") or {}).get("trainer") or {}).get("numNodes") \
            else f"{runtime.get('kind', 'TrainingRuntime')}.spec.mlPolicy.numNodes"
        try:
            check(num_nodes(tj, runtime), f"gang '{meta['namespace']}/TrainJob/{meta['name']}'", field,
                  fix="lower trainer.numNodes")
        except Unschedulable as exc:
            self._fail_unschedulable(tj, exc, dict(tj.get("status") or {}))
            raise

    def _check_fits(self, tj: dict, plan: ReplicatedJobPlan, plans: list[ReplicatedJobPlan]) -> None:
        """Raise :class:`Unschedulable` (and fail the TrainJob) when one replicated job's Pods together
        can never fit this machine, even if it would only start after others (``dependsOn``)."""
        cap = getattr(self.scheduler, "capacity", None)
        if cap is None or not plan.pods:
            return
        cpu = mem = 0
        for p in plan.pods:
            c, m = pod_requests(p, f"Pod({p['metadata']['name']}).spec")
            cpu, mem = cpu + c, mem + m
        if cpu <= cap.cpu + 1e-9 and mem <= cap.memory:
            return
        meta = tj["metadata"]
        short = "cpu" if cpu > cap.cpu + 1e-9 else "memory"
        after = [n for n, _ in plan.depends_on]
        when = f" (it would start after {', '.join(after)}; checked before anything starts)" if after else ""
        exc = Unschedulable(
            f"Pod({plan.pods[0]['metadata']['name']}).spec.containers[].resources.requests",
            f"the gang '{meta['namespace']}/TrainJob/{meta['name']}' replicated job {plan.name!r} of {len(plan.pods)} "
            f"Pods requests cpu {format_cpu(cpu)}, memory {format_memory(mem)} but this machine has cpu "
            f"{format_cpu(cap.cpu)}, memory {format_memory(cap.memory)}: 0/1 nodes are available: Insufficient {short}{when}",
            fix="lower trainer.resourcesPerNode or trainer.numNodes" if plan.ancestor == "trainer" else
                "lower the requests of that replicated job in the runtime")
        self._fail_unschedulable(tj, exc, dict(tj.get("status") or {}))
        raise exc

    def _fail_unschedulable(self, tj: dict, exc: Unschedulable, status: dict) -> None:
        name, namespace = tj["metadata"]["name"], tj["metadata"].get("namespace") or "default"
        msg = f"TrainJob {name} cannot be scheduled: {exc.message}"
        status["conditions"] = set_condition(status.get("conditions"), "Failed", "True", "FailedJobs", msg,
                                             self.clock.rfc3339())
        self._emit(tj, "Warning", "FailedScheduling", msg)
        self.store.update_status("TrainJob", name, status, namespace)

    def reconcile(self, name: str, namespace: str = "default") -> tuple[dict | None, TrainJobDecision | None]:
        """One pass; returns ``(TrainJob or None if gone, decision)``."""
        try:
            tj = self.store.get("TrainJob", name, namespace)
        except NotFound:
            return None, None
        key = (namespace, name)
        if key not in self._plans:  # a TrainJob created by someone else: render it now
            self._plans[key] = trainjob_plan(tj, resolve_runtime(tj, self._lookup), self.scheduler.addressing, self.ports)
            self._state[key] = TrainJobState()
        pods = self.store.list("Pod", namespace, label_selector={LABEL_JOBSET_NAME: name})
        d = reconcile_trainjob(tj, self._plans[key], pods, self.clock.now(), self._state[key])
        for type_, reason, message in d.events:
            self._emit(tj, type_, reason, message)
        for pod_name in d.delete:
            self.scheduler.delete_pod(pod_name, namespace)
        if d.create:
            run_id = (tj["metadata"].get("labels") or {}).get(RUN_ID_LABEL) or tj["metadata"]["uid"]
            for p in d.create:
                p["metadata"]["ownerReferences"][0]["uid"] = tj["metadata"]["uid"]
                p["metadata"].setdefault("labels", {})[RUN_ID_LABEL] = run_id
            try:
                if len(d.create) == 1:
                    self.scheduler.submit(d.create[0])
                else:
                    self.scheduler.submit_gang(d.create, gang=f"{namespace}/TrainJob/{name}")
            except Unschedulable as exc:
                self._fail_unschedulable(tj, exc, d.status)
                raise
            for p in d.create:
                self._emit(tj, "Normal", "SuccessfulCreatePod", f"Created pod: {p['metadata']['name']}")
        if d.status != tj.get("status"):
            tj = self.store.update_status("TrainJob", name, d.status, namespace)
        return tj, d

    def run_until_done(self, name: str, namespace: str = "default", timeout: float | None = None,
                       *, on_change: PodChange | None = None) -> dict:
        """Reconcile on Pod/TrainJob changes until Complete or Failed; returns the TrainJob.

        ``on_change(event_type, pod)``: as for
        :meth:`~localflow.controllers.trainingjob.TrainingJobController.run_until_done` (the
        TrainJob's Pods when the wait starts, then every change, in commit order).
        Raises ``TimeoutError`` after ``timeout`` wall-clock seconds."""
        start = time.monotonic()
        selector = {LABEL_JOBSET_NAME: name}
        with self.store.watch(kind="Pod", namespace=namespace, label_selector=selector) as pw, \
                self.store.watch(kind="TrainJob", namespace=namespace) as jw:
            if on_change is not None:
                for pod in self.store.list("Pod", namespace, label_selector=selector):
                    on_change("ADDED", pod)
            while True:
                tj, d = self.reconcile(name, namespace)
                if tj is None:
                    raise NotFound(f"no TrainJob {name!r} in namespace {namespace!r}")
                if is_terminal(tj.get("status")):
                    _deliver(pw.drain(), on_change)
                    return tj
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TimeoutError(f"TrainJob {name} did not finish within {timeout}s")
                plans = self._plans.get((namespace, name)) or []
                self.scheduler.raise_fault(p["metadata"]["name"] for plan in plans for p in plan.pods)
                wait = _POLL_S if d is None or d.requeue_after is None else min(_POLL_S, max(d.requeue_after, 0.0))
                first = pw.get(timeout=wait)
                if first is not None or jw.get(timeout=0) is not None:
                    _deliver(([first] if first is not None else []) + pw.drain(), on_change)
                    jw.drain()

    def suspend(self, name: str, namespace: str = "default") -> dict:
        """``spec.suspend: true``: Pods deleted, ``Suspended`` condition."""
        self.store.patch("TrainJob", name, {"spec": {"suspend": True}}, namespace)
        return self.reconcile(name, namespace)[0]

    def resume(self, name: str, namespace: str = "default") -> dict:
        """``spec.suspend: false``: ``Resumed``, Pods recreated, active deadline restarts."""
        self.store.patch("TrainJob", name, {"spec": {"suspend": False}}, namespace)
        return self.reconcile(name, namespace)[0]

    def cancel(self, name: str, namespace: str = "default", reason: str = "it was canceled", *,
               timeout: float = CANCEL_GRACE_S, on_change: PodChange | None = None) -> dict | None:
        """Stop the TrainJob from outside its controller (``localflow run`` interrupted): kill its
        Pods that still run (:func:`~localflow.controllers.trainingjob.stop_pods`, up to ``timeout``
        wall seconds, ``on_change`` sees their changes), then leave it as its controller would once
        they are gone (:func:`localflow.training.trainjob.final_trainjob_status`: ``Failed=True``,
        ``FailedJobs``, ``TrainJob <name> is failed because <reason>; its Pods were stopped.``).
        Returns the TrainJob (None if it does not exist)."""
        try:
            tj = self.store.get("TrainJob", name, namespace)
        except NotFound:
            return None
        stop_pods(self.store, self.scheduler, namespace, {LABEL_JOBSET_NAME: name}, timeout=timeout, on_change=on_change)
        tj = self._lookup("TrainJob", name, namespace) or tj
        message = f"TrainJob {name} is failed because {reason}; its Pods were stopped."
        finished = is_terminal(tj.get("status"))
        status = final_trainjob_status(tj, self.clock.now(), message)
        if status != tj.get("status"):
            tj = self.store.update_status("TrainJob", name, status, namespace)
        if not finished:
            self._emit(tj, "Warning", "FailedJobs", message)
        return tj

    def _emit(self, tj: dict, type_: str, reason: str, message: str) -> None:
        key = (tj["metadata"].get("namespace") or "default", tj["metadata"]["name"])
        with self._lock:
            seen = self._emitted.setdefault(key, set())
            if (type_, reason, message) in seen and reason != "SuccessfulCreatePod":
                return
            seen.add((type_, reason, message))
        self.store.record_event(tj, reason, message, type=type_, component="trainjob-controller")


def node_record(pod: dict) -> ReplicaRecord:
    """The :class:`~localflow.controllers.trainingjob.ReplicaRecord` of one TrainJob Pod: its
    replicated job (``node``, ``dataset-initializer``, ...) as ``replica_type``, the Job completion
    index as ``index``, the exit code of its first container (``node`` for the trainer)."""
    labels = pod["metadata"].get("labels") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    main = next((c.get("name") for c in containers if c.get("name") == "node"), containers[0].get("name", "node"))
    rjob = labels.get(LABEL_REPLICATED_JOB, "")
    return pod_record(pod, main, rjob, int(labels.get(LABEL_COMPLETION_INDEX, "0")), pod["metadata"]["name"], kind="node")


def node_records(pods: list[dict]) -> dict[str, ReplicaRecord]:
    """``{pod name: ReplicaRecord}`` of a TrainJob's Pods, sorted by name."""
    return {p["metadata"]["name"]: node_record(p) for p in sorted(pods, key=lambda p: p["metadata"]["name"])}
