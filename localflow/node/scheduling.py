"""kube-scheduler for one node: admit Pods by their requests, gangs together, at most ``maxPods``.

Pods are admitted in arrival order whenever their cpu/memory (and ``nvidia.com/gpu``) requests fit
what is left of the node, like kube-scheduler's ``NodeResourcesFit`` filter (kubernetes
``pkg/scheduler/framework/plugins/noderesources/fit.go``); a gang (scheduler-plugins
``coscheduling``, used by the training operator) is admitted whole or not at all; the node runs at
most ``max_pods`` Pods (kubelet's ``maxPods``, default 110). A Pod that waits gets the reasons
kube-scheduler writes: ``0/1 nodes are available: Insufficient cpu, Too many pods.``

:class:`Admission` is the queue and the accounting; it is not thread-safe: the node calls it under
its lock. What it admits the node binds and hands to the kubelet (:mod:`.kubelet`).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

import psutil

from localflow.errors import SpecError, Unschedulable
from localflow.quantity import format_cpu, format_memory, parse_cpu, parse_memory

__all__ = ["Capacity", "pod_requests", "pod_gpus", "validate_pod", "Admission", "DEFAULT_MAX_PODS", "TOO_MANY_PODS",
           "GPU_RESOURCE", "detect_gpus"]

DEFAULT_MAX_PODS = 110  # kubelet's --max-pods default
TOO_MANY_PODS = "0/1 nodes are available: Too many pods."
GPU_RESOURCE = "nvidia.com/gpu"


@dataclass
class Capacity:
    """Allocatable resources of this node: ``cpu`` in cores, ``memory`` in bytes, ``gpus`` the
    number of ``nvidia.com/gpu`` devices (``None``: detect them, :func:`detect_gpus`)."""

    cpu: float
    memory: int
    gpus: int | None = None

    @classmethod
    def detect(cls) -> "Capacity":
        """The machine's logical cpus and total memory (psutil); GPUs are set by the node."""
        return cls(cpu=float(psutil.cpu_count() or 1), memory=int(psutil.virtual_memory().total))


def detect_gpus() -> int:
    """The node's ``nvidia.com/gpu`` count, as the NVIDIA device plugin would advertise it:
    ``LOCALFLOW_GPUS`` (a whole number) when set, else the ``GPU n:`` lines of ``nvidia-smi -L``,
    else 0."""
    override = os.environ.get("LOCALFLOW_GPUS", "").strip()
    if override.isdigit():
        return int(override)
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


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


def pod_gpus(pod: dict, path: str = "Pod.spec") -> int:
    """How many ``nvidia.com/gpu`` devices a Pod needs: the sum over containers, max with each init
    container; an extended resource's request equals its limit, so either may give it. Raises
    :class:`SpecError` for a count that is not a whole number."""
    spec = pod.get("spec") or {}

    def one(c: dict, p: str) -> int:
        res = c.get("resources") or {}
        for section in ("limits", "requests"):
            value = (res.get(section) or {}).get(GPU_RESOURCE)
            if value is not None:
                try:
                    n = int(str(value))
                except ValueError:
                    raise SpecError(f"{p}.resources.{section}.{GPU_RESOURCE}", f"must be a whole number (got {value!r})",
                                    fix="ask for whole GPUs, e.g. 1") from None
                if n < 0:
                    raise SpecError(f"{p}.resources.{section}.{GPU_RESOURCE}", f"must not be negative (got {value!r})")
                return n
        return 0

    total = sum(one(c, f"{path}.containers[{i}]") for i, c in enumerate(spec.get("containers") or []))
    for i, c in enumerate(spec.get("initContainers") or []):
        total = max(total, one(c, f"{path}.initContainers[{i}]"))
    return total


def validate_pod(pod: dict) -> None:
    """The minimum a Pod needs to be scheduled: ``metadata.name`` and named containers; SpecError."""
    meta = pod.get("metadata") or {}
    if not meta.get("name"):
        raise SpecError("Pod.metadata.name", "required")
    containers = (pod.get("spec") or {}).get("containers")
    if not containers:
        raise SpecError(f"Pod({meta['name']}).spec.containers", "a Pod needs at least one container")
    for i, c in enumerate(containers):
        if not c.get("name"):
            raise SpecError(f"Pod({meta['name']}).spec.containers[{i}].name", "required")


