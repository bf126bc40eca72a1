"""A node starting again: Pods left bound by a localflow process that is gone.

Each Pod the node binds carries the annotation ``localflow.dev/kubelet: <pid>@<start time>``, the
process whose kubelet runs it (:meth:`localflow.node.kubelet.Kubelet.bind`). When that process
dies without ending its Pods (``kill -9`` of ``localflow serve``, a crash), the store still says
Running while nobody runs them (their processes die with it through the executor's watchdog,
``executors/lifetime.py``, or live on when that died too). :func:`fail_orphaned_pods` -- called by
``localflow serve`` as it starts, before its controllers run -- ends every such Pod: the
container processes still running are killed (their process groups; a pid is trusted only when
its process started before the container was recorded running) and the Pod is written ``Failed``,
reason ``Orphaned`` (as ``localflow gc`` writes the Pods of a dead run), every container
terminated, with a Warning Event. Controllers then act as they do for any failed Pod (a
ReplicaSet replaces it, a Job counts the failure).

Upstream a restarted kubelet re-attaches to its containers through the container runtime and
restarts them per ``restartPolicy`` (``pkg/kubelet/kubelet.go`` ``syncPod`` on startup); a
localflow process cannot re-attach to the processes of another, so their Pods end Failed with the
reason instead. Pods without the annotation (bound by an older localflow) and Pods whose kubelet
lives are left alone.
"""
from __future__ import annotations

import calendar
import os
import signal
import time

import psutil

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.errors import LocalflowError

from . import podstatus

__all__ = ["KUBELET_ANNOTATION", "kubelet_id", "kubelet_alive", "fail_orphaned_pods", "ORPHANED_MESSAGE"]

#: Pod annotation: the localflow process (``<pid>@<start time>``) whose kubelet bound and runs the Pod.
KUBELET_ANNOTATION = "localflow.dev/kubelet"
ORPHANED_MESSAGE = "the process that ran this Pod is gone ({who}); its node restarted"


def kubelet_id(pid: int | None = None) -> str:
    """``"<pid>@<start time, epoch seconds>"`` of process ``pid`` (default: this one)."""
    p = psutil.Process(pid)
    return f"{p.pid}@{p.create_time():.2f}"


def kubelet_alive(value: str | None) -> bool:
    """Whether the process named by a :data:`KUBELET_ANNOTATION` value runs (same start time)."""
    try:
        pid, started = str(value).split("@")
        p = psutil.Process(int(pid))
        return abs(p.create_time() - float(started)) < 0.5 and p.status() != psutil.STATUS_ZOMBIE
    except (ValueError, psutil.Error):
        return False


def _kill_leftovers(pod: dict) -> list[int]:
    """SIGKILL the process groups of the Pod's containers that still run (``process://<pid>``)."""
    killed = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        cid = cs.get("containerID") or ""
        started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
        if not cid.startswith("process://") or not started:
            continue
        try:
            pid = int(cid[len("process://"):])
            proc = psutil.Process(pid)
            if proc.create_time() > calendar.timegm(time.strptime(started, "%Y-%m-%dT%H:%M:%SZ")) + 2:
                continue  # the pid was reused by a later process
            os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        except (ValueError, psutil.Error, ProcessLookupError, PermissionError):
            continue
    return killed


def fail_orphaned_pods(store, clock: Clock = SYSTEM_CLOCK) -> list[dict]:
    """End every Pod bound to this machine whose kubelet process is gone (see the module
    docstring); returns the Pods written Failed. Never raises for one Pod (it is skipped)."""
    me = kubelet_id()
    ended = []
    for pod in store.list("Pod", None):
        meta, spec = pod["metadata"], pod.get("spec") or {}
        who = (meta.get("annotations") or {}).get(KUBELET_ANNOTATION)
        if not who or who == me or not spec.get("nodeName") or podstatus.finished(pod) or kubelet_alive(who):
            continue
        _kill_leftovers(pod)
        message = ORPHANED_MESSAGE.format(who=f"pid {who.split('@')[0]}")
        patch = podstatus.final(pod, [], "Failed", clock, reason="Orphaned", message=message)
        ns = meta.get("namespace") or "default"
        try:
            written = store.update_status("Pod", meta["name"], podstatus.merge(pod.get("status") or {}, patch), ns)
            store.record_event(written, "Orphaned", message, type="Warning", component="kubelet")
        except LocalflowError:
            continue  # deleted meanwhile
        ended.append(written)
    return ended
