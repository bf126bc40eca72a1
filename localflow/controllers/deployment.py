"""The ``apps/v1 Deployment`` controller: a reconciler on the controller manager.

Follows kubernetes ``pkg/controller/deployment/``: ``sync.go`` (``getNewReplicaSet``,
``cleanupDeployment``, ``calculateStatus``, ``syncDeploymentStatus``), ``rolling.go``
(``rolloutRolling``, ``reconcileNewReplicaSet``, ``reconcileOldReplicaSets``,
``cleanupUnhealthyReplicas``, ``scaleDownOldReplicaSetsForRollingUpdate``), ``recreate.go``
(``rolloutRecreate``, ``oldPodsRunning``), ``progress.go`` and ``util/deployment_util.go``
(``MaxSurge``/``MaxUnavailable``/``ResolveFenceposts``, ``EqualIgnoreHash``) and
``pkg/controller/controller_utils.go`` (``ComputeHash``):

- the Deployment owns ReplicaSets named ``<deployment>-<pod-template-hash>``; the hash (fnv32a of
  the template, safe-encoded as ``rand.SafeEncodeString`` does) is the label ``pod-template-hash``
  of the ReplicaSet, its selector and its Pod template; the ReplicaSet whose template equals the
  Deployment's (ignoring that label) is the new one, the others are old; each carries the
  annotation ``deployment.kubernetes.io/revision`` (the new one: the highest + 1);
- ``RollingUpdate``: the new ReplicaSet is scaled up while all Pods stay within
  ``replicas + maxSurge`` (percentages rounded up), old ones are scaled down while at least
  ``replicas - maxUnavailable`` (rounded down; both 0 resolves maxUnavailable to 1) stay available
  -- unhealthy old replicas first; ``Recreate``: old ReplicaSets are scaled to 0 and the new one is
  created/scaled up only once no old Pod runs;
- a pass that scales the new ReplicaSet does nothing else (``rolloutRolling`` returns after
  ``reconcileNewReplicaSet`` scaled); once nothing is left to scale and the status says complete,
  old ReplicaSets at 0 beyond ``revisionHistoryLimit`` are deleted, oldest first
  (``cleanupDeployment``); ``paused`` stops the rollout (status is still written);
- ``status``: ``replicas``, ``updatedReplicas``, ``readyReplicas``, ``availableReplicas``,
  ``unavailableReplicas``, ``observedGeneration`` and the conditions ``Available``
  (``MinimumReplicasAvailable``/``MinimumReplicasUnavailable``) and ``Progressing``
  (``NewReplicaSetCreated``, ``ReplicaSetUpdated``, ``NewReplicaSetAvailable``, or False
  ``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds`` without progress, on the injected clock).

Deleting a Deployment deletes its ReplicaSets and their Pods through the store's ownerReference
cascade; the node stops the deleted Pods' processes (its store watch, :mod:`localflow.node.node`).
Not done: proportional scaling of several old ReplicaSets during a rollout, ``collisionCount``,
``rollbackTo``, adoption of orphan ReplicaSets.
"""
from __future__ import annotations

import copy
import json

from localflow.clock import SYSTEM_CLOCK, Clock, parse_rfc3339
from localflow.errors import LocalflowError, NotFound, SpecError
from localflow.specs.apps import load_deployment, scaled_value

__all__ = ["DeploymentReconciler", "HASH_LABEL", "REVISION_ANNOTATION", "template_hash", "deployment_complete"]

HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
COMPONENT = "deployment-controller"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def template_hash(template: dict) -> str:
    """The ``pod-template-hash`` of a Pod template: fnv32a of its canonical JSON (upstream hashes
    its Go dump), the decimal digits mapped through ``rand.SafeEncodeString``'s alphabet."""
    h = 0x811C9DC5
    for b in json.dumps(template, sort_keys=True, separators=(",", ":")).encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_ALPHANUMS[ord(ch) % len(_ALPHANUMS)] for ch in str(h))


def _strip_hash(template: dict) -> dict:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return t


def _revision(rs: dict) -> int:
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, 0))
    except ValueError:
        return 0


def _st(rs: dict, key: str) -> int:
    return int((rs.get("status") or {}).get(key) or 0)


def _spec_replicas(rs: dict) -> int:
    return int((rs.get("spec") or {}).get("replicas", 1))


