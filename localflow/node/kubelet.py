"""kubelet for one node: run a bound Pod's containers on the executor until it ends.

One thread per admitted Pod (:meth:`Kubelet.start`) resolves the Pod (:mod:`.resolve`), starts it,
writes every status transition through :mod:`.podstatus`, restarts containers by
``restartPolicy`` with kubelet's crash-loop backoff (10 s doubling to 5 min,
kubernetes ``pkg/kubelet/kubelet.go`` ``MaxContainerBackOff``), enforces
``activeDeadlineSeconds`` (``pkg/kubelet/active_deadline.go``) and keeps each container
instance's log (``logs/<uid>/<container>/<restart>.log``).

A kubelet thread never lets an exception escape: what it meets (a bug, a full disk, an executor
failure) ends its Pod Failed with its process killed; when even that cannot be written the fault
goes to ``on_fault`` (the node keeps it for the controller waiting on the Pod). A Pod whose
object was deleted is killed and nothing more is written for it (kubelet's ``SyncTerminatingPod``
for a Pod gone from the API server).

Probes: :meth:`Kubelet.containers_started` starts the Pod instance's startup/readiness/liveness
probes (:mod:`.probes`); they flip ``Ready`` and kill the containers on a liveness failure, which
this loop restarts by ``restartPolicy`` as any other exit. A container without a readiness or
startup probe is Ready once started, as in kubelet. Under loopback addressing a Pod that reads
``metadata.annotations['localflow.dev/port-<containerPort>']`` gets a free host port for it first
(:func:`.probes.port_requests`), so replicas of one template can run side by side.
"""
from __future__ import annotations

import threading
from typing import Callable

from localflow import dbconn
from localflow.clock import Clock
from localflow.errors import Conflict, LocalflowError, NotFound
from localflow.executors.base import ContainerResult, Executor, PodSpec, RunningPod
from localflow.faults import describe, is_disk_full

from . import podstatus, probes
from .resolve import NODE_NAME, Resolver, next_instance
from .restart import KUBELET_ANNOTATION, kubelet_id

__all__ = ["PodEntry", "Kubelet", "BACKOFF_INITIAL_S", "BACKOFF_MAX_S"]

BACKOFF_INITIAL_S = 10.0  # kubelet's container restart backoff: 10 s doubling to 5 min
BACKOFF_MAX_S = 300.0


class PodEntry:
    """Book-keeping of one Pod on the node: its stored manifest, requests (``cpu`` cores,
    ``memory`` bytes, ``gpus`` count and the ``devices`` assigned), gang, the executor's handle once
    started, the kill reason, and ``deleted`` once its object is gone from the store."""

    __slots__ = ("namespace", "name", "uid", "manifest", "cpu", "memory", "gpus", "devices", "gang", "running",
                 "thread", "kill_reason", "reported_unschedulable", "wake", "deleted", "adopted", "prober")

    def __init__(self, obj: dict, cpu: float, memory: int, gang: str | None, gpus: int = 0, adopted: bool = False):
        self.namespace = obj["metadata"].get("namespace", "default")
        self.name = obj["metadata"]["name"]
        self.uid = obj["metadata"]["uid"]
        self.manifest = obj
        self.cpu, self.memory, self.gang, self.gpus = cpu, memory, gang, gpus
        self.devices: list[str] = []
        self.running: RunningPod | None = None
        self.thread: threading.Thread | None = None
        self.kill_reason: str | None = None
        self.reported_unschedulable = False
        self.wake = threading.Event()  # set by kill: ends a restart backoff at once
        self.deleted = False
        self.adopted = adopted  # created in the store by someone else (not through Scheduler.submit)
        self.prober: probes.PodProber | None = None  # the running instance's probes


def kill_quietly(running: RunningPod, reason: str) -> None:
    """``running.kill(reason)`` where a process already gone (or an engine that does not answer)
    is no traceback; the kubelet thread records the Pod's end either way."""
    try:
        running.kill(reason)
    except Exception:  # noqa: BLE001
        pass


