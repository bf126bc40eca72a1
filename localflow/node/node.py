"""The node: kube-scheduler (:mod:`.scheduling`) and kubelet (:mod:`.kubelet`) of this machine.

Controllers hand the :class:`Scheduler` plain Kubernetes Pod manifests. It creates the ``v1 Pod``
object (phase ``Pending``), admits Pods in submission order whenever their requests fit what is
left of the machine, binds them and runs each on the executor, writing the status transitions
kubelet would write (:mod:`.podstatus`): ``Pending → Running → Succeeded | Failed``.

Pods that do not fit wait with ``PodScheduled=False/Unschedulable`` and an Event
``0/1 nodes are available: Insufficient cpu.``; a Pod (or gang) that could never fit the whole
machine is refused at once with :class:`~localflow.errors.Unschedulable`. The node runs at most
``max_pods`` Pods at once (kubelet's ``maxPods``, default 110, ``node: {maxPods: N}`` in
``localflow.yaml``): more wait Pending with ``0/1 nodes are available: Too many pods.`` and a gang
larger than that is refused at once, before any of its Pods is created.

A kubelet thread never lets an exception escape: what it meets (a bug, a full disk) ends its Pod
Failed, the process killed; when even that cannot be written, the failure is kept in
:attr:`Scheduler.faults` for the controller waiting on the Pod (:meth:`Scheduler.raise_fault`).
"""
from __future__ import annotations

import threading
from typing import Iterable

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.config import ImageMap
from localflow.errors import LocalflowError
from localflow.executors.base import Executor, RunningPod
from localflow.faults import SchedulerFault, describe
from localflow.volumes import validate_pod_volumes

from . import podstatus
from .kubelet import Kubelet, PodEntry, kill_quietly
from .resolve import NODE_NAME, Resolver, workspace_id
from .scheduling import DEFAULT_MAX_PODS, Admission, Capacity, pod_requests, validate_pod

__all__ = ["Scheduler"]


