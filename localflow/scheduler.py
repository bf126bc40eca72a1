"""kube-scheduler and kubelet for one node: admit Pods by their requests, run them, write their status.

Controllers hand the :class:`Scheduler` plain Kubernetes Pod manifests. It creates the ``v1 Pod``
object (phase ``Pending``), admits Pods in submission order whenever their cpu/memory requests fit
what is left of the machine (like kube-scheduler's ``NodeResourcesFit`` filter, kubernetes/kubernetes
``pkg/scheduler/framework/plugins/noderesources/fit.go``), resolves each admitted Pod into an
:class:`~localflow.executors.base.PodSpec` (``$(VAR)`` expansion as in kubernetes
``third_party/forked/golang/expansion``, volumes, image mapping, log files) and runs it on the
executor, writing the status transitions kubelet would write (``pkg/kubelet/status``):
``Pending → Running → Succeeded | Failed`` with ``containerStatuses``, conditions and Events.

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
import os
import re
import threading
from dataclasses import dataclass
from typing import Iterable

import psutil

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.config import ImageMap
from localflow import dbconn, logfiles
from localflow.errors import LocalflowError, SpecError, Unschedulable
from localflow.faults import SchedulerFault, describe, is_disk_full
from localflow.executors.base import (ContainerResult, ContainerSpec, Executor, ImageMapping, Mount, PodSpec, Resources,
                                      RunningPod)
from localflow.quantity import format_cpu, format_memory, parse_cpu, parse_memory
from localflow.volumes import check_mount_sources, container_mounts, resolve_volumes, validate_pod_volumes

NODE_NAME = "localflow"
NETWORK_ANNOTATION = "localflow.dev/network"
#: Pod annotation: the interpreter python/python3 mean in its containers (a packages venv).
PYTHON_ANNOTATION = "localflow.dev/python"
WORKSPACE_LABEL = "localflow.dev/workspace"
_BACKOFF_INITIAL_S = 10.0  # kubelet's container restart backoff: 10 s doubling to 5 min
_BACKOFF_MAX_S = 300.0
DEFAULT_MAX_PODS = 110  # kubelet's --max-pods default
TOO_MANY_PODS = "0/1 nodes are available: Too many pods."


@dataclass
class Capacity:
    """Allocatable resources of this node: ``cpu`` in cores, ``memory`` in bytes."""

    cpu: float
    memory: int

    @classmethod
    def detect(cls) -> "Capacity":
        """The machine's logical cpus and total memory (psutil)."""
        return cls(cpu=float(psutil.cpu_count() or 1), memory=int(psutil.virtual_memory().total))


def workspace_id(workspace) -> str:
    """Short stable id of a workspace (12 hex digits of the SHA-1 of its root path): labels what the
    executors create for it (``localflow.dev/workspace``) and prefixes its networks, so two
    workspaces never share or clean up each other's containers."""
    import hashlib

    return hashlib.sha1(str(workspace.root).encode()).hexdigest()[:12]


def pod_requests(pod: dict, path: str = "Pod.spec") -> tuple[float, int]:
    """Effective (cpu cores, memory bytes) a Pod requests, as kube-scheduler computes it.

    Sum over containers, max with every init container (kubernetes ``pkg/api/v1/resource/helpers.go``
    ``PodRequests``). A container with a limit but no request requests its limit.
    """
    spec = pod.get("spec") or {}

    def one(c: dict, p: str) -> tuple[float, int]:
        res = c.get("resources") or {}
        req = res.get("requests") or {}
        lim = res.get("limits") or {}
        cpu = req.get("cpu", lim.get("cpu"))
        mem = req.get("memory", lim.get("memory"))
        return (parse_cpu(cpu, f"{p}.resources.requests.cpu") if cpu is not None else 0.0,
                parse_memory(mem, f"{p}.resources.requests.memory") if mem is not None else 0)

    cpu, mem = 0.0, 0
    for i, c in enumerate(spec.get("containers") or []):
        a, b = one(c, f"{path}.containers[{i}]")
        cpu, mem = cpu + a, mem + b
    for i, c in enumerate(spec.get("initContainers") or []):
        a, b = one(c, f"{path}.initContainers[{i}]")
        cpu, mem = max(cpu, a), max(mem, b)
    return cpu, mem