def deployment_complete(dep: dict) -> bool:
    """``DeploymentComplete``: every wanted replica is updated and available, no old one is left,
    and the status is of the current generation."""
    spec, st = dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    return (st.get("updatedReplicas", 0) == want and st.get("replicas", 0) == want and st.get("availableReplicas", 0) == want
            and st.get("observedGeneration", 0) >= dep["metadata"].get("generation", 1))


def _fenceposts(spec: dict) -> tuple[int, int]:
    """``(maxSurge, maxUnavailable)`` as counts of ``spec.replicas``: ``ResolveFenceposts`` (surge
    rounded up, unavailable down, both 0 -> unavailable 1) with ``MaxUnavailable``'s clamp to
    ``replicas`` (0 for 0 replicas); ``NewRSNewReplicas`` uses the same surge."""
    if spec["strategy"]["type"] != "RollingUpdate":
        return 0, 0
    ru, want = spec["strategy"]["rollingUpdate"], spec["replicas"]
    p = "Deployment.spec.strategy.rollingUpdate"
    surge = scaled_value(f"{p}.maxSurge", ru["maxSurge"], want, round_up=True)
    unavail = scaled_value(f"{p}.maxUnavailable", ru["maxUnavailable"], want, round_up=False)
    if surge == 0 and unavail == 0:
        unavail = 1
    return surge, min(unavail, want)


