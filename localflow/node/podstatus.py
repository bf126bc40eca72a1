"""Every Pod status transition the node writes, in one module: pure functions from what happened
to the status patch kubelet (or kube-scheduler) would write.

``Pending`` (created, :func:`pending`) → ``PodScheduled`` (:func:`scheduled`, or
:func:`unschedulable` while it waits) → ``Running`` (:func:`running`, once per container
instance; ``Ready`` flips with probe results, :func:`probed`) → ``CrashLoopBackOff`` waits between restarts (:func:`backing_off`) → ``Succeeded`` |
``Failed`` (:func:`final`, :func:`never_started`). Patches are merged into the stored status with
:func:`merge` (conditions by type, keeping ``lastTransitionTime`` when a condition's status did
not change, as kubelet's ``pkg/kubelet/status/status_manager.go`` does).

Shapes follow kubernetes ``pkg/kubelet/kubelet_pods.go`` (``generateAPIPodStatus``,
``convertToAPIContainerStatuses``) and kwok's default Pod stages (``kustomize/stage/pod/general``).
Every timestamp comes from the injected :class:`~localflow.clock.Clock` (RFC 3339, seconds), so a
FakeClock gives golden output (``tests/test_podstatus.py``).
"""
from __future__ import annotations

from typing import Iterable

from localflow.clock import Clock
from localflow.executors.base import ContainerResult, ContainerSpec

__all__ = ["pending", "qos", "condition", "scheduled", "unschedulable", "running", "backing_off", "final",
           "never_started", "merge", "failure_message", "finished", "readiness_conditions", "probed"]


def qos(pod: dict) -> str:
    """The Pod's ``status.qosClass``: ``BestEffort`` (no requests or limits), ``Guaranteed`` (every
    container limits cpu and memory and requests equal limits) or ``Burstable`` (kubernetes
    ``pkg/apis/core/v1/helper/qos/qos.go``)."""
    cs = (pod.get("spec") or {}).get("containers") or []
    reqs = [((c.get("resources") or {}).get("requests") or {}, (c.get("resources") or {}).get("limits") or {}) for c in cs]
    if all(not r and not lim for r, lim in reqs):
        return "BestEffort"
    if all(lim.get("cpu") and lim.get("memory") and r.get("cpu", lim["cpu"]) == lim["cpu"]
           and r.get("memory", lim["memory"]) == lim["memory"] for r, lim in reqs):
        return "Guaranteed"
    return "Burstable"


def pending(pod: dict) -> dict:
    """The status of a just-created Pod: ``{"phase": "Pending", "qosClass": ...}``."""
    return {"phase": "Pending", "qosClass": qos(pod)}


def finished(pod: dict) -> bool:
    """True when the Pod's phase is ``Succeeded`` or ``Failed`` (nothing more will run)."""
    return ((pod.get("status") or {}).get("phase")) in ("Succeeded", "Failed")


def condition(type_: str, status: str, clock: Clock, reason: str | None = None, message: str | None = None) -> dict:
    """A Pod condition (``type``, ``status`` ``True|False``, ``lastProbeTime`` null,
    ``lastTransitionTime`` now, optional ``reason``/``message``)."""
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": clock.rfc3339()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def unschedulable(message: str, clock: Clock) -> dict:
    """kube-scheduler's patch for a Pod that does not fit: ``PodScheduled=False/Unschedulable``
    with ``message`` (``0/1 nodes are available: Insufficient cpu.``)."""
    return {"conditions": [condition("PodScheduled", "False", clock, "Unschedulable", message)]}


def scheduled(clock: Clock, host_ip: str = "127.0.0.1") -> dict:
    """The patch once the Pod is bound and its kubelet takes it: ``PodScheduled=True``,
    ``startTime``, ``hostIP``."""
    return {"conditions": [condition("PodScheduled", "True", clock)], "startTime": clock.rfc3339(), "hostIP": host_ip}