_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes a ``$``, unknown
    references are left as they are (kubernetes ``third_party/forked/golang/expansion/expand.go``)."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, value)


class _Entry:
    """Book-keeping of one Pod inside the scheduler."""

    __slots__ = ("namespace", "name", "uid", "manifest", "cpu", "memory", "gang", "running", "thread",
                 "kill_reason", "reported_unschedulable", "wake")

    def __init__(self, obj: dict, cpu: float, memory: int, gang: str | None):
        self.namespace = obj["metadata"].get("namespace", "default")
        self.name = obj["metadata"]["name"]
        self.uid = obj["metadata"]["uid"]
        self.manifest = obj
        self.cpu, self.memory, self.gang = cpu, memory, gang
        self.running: RunningPod | None = None
        self.thread: threading.Thread | None = None
        self.kill_reason: str | None = None
        self.reported_unschedulable = False
        self.wake = threading.Event()  # set by kill: ends a restart backoff at once


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
        self.images = images or ImageMap()
        self.clock = clock
        self.capacity = capacity or Capacity.detect()
        self.addressing = "dns" if executor.name == "docker" else "loopback"
        self.workspace_id = workspace_id(workspace)
        self._lock = threading.RLock()
        self._pending: list[_Entry] = []
        self._active: dict[tuple[str, str], _Entry] = {}
        self._used_cpu = 0.0
        self._used_mem = 0
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self.max_pods = int(max_pods)
        self.faults: list[SchedulerFault] = []  # kubelet failures whose Pod end could not be written

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
            _validate_pod(pod)
            validate_pod_volumes(pod, f"Pod({pod['metadata']['name']}).spec", self.workspace, self.host_paths)
            sized.append((pod, *pod_requests(pod, f"Pod({pod['metadata']['name']}).spec")))
        self.check_pod_count(len(pods), f"gang {gang!r}" if gang else "Pod",
                             f"Pod({pods[0]['metadata']['name']})" if pods else "Pod")
        total_cpu = sum(c for _, c, _ in sized)
        total_mem = sum(m for _, _, m in sized)
        if total_cpu > self.capacity.cpu + 1e-9 or total_mem > self.capacity.memory:
            what = "Pod" if len(pods) == 1 else f"gang {gang!r} of {len(pods)} Pods"
            short = "cpu" if total_cpu > self.capacity.cpu + 1e-9 else "memory"
            raise Unschedulable(
                f"Pod({pods[0]['metadata']['name']}).spec.containers[].resources.requests",
                f"the {what} requests cpu {format_cpu(total_cpu)}, memory {format_memory(total_mem)} but this "
                f"machine has cpu {format_cpu(self.capacity.cpu)}, memory {format_memory(self.capacity.memory)}: "
                f"0/1 nodes are available: Insufficient {short}",
                fix="lower the requests or the number of replicas")
        created = []
        with self._lock:
            if self._closed:
                raise LocalflowError("the scheduler is shut down")
            for pod, cpu, mem in sized:
                obj = _with_pending_status(pod, self.clock)
                obj = self.store.create(obj)
                entry = _Entry(obj, cpu, mem, gang)
                self._pending.append(entry)
                created.append(obj)
            self._admit_locked()
        return created

    def check_pod_count(self, count: int, what: str, path: str, fix: str = "lower the number of replicas") -> None:
        """Raise :class:`Unschedulable` when ``count`` Pods that must run together (a gang, a job's
        replicas) can never run at once on this node: more than ``max_pods``. Controllers call it
        before building the Pods, so an absurd replica count costs nothing."""
        if count > self.max_pods:
            raise Unschedulable(path, f"the {what} needs {count} Pods running at once but this node runs at most "
                                      f"{self.max_pods} (maxPods): {TOO_MANY_PODS[:-1]}",
                                fix=f"{fix}, or raise node.maxPods in localflow.yaml")

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
                for e in list(self._pending):
                    if e.name == name and e.namespace == namespace:
                        self._pending.remove(e)
                        self._finish_unstarted(e, reason)
                        self._idle.notify_all()
                return
            entry.kill_reason = entry.kill_reason or reason
            entry.wake.set()
            running = entry.running
        if running is not None:
            self.store.record_event(entry.manifest, "Killing", f"Stopping container(s) of pod {name}: {reason}")
            # asynchronous, like the API server's delete: Pods stop in parallel (each may wait out its
            # grace period); the kubelet thread writes the end as usual
            threading.Thread(target=_kill_quietly, args=(running, reason), name=f"kill-{name}", daemon=True).start()

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
            return self._idle.wait_for(lambda: not self._pending and not self._active, timeout)

    def shutdown(self, cancel: bool = True) -> None:
        """Stop admitting; with ``cancel`` kill every running Pod and fail every pending one, then
        wait for their threads so no process outlives the scheduler."""
        with self._lock:
            self._closed = True
            pending, self._pending = self._pending, []
            active = list(self._active.values())
        for e in pending:
            self._finish_unstarted(e, "Canceled")
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
        free_cpu = self.capacity.cpu - self._used_cpu
        free_mem = self.capacity.memory - self._used_mem
        i = 0
        while i < len(self._pending):
            entry = self._pending[i]
            group = [e for e in self._pending if entry.gang is not None and e.gang == entry.gang] or [entry]
            cpu = sum(e.cpu for e in group)
            mem = sum(e.memory for e in group)
            slots = len(self._active) + len(group) <= self.max_pods
            if cpu <= free_cpu + 1e-9 and mem <= free_mem and slots:
                for e in group:
                    self._pending.remove(e)
                    self._start_locked(e)
                free_cpu -= cpu
                free_mem -= mem
                continue  # list shrank: same index is the next Pod
            for e in group:
                if not e.reported_unschedulable:
                    e.reported_unschedulable = True
                    short = []
                    if cpu > free_cpu + 1e-9:
                        short.append("Insufficient cpu")
                    if mem > free_mem:
                        short.append("Insufficient memory")
                    if not slots:
                        short.append("Too many pods")
                    msg = f"0/1 nodes are available: {', '.join(short)}."
                    self.store.record_event(e.manifest, "FailedScheduling", msg, type="Warning",
                                            component="default-scheduler")
                    self._patch_status(e, {"conditions": [_cond("PodScheduled", "False", self.clock,
                                                                 "Unschedulable", msg)]})
            i += len(group) if entry.gang is not None else 1

    def _start_locked(self, e: _Entry) -> None:
        self._used_cpu += e.cpu
        self._used_mem += e.memory
        self._active[(e.namespace, e.name)] = e
        e.thread = threading.Thread(target=self._kubelet, args=(e,), name=f"kubelet-{e.name}", daemon=True)
        e.thread.start()

    def _release(self, e: _Entry) -> None:
        with self._lock:
            self._active.pop((e.namespace, e.name), None)
            self._used_cpu -= e.cpu
            self._used_mem -= e.memory
            if not self._closed:
                self._admit_locked()
            self._idle.notify_all()

    # -- kubelet ---------------------------------------------------------------------------
    def _kubelet(self, e: _Entry) -> None:
        try:
            self._run_pod(e)
        except Exception as exc:  # a bug, a full disk, an executor failure: the Pod must still end
            self._pod_fault(e, exc)
        finally:
            try:
                self._release(e)
            except Exception as exc:  # noqa: BLE001 - admitting the next Pods failed (a full disk)
                self._note_fault(e, exc)

    def _pod_fault(self, e: _Entry, exc: Exception) -> None:
        """End a Pod whose kubelet met ``exc``: kill its process if it still runs, write it Failed
        (after freeing the database's space reserve when the disk is full); when that write fails
        too, keep the fault for the controller (:meth:`raise_fault`)."""
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
            self._write_final(e, list(results or []), phase="Failed", reason="Error", message=message)
        except Exception as exc2:  # noqa: BLE001
            self._note_fault(e, exc2)

    def _note_fault(self, e: _Entry, exc: Exception) -> None:
        fault = SchedulerFault(f"pod {e.namespace}/{e.name}: {describe(exc)}")
        fault.__cause__ = exc
        fault.pod = e.name
        with self._lock:
            self.faults.append(fault)
            self._idle.notify_all()

    def _run_pod(self, e: _Entry) -> None:
        clock = self.clock
        manifest = e.manifest
        self.store.record_event(manifest, "Scheduled", f"Successfully assigned {e.namespace}/{e.name} to {NODE_NAME}",
                                component="default-scheduler")
        start_time = clock.rfc3339()
        self._patch_status(e, {"conditions": [_cond("PodScheduled", "True", clock)], "startTime": start_time,
                               "hostIP": "127.0.0.1"})
        try:
            spec = self._resolve(manifest)
        except LocalflowError as exc:
            self._write_final(e, [], phase="Failed", reason="CreateContainerConfigError", message=str(exc))
            return
        restart_policy = (manifest.get("spec") or {}).get("restartPolicy") or "Always"
        deadline_s = (manifest.get("spec") or {}).get("activeDeadlineSeconds")
        deadline = clock.monotonic() + float(deadline_s) if deadline_s else None
        restarts = 0
        last: list[ContainerResult] = []  # the results before a restart (lastState)
        while True:
            with self._lock:
                if e.kill_reason:
                    self._write_final(e, last, phase="Failed", reason=e.kill_reason,
                                      message="killed before start" if not last else "killed while backing off",
                                      restarts=restarts)
                    return
            if restarts:  # a new instance of each container: the previous one keeps its log (logs --previous)
                spec = _next_instance(spec, self.workspace.logs_dir, restarts)
            try:
                running = self.executor.start(spec)
            except LocalflowError as exc:
                self.store.record_event(manifest, "Failed", exc.message, type="Warning", component="kubelet")
                self._write_final(e, [], phase="Failed", reason="ContainerCannotRun", message=str(exc), restarts=restarts)
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
                self.store.record_event(manifest, "Started", f"Started container {c.name}", component="kubelet")
            self._patch_status(e, {
                "phase": "Running", **ip,
                "conditions": [_cond(t, "True", clock) for t in ("Initialized", "ContainersReady", "Ready")],
                "containerStatuses": [_container_running(c, restarts, clock, ids.get(c.name),
                                                         next((r for r in last if r.name == c.name), None))
                                      for c in spec.containers]})
            results = self._wait(running, deadline, e)
            with self._lock:
                killed = e.kill_reason
            failed = any(r.exit_code != 0 for r in results)
            restart = not killed and (restart_policy == "Always" or (restart_policy == "OnFailure" and failed))
            if not restart:
                break
            restarts += 1
            backoff = min(_BACKOFF_INITIAL_S * 2 ** (restarts - 1), _BACKOFF_MAX_S)
            self.store.record_event(manifest, "BackOff", f"Back-off {backoff:.0f}s restarting failed container",
                                    type="Warning", component="kubelet")
            self._patch_status(e, {"containerStatuses": [
                _container_waiting(c, r, restarts, clock) for c, r in zip(spec.containers, results)]})
            last = results
            clock.wait(e.wake, backoff)
        if killed == "DeadlineExceeded":
            self._write_final(e, results, phase="Failed", reason="DeadlineExceeded",
                              message="Pod was active on the node longer than the specified deadline", restarts=restarts)
            return
        phase = "Succeeded" if not failed and not killed else "Failed"
        self._write_final(e, results, phase=phase, reason=killed if phase == "Failed" and killed else None,
                          restarts=restarts)

    @staticmethod
    def _container_ids(running: RunningPod, spec: PodSpec, timeout: float = 1.0) -> dict[str, str]:
        """The containerIDs of the Pod's main containers, waiting briefly (real time: executors start
        asynchronously) until every one started or the Pod already ended."""
        import time

        deadline = time.monotonic() + timeout
        want = {c.name for c in spec.containers}
        while True:
            ids = running.container_ids()
            if want <= set(ids) or time.monotonic() >= deadline or running.wait(0) is not None:
                return ids
            time.sleep(0.001)

    def _wait(self, running: RunningPod, deadline: float | None, e: _Entry) -> list[ContainerResult]:
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

    def _write_final(self, e: _Entry, results: list[ContainerResult], *, phase: str, reason: str | None = None,
                     message: str | None = None, restarts: int = 0) -> None:
        clock = self.clock
        containers = (e.manifest.get("spec") or {}).get("containers") or []
        by_name = {r.name: r for r in results}
        statuses = []
        for c in containers:
            r = by_name.get(c["name"])
            statuses.append(_container_terminated(c, r, restarts, clock, reason, message))
        status = {"phase": phase, "containerStatuses": statuses,
                  "conditions": [_cond(t, "False", clock, "PodCompleted" if phase == "Succeeded" else "PodFailed")
                                 for t in ("ContainersReady", "Ready")]}
        if phase == "Failed":
            first_bad = next((r for r in results if r.exit_code != 0), None)
            status["reason"] = reason or (first_bad.reason if first_bad else "Error")
            status["message"] = message or (first_bad.message if first_bad and first_bad.message else
                                            _failure_message(results))
        self._patch_status(e, status)
        if phase == "Failed":
            self.store.record_event(e.manifest, status["reason"], status["message"], type="Warning", component="kubelet")

    def _finish_unstarted(self, e: _Entry, reason: str) -> None:
        try:
            self._patch_status(e, {"phase": "Failed", "reason": reason,
                                   "message": f"pod was never started: {reason}"})
        except LocalflowError:
            pass

    def _patch_status(self, e: _Entry, status: dict) -> None:
        """Merge ``status`` into the Pod's status; conditions are merged by type."""
        conds = status.pop("conditions", None)
        obj = self.store.get("Pod", e.name, e.namespace)
        cur = obj.get("status") or {}
        cur.update(status)
        if conds:
            existing = {c["type"]: c for c in cur.get("conditions") or []}
            for c in conds:
                old = existing.get(c["type"])
                if old and old.get("status") == c["status"]:
                    c["lastTransitionTime"] = old.get("lastTransitionTime", c["lastTransitionTime"])
                existing[c["type"]] = c
            cur["conditions"] = list(existing.values())
        self.store.update_status("Pod", e.name, cur, e.namespace)

    # -- Pod manifest -> PodSpec -------------------------------------------------------------
    def _image_entrypoint(self, c: dict, image: str, mapping, args, path: str):
        """``(command, args)`` of a container that sets no ``command``: the image's ENTRYPOINT (and
        its CMD when ``args`` is empty) from ``entrypoint:``/``args:`` in localflow.yaml, else from
        the local image when the executor can read it (docker). SpecError when neither knows it."""
        if mapping is not None and mapping.command is not None and (mapping.command or args or mapping.args):
            return mapping.command, args or mapping.args or []
        read = getattr(self.executor, "image_entrypoint", None)
        found = read(image, mapping) if read is not None else None
        if found is not None and (found[0] or found[1] or args):
            return found[0], args or found[1]
        if read is not None and found is None and args:
            return [], args  # the engine lacks the image: starting the container says so
        what = "sets no command, so the image's ENTRYPOINT would run" if args else "sets neither command nor args"
        raise SpecError(path, f"container {c.get('name')!r} {what}; localflow does not know it for image {image!r}",
                        fix=f"set command in the component, or add entrypoint: [...] for {image!r} under images: in "
                            "localflow.yaml, or run with --executor docker with the image present")

    def _resolve(self, pod: dict) -> PodSpec:
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        ns = meta.get("namespace", "default")
        uid = meta["uid"]
        pod_dir = str(self.workspace.pod_dir(uid))
        os.makedirs(pod_dir, exist_ok=True)
        volumes = resolve_volumes(spec, pod_dir, ns, store=self.store, workspace=self.workspace,
                                  host_paths=self.host_paths, path=f"Pod({meta['name']}).spec")
        logfiles.write_index(self.workspace.logs_dir, pod)
        path = f"Pod({meta['name']}).spec"

        def container(c: dict, kind: str, i: int) -> ContainerSpec:
            p = f"{path}.{kind}[{i}]"
            env = self._env(c, pod, f"{p}.env")
            image = c.get("image") or ""
            mapping = self.images.resolve(image)
            python = (meta.get("annotations") or {}).get(PYTHON_ANNOTATION)
            if python and kind == "containers":  # a packages venv (localflow/pipelines/packages.py)
                mapping = dataclasses.replace(mapping or ImageMapping(image=image), python=python)
            command, args = c.get("command"), c.get("args")
            if not command:
                command, args = self._image_entrypoint(c, image, mapping, args, f"{p}.command")
            command = [expand_vars(str(a), env) for a in (command or [])]
            args = [expand_vars(str(a), env) for a in (args or [])]
            mounts = container_mounts(c, volumes, env, p, expand_vars)
            check_mount_sources(mounts, self.workspace, self.host_paths, f"{p}.volumeMounts")
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            resources = Resources(
                cpu_request=parse_cpu(req.get("cpu", lim.get("cpu", 0)), f"{p}.resources.requests.cpu"),
                memory_request=parse_memory(req.get("memory", lim.get("memory", 0)), f"{p}.resources.requests.memory"),
                cpu_limit=parse_cpu(lim["cpu"], f"{p}.resources.limits.cpu") if "cpu" in lim else None,
                memory_limit=parse_memory(lim["memory"], f"{p}.resources.limits.memory") if "memory" in lim else None)
            return ContainerSpec(
                name=c["name"], image=image, argv=command + args, env=env, working_dir=c.get("workingDir"),
                mounts=mounts, resources=resources,
                ports=[int(pp["containerPort"]) for pp in c.get("ports") or [] if "containerPort" in pp],
                log_path=logfiles.prepare(self.workspace.logs_dir, uid, c["name"]), mapping=mapping)

        labels = {**(meta.get("labels") or {}), WORKSPACE_LABEL: self.workspace_id}
        network = (meta.get("annotations") or {}).get(NETWORK_ANNOTATION)
        return PodSpec(
            uid=uid, namespace=ns, name=meta["name"],
            containers=[container(c, "containers", i) for i, c in enumerate(spec.get("containers") or [])],
            init_containers=[container(c, "initContainers", i) for i, c in enumerate(spec.get("initContainers") or [])],
            labels=labels, hostname=spec.get("hostname"), subdomain=spec.get("subdomain"),
            network=f"{self.workspace_id}-{network}" if network else None, workdir=pod_dir,
            workspace_root=str(self.workspace.root))

    def _env(self, c: dict, pod: dict, path: str) -> dict[str, str]:
        env: dict[str, str] = {}
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        for i, item in enumerate(c.get("env") or []):
            name = item.get("name")
            if "value" in item:
                env[name] = expand_vars(str(item["value"]), env)
            elif "valueFrom" in item:
                env[name] = self._value_from(item["valueFrom"], pod, ns, f"{path}[{i}].valueFrom")
            else:
                env[name] = ""
        return env

    def _value_from(self, ref: dict, pod: dict, ns: str, path: str) -> str:
        if "fieldRef" in ref:
            field = ref["fieldRef"].get("fieldPath", "")
            meta = pod["metadata"]
            # Under dns addressing (docker) the Pod's IP is assigned when its container starts, after
            # its env is fixed: its hostname, which resolves to that IP on the Pod's network, stands in.
            pod_ip = "127.0.0.1" if self.addressing == "loopback" else ((pod.get("spec") or {}).get("hostname") or meta["name"])
            values = {"metadata.name": meta["name"], "metadata.namespace": ns, "metadata.uid": meta["uid"],
                      "status.podIP": pod_ip, "status.hostIP": "127.0.0.1", "spec.nodeName": NODE_NAME}
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field)
            if m:
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            if field not in values:
                raise SpecError(f"{path}.fieldRef.fieldPath", f"unsupported field {field!r}",
                                fix=f"use one of {', '.join(values)}")
            return values[field]
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in ref:
                r = ref[key]
                try:
                    obj = self.store.get(kind, r["name"], ns)
                except LocalflowError:
                    if r.get("optional"):
                        return ""
                    raise SpecError(f"{path}.{key}", f"{kind} {r['name']!r} does not exist in namespace {ns!r}",
                                    fix=f"create it with `localflow apply -f {kind.lower()}.yaml` (or put it in the job's YAML)") from None
                data = dict(obj.get("data") or {})
                if kind == "Secret":
                    import base64

                    data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                    data.update(obj.get("stringData") or {})
                if r["key"] not in data:
                    if r.get("optional"):
                        return ""
                    raise SpecError(f"{path}.{key}.key", f"{kind} {r['name']!r} has no key {r['key']!r}")
                return str(data[r["key"]])
        raise SpecError(path, "unsupported valueFrom", fix="use fieldRef, configMapKeyRef or secretKeyRef")


