"""Controller for the kubeflow.org/v1 training kinds: TFJob, PyTorchJob, XGBoostJob, JAXJob, PaddleJob, MPIJob.

One controller drives every v1 kind; what differs per kind is data (:mod:`localflow.training.kinds`)
and plug-ins (env injection in :mod:`localflow.training.env`, success rules in
:mod:`localflow.training.policy`). Like the operator's reconciler (kubeflow/training-operator
``pkg/controller.v1/common/job.go``), it reads the job and its Pods, decides with the pure
:func:`localflow.training.policy.reconcile`, and applies the decision: Pods through the
scheduler (all replicas as one gang), status through the object store, Events on the job.

It is a level-triggered reconciler on the :class:`~localflow.controllers.manager.ControllerManager`
(:meth:`TrainingJobController.reconcilers`: one per kind, each owning the kind's Pods, as the
operator's ``SetupWithManager`` watches the job and ``Owns`` its Pods). Nothing lives only in
memory: the restarts it made (the operator's retry count, see :mod:`localflow.training.policy`)
are the job annotation :data:`RESTARTS_ANNOTATION`, the loopback ports its Pods were planned
with are :data:`~localflow.training.ports.PORTS_ANNOTATION`; everything else is read from the
job and its Pods on every pass, so a restarted manager continues where the last one stopped.
"""
from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass, field

from typing import Callable

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.controllers.ownership import owner_annotations
from localflow.controllers.sideobjects import RUN_ID_LABEL
from localflow.errors import LocalflowError, NotFound, Unschedulable
from localflow.specs.training import job_warnings, load_job
from localflow.training.conditions import is_failed, is_finished, reason, update_conditions
from localflow.training.defaults import replica_specs
from localflow.training.conditions import reason as reason_of
from localflow.training.kinds import KINDS, LABEL_JOB_NAME, LABEL_OPERATOR_NAME, LABEL_REPLICA_INDEX, LABEL_REPLICA_TYPE
from localflow.training.mpi import config_map
from localflow.training.policy import (MAGIC_EXIT_CODE, Decision, created_condition, exit_code, final_status, is_active,
                                      reconcile)
from localflow.training.pods import replica_pods
from localflow.training.ports import PORTS_ANNOTATION, PortAllocator, PortPlan, saved_ports
from localflow.training.trouble import restart_error, restart_trouble, shorten

__all__ = ["TrainingJobController", "TrainingJobReconciler", "RESTARTS_ANNOTATION", "restarts_of", "ReplicaRecord",
           "replica_record", "replica_records", "pod_record", "PodChange", "KILL_REASONS", "stop_pods", "CANCEL_GRACE_S"]

# ``on_change(event_type, pod)``: a Pod of the job was ADDED, MODIFIED or DELETED (the object after the change)
PodChange = Callable[[str, dict], None]

_POLL_S = 0.25  # stop_pods: how long to wait for a Pod event before re-checking
RESTARTS_ANNOTATION = "localflow.dev/restarts"  # Pods this controller deleted to restart them (the retry count)
# cancel(): how long (wall seconds) to wait for killed Pods to end; executors send SIGTERM, then SIGKILL after 5 s
CANCEL_GRACE_S = 10.0


# Pod phase -> the state vocabulary of ``Run.tasks`` (TaskRecord's: PENDING RUNNING SUCCEEDED FAILED CANCELED)
_STATE = {"Pending": "PENDING", "Running": "RUNNING", "Succeeded": "SUCCEEDED", "Failed": "FAILED"}


@dataclass
class ReplicaRecord:
    """One replica Pod of a job, as ``Run.tasks`` and the ``on_task`` progress callback report it.

    ``name``/``pod``/``task``: the Pod name; ``replica_type``/``index``; ``phase``: the Pod phase
    (Pending, Running, Succeeded, Failed); ``state``: the same in ``Run.tasks``' vocabulary
    (PENDING, RUNNING, SUCCEEDED, FAILED, and CANCELED for a Pod the controller killed, e.g. by
    ``cleanPodPolicy``, a deadline, or ``localflow run`` was interrupted); ``error``: why it failed
    (exit code and reason), or, while ``state`` is still RUNNING, why its container keeps restarting
    in place (``restarting (3 restarts): exit code 2``, the kubelet's CrashLoopBackOff), else None;
    ``container``: the container ``error`` is about (its log explains it); ``exit_code`` of the
    kind's default container (None while running); ``restarts``: container
    restarts in place; ``address``: ``host:port`` it listens on; ``volumes``: PVC mounts
    ``[{claim, mountPath}]`` (where a model written by the replica lands: workspace ``pvc/<claim>``);
    ``uid``: the Pod's uid (a replica the operator recreates gets a new one); ``execution_id``: its
    metadata execution, once the runner recorded one.
    """

    name: str
    pod: str
    replica_type: str
    index: int
    state: str
    display_name: str = ""
    task: str = ""
    kind: str = "replica"
    phase: str = "Pending"
    error: str | None = None
    container: str | None = None
    exit_code: int | None = None
    restarts: int = 0
    address: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    volumes: list = field(default_factory=list)
    uid: str | None = None
    execution_id: int | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# Why a container was stopped by localflow rather than by its own failure (pod_record: CANCELED)