class DeploymentReconciler:
    """Reconciles ``apps/v1`` Deployments (see the module docstring); register it on a
    :class:`~localflow.controllers.manager.ControllerManager` together with a
    :class:`~localflow.controllers.replicaset.ReplicaSetReconciler`.

    ``store``: the object store; ``clock``: times the conditions and ``progressDeadlineSeconds``.
    ``reconcile(key)`` returns the seconds until the progress deadline is due, or None.
    """

    kind = "Deployment"
    owns = ("ReplicaSet",)

    def __init__(self, store, clock: Clock = SYSTEM_CLOCK):
        self.store, self.clock = store, clock

    def reconcile(self, key) -> float | None:
        """One level-triggered pass over the Deployment ``key`` = ``("Deployment", namespace, name)``."""
        _, ns, name = key
        ns = ns or "default"
        try:
            dep = self.store.get("Deployment", name, ns)
        except NotFound:
            return None
        try:
            spec = load_deployment(dep)["spec"]
        except SpecError as err:
            self.store.record_event(dep, "InvalidSpec", err.message, type="Warning", component=COMPONENT)
            return None
        uid = dep["metadata"]["uid"]
        all_rs = sorted((rs for rs in self.store.list("ReplicaSet", ns, owner_uid=uid)
                         if any(r.get("uid") == uid and r.get("controller") for r in rs["metadata"].get("ownerReferences") or [])),
                        key=lambda rs: (_revision(rs), rs["metadata"].get("creationTimestamp", "")))
        want_tmpl = _strip_hash(spec["template"])
        new = next((rs for rs in all_rs if _strip_hash(rs["spec"]["template"]) == want_tmpl), None)
        old = [rs for rs in all_rs if rs is not new]
        created = False
        if not spec.get("paused"):
            if spec["strategy"]["type"] == "Recreate":
                new, created = self._recreate(dep, spec, new, old)
                settled = True
            else:
                new, created, settled = self._rolling(dep, spec, new, old)
            if settled and deployment_complete(dep):  # rolling.go/recreate.go: cleanup once the status says complete
                self._cleanup(spec, old)
            all_rs = [rs for rs in self.store.list("ReplicaSet", ns, owner_uid=uid)]
            new = next((rs for rs in all_rs if new is not None and rs["metadata"]["uid"] == new["metadata"]["uid"]), None)
        return self._status(dep, spec, new, all_rs, created)

    # ------------------------------------------------------------------ rollout

    def _new_rs(self, dep: dict, spec: dict, old: list, replicas: int) -> dict:
        """Create the new ReplicaSet (``getNewReplicaSet``) with ``replicas``; returns it."""
        meta = dep["metadata"]
        tmpl = copy.deepcopy(spec["template"])
        h = template_hash(_strip_hash(tmpl))
        tmeta = tmpl.setdefault("metadata", {})
        tmeta["labels"] = {**(tmeta.get("labels") or {}), HASH_LABEL: h}
        sel = copy.deepcopy(spec["selector"])
        if "matchLabels" not in sel and "matchExpressions" not in sel:
            sel = {"matchLabels": sel}
        sel["matchLabels"] = {**(sel.get("matchLabels") or {}), HASH_LABEL: h}
        revision = max((_revision(rs) for rs in old), default=0) + 1
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": f"{meta['name']}-{h}", "namespace": meta.get("namespace") or "default",
                           "labels": dict(tmeta["labels"]), "annotations": {REVISION_ANNOTATION: str(revision)},
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]},
              "spec": {"replicas": replicas, "minReadySeconds": spec.get("minReadySeconds", 0), "selector": sel,
                       "template": tmpl}}
        out = self.store.create(rs)
        self.store.record_event(dep, "ScalingReplicaSet", f"Scaled up replica set {rs['metadata']['name']} from 0 to {replicas}",
                                component=COMPONENT)
        return out

    def _scale(self, dep: dict, rs: dict, replicas: int) -> dict:
        cur = _spec_replicas(rs)
        if cur == replicas:
            return rs
        out = self.store.patch("ReplicaSet", rs["metadata"]["name"], {"spec": {"replicas": replicas}}, rs["metadata"].get("namespace"))
        way = "up" if replicas > cur else "down"
        self.store.record_event(dep, "ScalingReplicaSet", f"Scaled {way} replica set {rs['metadata']['name']} from {cur} to {replicas}",
                                component=COMPONENT)
        return out

    def _bump_revision(self, new: dict, old: list) -> dict:
        """A template rolled back to an older ReplicaSet makes that one the newest revision."""
        top = max((_revision(rs) for rs in old), default=0)
        if _revision(new) > top:
            return new
        return self.store.patch("ReplicaSet", new["metadata"]["name"],
                                {"metadata": {"annotations": {REVISION_ANNOTATION: str(top + 1)}}}, new["metadata"].get("namespace"))

    def _rolling(self, dep: dict, spec: dict, new: dict | None, old: list) -> tuple[dict, bool, bool]:
        """``rolloutRolling``: ``reconcileNewReplicaSet``; when that scaled nothing,
        ``reconcileOldReplicaSets``. Returns ``(new, created, settled)``: ``settled`` when neither
        scaled anything (upstream then runs ``cleanupDeployment``, if the Deployment is complete)."""
        want = spec["replicas"]
        surge, unavail = _fenceposts(spec)
        created = False
        total = sum(_spec_replicas(rs) for rs in old) + (_spec_replicas(new) if new else 0)
        if new is None:  # getNewReplicaSet creates it at NewRSNewReplicas; the old ones may go down in the same pass
            scale_up = max(0, min(want + surge - total, want))
            new, created = self._new_rs(dep, spec, old, scale_up), True
        else:
            new = self._bump_revision(new, old)
            cur = _spec_replicas(new)
            if cur > want:
                return self._scale(dep, new, want), created, False
            if cur < want and total < want + surge:  # NewRSNewReplicas
                return self._scale(dep, new, cur + min(want + surge - total, want - cur)), created, False
        # reconcileOldReplicaSets
        old_count = sum(_spec_replicas(rs) for rs in old)
        if old_count == 0:
            return new, created, True
        all_count = old_count + _spec_replicas(new)
        min_available = want - unavail
        new_unavailable = _spec_replicas(new) - _st(new, "availableReplicas")
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return new, created, True
        # cleanupUnhealthyReplicas: unavailable old replicas go first, oldest ReplicaSet first
        cleaned = 0
        for i, rs in enumerate(old):
            if cleaned >= max_down:
                break
            n = _spec_replicas(rs)
            unhealthy = n - _st(rs, "availableReplicas")
            if n == 0 or unhealthy <= 0:
                continue
            down = min(unhealthy, max_down - cleaned)
            old[i] = self._scale(dep, rs, n - down)
            cleaned += down
        # scaleDownOldReplicaSetsForRollingUpdate: as many as are available beyond minAvailable
        available = sum(_st(rs, "availableReplicas") for rs in old) + _st(new, "availableReplicas")
        budget = available - min_available
        scaled = cleaned
        for i, rs in enumerate(old):
            if budget <= 0:
                break
            n = _spec_replicas(rs)
            if n == 0:
                continue
            down = min(n, budget)
            old[i] = self._scale(dep, rs, n - down)
            budget -= down
            scaled += down
        return new, created, scaled == 0

    def _recreate(self, dep: dict, spec: dict, new: dict | None, old: list) -> tuple[dict | None, bool]:
        """``rolloutRecreate``: old ReplicaSets to 0; the new one only once no old Pod runs."""
        for i, rs in enumerate(old):
            old[i] = self._scale(dep, rs, 0)
        ns = dep["metadata"].get("namespace") or "default"
        for rs in old:
            for p in self.store.list("Pod", ns, owner_uid=rs["metadata"]["uid"]):
                if ((p.get("status") or {}).get("phase") or "Pending") in ("Pending", "Running"):
                    return new, False  # oldPodsRunning: the old Pods' events bring us back
        if new is None:
            return self._new_rs(dep, spec, old, spec["replicas"]), True
        new = self._bump_revision(new, old)
        return self._scale(dep, new, spec["replicas"]), False

    def _cleanup(self, spec: dict, old: list) -> None:
        """``cleanupDeployment``: delete old ReplicaSets at 0 beyond ``revisionHistoryLimit``, oldest first."""
        idle = [rs for rs in old if _spec_replicas(rs) == 0 and _st(rs, "replicas") == 0
                and rs["metadata"].get("generation", 1) <= (rs.get("status") or {}).get("observedGeneration", 0)]
        for rs in idle[: max(0, len(idle) - spec["revisionHistoryLimit"])]:
            try:
                self.store.delete("ReplicaSet", rs["metadata"]["name"], rs["metadata"].get("namespace"))
            except NotFound:
                pass

    # ------------------------------------------------------------------ status

    def _status(self, dep: dict, spec: dict, new: dict | None, all_rs: list, created: bool) -> float | None:
        """``calculateStatus`` + the Available/Progressing conditions (``syncRolloutStatus``)."""
        want = spec["replicas"]
        _, unavail = _fenceposts(spec)
        now_s, now = self.clock.now(), self.clock.rfc3339()
        prev = dep.get("status") or {}
        st = {"observedGeneration": dep["metadata"].get("generation", 1),
              "replicas": sum(_st(rs, "replicas") for rs in all_rs),
              "updatedReplicas": _st(new, "replicas") if new else 0,
              "readyReplicas": sum(_st(rs, "readyReplicas") for rs in all_rs),
              "availableReplicas": sum(_st(rs, "availableReplicas") for rs in all_rs)}
        st["unavailableReplicas"] = max(0, sum(_spec_replicas(rs) for rs in all_rs) - st["availableReplicas"])
        conds = {c["type"]: dict(c) for c in prev.get("conditions") or []}

        def put(type_: str, status: str, reason: str, message: str, *, progressed: bool = True) -> None:
            cur = conds.get(type_)
            if cur is None or cur.get("status") != status:
                conds[type_] = {"type": type_, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
                                "reason": reason, "message": message}
            elif cur.get("reason") != reason or cur.get("message") != message or progressed:
                cur.update(reason=reason, message=message, lastUpdateTime=now)

        if st["availableReplicas"] >= want - unavail:
            put("Available", "True", "MinimumReplicasAvailable", "Deployment has minimum availability.", progressed=False)
        else:
            put("Available", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.", progressed=False)
        counts = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
        progressed = (created or any(st[k] != prev.get(k) for k in counts)
                      or prev.get("observedGeneration") != st["observedGeneration"]
                      or (conds.get("Progressing") or {}).get("reason") == "NewReplicaSetAvailable")
        rs_name = new["metadata"]["name"] if new else dep["metadata"]["name"]
        wait = None
        complete = new is not None and st["updatedReplicas"] == want and st["replicas"] == want and st["availableReplicas"] == want
        if spec.get("paused"):
            put("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", progressed=False)
        elif complete:
            put("Progressing", "True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.',
                progressed=False)
        elif created:
            put("Progressing", "True", "NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        else:
            cur = conds.get("Progressing")
            if progressed or cur is None or cur.get("reason") == "DeploymentPaused":
                put("Progressing", "True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
            elif cur.get("reason") != "ProgressDeadlineExceeded":
                left = (parse_rfc3339(cur.get("lastUpdateTime")) or now_s) + spec["progressDeadlineSeconds"] - now_s
                if left <= 0:
                    put("Progressing", "False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
                    self.store.record_event(dep, "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.',
                                            type="Warning", component=COMPONENT)
                else:
                    wait = left
        order = ["Available", "Progressing"]
        st["conditions"] = [conds[t] for t in order if t in conds] + [c for t, c in conds.items() if t not in order]
        if st != prev:
            try:
                self.store.update_status("Deployment", dep["metadata"]["name"], st, dep["metadata"].get("namespace"))
            except (NotFound, LocalflowError):
                return None
        return wait