# -- status helpers -------------------------------------------------------------------------------
def _kill_quietly(running: RunningPod, reason: str) -> None:
    """``running.kill(reason)`` on a thread of its own: a process already gone (or an engine that
    does not answer) is no traceback; the kubelet thread records the Pod's end either way."""
    try:
        running.kill(reason)
    except Exception:  # noqa: BLE001
        pass


def _next_instance(spec: PodSpec, logs_dir, instance: int) -> PodSpec:
    """``spec`` with every container logging to the files of instance ``instance`` (its restartCount)."""
    def moved(cs: list[ContainerSpec]) -> list[ContainerSpec]:
        return [dataclasses.replace(c, log_path=logfiles.prepare(logs_dir, spec.uid, c.name, instance)) for c in cs]

    return dataclasses.replace(spec, containers=moved(spec.containers), init_containers=moved(spec.init_containers))


def _validate_pod(pod: dict) -> None:
    meta = pod.get("metadata") or {}
    if not meta.get("name"):
        raise SpecError("Pod.metadata.name", "required")
    containers = (pod.get("spec") or {}).get("containers")
    if not containers:
        raise SpecError(f"Pod({meta['name']}).spec.containers", "a Pod needs at least one container")
    for i, c in enumerate(containers):
        if not c.get("name"):
            raise SpecError(f"Pod({meta['name']}).spec.containers[{i}].name", "required")