class Kubelet:
    """Runs admitted Pods. ``lock`` is the node's lock guarding :class:`PodEntry` fields shared
    with the scheduler (``kill_reason``, ``running``); ``on_fault(entry, exc)`` receives a failure
    that left a Pod's end unrecorded; ``addressing`` as :class:`~localflow.node.resolve.Resolver`."""

    def __init__(self, store, executor: Executor, resolver: Resolver, workspace, clock: Clock, addressing: str,
                 lock: threading.RLock, on_fault: Callable[[PodEntry, Exception], None]):
        self.store = store
        self.executor = executor
        self.resolver = resolver
        self.workspace = workspace
        self.clock = clock
        self.addressing = addressing
        self._lock = lock
        self._on_fault = on_fault

    def start(self, e: PodEntry, on_exit: Callable[[PodEntry], None]) -> None:
        """Run ``e`` on a thread of its own; ``on_exit(e)`` runs when it ended (frees its resources)."""
        e.thread = threading.Thread(target=self._main, args=(e, on_exit), name=f"kubelet-{e.name}", daemon=True)
        e.thread.start()

    def _main(self, e: PodEntry, on_exit: Callable[[PodEntry], None]) -> None:
        try:
            self._run_pod(e)
        except Exception as exc:  # a bug, a full disk, an executor failure: the Pod must still end
            self._pod_fault(e, exc)
        finally:
            try:
                on_exit(e)
            except Exception as exc:  # noqa: BLE001 - admitting the next Pods failed (a full disk)
                self._on_fault(e, exc)

    # -- status writes ---------------------------------------------------------------------
    def patch_status(self, e: PodEntry, patch: dict) -> None:
        """Merge ``patch`` into the stored Pod's status (:func:`podstatus.merge`). A Pod whose object
        is gone is marked deleted (and killed by the caller's loop); nothing is written for it."""
        if e.deleted:
            return
        try:
            obj = self.store.get("Pod", e.name, e.namespace)
            if obj["metadata"].get("uid") != e.uid:
                raise NotFound(f'pods "{e.name}" not found')  # a new Pod under the same name is not ours
            self.store.update_status("Pod", e.name, podstatus.merge(obj.get("status") or {}, patch), e.namespace)
        except NotFound:
            self.pod_deleted(e)

    def pod_deleted(self, e: PodEntry) -> None:
        """The Pod's object is gone: stop its containers (in the background), write nothing more."""
        with self._lock:
            e.deleted = True
            e.kill_reason = e.kill_reason or "Killed"
            e.wake.set()
            running = e.running
        if running is not None:
            threading.Thread(target=kill_quietly, args=(running, "Killed"), name=f"kill-{e.name}", daemon=True).start()

    def event(self, e: PodEntry, reason: str, message: str, type: str = "Normal", component: str = "kubelet") -> None:
        """Record an Event on the Pod (none once its object is deleted)."""
        if not e.deleted:
            self.store.record_event(e.manifest, reason, message, type=type, component=component)

    def write_final(self, e: PodEntry, results: list[ContainerResult], *, phase: str, reason: str | None = None,
                    message: str | None = None, restarts: int = 0) -> None:
        """Write the Pod's end (:func:`podstatus.final`) and, when Failed, a Warning Event."""
        status = podstatus.final(e.manifest, results, phase, self.clock, reason, message, restarts)
        self.patch_status(e, status)
        if phase == "Failed":
            self.event(e, status["reason"], status["message"], type="Warning")

    def finish_unstarted(self, e: PodEntry, reason: str) -> None:
        """End a Pod dropped before it started (``Failed``, ``pod was never started: <reason>``)."""
        try:
            self.patch_status(e, podstatus.never_started(reason))
        except LocalflowError:
            pass

    # -- faults ----------------------------------------------------------------------------
    def _pod_fault(self, e: PodEntry, exc: Exception) -> None:
        """End a Pod whose kubelet met ``exc``: kill its process if it still runs, write it Failed
        (after freeing the database's space reserve when the disk is full); when that write fails
        too, hand the fault to ``on_fault``."""
        running, results = e.running, None
        if running is not None:
            try:
                results = running.wait(0)
                if results is None:
                    running.kill("Error")
                    results = running.wait()
            except Exception:  # noqa: BLE001 - the process is gone or cannot be reached
                pass
        if is_disk_full(exc):
            dbconn.release_reserve(self.workspace.db_path)
        message = f"localflow failed while running the pod: {describe(exc)}"
        try:
            self.write_final(e, list(results or []), phase="Failed", reason="Error", message=message)
        except Exception as exc2:  # noqa: BLE001
            self._on_fault(e, exc2)

    # -- the Pod's life --------------------------------------------------------------------
    def containers_started(self, e: PodEntry, running: RunningPod, spec: PodSpec) -> None:
        """Called on the Pod's kubelet thread right after its containers started and the Running
        status was written: starts the instance's probes (:class:`.probes.PodProber`, which writes
        ``Ready`` through :mod:`.podstatus` and kills ``running`` on a liveness failure).
        Must not raise."""
        try:
            if probes.probes_of(e.manifest):
                e.prober = probes.PodProber(self, e, running, spec).start()
        except Exception as exc:  # noqa: BLE001
            self.event(e, "Unhealthy", f"probes could not start: {describe(exc)}", type="Warning")

    def containers_ended(self, e: PodEntry) -> None:
        """The Pod instance's containers ended: stop its probes (before its end is written)."""
        prober, e.prober = e.prober, None
        if prober is not None:
            prober.stop()

    def publish_ports(self, e: PodEntry) -> None:
        """Under loopback addressing, give the Pod a free host port per container port it reads
        through the downward API (:func:`.probes.port_requests`), recorded once as the annotation
        ``localflow.dev/port-<containerPort>`` (kept across restarts)."""
        if self.addressing != "loopback":
            return
        wanted = probes.port_requests(e.manifest) - set(probes.host_ports(e.manifest))
        if not wanted:
            return
        from .services import free_port

        ann = {f"{probes.PORT_ANNOTATION}{p}": str(free_port()) for p in sorted(wanted)}
        try:
            e.manifest = self.store.patch("Pod", e.name, {"metadata": {"annotations": ann}}, e.namespace)
        except NotFound:
            self.pod_deleted(e)

    def bind(self, e: PodEntry) -> bool:
        """Bind the admitted Pod to this node, as kube-scheduler's ``DefaultBinder`` plus kubelet's
        first status write: one update (at the read resourceVersion) setting ``spec.nodeName``,
        ``PodScheduled=True``, ``startTime`` and ``hostIP``, then the ``Scheduled`` Event. False when
        the Pod is gone, or when another node (another localflow process) bound a Pod this one
        adopted from the store first: then this node leaves it alone."""
        for _ in range(20):
            try:
                obj = self.store.get("Pod", e.name, e.namespace)
            except NotFound:
                obj = None
            if obj is None or obj["metadata"].get("uid") != e.uid:
                self.pod_deleted(e)
                return False
            spec = obj.setdefault("spec", {})
            if e.adopted and (spec.get("nodeName") or podstatus.finished(obj)):
                return False  # bound (or ended) by someone else meanwhile
            spec["nodeName"] = spec.get("nodeName") or NODE_NAME
            obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}),
                                              KUBELET_ANNOTATION: kubelet_id()}  # who runs it: restart.py
            obj["status"] = podstatus.merge(obj.get("status") or {}, podstatus.scheduled(self.clock))
            try:
                e.manifest = self.store.update(obj)
            except Conflict:
                continue  # written meanwhile: read again
            except NotFound:
                self.pod_deleted(e)
                return False
            self.event(e, "Scheduled", f"Successfully assigned {e.namespace}/{e.name} to {spec['nodeName']}",
                       component="default-scheduler")
            return True
        raise LocalflowError(f"could not bind pod {e.namespace}/{e.name}: its object kept changing")

    def _run_pod(self, e: PodEntry) -> None:
        clock = self.clock
        if not self.bind(e):
            return
        self.publish_ports(e)
        if e.deleted:
            return
        manifest = e.manifest
        try:
            spec = self.resolver.resolve(manifest)
        except LocalflowError as exc:
            self.write_final(e, [], phase="Failed", reason="CreateContainerConfigError", message=str(exc))
            return
        if e.devices:
            spec = _with_devices(spec, e.devices)
        restart_policy = (manifest.get("spec") or {}).get("restartPolicy") or "Always"
        deadline_s = (manifest.get("spec") or {}).get("activeDeadlineSeconds")
        deadline = clock.monotonic() + float(deadline_s) if deadline_s else None
        restarts = 0
        last: list[ContainerResult] = []  # the results before a restart (lastState)
        while True:
            with self._lock:
                if e.kill_reason:
                    self.write_final(e, last, phase="Failed", reason=e.kill_reason,
                                     message="killed before start" if not last else "killed while backing off",
                                     restarts=restarts)
                    return
            if restarts:  # a new instance of each container: the previous one keeps its log (logs --previous)
                spec = next_instance(spec, self.workspace.logs_dir, restarts)
            try:
                running = self.executor.start(spec)
            except LocalflowError as exc:
                self.event(e, "Failed", exc.message, type="Warning")
                self.write_final(e, [], phase="Failed", reason="ContainerCannotRun", message=str(exc), restarts=restarts)
                return
            with self._lock:
                e.running = running
                late_kill = e.kill_reason
            if late_kill:
                running.kill(late_kill)
            ids = self._container_ids(running, spec)
            ip: dict = {}
            if self.addressing == "loopback":
                ip = {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}
            elif spec.network or any(c.ports for c in spec.containers):
                # the container's address on its network, known once it started (an inspect: only
                # for Pods that others reach; a pipeline task's Pod reports none)
                try:
                    addr = running.address()
                    ip = {"podIP": addr, "podIPs": [{"ip": addr}]}
                except Exception:  # an engine hiccup must not fail the Pod
                    pass
            for c in spec.containers:
                self.event(e, "Started", f"Started container {c.name}")
            unready, unstarted = probes.initial_gates(manifest)
            self.patch_status(e, podstatus.running(spec.containers, restarts, clock, ids, last, ip, unready, unstarted))
            self.containers_started(e, running, spec)
            try:
                results = self._wait(running, deadline, e)
            finally:
                self.containers_ended(e)
            with self._lock:
                killed = e.kill_reason
            failed = any(r.exit_code != 0 for r in results)
            restart = not killed and (restart_policy == "Always" or (restart_policy == "OnFailure" and failed))
            if not restart:
                break
            restarts += 1
            backoff = min(BACKOFF_INITIAL_S * 2 ** (restarts - 1), BACKOFF_MAX_S)
            self.event(e, "BackOff", f"Back-off {backoff:.0f}s restarting failed container", type="Warning")
            self.patch_status(e, podstatus.backing_off(spec.containers, results, restarts, clock))
            last = results
            clock.wait(e.wake, backoff)
        if killed == "DeadlineExceeded":
            self.write_final(e, results, phase="Failed", reason="DeadlineExceeded",
                             message="Pod was active on the node longer than the specified deadline", restarts=restarts)
            return
        phase = "Succeeded" if not failed and not killed else "Failed"
        self.write_final(e, results, phase=phase, reason=killed if phase == "Failed" and killed else None,
                         restarts=restarts)

    @staticmethod
    def _container_ids(running: RunningPod, spec: PodSpec, timeout: float = 1.0) -> dict[str, str]:
        """The containerIDs of the Pod's main containers, waiting briefly (real time: executors start
        asynchronously) until every one started or the Pod already ended."""
        return running.wait_container_ids([c.name for c in spec.containers], timeout)

    def _wait(self, running: RunningPod, deadline: float | None, e: PodEntry) -> list[ContainerResult]:
        if deadline is None:
            return running.wait()
        while True:
            left = deadline - self.clock.monotonic()
            if left <= 0:
                with self._lock:
                    e.kill_reason = e.kill_reason or "DeadlineExceeded"
                running.kill("DeadlineExceeded")
                return running.wait()
            results = running.wait(min(left, 0.5))
            if results is not None:
                return results


def _with_devices(spec: PodSpec, devices: list[str]) -> PodSpec:
    """``spec`` with the assigned GPUs visible to every container (``NVIDIA_VISIBLE_DEVICES`` and
    ``CUDA_VISIBLE_DEVICES``, as the NVIDIA device plugin's ``Allocate`` sets them)."""
    import dataclasses

    visible = ",".join(devices)

    def one(cs):
        return [dataclasses.replace(c, env={**c.env, "NVIDIA_VISIBLE_DEVICES": visible, "CUDA_VISIBLE_DEVICES": visible})
                for c in cs]

    return dataclasses.replace(spec, containers=one(spec.containers), init_containers=one(spec.init_containers))
