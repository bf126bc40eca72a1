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
from localflow.errors import NotFound, Unschedulable
from localflow.specs.training import validate_runtime, validate_trainjob
from localflow.training.ports import PortAllocator
from localflow.training.runtimes import LABEL_JOBSET_NAME, ReplicatedJobPlan, resolve_runtime, trainjob_plan
from localflow.training.trainjob import TrainJobDecision, TrainJobState, is_terminal, reconcile_trainjob, set_condition

__all__ = ["TrainJobController"]

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
        from localflow.controllers.ownership import owner_annotations

        runtime = resolve_runtime(tj, self._lookup)
        validate_trainjob(tj, runtime, gpus=self.gpus)
        doc = dict(tj)
        meta = dict(doc.get("metadata") or {})
        meta.setdefault("namespace", "default")
        meta["annotations"] = {**(meta.get("annotations") or {}), **owner_annotations()}
        doc["metadata"] = meta
        doc["status"] = {}
        obj = self.store.create(doc)
        key = (meta["namespace"], meta["name"])
        plans = trainjob_plan(obj, runtime, self.scheduler.addressing, self.ports)
        with self._lock:
            self._plans[key] = plans
            self._state[key] = TrainJobState()
        return self.reconcile(meta["name"], meta["namespace"])[0]

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
            for p in d.create:
                p["metadata"]["ownerReferences"][0]["uid"] = tj["metadata"]["uid"]
            try:
                if len(d.create) == 1:
                    self.scheduler.submit(d.create[0])
                else:
                    self.scheduler.submit_gang(d.create, gang=f"{namespace}/TrainJob/{name}")
            except Unschedulable as exc:
                msg = f"TrainJob {name} cannot be scheduled: {exc.message}"
                d.status["conditions"] = set_condition(d.status.get("conditions"), "Failed", "True", "FailedJobs", msg,
                                                       self.clock.rfc3339())
                self._emit(tj, "Warning", "FailedScheduling", msg)
                self.store.update_status("TrainJob", name, d.status, namespace)
                raise
            for p in d.create:
                self._emit(tj, "Normal", "SuccessfulCreatePod", f"Created pod: {p['metadata']['name']}")
        if d.status != tj.get("status"):
            tj = self.store.update_status("TrainJob", name, d.status, namespace)
        return tj, d

    def run_until_done(self, name: str, namespace: str = "default", timeout: float | None = None) -> dict:
        """Reconcile on Pod/TrainJob changes until Complete or Failed; returns the TrainJob.
        Raises ``TimeoutError`` after ``timeout`` wall-clock seconds."""
        start = time.monotonic()
        with self.store.watch(kind="Pod", namespace=namespace, label_selector={LABEL_JOBSET_NAME: name}) as pw, \
                self.store.watch(kind="TrainJob", namespace=namespace) as jw:
            while True:
                tj, d = self.reconcile(name, namespace)
                if tj is None:
                    raise NotFound(f"no TrainJob {name!r} in namespace {namespace!r}")
                if is_terminal(tj.get("status")):
                    return tj
                if timeout is not None and time.monotonic() - start > timeout:
                    raise TimeoutError(f"TrainJob {name} did not finish within {timeout}s")
                wait = _POLL_S if d is None or d.requeue_after is None else min(_POLL_S, max(d.requeue_after, 0.0))
                if pw.get(timeout=wait) is not None or jw.get(timeout=0) is not None:
                    pw.drain()
                    jw.drain()

    def suspend(self, name: str, namespace: str = "default") -> dict:
        """``spec.suspend: true``: Pods deleted, ``Suspended`` condition."""
        self.store.patch("TrainJob", name, {"spec": {"suspend": True}}, namespace)
        return self.reconcile(name, namespace)[0]

    def resume(self, name: str, namespace: str = "default") -> dict:
        """``spec.suspend: false``: ``Resumed``, Pods recreated, active deadline restarts."""
        self.store.patch("TrainJob", name, {"spec": {"suspend": False}}, namespace)
        return self.reconcile(name, namespace)[0]

    def _emit(self, tj: dict, type_: str, reason: str, message: str) -> None:
        key = (tj["metadata"].get("namespace") or "default", tj["metadata"]["name"])
        with self._lock:
            seen = self._emitted.setdefault(key, set())
            if (type_, reason, message) in seen and reason != "SuccessfulCreatePod":
                return
            seen.add((type_, reason, message))
        self.store.record_event(tj, reason, message, type=type_, component="trainjob-controller")


def run_trainjob(docs: list[dict], rt, *, namespace: str = "default", on_task=None, timeout: float | None = None,
                 **_):
    """Runner for ``localflow.api.run``: store the runtimes in ``docs``, apply the first TrainJob, wait.

    Returns an ``api.Run`` (``tasks``: Pod name -> ReplicaRecord-like dict of each node Pod).
    """
    import copy as _copy

    from localflow.api import Run
    from localflow.controllers.trainingjob import ReplicaRecord, _create_side_objects

    ctl = TrainJobController(rt.store, rt.scheduler, rt.clock)
    for d in docs:
        if isinstance(d, dict) and d.get("kind") in ("TrainingRuntime", "ClusterTrainingRuntime"):
            rtd = _copy.deepcopy(d)
            if rtd["kind"] == "TrainingRuntime":
                rtd.setdefault("metadata", {}).setdefault("namespace", namespace)
            ctl.apply_runtime(rtd)
    tj = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainJob"), None)
    if tj is None:
        raise NotFound("no TrainJob in the spec", fix="add a TrainJob document next to the runtimes")
    tj = _copy.deepcopy(tj)
    tj.setdefault("metadata", {}).setdefault("namespace", namespace)
    ns = tj["metadata"]["namespace"]
    _create_side_objects(rt.store, docs, ns)
    obj = ctl.apply(tj)
    name = obj["metadata"]["name"]
    final = ctl.run_until_done(name, ns, timeout=timeout)
    pods = rt.store.list("Pod", ns, label_selector={LABEL_JOBSET_NAME: name})
    tasks = {}
    for p in pods:
        st = p.get("status") or {}
        term = next(((cs.get("state") or {}).get("terminated") for cs in st.get("containerStatuses") or []
                     if cs.get("name") == "node"), None)
        labels = p["metadata"].get("labels") or {}
        rec = ReplicaRecord(name=p["metadata"]["name"], pod=p["metadata"]["name"], task=p["metadata"]["name"],
                            replica_type=labels.get("jobset.sigs.k8s.io/replicatedjob-name", ""),
                            index=int(labels.get("batch.kubernetes.io/job-completion-index", "0")),
                            display_name=p["metadata"]["name"], kind="node", state=st.get("phase", "Pending"),
                            exit_code=(term or {}).get("exitCode"), started_at=st.get("startTime"),
                            address=(p["metadata"].get("annotations") or {}).get("localflow.dev/address"),
                            restarts=sum(int(cs.get("restartCount") or 0) for cs in st.get("containerStatuses") or []))
        tasks[p["metadata"]["name"]] = rec
        if on_task is not None:
            on_task(rec)
    conds = final["status"].get("conditions") or []
    failed = any(c["type"] == "Failed" and c["status"] == "True" for c in conds)
    error = next((c["message"] for c in conds if c["type"] == "Failed" and c["status"] == "True"), None)
    return Run(id=final["metadata"]["uid"], name=name, kind="TrainJob", state="FAILED" if failed else "SUCCEEDED",
               workspace=rt.workspace, tasks=tasks, error=error, object=final, pods=pods)


def _register() -> None:
    from localflow.api import register_runner

    register_runner("TrainJob", run_trainjob)


_register()