class Scheduler:
    """Admits, runs and reports Pods on this machine. Thread-safe.

    ``store``: :class:`localflow.fakes.ObjectStore`; ``executor``: runs resolved Pods;
    ``workspace``: where logs and volumes live; ``images``: image map from ``localflow.yaml``;
    ``capacity``: allocatable cpu/memory (default: the whole machine); ``host_paths``: host
    directories ``hostPath`` volumes may use (``localflow.yaml`` ``hostPaths.allow``; none by default);
    ``max_pods``: how many Pods may run at once (kubelet's ``maxPods``).
    ``addressing`` is ``"loopback"`` (every Pod is 127.0.0.1, controllers give replicas distinct
    ports) or ``"dns"`` (Pods reach each other by hostname on a per-group network: docker).
    """

    def __init__(self, store, executor: Executor, workspace, images: ImageMap | None = None,
                 clock: Clock = SYSTEM_CLOCK, capacity: Capacity | None = None, host_paths=(),
                 max_pods: int = DEFAULT_MAX_PODS):
        self.store = store
        self.host_paths = tuple(host_paths)
        self.executor = executor
        self.workspace = workspace
        self.clock = clock
        self.capacity = capacity or Capacity.detect()
        self.addressing = "dns" if executor.name == "docker" else "loopback"
        self.workspace_id = workspace_id(workspace)
        self._lock = threading.RLock()
        self._admission = Admission(self.capacity, max_pods)
        self._active: dict[tuple[str, str], PodEntry] = {}
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self.faults: list[SchedulerFault] = []  # kubelet failures whose Pod end could not be written
        self.resolver = Resolver(store, executor, workspace, images, self.host_paths, self.addressing)
        self.kubelet = Kubelet(store, executor, self.resolver, workspace, clock, self.addressing, self._lock,
                               self._note_fault)

    @property
    def images(self) -> ImageMap:
        """The image map of ``localflow.yaml`` the node resolves images with."""
        return self.resolver.images

    @images.setter
    def images(self, value: ImageMap) -> None:
        self.resolver.images = value or ImageMap()

    @property
    def max_pods(self) -> int:
        """How many Pods may run at once (kubelet's ``maxPods``)."""
        return self._admission.max_pods

    @max_pods.setter
    def max_pods(self, value: int) -> None:
        with self._lock:
            self._admission.max_pods = int(value)

    # -- public API ----------------------------------------------------------------------
    def submit(self, pod: dict) -> dict:
        """Create the Pod object (phase Pending) and queue it for admission; returns the stored Pod.

        Raises :class:`Unschedulable` when its requests exceed the whole machine,
        :class:`SpecError` for an invalid manifest (volumes and mounts are checked here, before
        anything is created: :func:`localflow.volumes.validate_pod_volumes`).
        """
        return self.submit_gang([pod], gang=None)[0]

    def submit_gang(self, pods: list[dict], gang: str | None) -> list[dict]:
        """Create all ``pods`` and admit them together or not at all (gang scheduling, like
        scheduler-plugins ``coscheduling`` used by the training operator). Raises
        :class:`Unschedulable` before anything is created when the gang's total requests exceed
        the machine."""
        sized = []
        for pod in pods:
            validate_pod(pod)
            validate_pod_volumes(pod, f"Pod({pod['metadata']['name']}).spec", self.workspace, self.host_paths)
            sized.append((pod, *pod_requests(pod, f"Pod({pod['metadata']['name']}).spec")))
        first = pods[0]["metadata"]["name"] if pods else "Pod"
        self.check_pod_count(len(pods), f"gang {gang!r}" if gang else "Pod", f"Pod({first})" if pods else "Pod")
        self._admission.check_fits_node(first, len(pods), gang, sum(c for _, c, _ in sized), sum(m for _, _, m in sized))
        created = []
        with self._lock:
            if self._closed:
                raise LocalflowError("the scheduler is shut down")
            for pod, cpu, mem in sized:
                obj = self.store.create(_with_pending_status(pod))
                self._admission.add(PodEntry(obj, cpu, mem, gang))
                created.append(obj)
            self._admit_locked()
        return created

    def check_pod_count(self, count: int, what: str, path: str, fix: str = "lower the number of replicas") -> None:
        """Raise :class:`Unschedulable` when ``count`` Pods that must run together (a gang, a job's
        replicas) can never run at once on this node: more than ``max_pods``. Controllers call it
        before building the Pods, so an absurd replica count costs nothing."""
        self._admission.check_pod_count(count, what, path, fix)

    def raise_fault(self, pods: Iterable[str] | None = None) -> None:
        """Raise the first kubelet failure that left a Pod's end unrecorded (:class:`SchedulerFault`;
        only those of the Pods named in ``pods`` when given): the controller waiting for that Pod
        would otherwise wait forever."""
        names = None if pods is None else set(pods)
        with self._lock:
            for fault in self.faults:
                if names is None or fault.pod in names:
                    raise fault

    def kill_pod(self, name: str, namespace: str = "default", reason: str = "Killed") -> None:
        """Kill a running Pod (its phase becomes Failed with ``reason``) or drop a pending one.
        Returns at once: the kill (SIGTERM, then SIGKILL after the grace period) runs in the
        background; watch the Pod, or :meth:`wait_idle`, to see it end."""
        with self._lock:
            entry = self._active.get((namespace, name))
            if entry is None:
                for e in list(self._admission.pending):
                    if e.name == name and e.namespace == namespace:
                        self._admission.remove(e)
                        self.kubelet.finish_unstarted(e, reason)
                        self._idle.notify_all()
                return
            entry.kill_reason = entry.kill_reason or reason
            entry.wake.set()
            running = entry.running
        if running is not None:
            self.kubelet.event(entry, "Killing", f"Stopping container(s) of pod {name}: {reason}", component="localflow")
            # asynchronous, like the API server's delete: Pods stop in parallel (each may wait out its
            # grace period); the kubelet thread writes the end as usual
            threading.Thread(target=kill_quietly, args=(running, reason), name=f"kill-{name}", daemon=True).start()

    def delete_pod(self, name: str, namespace: str = "default") -> None:
        """Kill the Pod if it runs, then delete its object (cascading to what it owns)."""
        with self._lock:
            entry = self._active.get((namespace, name))
        self.kill_pod(name, namespace, "Killed")
        if entry is not None and entry.thread is not None:
            entry.thread.join()
        try:
            self.store.delete("Pod", name, namespace)
        except LocalflowError:
            pass

    def running_pod(self, name: str, namespace: str = "default") -> RunningPod | None:
        """The executor's handle of a running Pod (for monitoring and port lookup), or None."""
        with self._lock:
            e = self._active.get((namespace, name))
            return e.running if e else None

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no Pod is pending or running; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._admission.pending and not self._active, timeout)

    def shutdown(self, cancel: bool = True) -> None:
        """Stop admitting; with ``cancel`` kill every running Pod and fail every pending one, then
        wait for their threads so no process outlives the scheduler."""
        with self._lock:
            self._closed = True
            pending, self._admission.pending = self._admission.pending, []
            active = list(self._active.values())
        for e in pending:
            self.kubelet.finish_unstarted(e, "Canceled")
        if cancel:
            for e in active:
                self.kill_pod(e.name, e.namespace, "Canceled")
        for e in active:
            if e.thread is not None:
                e.thread.join()
        with self._lock:
            self._idle.notify_all()

    # -- admission -------------------------------------------------------------------------
    def _admit_locked(self) -> None:
        admitted, waiting = self._admission.admit()
        for e in admitted:
            self._active[(e.namespace, e.name)] = e
            self.kubelet.start(e, self._release)
        for e, msg in waiting:
            self.store.record_event(e.manifest, "FailedScheduling", msg, type="Warning", component="default-scheduler")
            self.kubelet.patch_status(e, podstatus.unschedulable(msg, self.clock))

    def _release(self, e: PodEntry) -> None:
        with self._lock:
            self._active.pop((e.namespace, e.name), None)
            self._admission.release(e)
            if not self._closed:
                self._admit_locked()
            self._idle.notify_all()

    def _note_fault(self, e: PodEntry, exc: Exception) -> None:
        fault = SchedulerFault(f"pod {e.namespace}/{e.name}: {describe(exc)}")
        fault.__cause__ = exc
        fault.pod = e.name
        with self._lock:
            self.faults.append(fault)
            self._idle.notify_all()


def _with_pending_status(pod: dict) -> dict:
    obj = {"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in pod.items() if k not in ("apiVersion", "kind")}}
    obj["spec"] = dict(obj.get("spec") or {})
    obj["spec"].setdefault("nodeName", NODE_NAME)
    obj["status"] = podstatus.pending(obj)
    return obj
