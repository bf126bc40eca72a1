"""Extended resources: ``nvidia.com/gpu`` requests are counted against the node's devices
(``node: {gpus: N}`` in localflow.yaml declares them here) and assigned through
``NVIDIA_VISIBLE_DEVICES``/``CUDA_VISIBLE_DEVICES``, so two 1-GPU Pods never share a device; a
Pod asking for more than the node has is refused with kube-scheduler's wording."""
from __future__ import annotations

import sys

import pytest
from polling import wait_until

from localflow.api import open_runtime
from localflow.config import parse_config
from localflow.errors import Unschedulable
from localflow.fakes import ObjectStore
from localflow.scheduler import Capacity

PY = sys.executable


def gpu_pod(name, gpus, code):
    return {"metadata": {"name": name}, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
         "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}




@pytest.fixture
def rt(tmp_path):
    cfg = parse_config({"node": {"gpus": 2}})
    with open_runtime(tmp_path / "ws", config=cfg, capacity=Capacity(cpu=4, memory=8 << 30)) as runtime:
        yield runtime


def log(rt, name):
    p = rt.store.get("Pod", name)
    path = rt.workspace.logs_dir / p["metadata"]["uid"] / "main" / "0.log"
    return path.read_text() if path.exists() else ""


def test_one_gpu_pods_get_distinct_devices_and_a_third_waits_for_a_free_one(rt, tmp_path):
    gate = tmp_path / "gate"
    code = ("import os, time\n"
            "print(os.environ['NVIDIA_VISIBLE_DEVICES'], os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\n"
            f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)")
    for name in ("a", "b", "c"):
        rt.scheduler.submit(gpu_pod(name, 1, code))
    first = wait_until(what="two Pods to print their devices", predicate=lambda: [log(rt, n).split() for n in ("a", "b")]
                 if all(log(rt, n).endswith("\n") for n in ("a", "b")) else None)
    assert sorted(d[0] for d in first) == ["0", "1"] and all(d[0] == d[1] for d in first)
    c = rt.store.get("Pod", "c")
    assert c["status"]["phase"] == "Pending"
    (cond,) = [x for x in c["status"]["conditions"] if x["type"] == "PodScheduled"]
    assert cond["message"] == "0/1 nodes are available: Insufficient nvidia.com/gpu."
    gate.write_text("go")
    assert rt.scheduler.wait_idle(timeout=60)
    assert log(rt, "c").split()[0] in ("0", "1")
    assert all(rt.store.get("Pod", n)["status"]["phase"] == "Succeeded" for n in "abc")


def test_a_pod_asking_for_more_gpus_than_the_node_has_is_refused(rt):
    with pytest.raises(Unschedulable) as err:
        rt.scheduler.submit(gpu_pod("greedy", 3, "pass"))
    assert "0/1 nodes are available: Insufficient nvidia.com/gpu." in str(err.value)
    assert rt.store.list("Pod") == []
    with ObjectStore(rt.workspace.db_path) as other:  # created by someone else: stays Pending, says why
        other.create({"apiVersion": "v1", "kind": "Pod", **gpu_pod("greedy", 3, "pass")})
        p = wait_until(what="the scheduler's verdict", predicate=lambda: (lambda q: q if any(
            c["type"] == "PodScheduled" for c in (q.get("status") or {}).get("conditions") or []) else None)(other.get("Pod", "greedy")))
    assert p["status"]["phase"] == "Pending"
    assert p["status"]["conditions"][0]["message"] == "0/1 nodes are available: Insufficient nvidia.com/gpu."


def test_node_gpus_in_localflow_yaml_is_checked():
    from localflow.errors import SpecError

    assert parse_config({"node": {"gpus": 0}}).gpus == 0
    assert parse_config({}).gpus is None
    with pytest.raises(SpecError, match=r"node\.gpus"):
        parse_config({"node": {"gpus": -1}})