class Admission:
    """The node's scheduling queue. Entries are objects with ``cpu``, ``memory``, ``gpus``,
    ``gang`` (None or a name), ``reported_unschedulable`` and ``devices`` (see
    :class:`~localflow.node.kubelet.PodEntry`). ``capacity``: the node's allocatable resources;
    ``max_pods``: Pods that may run at once; ``gpu_ids``: the device ids to hand out (default
    ``"0"`` … ``str(capacity.gpus - 1)``)."""

    def __init__(self, capacity: Capacity, max_pods: int, gpu_ids: list[str] | None = None):
        self.capacity = capacity
        self.max_pods = int(max_pods)
        self.pending: list = []
        self.active = 0
        self.used_cpu = 0.0
        self.used_mem = 0
        self.free_gpus = list(gpu_ids if gpu_ids is not None else [str(i) for i in range(capacity.gpus or 0)])

    def check_pod_count(self, count: int, what: str, path: str, fix: str = "lower the number of replicas") -> None:
        """Raise :class:`Unschedulable` when ``count`` Pods that must run together can never run at
        once on this node: more than ``max_pods``."""
        if count > self.max_pods:
            raise Unschedulable(path, f"the {what} needs {count} Pods running at once but this node runs at most "
                                      f"{self.max_pods} (maxPods): {TOO_MANY_PODS[:-1]}",
                                fix=f"{fix}, or raise node.maxPods in localflow.yaml")

    def check_fits_node(self, first_name: str, count: int, gang: str | None, cpu: float, mem: int, gpus: int = 0) -> None:
        """Raise :class:`Unschedulable` when a Pod (or a gang of ``count``) requesting ``cpu`` cores,
        ``mem`` bytes and ``gpus`` devices in total could never fit the whole node."""
        short = self.never_fits(cpu, mem, gpus)
        if not short:
            return
        what = "Pod" if count == 1 else f"gang {gang!r} of {count} Pods"
        if short == GPU_RESOURCE:
            raise Unschedulable(
                f"Pod({first_name}).spec.containers[].resources.limits.{GPU_RESOURCE}",
                f"the {what} requests {gpus} {GPU_RESOURCE} but this node has {self.capacity.gpus}: "
                f"0/1 nodes are available: Insufficient {GPU_RESOURCE}.",
                fix="lower the GPU count, or declare the node's GPUs as node: {gpus: N} in localflow.yaml")
        raise Unschedulable(
            f"Pod({first_name}).spec.containers[].resources.requests",
            f"the {what} requests cpu {format_cpu(cpu)}, memory {format_memory(mem)} but this "
            f"machine has cpu {format_cpu(self.capacity.cpu)}, memory {format_memory(self.capacity.memory)}: "
            f"0/1 nodes are available: Insufficient {short}",
            fix="lower the requests or the number of replicas")

    def never_fits(self, cpu: float, mem: int, gpus: int = 0) -> str | None:
        """The first resource (``cpu``, ``memory``, ``nvidia.com/gpu``) the whole node lacks, or None."""
        if cpu > self.capacity.cpu + 1e-9:
            return "cpu"
        if mem > self.capacity.memory:
            return "memory"
        if gpus > (self.capacity.gpus or 0):
            return GPU_RESOURCE
        return None

    def add(self, entry) -> None:
        """Queue ``entry`` (admitted by the next :meth:`admit`)."""
        self.pending.append(entry)

    def remove(self, entry) -> bool:
        """Drop a pending ``entry``; False when it was not pending."""
        try:
            self.pending.remove(entry)
            return True
        except ValueError:
            return False

    def release(self, entry) -> None:
        """Give back what an admitted ``entry`` held (it ended)."""
        self.active -= 1
        self.used_cpu -= entry.cpu
        self.used_mem -= entry.memory
        self.free_gpus = sorted(self.free_gpus + list(entry.devices), key=_device_order)
        entry.devices = []

    def admit(self) -> tuple[list, list]:
        """Admit what fits, in order: ``(admitted, waiting)`` where ``admitted`` entries now hold
        their resources (and ``devices``) and ``waiting`` is ``[(entry, message)]`` for entries that
        do not fit and were not reported before (each is reported once)."""
        admitted, waiting = [], []
        free_cpu = self.capacity.cpu - self.used_cpu
        free_mem = self.capacity.memory - self.used_mem
        i = 0
        while i < len(self.pending):
            entry = self.pending[i]
            group = [e for e in self.pending if entry.gang is not None and e.gang == entry.gang] or [entry]
            cpu = sum(e.cpu for e in group)
            mem = sum(e.memory for e in group)
            gpus = sum(getattr(e, "gpus", 0) for e in group)
            slots = self.active + len(group) <= self.max_pods
            if cpu <= free_cpu + 1e-9 and mem <= free_mem and gpus <= len(self.free_gpus) and slots:
                for e in group:
                    self.pending.remove(e)
                    n = getattr(e, "gpus", 0)
                    e.devices, self.free_gpus = self.free_gpus[:n], self.free_gpus[n:]
                    self.active += 1
                    self.used_cpu += e.cpu
                    self.used_mem += e.memory
                    admitted.append(e)
                free_cpu -= cpu
                free_mem -= mem
                continue  # list shrank: same index is the next Pod
            short = []
            if cpu > free_cpu + 1e-9:
                short.append("Insufficient cpu")
            if mem > free_mem:
                short.append("Insufficient memory")
            if gpus > len(self.free_gpus):
                short.append(f"Insufficient {GPU_RESOURCE}")
            if not slots:
                short.append("Too many pods")
            msg = f"0/1 nodes are available: {', '.join(short)}."
            for e in group:
                if not e.reported_unschedulable:
                    e.reported_unschedulable = True
                    waiting.append((e, msg))
            i += len(group) if entry.gang is not None else 1
        return admitted, waiting


def _device_order(dev: str):
    return (0, int(dev)) if dev.isdigit() else (1, dev)