def _with_pending_status(pod: dict, clock: Clock) -> dict:
    obj = {"apiVersion": "v1", "kind": "Pod", **{k: v for k, v in pod.items() if k not in ("apiVersion", "kind")}}
    obj["spec"] = dict(obj.get("spec") or {})
    obj["spec"].setdefault("nodeName", NODE_NAME)
    obj["status"] = {"phase": "Pending", "qosClass": _qos(obj)}
    return obj


def _qos(pod: dict) -> str:
    cs = (pod.get("spec") or {}).get("containers") or []
    reqs = [((c.get("resources") or {}).get("requests") or {}, (c.get("resources") or {}).get("limits") or {}) for c in cs]
    if all(not r and not lim for r, lim in reqs):
        return "BestEffort"
    if all(lim.get("cpu") and lim.get("memory") and r.get("cpu", lim["cpu"]) == lim["cpu"]
           and r.get("memory", lim["memory"]) == lim["memory"] for r, lim in reqs):
        return "Guaranteed"
    return "Burstable"


def _cond(type_: str, status: str, clock: Clock, reason: str | None = None, message: str | None = None) -> dict:
    now = clock.rfc3339()
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _container_running(c: ContainerSpec, restarts: int, clock: Clock, container_id: str | None = None,
                       previous: ContainerResult | None = None) -> dict:
    status = {"name": c.name, "image": c.image, "ready": True, "started": True, "restartCount": restarts,
              "state": {"running": {"startedAt": clock.rfc3339()}}}
    if container_id:
        status["containerID"] = container_id
    if previous is not None:  # kubelet keeps the previous run's end as lastState
        status["lastState"] = {"terminated": _terminated(previous, clock)}
    return status


