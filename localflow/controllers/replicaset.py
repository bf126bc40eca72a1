"""The ``apps/v1 ReplicaSet`` controller: a reconciler on the controller manager.

Follows kubernetes ``pkg/controller/replicaset/replica_set.go`` (``syncReplicaSet``,
``manageReplicas``, ``claimPods`` through ``pkg/controller/controller_ref_manager.go``
``PodControllerRefManager.ClaimPods``, ``getPodsToDelete`` with ``pkg/controller/controller_utils.go``
``ActivePodsWithRanks``) and ``replica_set_utils.go`` (``calculateStatus``):

- the ReplicaSet's Pods are the non-terminating Pods of its namespace that it controls
  (``ownerReferences`` with ``controller: true``) plus orphans matching its selector, which it
  adopts (patching in its controller reference); a Pod it controls whose labels no longer match
  is released (the reference removed);
- fewer active Pods than ``spec.replicas``: creates the missing ones from the template (named
  ``<replicaset>-<5 random>``); more: deletes the surplus in the order of ``getPodsToDelete``
  (:func:`deletion_order`: unscheduled, pending, not ready, cheaper to delete, newer first);
- a Pod that ended (Failed/Succeeded: its process was killed, it failed to start) is deleted and
  replaced -- its Pods have ``restartPolicy: Always``, so containers that exit are restarted in
  place by the node and the Pod stays Running; the first replacement in a row is immediate, the
  next ones wait 10 s doubling to 5 min (the ended Pod stays visible meanwhile), so a template
  that cannot start does not spin (upstream relies on kubelet's crash-loop backoff here);
- ``status``: ``replicas`` (active Pods), ``fullyLabeledReplicas``, ``readyReplicas`` (Ready),
  ``availableReplicas`` (Ready for at least ``minReadySeconds``, on the injected clock; the
  reconciler requeues itself for the next Pod to become available), ``terminatingReplicas`` (Pods
  being deleted whose process still runs, as Kubernetes 1.33+ writes it: the Deployment's Recreate
  waits on it), ``observedGeneration``.

Pods are created with :meth:`localflow.scheduler.Scheduler.submit` (as the Job controller does) and
stopped with :meth:`~localflow.scheduler.Scheduler.kill_pod`; a Pod being deleted carries the
annotation ``localflow.dev/replicaset-deleted`` and is deleted from the store once it ended.
When the store's ownerReference cascade deletes the Pods (``localflow delete replicaset/...`` or
deleting its Deployment), the node stops their processes, as kubelet does for a deleted Pod: its
store watch sees each DELETED Pod (:mod:`localflow.node.node`), whichever process deleted it.
"""
from __future__ import annotations

import copy
import threading

from localflow.clock import SYSTEM_CLOCK, Clock, parse_rfc3339
from localflow.errors import LocalflowError, NotFound, SpecError
from localflow.fakes.objectmeta import generate_name
from localflow.fakes.selectors import matches
from localflow.specs.apps import load_replicaset

__all__ = ["ReplicaSetReconciler", "DELETED_ANNOTATION", "pod_available", "pod_ready", "deletion_order"]

DELETED_ANNOTATION = "localflow.dev/replicaset-deleted"
COMPONENT = "replicaset-controller"
REPLACE_BACKOFF_S = 10.0  # the second replacement in a row waits this long, doubling (kubelet's crash-loop backoff)
MAX_REPLACE_BACKOFF_S = 300.0


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _ready_since(pod: dict) -> float | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return parse_rfc3339(c.get("lastTransitionTime")) or 0.0
    return None


def pod_ready(pod: dict) -> bool:
    """Whether ``pod`` is Running with its ``Ready`` condition True."""
    return _phase(pod) == "Running" and _ready_since(pod) is not None


def pod_available(pod: dict, min_ready_s: float, now_s: float) -> bool:
    """``podutil.IsPodAvailable``: Ready for at least ``min_ready_s`` seconds at ``now_s``."""
    since = _ready_since(pod) if _phase(pod) == "Running" else None
    return since is not None and (min_ready_s <= 0 or since + min_ready_s <= now_s)


DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pod: dict) -> tuple:
    """Sort key of the Pods a ReplicaSet scales down, first deleted first: kubernetes
    ``pkg/controller/controller_utils.go`` ``ActivePodsWithRanks.Less`` -- unassigned before
    assigned, Pending < Unknown < Running, not ready before ready, lower
    ``controller.kubernetes.io/pod-deletion-cost`` first, ready for less time first, more
    container restarts first, newer first. (The rank of Pods doubled up on one node is the same
    for every Pod here: there is one node. Upstream's ``LogarithmicScaleDown`` compares ready and
    creation times in powers-of-two buckets; these compare them exactly.)"""
    meta, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    try:
        cost = int((meta.get("annotations") or {}).get(DELETION_COST_ANNOTATION, 0))
    except (TypeError, ValueError):
        cost = 0
    ready = pod_ready(pod)
    restarts = max((int(c.get("restartCount") or 0) for c in st.get("containerStatuses") or []), default=0)
    return (bool(spec.get("nodeName")), _PHASE_ORDINAL.get(_phase(pod), 2), ready, cost,
            -(_ready_since(pod) or 0.0) if ready else 0.0, -restarts,
            -(parse_rfc3339(meta.get("creationTimestamp")) or 0.0))


def _controller_ref(pod: dict) -> dict | None:
    return next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)


