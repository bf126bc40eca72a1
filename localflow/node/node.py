"""The node: kube-scheduler (:mod:`.scheduling`) and kubelet (:mod:`.kubelet`) of this machine.

The node is driven by the object store. It watches Pods (``list_and_watch``, which sees writes
from every process on the workspace): a Pod created by anyone with no ``spec.nodeName``, phase
``Pending`` and the default scheduler (``spec.schedulerName`` unset or ``default-scheduler``) is
queued, admitted when its requests fit what is left of the machine, bound (``spec.nodeName``,
``PodScheduled``, a ``Scheduled`` Event; optimistic concurrency, so of two localflow processes on
one workspace exactly one binds it) and run by the kubelet, which writes the status transitions
kubelet would write (:mod:`.podstatus`): ``Pending → Running → Succeeded | Failed``. Deleting a Pod
object, or its owner through the store's ownerReference cascade, stops its processes. A Pod bound
to a node, already finished, or created by another localflow process's :meth:`Scheduler.submit`
(annotation ``localflow.dev/scheduler``) is left alone.

Controllers may also hand the :class:`Scheduler` Pod manifests directly: :meth:`Scheduler.submit`
creates the Pod in the store (unbound, claimed by this node) and queues it on the same path.

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

import dataclasses
import threading
import uuid
from typing import Iterable

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.config import ImageMap
from localflow.errors import Gone, LocalflowError
from localflow.executors.base import Executor, RunningPod
from localflow.faults import SchedulerFault, describe
from localflow.fakes.watch import DELETED
from localflow.volumes import validate_pod_volumes

from . import podstatus
from .kubelet import Kubelet, PodEntry, kill_quietly
from .resolve import Resolver, workspace_id
from .services import ServiceProxy
from .scheduling import DEFAULT_MAX_PODS, Admission, Capacity, detect_gpus, pod_gpus, pod_requests, validate_pod

__all__ = ["Scheduler", "CLAIM_ANNOTATION"]

#: Pod annotation: the node instance (``Scheduler.name``) whose ``submit`` created the Pod; other
#: localflow processes on the workspace leave such a Pod to it.
CLAIM_ANNOTATION = "localflow.dev/scheduler"


class Scheduler:
    """Admits, runs and reports Pods on this machine. Thread-safe.

    ``store``: :class:`localflow.fakes.ObjectStore`; ``executor``: runs resolved Pods;
    ``workspace``: where logs and volumes live; ``images``: image map from ``localflow.yaml``;
    ``capacity``: allocatable cpu/memory (default: the whole machine); ``host_paths``: host
    directories ``hostPath`` volumes may use (``localflow.yaml`` ``hostPaths.allow``; none by default);
    ``max_pods``: how many Pods may run at once (kubelet's ``maxPods``).
    ``addressing`` is ``"loopback"`` (every Pod is 127.0.0.1, controllers give replicas distinct
    ports) or ``"dns"`` (Pods reach each other by hostname on a per-group network: docker).
    ``watch``: run Pods created in the store by anyone (default); False runs only submitted Pods.
    ``gpus``: the node's ``nvidia.com/gpu`` devices (``node: {gpus: N}``; default ``capacity.gpus``,
    else :func:`~localflow.node.scheduling.detect_gpus`), handed out by index.
    """

    def __init__(self, store, executor: Executor, workspace, images: ImageMap | None = None,
                 clock: Clock = SYSTEM_CLOCK, capacity: Capacity | None = None, host_paths=(),
                 max_pods: int = DEFAULT_MAX_PODS, watch: bool = True, gpus: int | None = None):
        self.store = store
        self.host_paths = tuple(host_paths)
        self.executor = executor
        self.workspace = workspace
        self.clock = clock
        self.capacity = dataclasses.replace(capacity or Capacity.detect())
        if gpus is not None or self.capacity.gpus is None:
            self.capacity.gpus = int(gpus) if gpus is not None else detect_gpus()
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
        self.name = f"localflow-{uuid.uuid4().hex[:10]}"  # this node instance (CLAIM_ANNOTATION)
        #: the node's kube-proxy (:mod:`.services`): Service ports on 127.0.0.1, fed by the Service controller
        self.services = ServiceProxy(self._service_backend)
        self._known: dict[str, PodEntry] = {}  # uid -> entry, pending or active
        self._refused: set[str] = set()  # uids of adopted Pods that can never fit (reported once)
        self.watch_errors: list[str] = []  # what the store watch met (it never stops for it)
        self._watch = None
        self._watcher: threading.Thread | None = None
        if watch:
            self._start_watch()

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
            path = f"Pod({pod['metadata']['name']}).spec"
            sized.append((pod, *pod_requests(pod, path), pod_gpus(pod, path)))
        first = pods[0]["metadata"]["name"] if pods else "Pod"
        self.check_pod_count(len(pods), f"gang {gang!r}" if gang else "Pod", f"Pod({first})" if pods else "Pod")
        self._admission.check_fits_node(first, len(pods), gang, sum(s[1] for s in sized), sum(s[2] for s in sized),
                                        sum(s[3] for s in sized))
        created = []
        with self._lock:
            if self._closed:
                raise LocalflowError("the scheduler is shut down")
            for pod, cpu, mem, n_gpus in sized:
                obj = self.store.create(_with_pending_status(pod, self.name))
                entry = PodEntry(obj, cpu, mem, gang, n_gpus)
                self._known[entry.uid] = entry
                self._admission.add(entry)
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
                        self._known.pop(e.uid, None)
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

    def _service_backend(self, ip: str, port: int, pod: str | None) -> tuple[str, int]:
        """How this machine reaches the endpoint ``ip:port`` of Pod ``pod`` (``namespace/name``):
        under Docker through the port published on 127.0.0.1, else as it is."""
        if self.addressing == "dns" and pod:
            ns, _, name = pod.partition("/")
            running = self.running_pod(name, ns)
            mapper = getattr(running, "port_map", None)
            if mapper is not None:
                published = mapper(timeout=1.0).get(int(port))
                if published:
                    return "127.0.0.1", int(published)
        return ip, int(port)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no Pod is pending or running; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._admission.pending and not self._active, timeout)

    def shutdown(self, cancel: bool = True) -> None:
        """Stop admitting; with ``cancel`` kill every running Pod and fail every pending one, then
        wait for their threads so no process outlives the scheduler."""
        self.services.close()
        with self._lock:
            self._closed = True
            pending, self._admission.pending = self._admission.pending, []
            active = list(self._active.values())
            watch, watcher = self._watch, self._watcher
        if watch is not None:
            watch.close()
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=10)
        for e in pending:
            if not e.adopted:  # a Pod taken from the store stays Pending for the next node
                self.kubelet.finish_unstarted(e, "Canceled")
        if cancel:
            for e in active:
                self.kill_pod(e.name, e.namespace, "Canceled")
        for e in active:
            if e.thread is not None:
                e.thread.join()
        with self._lock:
            self._idle.notify_all()

    # -- the store watch -------------------------------------------------------------------
    def _start_watch(self) -> None:
        items, self._watch = self.store.list_and_watch("Pod", namespace=None)
        with self._lock:
            for obj in items:
                self._consider(obj)
        self._watcher = threading.Thread(target=self._watch_loop, name="node-watch", daemon=True)
        self._watcher.start()

    def _watch_loop(self) -> None:
        """Apply every Pod change to the node until the watch is closed; never raises (an error is
        kept in :attr:`watch_errors`, a ``410 Gone`` relists)."""
        while True:
            watch = self._watch
            try:
                ev = watch.get()
            except Gone:
                try:
                    self._relist()
                except Exception as exc:  # noqa: BLE001
                    self._watch_error(exc)
                    return
                continue
            except Exception as exc:  # noqa: BLE001
                self._watch_error(exc)
                return
            if ev is None:
                return  # closed
            try:
                with self._lock:
                    if ev.type == DELETED:
                        self._forget(ev.object)
                    elif not self._closed:
                        self._consider(ev.object)
            except Exception as exc:  # noqa: BLE001 - one bad Pod must not stop the node
                self._watch_error(exc)

    def _relist(self) -> None:
        """The watch fell behind the compacted log: list again, forget Pods that are gone."""
        items, watch = self.store.list_and_watch("Pod", namespace=None)
        with self._lock:
            if self._closed:
                watch.close()
                return
            self._watch = watch
            live = {o["metadata"]["uid"] for o in items}
            for uid, e in list(self._known.items()):
                if uid not in live:
                    self._forget(e.manifest)
            for obj in items:
                self._consider(obj)

    def _watch_error(self, exc: Exception) -> None:
        with self._lock:
            self.watch_errors.append(describe(exc))
            del self.watch_errors[:-100]

    def _forget(self, obj: dict) -> None:
        """The Pod ``obj`` was deleted: drop it from the queue, or stop its containers."""
        e = self._known.get(obj["metadata"].get("uid"))
        if e is None:
            return
        if self._admission.remove(e):
            self._known.pop(e.uid, None)
            e.deleted = True
            self._idle.notify_all()
            self._admit_locked()
        else:
            self.kubelet.pod_deleted(e)

    def _consider(self, obj: dict) -> None:
        """Queue a Pod from the store when this node should run it (:func:`wants`)."""
        uid = obj["metadata"].get("uid")
        if uid in self._known or uid in self._refused or not wants(obj):
            return
        name = obj["metadata"].get("name")
        entry = PodEntry(obj, 0.0, 0, None, adopted=True)
        try:
            validate_pod(obj)
            path = f"Pod({name}).spec"
            validate_pod_volumes(obj, path, self.workspace, self.host_paths)
            entry.cpu, entry.memory = pod_requests(obj, path)
            entry.gpus = pod_gpus(obj, path)
        except LocalflowError as exc:  # what an API server would have refused: a true record
            self._refused.add(uid)
            self.kubelet.write_final(entry, [], phase="Failed", reason="CreateContainerConfigError", message=str(exc))
            return
        short = self._admission.never_fits(entry.cpu, entry.memory, entry.gpus)
        if short or self._admission.max_pods < 1:
            # kube-scheduler keeps such a Pod Pending, reporting why; it is not queued (it never fits)
            self._refused.add(uid)
            msg = f"0/1 nodes are available: Insufficient {short}." if short else "0/1 nodes are available: Too many pods."
            self.kubelet.event(entry, "FailedScheduling", msg, type="Warning", component="default-scheduler")
            self.kubelet.patch_status(entry, {**podstatus.pending(obj), **podstatus.unschedulable(msg, self.clock)})
            return
        self._known[uid] = entry
        self._admission.add(entry)
        self._admit_locked()

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
            self._known.pop(e.uid, None)
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


def _with_pending_status(pod: dict, claim: str) -> dict:
    """The Pod to create for ``submit``: ``v1 Pod``, unbound, phase Pending, claimed by ``claim``."""
    obj = {"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in pod.items() if k not in ("apiVersion", "kind")}}
    obj["metadata"] = dict(obj.get("metadata") or {})
    obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}), CLAIM_ANNOTATION: claim}
    obj["spec"] = dict(obj.get("spec") or {})
    obj["status"] = podstatus.pending(obj)
    return obj


def wants(obj: dict) -> bool:
    """True for a Pod this node's scheduler should take from the store: no ``spec.nodeName``, phase
    Pending (or none yet), not being deleted, the default scheduler, and not claimed by a localflow
    process's ``submit``."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    if obj.get("kind") != "Pod" or spec.get("nodeName") or meta.get("deletionTimestamp"):
        return False
    if ((obj.get("status") or {}).get("phase") or "Pending") != "Pending":
        return False
    if (meta.get("annotations") or {}).get(CLAIM_ANNOTATION):
        return False
    return spec.get("schedulerName") in (None, "", "default-scheduler")
