"""Pod status transitions (localflow.node.podstatus), kwok-style: each stage applied to a Pod on a
FakeClock gives exactly the status kubelet would write (golden dicts), and a real Pod run through
the node on a FakeClock walks the same stages in order."""
from __future__ import annotations

import sys
import time

from localflow.api import open_runtime
from localflow.clock import FakeClock
from localflow.executors.base import ContainerResult, ContainerSpec
from localflow.node import podstatus
from localflow.scheduler import Capacity

T0 = "2026-01-01T00:00:00Z"
T5 = "2026-01-01T00:00:05Z"
T9 = "2026-01-01T00:00:09Z"

POD = {"metadata": {"name": "p"},
       "spec": {"containers": [{"name": "main", "image": "python:3.11",
                                "resources": {"requests": {"cpu": "500m"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}}
MAIN = ContainerSpec(name="main", image="python:3.11", argv=["python"])


def cond(type_, status, at, reason=None, message=None):
    c = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": at}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def stage(status, patch):
    return podstatus.merge(status, patch)


def test_a_pod_that_waits_then_runs_restarts_once_and_succeeds():
    clock = FakeClock()
    st = podstatus.pending(POD)
    assert st == {"phase": "Pending", "qosClass": "Burstable"}
    st = stage(st, podstatus.unschedulable("0/1 nodes are available: Insufficient cpu.", clock))
    assert st["conditions"] == [cond("PodScheduled", "False", T0, "Unschedulable",
                                     "0/1 nodes are available: Insufficient cpu.")]
    clock.advance(5)
    st = stage(st, podstatus.scheduled(clock))
    assert st == {"phase": "Pending", "qosClass": "Burstable", "startTime": T5, "hostIP": "127.0.0.1",
                  "conditions": [cond("PodScheduled", "True", T5)]}
    ip = {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}
    st = stage(st, podstatus.running([MAIN], 0, clock, {"main": "pid://42"}, [], ip))
    assert st["phase"] == "Running" and st["podIP"] == "127.0.0.1"
    assert st["conditions"] == [cond("PodScheduled", "True", T5), cond("Initialized", "True", T5),
                                cond("ContainersReady", "True", T5), cond("Ready", "True", T5)]
    assert st["containerStatuses"] == [{"name": "main", "image": "python:3.11", "imageID": "", "ready": True, "started": True,
                                        "restartCount": 0, "containerID": "pid://42",
                                        "state": {"running": {"startedAt": T5}}}]
    crash = ContainerResult("main", 1, "Error", started_at=clock.now(), finished_at=clock.now() + 1)
    clock.advance(2)
    st = stage(st, podstatus.backing_off([MAIN], [crash], 1, clock))
    assert st["phase"] == "Running"
    assert st["containerStatuses"] == [{
        "name": "main", "image": "python:3.11", "imageID": "", "ready": False, "started": False, "restartCount": 1,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container main"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": T5,
                                     "finishedAt": "2026-01-01T00:00:06Z"}}}]
    clock.advance(2)
    st = stage(st, podstatus.running([MAIN], 1, clock, {}, [crash], ip))
    # Ready stayed True: its transition time is kept (kubelet only moves it on a change)
    assert cond("Ready", "True", T5) in st["conditions"]
    assert st["containerStatuses"][0]["state"] == {"running": {"startedAt": T9}}
    assert st["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 1
    ok = ContainerResult("main", 0, "Completed", started_at=clock.now(), finished_at=clock.now() + 1)
    clock.advance(1)
    st = stage(st, podstatus.final(POD, [ok], "Succeeded", clock, restarts=1))
    assert st["phase"] == "Succeeded" and "reason" not in st
    assert st["containerStatuses"] == [{"name": "main", "image": "python:3.11", "imageID": "", "ready": False, "started": False,
                                        "restartCount": 1,
                                        "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": T9,
                                                                 "finishedAt": "2026-01-01T00:00:10Z"}}}]
    assert cond("Ready", "False", "2026-01-01T00:00:10Z", "PodCompleted") in st["conditions"]
    assert cond("PodScheduled", "True", T5) in st["conditions"]
    assert podstatus.finished({"status": st})


def test_failed_pods_name_the_reason_and_the_containers_that_never_ran():
    clock = FakeClock()
    bad = ContainerResult("main", 3, "Error", started_at=clock.now(), finished_at=clock.now())
    st = podstatus.final(POD, [bad], "Failed", clock)
    assert st["reason"] == "Error" and st["message"] == "container main exited with code 3 (Error)"
    assert cond("ContainersReady", "False", T0, "PodFailed") in st["conditions"]
    never = podstatus.final(POD, [], "Failed", clock, reason="CreateContainerConfigError", message="no such key")
    assert never["containerStatuses"][0]["state"] == {"terminated": {
        "exitCode": 127, "reason": "CreateContainerConfigError", "finishedAt": T0, "message": "no such key"}}
    killed = podstatus.final(POD, [], "Failed", clock, reason="Canceled", message="killed before start")
    assert killed["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
    assert podstatus.never_started("Canceled") == {"phase": "Failed", "reason": "Canceled",
                                                   "message": "pod was never started: Canceled"}
    assert not podstatus.finished({"status": podstatus.pending(POD)})


def test_qos_classes_follow_the_requests_and_limits():
    assert podstatus.qos({"spec": {"containers": [{"name": "a"}]}}) == "BestEffort"
    assert podstatus.qos(POD) == "Burstable"
    guaranteed = {"spec": {"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}
    assert podstatus.qos(guaranteed) == "Guaranteed"


def test_merge_leaves_its_inputs_alone():
    clock = FakeClock()
    cur = {"phase": "Pending", "conditions": [cond("PodScheduled", "False", T0, "Unschedulable")]}
    patch = podstatus.scheduled(clock)
    before = (repr(cur), repr(patch))
    out = podstatus.merge(cur, patch)
    assert (repr(cur), repr(patch)) == before
    assert out["conditions"] == [cond("PodScheduled", "True", T0)]


def test_a_real_pod_walks_the_stages_in_order_on_a_fake_clock(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", clock=clock, capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        watch = rt.store.watch("Pod")
        rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "python:3.11", "command": [sys.executable, "-c", "print(1)"]}]}})
        seen, deadline = [], time.monotonic() + 60
        while time.monotonic() < deadline:
            ev = watch.get(timeout=1)
            if ev is None:
                continue
            st = ev.object.get("status") or {}
            step = (st.get("phase"), tuple(sorted(c["type"] for c in st.get("conditions") or [] if c["status"] == "True")))
            if not seen or seen[-1] != step:
                seen.append(step)
            if st.get("phase") in ("Succeeded", "Failed"):
                break
        watch.close()
        final = rt.store.get("Pod", "p")["status"]
    assert seen == [("Pending", ()), ("Pending", ("PodScheduled",)),
                    ("Running", ("ContainersReady", "Initialized", "PodScheduled", "Ready")),
                    ("Succeeded", ("Initialized", "PodScheduled"))]
    term = final["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert final["startTime"] == T0 and all(c["lastTransitionTime"] == T0 for c in final["conditions"])
