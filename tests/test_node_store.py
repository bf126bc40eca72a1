"""The node is driven by the object store: a Pod created in the store by anyone -- another
ObjectStore on the workspace, another process -- is admitted, bound and run; deleting the Pod, or
its owner, stops its processes; Pods bound elsewhere, finished or claimed by another node are left
alone. Real processes; every wait is a bounded poll."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import psutil
import pytest
from polling import wait_until

from localflow.api import open_runtime
from localflow.fakes import ObjectStore
from localflow.scheduler import Capacity

PY = sys.executable


def pod(name, code, **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **spec.pop("meta", {})},
            "spec": {"restartPolicy": "Never",
                     "containers": [{"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
                                     **spec.pop("container", {})}], **spec}}




def phase_of(store, name, phases=("Succeeded", "Failed")):
    def check():
        p = store.get("Pod", name)
        return p if (p.get("status") or {}).get("phase") in phases else None
    return check


def log_of(rt, p):
    path = rt.workspace.logs_dir / p["metadata"]["uid"] / "main" / "0.log"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as runtime:
        yield runtime


@pytest.fixture
def other(rt):
    """A second ObjectStore on the same workspace database (another API client)."""
    with ObjectStore(rt.workspace.db_path) as store:
        yield store


def test_a_pod_created_by_another_store_is_bound_and_runs_to_succeeded(rt, other):
    created = other.create(pod("from-store", "print('hello from the store')"))
    assert not created["spec"].get("nodeName")
    p = wait_until(what="the Pod to end", predicate=phase_of(other, "from-store"))
    assert p["status"]["phase"] == "Succeeded"
    assert p["spec"]["nodeName"] == "localflow"
    assert {c["type"]: c["status"] for c in p["status"]["conditions"]}["PodScheduled"] == "True"
    events = {e["reason"]: e for e in other.events_for(p)}
    assert events["Scheduled"]["message"] == "Successfully assigned default/from-store to localflow"
    assert log_of(rt, p) == "hello from the store\n"


def test_a_pod_created_by_another_process_runs_to_succeeded(rt):
    script = textwrap.dedent(f"""
        import json, sys
        from localflow.fakes import ObjectStore
        with ObjectStore({str(rt.workspace.db_path)!r}) as s:
            s.create(json.loads(sys.argv[1]))
        """)
    subprocess.run([PY, "-c", script, json.dumps(pod("from-process", "print(6 * 7)"))], check=True, timeout=60)
    p = wait_until(what="the Pod to end", predicate=phase_of(rt.store, "from-process"))
    assert p["status"]["phase"] == "Succeeded" and p["spec"]["nodeName"] == "localflow"
    assert log_of(rt, p) == "42\n"


SPAWN = ("import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
         "import os; print(os.getpid(), child.pid, flush=True)\n"
         "time.sleep(300)")


def started_pids(rt, store, name):
    def check():
        p = store.get("Pod", name)
        if (p.get("status") or {}).get("phase") != "Running":
            return None
        words = log_of(rt, p).split()
        return [int(w) for w in words] if len(words) == 2 else None
    return wait_until(what="the Pod's processes to start", predicate=check)


def gone(pids):
    return lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                           for pid in pids)


def test_deleting_a_running_pod_kills_its_process_group(rt, other):
    other.create(pod("sleeper", SPAWN))
    pids = started_pids(rt, other, "sleeper")
    assert all(psutil.pid_exists(pid) for pid in pids)
    other.delete("Pod", "sleeper")
    wait_until(what="the Pod's processes to go", predicate=gone(pids), timeout=30)
    assert rt.scheduler.wait_idle(timeout=30)
    assert not any(p["metadata"]["name"] == "sleeper" for p in other.list("Pod"))  # nothing wrote it back
    assert not rt.scheduler.faults and not rt.scheduler.watch_errors


def test_deleting_the_owner_stops_its_pods(rt, other):
    owner = other.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}, "data": {}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    other.create(pod("owned", SPAWN, meta={"ownerReferences": [ref]}))
    pids = started_pids(rt, other, "owned")
    other.delete("ConfigMap", "owner")
    wait_until(what="the owned Pod's processes to go", predicate=gone(pids), timeout=30)
    assert rt.scheduler.wait_idle(timeout=30)
    assert other.list("Pod") == []


def test_a_submitted_pod_is_created_unbound_then_bound_on_the_same_path(rt):
    watch = rt.store.watch("Pod")
    rt.scheduler.submit(pod("submitted", "pass"))
    first = watch.get(timeout=10)
    watch.close()
    assert first.type == "ADDED" and not first.object["spec"].get("nodeName")
    p = wait_until(what="the Pod to end", predicate=phase_of(rt.store, "submitted"))
    assert p["status"]["phase"] == "Succeeded" and p["spec"]["nodeName"] == "localflow"
    assert "Scheduled" in [e["reason"] for e in rt.store.events_for(p)]


def test_pods_bound_elsewhere_finished_or_claimed_are_left_alone(rt, other):
    other.create(pod("elsewhere", "print('no')", nodeName="node-b"))
    other.create({**pod("done", "print('no')"), "status": {"phase": "Succeeded"}})
    other.create(pod("theirs", "print('no')", meta={"annotations": {"localflow.dev/scheduler": "localflow-other"}}))
    other.create(pod("volcano", "print('no')", schedulerName="volcano"))
    other.create(pod("mine", "print('yes')"))
    wait_until(what="the last Pod to end", predicate=phase_of(other, "mine"))  # the watch delivered the others before it
    assert rt.scheduler.wait_idle(timeout=30)
    for name, phase in (("elsewhere", None), ("done", "Succeeded"), ("theirs", None), ("volcano", None)):
        p = other.get("Pod", name)
        assert (p.get("status") or {}).get("phase") == phase, name
        assert not other.events_for(p), name
        assert not (rt.workspace.logs_dir / p["metadata"]["uid"]).exists(), name


def test_a_store_pod_that_never_fits_stays_pending_with_the_scheduler_message(rt, other):
    other.create(pod("huge", "pass", container={"resources": {"requests": {"cpu": "64"}}}))
    other.create(pod("after", "pass"))
    wait_until(what="the next Pod to end", predicate=phase_of(other, "after"))
    p = other.get("Pod", "huge")
    assert p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")
    (c,) = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert (c["status"], c["reason"], c["message"]) == ("False", "Unschedulable",
                                                         "0/1 nodes are available: Insufficient cpu.")
    assert [e["reason"] for e in other.events_for(p)] == ["FailedScheduling"]
    assert rt.scheduler.wait_idle(timeout=30)  # it is not queued: the node is idle


def test_two_nodes_on_one_workspace_run_a_store_pod_exactly_once(rt, other, tmp_path):
    with open_runtime(rt.workspace, capacity=Capacity(cpu=2, memory=8 << 30)) as second:
        other.create(pod("once", "print('ran')"))
        p = wait_until(what="the Pod to end", predicate=phase_of(other, "once"))
        assert rt.scheduler.wait_idle(timeout=30) and second.scheduler.wait_idle(timeout=30)
    assert p["status"]["phase"] == "Succeeded"
    assert log_of(rt, p) == "ran\n"
    assert [e["reason"] for e in other.events_for(p)].count("Scheduled") == 1