class ReplicaSetReconciler:
    """Reconciles ``apps/v1`` ReplicaSets (see the module docstring); register it on a
    :class:`~localflow.controllers.manager.ControllerManager`.

    ``store``: the object store; ``scheduler``: creates and kills the Pods; ``clock``: times
    ``minReadySeconds``. ``reconcile(key)`` returns the seconds until a Pod becomes available, or None.
    """

    kind = "ReplicaSet"
    owns = ("Pod",)

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK, *, replace_backoff: float = REPLACE_BACKOFF_S,
                 max_replace_backoff: float = MAX_REPLACE_BACKOFF_S):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self._lock = threading.Lock()
        self._failures: dict[tuple[str, str], dict[str, float]] = {}  # -> {ended Pod: when its replacement is due}
        self.replace_backoff, self.max_replace_backoff = float(replace_backoff), float(max_replace_backoff)

    def reconcile(self, key) -> float | None:
        """One level-triggered pass over the ReplicaSet ``key`` = ``("ReplicaSet", namespace, name)``."""
        _, ns, name = key
        ns = ns or "default"
        try:
            rs = self.store.get("ReplicaSet", name, ns)
        except NotFound:
            return None
        try:
            spec = load_replicaset(rs)["spec"]
        except SpecError as err:  # admission checks it; an object written before that is reported
            self.store.record_event(rs, "FailedCreate", err.message, type="Warning", component=COMPONENT)
            return None
        pods = self._claim(rs, spec)
        now_s = self.clock.now()
        active, ended, terminating = [], [], []
        for p in pods:
            deleting = DELETED_ANNOTATION in (p["metadata"].get("annotations") or {})
            if _phase(p) in ("Succeeded", "Failed"):
                ended.append(p)
            elif deleting:
                terminating.append(p)
            else:
                active.append(p)
        waits = []
        kept = 0  # ended Pods kept (and their replacement held back) until their backoff passed
        for p in ended:  # a Pod that ended: deleted and replaced, after a backoff when it failed by itself
            if DELETED_ANNOTATION in (p["metadata"].get("annotations") or {}):
                self._delete_object(p)
                continue
            left = self._replacement_due(ns, name, p, now_s)
            if left > 0:
                kept += 1
                waits.append(left)
            else:
                self._delete_object(p)
        want = spec["replicas"]
        diff = len(active) + min(kept, max(0, want - len(active))) - want
        if diff < 0:
            for _ in range(-diff):
                pod = self._pod(rs, spec)
                try:
                    created = self.scheduler.submit(pod)
                except LocalflowError as err:
                    self.store.record_event(rs, "FailedCreate", f"Error creating: {err}", type="Warning", component=COMPONENT)
                    break
                active.append(created)
                self.store.record_event(rs, "SuccessfulCreate", f"Created pod: {created['metadata']['name']}", component=COMPONENT)
        elif diff > 0:
            order = sorted(active, key=deletion_order)  # getPodsToDelete
            for p in order[:diff]:
                self.stop(p)
                active.remove(p)
                terminating.append(p)
                self.store.record_event(rs, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}", component=COMPONENT)
        if active and all(pod_ready(p) for p in active) and len(active) >= want and not kept:
            with self._lock:
                self._failures.pop((ns, name), None)
        wait = self._status(rs, spec, active, len(terminating), now_s)
        waits += [wait] if wait is not None else []
        return min(waits) if waits else None

    # ------------------------------------------------------------------ parts

    def _replacement_due(self, ns: str, name: str, pod: dict, now_s: float) -> float:
        """Seconds until the replacement of the ended ``pod`` may be created: 0 for the first
        failure in a row, then ``replace_backoff`` doubling to ``max_replace_backoff`` (a template
        that cannot run -- ``ContainerCannotRun`` -- must not spin creating Pods)."""
        pname = pod["metadata"]["name"]
        with self._lock:
            due = self._failures.setdefault((ns, name), {})
            if pname not in due:
                n = len(due)
                delay = 0.0 if n == 0 else min(self.replace_backoff * 2 ** (n - 1), self.max_replace_backoff)
                due[pname] = now_s + delay
            return max(0.0, due[pname] - now_s)

    def _claim(self, rs: dict, spec: dict) -> list[dict]:
        """The Pods this ReplicaSet controls after adopting matching orphans and releasing
        controlled Pods that no longer match (``PodControllerRefManager.ClaimPods``)."""
        meta = rs["metadata"]
        ns, uid = meta.get("namespace") or "default", meta["uid"]
        sel = spec["selector"]
        out = []
        for p in self.store.list("Pod", ns):
            ref = _controller_ref(p)
            labels = p["metadata"].get("labels") or {}
            if ref is not None and ref.get("uid") == uid:
                if matches(labels, sel) or DELETED_ANNOTATION in (p["metadata"].get("annotations") or {}):
                    out.append(p)
                    continue
                refs = [r for r in p["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                self._patch_refs(p, refs)
                continue
            if ref is None and matches(labels, sel) and _phase(p) not in ("Succeeded", "Failed") \
                    and not p["metadata"].get("deletionTimestamp"):
                refs = [*(p["metadata"].get("ownerReferences") or []), self._owner_ref(rs)]
                adopted = self._patch_refs(p, refs)
                if adopted is not None:
                    out.append(adopted)
        return out

    def _patch_refs(self, pod: dict, refs: list) -> dict | None:
        obj = copy.deepcopy(pod)
        if refs:
            obj["metadata"]["ownerReferences"] = refs
        else:
            obj["metadata"].pop("ownerReferences", None)
        try:
            return self.store.update(obj)
        except LocalflowError:  # changed or gone meanwhile: the next pass sees it
            return None

    @staticmethod
    def _owner_ref(rs: dict) -> dict:
        return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs["metadata"]["name"],
                "uid": rs["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}

    def _pod(self, rs: dict, spec: dict) -> dict:
        """A new Pod from the template, controlled by ``rs``."""
        meta, tmpl = rs["metadata"], copy.deepcopy(spec["template"])
        tmeta = tmpl.get("metadata") or {}
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": generate_name(f"{meta['name']}-"), "namespace": meta.get("namespace") or "default",
                             "labels": dict(tmeta.get("labels") or {}), "annotations": dict(tmeta.get("annotations") or {}),
                             "ownerReferences": [self._owner_ref(rs)]},
                "spec": tmpl["spec"]}

    def stop(self, pod: dict) -> None:
        """Delete ``pod`` the way the API server does for a running one: mark it, kill its process;
        its object is deleted once it ended (the next pass)."""
        name, ns = pod["metadata"]["name"], pod["metadata"].get("namespace") or "default"
        try:
            self.store.patch("Pod", name, {"metadata": {"annotations": {DELETED_ANNOTATION: "true"}}}, ns)
        except NotFound:
            return
        if _phase(pod) in ("Succeeded", "Failed"):
            self._delete_object(pod)
        else:
            self.scheduler.kill_pod(name, ns, "Killed")

    def _delete_object(self, pod: dict) -> None:
        try:
            self.store.delete("Pod", pod["metadata"]["name"], pod["metadata"].get("namespace") or "default")
        except NotFound:
            pass

    def _status(self, rs: dict, spec: dict, active: list, terminating: int, now_s: float) -> float | None:
        """Write ``calculateStatus``; returns seconds until the next Pod becomes available, or None."""
        min_ready = float(spec.get("minReadySeconds") or 0)
        tmpl_labels = (spec["template"].get("metadata") or {}).get("labels") or {}
        ready = [p for p in active if pod_ready(p)]
        available = [p for p in ready if pod_available(p, min_ready, now_s)]
        status = {"replicas": len(active),
                  "fullyLabeledReplicas": sum(1 for p in active if matches(p["metadata"].get("labels") or {}, tmpl_labels)),
                  "readyReplicas": len(ready), "availableReplicas": len(available),
                  "terminatingReplicas": terminating, "observedGeneration": rs["metadata"].get("generation", 1)}
        for c in (rs.get("status") or {}).get("conditions") or []:
            status.setdefault("conditions", []).append(c)
        if status != (rs.get("status") or {}):
            try:
                self.store.update_status("ReplicaSet", rs["metadata"]["name"], status, rs["metadata"].get("namespace"))
            except NotFound:
                return None
        waits = [(_ready_since(p) or 0.0) + min_ready - now_s for p in ready if p not in available]
        return max(0.01, min(waits)) if waits else None