def terminated(r: ContainerResult, clock: Clock) -> dict:
    """``state.terminated`` of a container that ended with result ``r``."""
    t = {"exitCode": r.exit_code, "reason": r.reason,
         "startedAt": clock.rfc3339(r.started_at) if r.started_at else None,
         "finishedAt": clock.rfc3339(r.finished_at) if r.finished_at else clock.rfc3339()}
    if r.message:
        t["message"] = r.message
    return t


def container_running(c: ContainerSpec, restarts: int, clock: Clock, container_id: str | None = None,
                      previous: ContainerResult | None = None, ready: bool = True, started: bool = True) -> dict:
    """A ``containerStatuses`` entry of a started container (``ready``/``started``: False while its
    readiness/startup probe has not succeeded yet; the previous instance's end as ``lastState``
    after a restart)."""
    # imageID: "" as the kubelet reports a container whose image has no pulled digest (nothing is pulled here)
    status = {"name": c.name, "image": c.image, "imageID": "", "ready": ready and started, "started": started, "restartCount": restarts,
              "state": {"running": {"startedAt": clock.rfc3339()}}}
    if container_id:
        status["containerID"] = container_id
    if previous is not None:  # kubelet keeps the previous run's end as lastState
        status["lastState"] = {"terminated": terminated(previous, clock)}
    return status


def running(containers: list[ContainerSpec], restarts: int, clock: Clock, ids: dict[str, str],
            last: list[ContainerResult], ip: dict, unready: Iterable[str] = (), unstarted: Iterable[str] = ()) -> dict:
    """The patch once a Pod's containers started: phase ``Running``, ``ip`` (``podIP``/``podIPs``
    or empty), ``Initialized`` True, ``ContainersReady``/``Ready`` True unless a container is in
    ``unready`` or ``unstarted`` (it has a readiness or startup probe that has not succeeded yet:
    :mod:`.probes`), and one running status per container (``ids``: containerID by name; ``last``:
    the previous instance's results)."""
    unready, unstarted = set(unready), set(unstarted)
    not_ready = [c.name for c in containers if c.name in unready or c.name in unstarted]
    return {"phase": "Running", **ip,
            "conditions": [condition("Initialized", "True", clock), *readiness_conditions(not_ready, clock)],
            "containerStatuses": [container_running(c, restarts, clock, ids.get(c.name),
                                                    next((r for r in last if r.name == c.name), None),
                                                    ready=c.name not in unready, started=c.name not in unstarted)
                                  for c in containers]}


def readiness_conditions(not_ready: list[str], clock: Clock) -> list[dict]:
    """``ContainersReady`` and ``Ready``: True when ``not_ready`` is empty, else False with reason
    ``ContainersNotReady`` and ``containers with unready status: [a b]`` (kubernetes
    ``pkg/kubelet/status/generate.go`` ``GenerateContainersReadyCondition``/``GeneratePodReadyCondition``)."""
    if not not_ready:
        return [condition(t, "True", clock) for t in ("ContainersReady", "Ready")]
    msg = f"containers with unready status: [{' '.join(not_ready)}]"
    return [condition(t, "False", clock, "ContainersNotReady", msg) for t in ("ContainersReady", "Ready")]


def probed(current: dict, ready: dict[str, bool], started: dict[str, bool], clock: Clock) -> dict:
    """The patch when a probe changed a running container's ``ready``/``started``
    (:mod:`.probes`): the ``current`` stored status's ``containerStatuses`` with those flags
    (``ready`` only once ``started``) and ``ContainersReady``/``Ready`` recomputed over them."""
    statuses = []
    for cs in (current or {}).get("containerStatuses") or []:
        cs = dict(cs)
        name = cs.get("name")
        if "running" in (cs.get("state") or {}):
            cs["started"] = started.get(name, cs.get("started", True))
            cs["ready"] = bool(cs["started"] and ready.get(name, cs.get("ready", True)))
        statuses.append(cs)
    not_ready = [cs["name"] for cs in statuses if not cs.get("ready")]
    return {"containerStatuses": statuses, "conditions": readiness_conditions(not_ready, clock)}


