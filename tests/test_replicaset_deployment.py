"""apps/v1 ReplicaSet and Deployment as reconcilers on the controller manager, with real Pods
(subprocesses run by the scheduler) and a FakeClock: replicas kept (missing created, surplus
deleted, orphans adopted, ended Pods replaced), status counts, minReadySeconds, spec errors with
field paths, Deployment RollingUpdate (maxSurge/maxUnavailable respected, old ReplicaSet scaled to 0),
Recreate, conditions, printer columns, and deleting a Deployment stopping its processes.
Waits are bounded polls of the store while the manager is driven with run_until_idle()."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest

from localflow import kinds
from localflow.api import open_runtime
from localflow.clock import FakeClock
from localflow.controllers.deployment import (HASH_LABEL, REVISION_ANNOTATION, DeploymentReconciler, deployment_complete,
                                               template_hash)
from localflow.controllers.manager import ControllerManager
from localflow.controllers.replicaset import ReplicaSetReconciler
from localflow.errors import SpecError
from localflow.scheduler import Capacity
from localflow.specs.apps import load_deployment, load_replicaset

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SLEEP = "import time; time.sleep(600)"


def template(code=SLEEP, labels=None, env=None):
    c = {"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
         "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}}
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {"metadata": {"labels": labels or {"app": "web"}}, "spec": {"containers": [c]}}


def replicaset(name="rs", replicas=2, **spec):
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": template(), **spec}}


def deployment(name="d", replicas=2, tmpl=None, **spec):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl or template(), **spec}}


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", clock=FakeClock(), capacity=Capacity(cpu=4, memory=8 << 30)) as runtime:
        yield runtime


def manager(rt):
    mgr = ControllerManager(rt.store, rt.clock)
    mgr.register(ReplicaSetReconciler(rt.store, rt.scheduler, rt.clock))
    mgr.register(DeploymentReconciler(rt.store, rt.clock))
    return mgr


def drive(mgr, cond, timeout=60.0, what="the condition", each=None):
    deadline = time.monotonic() + timeout
    while True:
        mgr.run_until_idle()
        if each:
            each()
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pods(rt, **labels):
    return rt.store.list("Pod", label_selector=labels or {"app": "web"})


def running(rt, **labels):
    return [p for p in pods(rt, **labels) if p["status"].get("phase") == "Running"
            and not (p["metadata"].get("annotations") or {}).get("localflow.dev/replicaset-deleted")]


def st(rt, kind, name):
    return rt.store.get(kind, name).get("status") or {}


# ---------------------------------------------------------------- specs


@pytest.mark.parametrize("doc, path", [
    ({**replicaset(), "apiVersion": "apps/v1beta2"}, "ReplicaSet.apiVersion"),
    (replicaset(selector={"matchLabels": {"app": "db"}}), "ReplicaSet.spec.template.metadata.labels"),
    (replicaset(selector={}), "ReplicaSet.spec.selector"),
    (replicaset(replicas=-1), "ReplicaSet.spec.replicas"),
    (replicaset(template={**template(), "spec": {**template()["spec"], "restartPolicy": "Never"}}),
     "ReplicaSet.spec.template.spec.restartPolicy"),
])
def test_replicaset_spec_errors(doc, path):
    with pytest.raises(SpecError) as err:
        load_replicaset(doc)
    assert err.value.path == path and err.value.fix


@pytest.mark.parametrize("spec, path", [
    ({"strategy": {"type": "Rolling"}}, "Deployment.spec.strategy.type"),
    ({"strategy": {"type": "Recreate", "rollingUpdate": {}}}, "Deployment.spec.strategy.rollingUpdate"),
    ({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}}, "Deployment.spec.strategy.rollingUpdate.maxUnavailable"),
    ({"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}, "Deployment.spec.strategy.rollingUpdate.maxSurge"),
    ({"strategy": {"rollingUpdate": {"maxUnavailable": "120%"}}}, "Deployment.spec.strategy.rollingUpdate.maxUnavailable"),
])
def test_deployment_spec_errors(spec, path):
    with pytest.raises(SpecError) as err:
        load_deployment(deployment(**spec))
    assert err.value.path == path


def test_defaults_and_admission(rt):
    d = load_deployment(deployment())["spec"]
    assert d["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
    assert d["revisionHistoryLimit"] == 10 and d["progressDeadlineSeconds"] == 600
    assert d["template"]["spec"]["restartPolicy"] == "Always"
    with pytest.raises(SpecError) as err:  # the store's admission refuses it, as the API server does
        rt.store.create(replicaset(selector={"matchLabels": {"app": "db"}}))
    assert err.value.path == "ReplicaSet.spec.template.metadata.labels"
    assert template_hash(template()) == template_hash(template()) != template_hash(template(env={"V": "2"}))


def test_printer_columns():
    rs = {**replicaset(replicas=3), "status": {"replicas": 3, "readyReplicas": 2}}
    k = kinds.entry_of(rs)
    assert [c.name.upper() for c in k.columns] == ["DESIRED", "CURRENT", "READY", "AGE"]
    assert [c.value(rs) for c in k.columns[:3]] == [3, 3, 2]
    d = {**deployment(replicas=3), "status": {"readyReplicas": 1, "updatedReplicas": 2, "availableReplicas": 1}}
    k = kinds.entry_of(d)
    assert [c.name.upper() for c in k.columns] == ["READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [c.value(d) for c in k.columns[:3]] == ["1/3", 2, 1]


# ---------------------------------------------------------------- ReplicaSet


def test_replicaset_keeps_replicas(rt):
    mgr = manager(rt)
    orphan = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "orphan", "labels": {"app": "web"}},
              "spec": {**template()["spec"], "restartPolicy": "Always"}}
    rt.scheduler.submit(orphan)
    rt.store.create(replicaset(replicas=3))
    drive(mgr, lambda: st(rt, "ReplicaSet", "rs").get("readyReplicas") == 3, what="3 ready replicas")
    s = st(rt, "ReplicaSet", "rs")
    assert s["replicas"] == 3 and s["availableReplicas"] == 3 and s["observedGeneration"] == 1
    names = {p["metadata"]["name"] for p in running(rt)}
    assert "orphan" in names and len(names) == 3  # adopted, two created
    uid = rt.store.get("ReplicaSet", "rs")["metadata"]["uid"]
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == uid for p in pods(rt))

    # a Pod whose process is killed ends (Failed): it is deleted and replaced
    victim = sorted(names - {"orphan"})[0]
    rt.scheduler.kill_pod(victim, "default", "Killed")
    drive(mgr, lambda: victim not in {p["metadata"]["name"] for p in pods(rt)} and len(running(rt)) == 3,
          what="the killed Pod replaced")

    # scale down: the surplus Pods are stopped and deleted
    rt.store.patch("ReplicaSet", "rs", {"spec": {"replicas": 1}})
    drive(mgr, lambda: len(pods(rt)) == 1 and st(rt, "ReplicaSet", "rs").get("replicas") == 1, what="scaled to 1")
    assert st(rt, "ReplicaSet", "rs")["observedGeneration"] == 2
    events = [e["reason"] for e in rt.store.list("Event")]
    assert "SuccessfulCreate" in events and "SuccessfulDelete" in events


def test_scale_down_deletes_pods_in_upstream_order():
    """getPodsToDelete / ActivePodsWithRanks.Less: unassigned < assigned, Pending < Running, not
    ready < ready, lower pod-deletion-cost first, ready for less time first, more restarts first,
    newer first."""
    from localflow.controllers.replicaset import DELETION_COST_ANNOTATION, deletion_order

    def pod(name, *, node=True, phase="Running", ready_at=None, cost=None, restarts=0, created="2026-01-01T00:00:00Z"):
        conds = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
        return {"metadata": {"name": name, "creationTimestamp": created,
                             "annotations": {DELETION_COST_ANNOTATION: str(cost)} if cost is not None else {}},
                "spec": {"nodeName": "localflow"} if node else {},
                "status": {"phase": phase, "conditions": conds, "containerStatuses": [{"restartCount": restarts}]}}

    ready = "2026-01-01T00:01:00Z"
    pods = [
        pod("old-ready", ready_at=ready),
        pod("costly", ready_at=ready, cost=100),
        pod("cheap", ready_at=ready, cost=-5),
        pod("newly-ready", ready_at="2026-01-01T00:05:00Z"),
        pod("restarted", ready_at=ready, restarts=3),
        pod("newer", ready_at=ready, created="2026-01-01T00:00:30Z"),
        pod("not-ready"),
        pod("pending", phase="Pending"),
        pod("unassigned", node=False, phase="Pending"),
    ]
    order = [p["metadata"]["name"] for p in sorted(pods, key=deletion_order)]
    assert order == ["unassigned", "pending", "not-ready", "cheap", "newly-ready", "restarted", "newer",
                     "old-ready", "costly"]


def test_replicaset_min_ready_seconds(rt):
    mgr = manager(rt)
    rt.store.create(replicaset(replicas=1, minReadySeconds=30))
    drive(mgr, lambda: st(rt, "ReplicaSet", "rs").get("readyReplicas") == 1, what="a ready replica")
    assert st(rt, "ReplicaSet", "rs")["availableReplicas"] == 0
    rt.clock.advance(31)
    drive(mgr, lambda: st(rt, "ReplicaSet", "rs").get("availableReplicas") == 1, what="the replica available")


# ---------------------------------------------------------------- Deployment


def _rs_of(rt, name="d"):
    uid = rt.store.get("Deployment", name)["metadata"]["uid"]
    return {rs["metadata"]["name"]: rs for rs in rt.store.list("ReplicaSet", owner_uid=uid)}


def test_deployment_rolling_update(rt):
    mgr = manager(rt)
    rt.store.create(deployment(replicas=4))
    drive(mgr, lambda: st(rt, "Deployment", "d").get("availableReplicas") == 4, what="4 available replicas")
    (first, rs1), = _rs_of(rt).items()
    h1 = rs1["metadata"]["labels"][HASH_LABEL]
    assert first == f"d-{h1}" and rs1["spec"]["selector"]["matchLabels"][HASH_LABEL] == h1
    assert rs1["metadata"]["annotations"][REVISION_ANNOTATION] == "1"
    assert all(p["metadata"]["labels"][HASH_LABEL] == h1 for p in pods(rt))
    s = st(rt, "Deployment", "d")
    assert [(c["type"], c["status"], c["reason"]) for c in s["conditions"]] == [
        ("Available", "True", "MinimumReplicasAvailable"), ("Progressing", "True", "NewReplicaSetAvailable")]

    # a template change: a new ReplicaSet, never more than 4 + 1 (maxSurge 25%) Pods, never fewer
    # than 4 - 1 (maxUnavailable 25%) available
    rt.store.patch("Deployment", "d", {"spec": {"template": template(env={"VERSION": "2"})}})
    most, least = 0, 4

    def watch():
        nonlocal most, least
        active = [p for p in pods(rt) if p["status"].get("phase") in ("Pending", "Running")
                  and not (p["metadata"].get("annotations") or {}).get("localflow.dev/replicaset-deleted")]
        most = max(most, len(active))
        least = min(least, sum(_st(rs) for rs in _rs_of(rt).values()))

    def done():
        s = st(rt, "Deployment", "d")
        return s.get("updatedReplicas") == 4 and s.get("availableReplicas") == 4 and s.get("replicas") == 4 \
            and s.get("observedGeneration") == 2 and len(pods(rt)) == 4

    drive(mgr, done, what="the rollout", each=watch)
    rss = _rs_of(rt)
    assert len(rss) == 2 and rss[first]["spec"]["replicas"] == 0
    (second,) = set(rss) - {first}
    h2 = rss[second]["metadata"]["labels"][HASH_LABEL]
    assert h2 != h1 and rss[second]["metadata"]["annotations"][REVISION_ANNOTATION] == "2"
    assert all(p["metadata"]["labels"][HASH_LABEL] == h2 for p in pods(rt))
    assert most <= 5 and least >= 3, (most, least)
    assert {c["type"]: c["reason"] for c in st(rt, "Deployment", "d")["conditions"]}["Progressing"] == "NewReplicaSetAvailable"

    # deleting the Deployment deletes its ReplicaSets and Pods, and stops their processes
    procs = [psutil.Process(pid) for p in pods(rt) for pid in rt.scheduler.running_pod(p["metadata"]["name"]).pids()]
    assert len(procs) >= 4 and all(p.is_running() for p in procs)
    rt.store.delete("Deployment", "d")
    assert rt.store.list("ReplicaSet") == [] and pods(rt) == []  # the store's ownerReference cascade
    drive(mgr, lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs),
          what="the Pods' processes stopped")


def _st(rs):
    return int((rs.get("status") or {}).get("availableReplicas") or 0)


def test_a_rolling_pass_that_scales_the_new_replicaset_up_does_nothing_else(rt):
    """rolling.go rolloutRolling: when reconcileNewReplicaSet scaled, the pass returns; the old
    ReplicaSets are scaled down by a later pass (one reconcile called at a time). Rolled back to
    the first template, its ReplicaSet at 0 is the new one again and goes to 1 (maxSurge 25 % of
    4); the current one stays at 4 in that pass. Once settled, old ReplicaSets at 0 beyond
    revisionHistoryLimit go (cleanupDeployment)."""
    mgr = manager(rt)
    rt.store.create(deployment(replicas=4))
    drive(mgr, lambda: st(rt, "Deployment", "d").get("availableReplicas") == 4, what="4 available replicas")
    (first,) = _rs_of(rt)
    rt.store.patch("Deployment", "d", {"spec": {"template": template(env={"VERSION": "2"})}})
    drive(mgr, lambda: len(_rs_of(rt)) == 2 and deployment_complete(rt.store.get("Deployment", "d"))
          and _rs_of(rt)[first]["spec"]["replicas"] == 0, what="the rollout to version 2")
    (second,) = set(_rs_of(rt)) - {first}
    mgr.stop()
    rt.store.patch("Deployment", "d", {"spec": {"template": template()}})  # back to the first template
    one = DeploymentReconciler(rt.store, rt.clock)
    one.reconcile(("Deployment", "default", "d"))
    rss = _rs_of(rt)
    assert (rss[first]["spec"]["replicas"], rss[second]["spec"]["replicas"]) == (1, 4)
    one.reconcile(("Deployment", "default", "d"))  # nothing more to scale up: now the old one goes down
    rss = _rs_of(rt)
    assert (rss[first]["spec"]["replicas"], rss[second]["spec"]["replicas"]) == (1, 3)
    rt.store.patch("Deployment", "d", {"spec": {"revisionHistoryLimit": 0}})
    mgr = manager(rt)
    drive(mgr, lambda: list(_rs_of(rt)) == [first], what="the rollback and the cleanup of the ReplicaSet at 0")
    assert st(rt, "Deployment", "d").get("availableReplicas") == 4
    mgr.stop()


def test_deployment_recreate(rt):
    mgr = manager(rt)
    rt.store.create(deployment(replicas=2, strategy={"type": "Recreate"}))
    drive(mgr, lambda: st(rt, "Deployment", "d").get("availableReplicas") == 2, what="2 available replicas")
    (first,) = _rs_of(rt)
    rt.store.patch("Deployment", "d", {"spec": {"template": template(env={"VERSION": "2"})}})
    mixed = False

    def watch():
        nonlocal mixed
        hashes = {p["metadata"]["labels"][HASH_LABEL] for p in pods(rt) if p["status"].get("phase") in ("Pending", "Running")}
        mixed = mixed or len(hashes) > 1

    drive(mgr, lambda: st(rt, "Deployment", "d").get("updatedReplicas") == 2
          and st(rt, "Deployment", "d").get("availableReplicas") == 2 and len(pods(rt)) == 2, what="the recreate", each=watch)
    assert not mixed  # no new Pod ran while an old one did
    assert _rs_of(rt)[first]["spec"]["replicas"] == 0


def test_deployment_progress_deadline(rt):
    mgr = manager(rt)
    tmpl = template()
    tmpl["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "3"  # one fits the machine, two do not
    rt.store.create(deployment(replicas=2, tmpl=tmpl, progressDeadlineSeconds=60))
    drive(mgr, lambda: st(rt, "Deployment", "d").get("readyReplicas") == 1, what="one ready replica")
    conds = {c["type"]: c for c in st(rt, "Deployment", "d")["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasUnavailable"  # maxUnavailable 25% of 2 rounds down to 0
    rt.clock.advance(61)
    mgr.run_until_idle()
    drive(mgr, lambda: {c["type"]: c["reason"] for c in st(rt, "Deployment", "d")["conditions"]}.get("Progressing")
          == "ProgressDeadlineExceeded", what="ProgressDeadlineExceeded", timeout=20)


def test_scenario_deployment_rolls_out_http_servers(rt):
    """scenarios/apps/deployment.yaml: two real http.server Pods; a new VERSION rolls out with
    maxSurge 1 / maxUnavailable 0 (never fewer than 2 available, never more than 3 Pods)."""
    import yaml

    doc = yaml.safe_load((ROOT / "scenarios/apps/deployment.yaml").read_text())
    mgr = manager(rt)
    rt.store.create(doc)
    drive(mgr, lambda: st(rt, "Deployment", "web").get("availableReplicas") == 2, what="2 available http servers")
    tmpl = doc["spec"]["template"]
    tmpl["spec"]["containers"][0]["env"] = [{"name": "VERSION", "value": "2"}]
    rt.store.patch("Deployment", "web", {"spec": {"template": tmpl}})
    most, least = 0, 2

    def watch():
        nonlocal most, least
        s = st(rt, "Deployment", "web")
        most = max(most, sum(int((rs.get("spec") or {}).get("replicas", 0)) for rs in _rs_of(rt, "web").values()))
        least = min(least, s.get("availableReplicas", 0))

    drive(mgr, lambda: st(rt, "Deployment", "web").get("updatedReplicas") == 2
          and st(rt, "Deployment", "web").get("availableReplicas") == 2 and st(rt, "Deployment", "web").get("replicas") == 2,
          what="the rollout", each=watch)
    assert most <= 3 and least == 2, (most, least)
    live = [p for p in pods(rt) if p["status"].get("phase") == "Running" and not p["metadata"].get("annotations", {}).get(
        "localflow.dev/replicaset-deleted")]
    assert {p["spec"]["containers"][0]["env"][0]["value"] for p in live} == {"2"}


def test_replicaset_backs_off_replacing_pods_that_cannot_start(rt):
    """A template whose command cannot run ends each Pod Failed at once: the first replacement is
    immediate, the next waits the backoff (10 s on the FakeClock), so nothing spins."""
    mgr = manager(rt)
    doc = replicaset(replicas=1)
    doc["spec"]["template"]["spec"]["containers"][0]["command"] = [str(ROOT / "no-such-program")]
    rt.store.create(doc)

    def created():
        return sum(1 for e in rt.store.list("Event") if e["reason"] == "SuccessfulCreate")

    def failed():
        return [p for p in pods(rt) if p["status"].get("phase") == "Failed"]

    drive(mgr, lambda: created() == 2 and len(failed()) == 1 and not [p for p in pods(rt) if p not in failed()],
          what="the second Pod failed and kept")
    reason = failed()[0]["status"].get("reason")
    for _ in range(20):  # stays put: no third Pod while the backoff runs
        mgr.run_until_idle()
        rt.scheduler.wait_idle(0.05)
    assert created() == 2, reason
    rt.clock.advance(11)
    drive(mgr, lambda: created() == 3, what="the third Pod after the backoff")