def _container_waiting(c: ContainerSpec, r: ContainerResult, restarts: int, clock: Clock) -> dict:
    return {"name": c.name, "image": c.image, "ready": False, "started": False, "restartCount": restarts,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"back-off restarting failed container {c.name}"}},
            "lastState": {"terminated": _terminated(r, clock)}}


def _terminated(r: ContainerResult, clock: Clock) -> dict:
    t = {"exitCode": r.exit_code, "reason": r.reason,
         "startedAt": clock.rfc3339(r.started_at) if r.started_at else None,
         "finishedAt": clock.rfc3339(r.finished_at) if r.finished_at else clock.rfc3339()}
    if r.message:
        t["message"] = r.message
    return t


def _container_terminated(c: dict, r: ContainerResult | None, restarts: int, clock: Clock,
                          reason: str | None, message: str | None) -> dict:
    if r is None:
        reason = reason or "ContainerCannotRun"
        term = {"exitCode": 127 if reason in ("ContainerCannotRun", "CreateContainerConfigError", "Error") else 137,
                "reason": reason,
                "finishedAt": clock.rfc3339()}
        if message:
            term["message"] = message
    else:
        term = _terminated(r, clock)
    return {"name": c["name"], "image": c.get("image", ""), "ready": False, "started": False,
            "restartCount": restarts, "state": {"terminated": term}}


def _failure_message(results: Iterable[ContainerResult]) -> str:
    bad = [r for r in results if r.exit_code != 0]
    if not bad:
        return "pod failed"
    return "; ".join(f"container {r.name} exited with code {r.exit_code} ({r.reason})" for r in bad)