KILL_REASONS = ("Killed", "Canceled")


def pod_record(pod: dict, container: str, replica_type: str, index: int, display_name: str,
               kind: str = "replica") -> ReplicaRecord:
    """A :class:`ReplicaRecord` for any Pod whose main container is ``container``.

    ``error`` of a Failed Pod is ``"<container> exited with code N (<reason>): <message>"`` from the
    terminated state of the first failed container, or the Pod's ``status.message`` (e.g.
    DeadlineExceeded); of a Running Pod whose container restarted in place,
    :func:`restart_error`. A Pod killed by localflow (reason ``Killed`` or ``Canceled``) is CANCELED.
    """
    st = pod.get("status") or {}
    phase = st.get("phase", "Pending")
    statuses = st.get("containerStatuses") or []
    code = exit_code(pod, container)
    finished, killed, error, about = None, False, None, None
    for cs in statuses:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            finished = max(finished or "", term.get("finishedAt") or "") or None
            killed = killed or term.get("reason") in KILL_REASONS
            if error is None and int(term.get("exitCode") or 0) != 0:
                error = f"{cs.get('name')} exited with code {term.get('exitCode')} ({term.get('reason') or 'Error'})"
                if term.get("message"):
                    error += f": {shorten(term['message'])}"
                about = cs.get("name")
    if phase == "Failed" and error is None:
        error = st.get("message") or st.get("reason") or "the Pod failed"
    if phase != "Failed":
        error, about = None, None
        trouble = restart_trouble(statuses) if phase in ("Pending", "Running") else None
        if trouble is not None:
            about, n, detail = trouble
            error = restart_error(n, detail)
    killed = killed or st.get("reason") in KILL_REASONS
    state = "CANCELED" if phase == "Failed" and killed else _STATE.get(phase, "PENDING")
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
              if "persistentVolumeClaim" in v}
    vols = [{"claim": claims[m["name"]], "mountPath": m["mountPath"]}
            for c in (pod.get("spec") or {}).get("containers") or [] for m in c.get("volumeMounts") or []
            if m["name"] in claims]
    name = pod["metadata"]["name"]
    return ReplicaRecord(
        name=name, pod=name, task=name, replica_type=replica_type, index=index, state=state, phase=phase,
        display_name=display_name, kind=kind, error=error, container=about,
        exit_code=None if code == MAGIC_EXIT_CODE else code,
        restarts=sum(int(cs.get("restartCount") or 0) for cs in statuses),
        address=(pod["metadata"].get("annotations") or {}).get("localflow.dev/address"),
        started_at=st.get("startTime"), finished_at=finished, volumes=vols, uid=pod["metadata"].get("uid"))


def replica_record(kind: str, pod: dict) -> ReplicaRecord:
    """The :class:`ReplicaRecord` of one Pod of a v1 job of ``kind`` (exit code of the kind's default container)."""
    info = KINDS[kind]
    labels = pod["metadata"].get("labels") or {}
    rtype = info.canonical_type(labels.get(LABEL_REPLICA_TYPE, "")) or labels.get(LABEL_REPLICA_TYPE, "")
    index = labels.get(LABEL_REPLICA_INDEX, "0")
    return pod_record(pod, info.container, rtype, int(index), f"{rtype}-{index}")


def replica_records(job: dict, pods: list[dict]) -> dict[str, ReplicaRecord]:
    """``{pod name: ReplicaRecord}`` for the job's current Pods, sorted by name."""
    return {p["metadata"]["name"]: replica_record(job["kind"], p)
            for p in sorted(pods, key=lambda p: p["metadata"]["name"])}


