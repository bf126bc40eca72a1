"""Controller for trainer.kubeflow.org/v1alpha1 TrainJobs (Trainer v2).

Resolves the referenced runtime (a TrainingRuntime/ClusterTrainingRuntime in the store, else a
built-in such as ``torch-distributed``), renders it into Pods
(:func:`localflow.training.runtimes.trainjob_plan`) and reconciles with the pure
:func:`localflow.training.trainjob.reconcile_trainjob`, as kubeflow/trainer's TrainJob controller
(``pkg/controller/trainjob_controller.go``) does through a JobSet.

A level-triggered reconciler on the :class:`~localflow.controllers.manager.ControllerManager`
(:class:`TrainJobReconciler`, owning the TrainJob's Pods). Nothing lives only in memory: the
plan is rendered again from the TrainJob and its runtime on every pass, with the loopback ports
recorded on the TrainJob (:data:`~localflow.training.ports.PORTS_ANNOTATION`); what the JobSet's
Jobs would remember -- when the TrainJob became active, which failed Pods were counted against
``backoffLimit`` -- is the annotation :data:`STATE_ANNOTATION`. A restarted manager continues.
"""
from __future__ import annotations

import json
import threading

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.ownership import owner_annotations
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.controllers.trainingjob import CANCEL_GRACE_S, PodChange, ReplicaRecord, pod_record, stop_pods
from localflow.errors import NotFound, Unschedulable
from localflow.quantity import format_cpu, format_memory
from localflow.scheduler import pod_requests
from localflow.specs.training import validate_runtime, validate_trainjob
from localflow.training.ports import PORTS_ANNOTATION, PortAllocator, PortPlan, saved_ports
from localflow.training.runtimes import (LABEL_COMPLETION_INDEX, LABEL_JOBSET_NAME, LABEL_REPLICATED_JOB, ReplicatedJobPlan,
                                         num_nodes, resolve_runtime, trainjob_plan)
from localflow.training.trainjob import (TrainJobDecision, TrainJobState, final_trainjob_status, is_terminal,
                                         reconcile_trainjob, set_condition)

__all__ = ["TrainJobController", "TrainJobReconciler", "STATE_ANNOTATION", "node_record", "node_records"]

STATE_ANNOTATION = "localflow.dev/trainjob-state"  # {"startedAt": epoch s, "counted": {replicated job: [Pod uids]}}


def load_state(tj: dict) -> TrainJobState:
    """The :class:`TrainJobState` recorded on ``tj`` (:data:`STATE_ANNOTATION`), else a new one."""
    raw = ((tj.get("metadata") or {}).get("annotations") or {}).get(STATE_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
        return TrainJobState(started_at=data.get("startedAt"),
                             counted={k: set(v) for k, v in (data.get("counted") or {}).items()})
    except (ValueError, TypeError, AttributeError):
        return TrainJobState()


def dump_state(state: TrainJobState) -> str:
    """``state`` as the :data:`STATE_ANNOTATION` value (sorted, so an unchanged state compares equal)."""
    return json.dumps({"startedAt": state.started_at, "counted": {k: sorted(v) for k, v in sorted(state.counted.items())}},
                      sort_keys=True)


class TrainJobController:
    """Runs TrainJobs. ``store``/``scheduler``/``clock``/``ports``/``gpus`` as for
    :class:`~localflow.controllers.trainingjob.TrainingJobController`.

    :meth:`apply_runtime` stores a TrainingRuntime/ClusterTrainingRuntime; :meth:`apply` creates a
    TrainJob and starts what its runtime allows; :meth:`reconcilers` go on a controller manager
    (:meth:`run_until_done` runs one until ``Complete`` or ``Failed``); :meth:`suspend`/
    :meth:`resume` flip ``spec.suspend``.
    """

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK, *, ports: PortAllocator | None = None,
                 gpus: int | None = None):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.ports = ports or PortAllocator()
        self.gpus = gpus
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
        self._check_node_count(obj, runtime)
        obj, plans = self._plan(obj, runtime)
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
        tj, plans = (tj, []) if is_terminal(tj.get("status")) else self._plan(tj)
        pods = self.store.list("Pod", namespace, label_selector={LABEL_JOBSET_NAME: name})
        state = load_state(tj)
        before = dump_state(state)
        d = reconcile_trainjob(tj, plans, pods, self.clock.now(), state)
        if dump_state(state) != before:  # recorded before Pods go, so a restarted manager counts them too
            tj = self.store.patch("TrainJob", name, {"metadata": {"annotations": {STATE_ANNOTATION: dump_state(state)}}},
                                  namespace)
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
        """Run :meth:`reconcilers` on an in-process controller manager until the TrainJob is
        Complete or Failed (:func:`localflow.controllers.trainingwait.run_on_manager`; ``on_change``
        and ``timeout`` as for :func:`~localflow.controllers.trainingwait.wait_finished`); returns it."""
        from localflow.controllers.trainingwait import run_on_manager

        tj = self._lookup("TrainJob", name, namespace)
        if tj is None:
            raise NotFound(f"no TrainJob {name!r} in namespace {namespace!r}")
        return run_on_manager(self, tj, timeout=timeout, on_change=on_change)

    def reconcilers(self) -> list["TrainJobReconciler"]:
        """The reconciler for :meth:`ControllerManager.register`."""
        return [TrainJobReconciler(self)]

    @staticmethod
    def pod_selector(tj: dict) -> dict:
        """The labels of the TrainJob's Pods."""
        return {LABEL_JOBSET_NAME: tj["metadata"]["name"]}

    @staticmethod
    def settled(tj: dict, pods: list[dict]) -> bool:
        """Finished TrainJobs need no cleanup pass (their Pods are stopped with the final status)."""
        return is_terminal(tj.get("status"))

    def _plan(self, tj: dict, runtime: dict | None = None) -> tuple[dict, list[ReplicatedJobPlan]]:
        """``(tj, plans)``: the TrainJob rendered with its runtime and the ports recorded on it
        (new ones recorded the first time, :class:`~localflow.training.ports.PortPlan`)."""
        ports = PortPlan(self.ports, saved_ports(tj))
        plans = trainjob_plan(tj, runtime or resolve_runtime(tj, self._lookup), self.scheduler.addressing, ports)
        if ports.used and ports.annotation() != (tj["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION):
            tj = self.store.patch("TrainJob", tj["metadata"]["name"], {"metadata": {"annotations": {
                PORTS_ANNOTATION: ports.annotation()}}}, tj["metadata"].get("namespace") or "default")
        return tj, plans

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


class TrainJobReconciler:
    """The TrainJob reconciler for :meth:`ControllerManager.register` (``owns`` its Pods):
    ``reconcile(key)`` is one :meth:`TrainJobController.reconcile` pass, returning its
    ``requeue_after`` (the active deadline)."""

    kind = "TrainJob"
    owns = ("Pod",)

    def __init__(self, controller: TrainJobController):
        self.controller = controller

    def reconcile(self, key) -> float | None:
        """Reconcile ``("TrainJob", namespace, name)``; one that cannot be scheduled stays Failed."""
        _, ns, name = key
        try:
            _, d = self.controller.reconcile(name, ns or "default")
        except Unschedulable:
            return None
        return None if d is None else d.requeue_after


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