def backing_off(containers: list[ContainerSpec], results: list[ContainerResult], restarts: int, clock: Clock) -> dict:
    """The patch while kubelet waits to restart the containers: each ``waiting: CrashLoopBackOff``
    with the ended instance as ``lastState``."""
    return {"containerStatuses": [
        {"name": c.name, "image": c.image, "imageID": "", "ready": False, "started": False, "restartCount": restarts,
         "state": {"waiting": {"reason": "CrashLoopBackOff", "message": f"back-off restarting failed container {c.name}"}},
         "lastState": {"terminated": terminated(r, clock)}}
        for c, r in zip(containers, results)]}


def _container_terminated(c: dict, r: ContainerResult | None, restarts: int, clock: Clock,
                          reason: str | None, message: str | None) -> dict:
    if r is None:
        reason = reason or "ContainerCannotRun"
        term = {"exitCode": 127 if reason in ("ContainerCannotRun", "CreateContainerConfigError", "Error") else 137,
                "reason": reason, "finishedAt": clock.rfc3339()}
        if message:
            term["message"] = message
    else:
        term = terminated(r, clock)
    return {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
            "restartCount": restarts, "state": {"terminated": term}}


def failure_message(results: Iterable[ContainerResult]) -> str:
    """``container X exited with code N (Reason); ...`` for the failed results (``pod failed`` if none)."""
    bad = [r for r in results if r.exit_code != 0]
    if not bad:
        return "pod failed"
    return "; ".join(f"container {r.name} exited with code {r.exit_code} ({r.reason})" for r in bad)


def final(pod: dict, results: list[ContainerResult], phase: str, clock: Clock, reason: str | None = None,
          message: str | None = None, restarts: int = 0) -> dict:
    """The patch of a Pod that ended: ``phase`` ``Succeeded``/``Failed``, a terminated status per
    container of the manifest ``pod`` (a container without a result never ran: exit 127 for
    ``ContainerCannotRun``/``CreateContainerConfigError``/``Error``, else 137), ``ContainersReady``
    and ``Ready`` False (``PodCompleted``/``PodFailed``); a Failed Pod gets ``reason`` (default:
    the first failed container's) and ``message``."""
    containers = (pod.get("spec") or {}).get("containers") or []
    by_name = {r.name: r for r in results}
    status = {"phase": phase,
              "containerStatuses": [_container_terminated(c, by_name.get(c["name"]), restarts, clock, reason, message)
                                    for c in containers],
              "conditions": [condition(t, "False", clock, "PodCompleted" if phase == "Succeeded" else "PodFailed")
                             for t in ("ContainersReady", "Ready")]}
    if phase == "Failed":
        first_bad = next((r for r in results if r.exit_code != 0), None)
        status["reason"] = reason or (first_bad.reason if first_bad else "Error")
        status["message"] = message or (first_bad.message if first_bad and first_bad.message else failure_message(results))
    return status


def never_started(reason: str) -> dict:
    """The patch of a Pod dropped before it ran (canceled while Pending): ``Failed`` with ``reason``."""
    return {"phase": "Failed", "reason": reason, "message": f"pod was never started: {reason}"}


def merge(current: dict, patch: dict) -> dict:
    """``current`` status updated with ``patch`` (a new dict; ``patch`` is not changed): top-level
    keys replace, conditions merge by type and keep their ``lastTransitionTime`` when their status
    is unchanged."""
    patch = dict(patch)
    conds = patch.pop("conditions", None)
    cur = dict(current or {})
    cur.update(patch)
    if conds:
        existing = {c["type"]: c for c in cur.get("conditions") or []}
        for c in conds:
            c = dict(c)
            old = existing.get(c["type"])
            if old and old.get("status") == c["status"]:
                c["lastTransitionTime"] = old.get("lastTransitionTime", c["lastTransitionTime"])
            existing[c["type"]] = c
        cur["conditions"] = list(existing.values())
    return cur