class TrainingJobController:
    """Runs v1 training jobs on one machine with the operator's semantics. Thread-safe per job.

    ``store``: :class:`localflow.fakes.ObjectStore`; ``scheduler``:
    :class:`localflow.scheduler.Scheduler` (its ``addressing`` picks loopback or dns); ``clock``
    drives deadlines and TTLs; ``ports``: allocator for loopback ports (default: free kernel ports);
    ``gpus``: GPUs on this machine (default: detected).

    Use :meth:`apply`, then register :meth:`reconcilers` on a controller manager (or call
    :meth:`run_until_done`, which does); :meth:`suspend`/:meth:`resume` flip
    ``runPolicy.suspend``; :meth:`reconcile` is one pass (tests drive time with a FakeClock).
    The remembered ``_emitted`` Events only spare the store repeated identical Events (a
    restarted controller's repeats are aggregated into the Event's ``count``).
    """

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK, *, ports: PortAllocator | None = None,
                 gpus: int | None = None):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.ports = ports or PortAllocator()
        self.gpus = gpus
        self._emitted: dict[tuple[str, str, str], set] = {}
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ public API
    def apply(self, job_dict: dict) -> dict:
        """Validate and default ``job_dict``, create the job object (``Created`` condition) and,
        unless suspended, all its replica Pods as one gang. Returns the stored job.

        Raises :class:`~localflow.errors.SpecError` for an invalid spec (nothing is created) and
        :class:`~localflow.errors.Unschedulable` when the replicas together can never fit this
        machine (the job is then ``Failed`` with that reason and no Pod is created).
        """
        job = load_job(job_dict, gpus=self.gpus)
        job["metadata"].setdefault("namespace", "default")
        job["metadata"]["annotations"] = {**(job["metadata"].get("annotations") or {}), **owner_annotations()}
        job["status"] = created_condition(job, self.clock.now())
        obj = self.store.create(job)
        if RUN_ID_LABEL not in (obj["metadata"].get("labels") or {}):  # the run id is the job's uid
            obj = self.store.patch(obj["kind"], obj["metadata"]["name"],
                                   {"metadata": {"labels": {RUN_ID_LABEL: obj["metadata"]["uid"]}}},
                                   obj["metadata"]["namespace"])
        self._emit(obj, "Normal", reason(obj["kind"], "Created"), f"{obj['kind']} {obj['metadata']['name']} is created.")
        for w in job_warnings(obj):
            if "overwritten" in w:
                self._emit(obj, "Warning", "SetPodTemplateRestartPolicy",
                           "Restart policy in pod template will be overwritten by restart policy in replica spec")
        self._check_pod_count(obj)
        if obj["kind"] == "MPIJob":
            self.store.create(config_map(obj))
        obj, by_name = self._plan(obj)
        manifests = list(by_name.values())
        if (obj["spec"].get("runPolicy") or {}).get("suspend"):
            return self.reconcile(obj["metadata"]["name"], obj["metadata"]["namespace"], kind=obj["kind"])[0]
        try:
            self._create_pods(obj, manifests)
        except Unschedulable as exc:
            self._fail(obj, f"{obj['kind']} {obj['metadata']['name']} cannot be scheduled: {exc.message}")
            raise
        return self.reconcile(obj["metadata"]["name"], obj["metadata"]["namespace"], kind=obj["kind"])[0]

    def reconcile(self, name: str, namespace: str = "default", *, kind: str | None = None) -> tuple[dict | None, Decision | None]:
        """One reconcile pass; returns ``(job after the pass or None if deleted, decision)``."""
        job = self._get(name, namespace, kind)
        if job is None:
            return None, None
        pods = self._pods(job)
        retries = restarts_of(job)
        decision = reconcile(job, pods, self.clock.now(), retries)
        if decision.restarts:  # counted before the Pods go: a manager stopped in between over-counts, never under
            job = self.store.patch(job["kind"], name, {"metadata": {"annotations": {
                RESTARTS_ANNOTATION: str(retries + decision.restarts)}}}, namespace)
        for type_, reason_, message in decision.events:
            self._emit(job, type_, reason_, message)
        for pod_name in decision.delete:
            self.scheduler.delete_pod(pod_name, namespace)
            self._emit(job, "Normal", "SuccessfulDeletePod", f"Deleted pod: {pod_name}")
        if decision.status != job.get("status"):
            job = self.store.update_status(job["kind"], name, decision.status, namespace)
        if decision.delete_job:
            self._delete_job(job)
            return None, decision
        if decision.create and not is_finished(decision.status):
            job, by_name = self._plan(job)
            wanted = [by_name[m] for m in by_name if self._replica_of(by_name[m]) in set(decision.create)]
            try:
                self._create_pods(job, wanted)
            except Unschedulable as exc:
                job = self._fail(job, f"{job['kind']} {name} cannot be scheduled: {exc.message}")
        return job, decision

    def run_until_done(self, name: str, namespace: str = "default", timeout: float | None = None,
                       *, kind: str | None = None, on_change: PodChange | None = None) -> dict:
        """Run this controller's reconcilers on an in-process
        :class:`~localflow.controllers.manager.ControllerManager` until the job is finished and its
        cleanup is done (:func:`localflow.controllers.trainingwait.wait_finished`; ``on_change``
        and ``timeout`` as there), then stop the manager. Returns the final job dict (the last
        one seen if the TTL deleted it). Raises :class:`NotFound` if the job does not exist."""
        from localflow.controllers.trainingwait import run_on_manager

        job = self._get(name, namespace, kind)
        if job is None:
            raise NotFound(f"no training job {name!r} in namespace {namespace!r}")
        return run_on_manager(self, job, timeout=timeout, on_change=on_change)

    def reconcilers(self) -> list["TrainingJobReconciler"]:
        """One :class:`TrainingJobReconciler` per v1 kind, for :meth:`ControllerManager.register`."""
        return [TrainingJobReconciler(self, k) for k in KINDS]

    def pod_selector(self, job: dict) -> dict:
        """The labels of the job's Pods."""
        return {LABEL_JOB_NAME: job["metadata"]["name"], LABEL_OPERATOR_NAME: KINDS[job["kind"]].operator_name}

    def settled(self, job: dict, pods: list[dict]) -> bool:
        """True once the job is finished and nothing is left for its cleanup: the pure policy would
        delete no more Pods (``cleanPodPolicy``) and not the job (an expired ``ttlSecondsAfterFinished``)."""
        if not is_finished(job.get("status")):
            return False
        d = reconcile(job, pods, self.clock.now(), restarts_of(job))
        return not d.delete and not d.delete_job

    def suspend(self, name: str, namespace: str = "default", *, kind: str | None = None) -> dict:
        """Set ``runPolicy.suspend: true`` (Pods are deleted, ``Suspended`` condition) and reconcile."""
        return self._set_suspend(name, namespace, kind, True)

    def resume(self, name: str, namespace: str = "default", *, kind: str | None = None) -> dict:
        """Set ``runPolicy.suspend: false`` (``Resumed``, Pods recreated as a gang) and reconcile."""
        return self._set_suspend(name, namespace, kind, False)

    def delete(self, name: str, namespace: str = "default", *, kind: str | None = None) -> None:
        """Delete the job and its Pods (processes killed first)."""
        job = self._get(name, namespace, kind)
        if job is not None:
            self._delete_job(job)

    def cancel(self, name: str, namespace: str = "default", reason: str = "it was canceled", *,
               kind: str | None = None, timeout: float = CANCEL_GRACE_S, on_change: PodChange | None = None) -> dict | None:
        """Stop the job from outside the operator (``localflow run`` interrupted): kill its Pods
        that still run (reason ``Canceled``; :func:`stop_pods`, waiting up to ``timeout`` wall
        seconds, ``on_change`` sees their changes), then leave the job as the operator would once
        they are gone (:func:`localflow.training.policy.final_status`: ``Failed=True``,
        ``<Kind>Failed``, ``<Kind> <name> is failed because <reason>; its Pods were stopped.``,
        nothing active in ``replicaStatuses``) with a Warning Event. A finished job keeps its
        conditions. Returns the job (None if it does not exist)."""
        job = self._get(name, namespace, kind)
        if job is None:
            return None
        sel = {LABEL_JOB_NAME: name, LABEL_OPERATOR_NAME: KINDS[job["kind"]].operator_name}
        pods = stop_pods(self.store, self.scheduler, namespace, sel, timeout=timeout, on_change=on_change)
        job = self._get(name, namespace, job["kind"]) or job
        message = f"{job['kind']} {name} is failed because {reason}; its Pods were stopped."
        finished = is_finished(job.get("status"))
        status = final_status(job, pods, self.clock.now(), message)
        if status != job.get("status"):
            job = self.store.update_status(job["kind"], name, status, namespace)
        if not finished:
            self._emit(job, "Warning", reason_of(job["kind"], "Failed"), message)
        return job

    def records(self, name: str, namespace: str = "default", *, kind: str | None = None) -> dict[str, ReplicaRecord]:
        """Per-replica results of the job's current Pods (see :class:`ReplicaRecord`)."""
        job = self._get(name, namespace, kind)
        return {} if job is None else replica_records(job, self._pods(job))

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _key(job: dict) -> tuple[str, str, str]:
        return job["kind"], job["metadata"].get("namespace") or "default", job["metadata"]["name"]

    @staticmethod
    def _replica_of(pod: dict) -> tuple[str, int]:
        labels = pod["metadata"]["labels"]
        info = next(k for k in KINDS.values() if k.operator_name == labels[LABEL_OPERATOR_NAME])
        return info.canonical_type(labels[LABEL_REPLICA_TYPE]), int(labels[LABEL_REPLICA_INDEX])

    def _plan(self, job: dict) -> tuple[dict, dict[str, dict]]:
        """``(job, {pod name: manifest})``: the replica Pods planned with the ports recorded on the
        job (new ones recorded with it the first time: :class:`~localflow.training.ports.PortPlan`)."""
        plan = PortPlan(self.ports, saved_ports(job))
        manifests = replica_pods(job, self.scheduler.addressing, plan)
        if plan.used and plan.annotation() != (job["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION):
            job = self.store.patch(job["kind"], job["metadata"]["name"], {"metadata": {"annotations": {
                PORTS_ANNOTATION: plan.annotation()}}}, job["metadata"].get("namespace") or "default")
        return job, {m["metadata"]["name"]: m for m in manifests}

    def _get(self, name: str, namespace: str, kind: str | None) -> dict | None:
        kinds = [kind] if kind else list(KINDS)
        for k in kinds:
            try:
                return self.store.get(k, name, namespace)
            except NotFound:
                continue
        return None

    def _pods(self, job: dict) -> list[dict]:
        sel = {LABEL_JOB_NAME: job["metadata"]["name"], LABEL_OPERATOR_NAME: KINDS[job["kind"]].operator_name}
        return self.store.list("Pod", job["metadata"].get("namespace") or "default", label_selector=sel)

    def _emit(self, job: dict, type_: str, reason_: str, message: str) -> None:
        key = self._key(job)
        with self._lock:
            seen = self._emitted.setdefault(key, set())
            if (type_, reason_, message) in seen and reason_ not in ("SuccessfulCreatePod", "SuccessfulDeletePod"):
                return
            seen.add((type_, reason_, message))
        self.store.record_event(job, reason_, message, type=type_, component=KINDS[job["kind"]].operator_name)

    def _check_pod_count(self, job: dict) -> None:
        """Refuse a job whose replicas can never run at once on this node (more than kubelet's
        ``maxPods``), before a single Pod manifest is built: the job is Failed, and
        :class:`~localflow.errors.Unschedulable` raised as for a gang that needs too much cpu."""
        check = getattr(self.scheduler, "check_pod_count", None)
        if check is None:
            return
        specs = replica_specs(job)
        total = sum(int((s or {}).get("replicas", 1)) for s in specs.values())
        name = job["metadata"]["name"]
        biggest = max(specs, key=lambda t: int((specs[t] or {}).get("replicas", 1)), default="Worker")
        try:
            check(total, f"gang '{job['metadata'].get('namespace') or 'default'}/{job['kind']}/{name}'",
                  f"{job['kind']}.spec.{KINDS[job['kind']].replica_specs_field}.{biggest}.replicas",
                  fix="lower the replicas")
        except Unschedulable as exc:
            self._fail(job, f"{job['kind']} {name} cannot be scheduled: {exc.message}")
            raise

    def _create_pods(self, job: dict, manifests: list[dict]) -> None:
        if not manifests:
            return
        ns, name = job["metadata"].get("namespace") or "default", job["metadata"]["name"]
        clean = [copy.deepcopy(m) for m in manifests]
        run_id = (job["metadata"].get("labels") or {}).get(RUN_ID_LABEL) or job["metadata"]["uid"]
        for m in clean:
            m["metadata"]["ownerReferences"][0]["uid"] = job["metadata"]["uid"]
            m["metadata"].setdefault("labels", {})[RUN_ID_LABEL] = run_id
        if len(clean) == 1:
            self.scheduler.submit(clean[0])
        else:
            self.scheduler.submit_gang(clean, gang=f"{ns}/{job['kind']}/{name}")
        for m in clean:
            self._emit(job, "Normal", "SuccessfulCreatePod", f"Created pod: {m['metadata']['name']}")

    def _fail(self, job: dict, message: str) -> dict:
        status = copy.deepcopy(job.get("status") or {})
        if not is_failed(status):
            status["conditions"] = update_conditions(status.get("conditions"), "Failed", "True",
                                                     reason(job["kind"], "Failed"), message, self.clock.rfc3339())
            status.setdefault("completionTime", self.clock.rfc3339())
        self._emit(job, "Warning", reason(job["kind"], "Failed"), message)
        return self.store.update_status(job["kind"], job["metadata"]["name"], status, job["metadata"].get("namespace"))

    def _set_suspend(self, name: str, namespace: str, kind: str | None, value: bool) -> dict:
        job = self._get(name, namespace, kind)
        if job is None:
            raise NotFound(f"no training job {name!r} in namespace {namespace!r}")
        self.store.patch(job["kind"], name, {"spec": {"runPolicy": {"suspend": value}}}, namespace)
        out, _ = self.reconcile(name, namespace, kind=job["kind"])
        return out

    def _delete_job(self, job: dict) -> None:
        ns = job["metadata"].get("namespace") or "default"
        for p in self._pods(job):
            self.scheduler.delete_pod(p["metadata"]["name"], ns)
        try:
            self.store.delete(job["kind"], job["metadata"]["name"], ns)
        except LocalflowError:
            pass
        if self.scheduler.addressing == "loopback":
            for port in saved_ports(job):
                self.ports.release(port)


def restarts_of(job: dict) -> int:
    """How many Pods the controller deleted to restart them so far (:data:`RESTARTS_ANNOTATION`)."""
    try:
        return int(((job.get("metadata") or {}).get("annotations") or {}).get(RESTARTS_ANNOTATION) or 0)
    except ValueError:
        return 0


class TrainingJobReconciler:
    """The reconciler of one v1 ``kind`` for :meth:`ControllerManager.register` (``owns`` its
    Pods): ``reconcile(key)`` is one :meth:`TrainingJobController.reconcile` pass and returns
    its ``requeue_after`` (deadline, TTL, or 0 for the cleanup pass after finishing)."""

    owns = ("Pod",)

    def __init__(self, controller: TrainingJobController, kind: str):
        self.controller, self.kind = controller, kind

    def reconcile(self, key) -> float | None:
        """Reconcile ``(kind, namespace, name)``; a job that failed to schedule stays Failed."""
        _, ns, name = key
        try:
            _, decision = self.controller.reconcile(name, ns or "default", kind=self.kind)
        except Unschedulable:
            return None
        return None if decision is None else decision.requeue_after


def stop_pods(store, scheduler, namespace: str, selector: dict, *, reason: str = "Canceled",
              timeout: float = CANCEL_GRACE_S, on_change: PodChange | None = None) -> list[dict]:
    """Kill (``scheduler.kill_pod(..., reason)``) every Pending/Running Pod in ``namespace`` matching
    ``selector`` and wait up to ``timeout`` wall seconds until none of them is active any more;
    ``on_change(event_type, pod)`` gets each Pod as it is before the kill (``MODIFIED``) and every
    change after it, in commit order. Returns the Pods as they are at the end."""
    with store.watch(kind="Pod", namespace=namespace, label_selector=selector) as w:
        pods = store.list("Pod", namespace, label_selector=selector)
        for pod in pods:
            if on_change is not None:
                on_change("MODIFIED", pod)
        for pod in pods:
            if is_active(pod):
                scheduler.kill_pod(pod["metadata"]["name"], namespace, reason)
        deadline = time.monotonic() + timeout
        while True:
            pods = store.list("Pod", namespace, label_selector=selector)
            if not any(is_active(p) for p in pods) or time.monotonic() >= deadline:
                break
            ev = w.get(timeout=max(0.0, min(_POLL_S, deadline - time.monotonic())))
            _deliver(([ev] if ev is not None else []) + w.drain(), on_change)
        _deliver(w.drain(), on_change)
    return pods


def _deliver(events, on_change: PodChange | None) -> None:
    """Hand watch events of Pods to ``on_change`` in commit order."""
    if on_change is not None:
        for ev in events:
            on_change(ev.type, ev.object)
