"""The training scenarios in scenarios/training run for real through ``localflow.api.run`` and the image map."""
from __future__ import annotations

import json
import os

import pytest

from localflow.api import run
from localflow.config import load_config

HERE = os.path.join(os.path.dirname(__file__), "..", "scenarios", "training")


@pytest.fixture(scope="module")
def config():
    return load_config(os.path.join(HERE, "localflow.yaml"))


def logs(ws, pod, container):
    from localflow.api import read_logs

    return read_logs(ws, pod, container)


def test_tfjob_every_task_reaches_every_other_over_tf_config(tmp_path, config):
    r = run(os.path.join(HERE, "tfjob.yaml"), workspace=tmp_path / "ws", config=config, timeout=120)
    assert r.state == "SUCCEEDED", r.error
    assert r.object["status"]["conditions"][-1]["reason"] == "TFJobSucceeded"
    tasks = ["chief:0", "ps:0", "worker:0", "worker:1"]
    for pod, task in zip(["chief-0", "ps-0", "worker-0", "worker-1"], tasks):
        report = json.loads(logs(r.workspace, f"tf-config-check-{pod}", "tensorflow").splitlines()[-1])
        assert report["task"] == task and report["reached"] == [t for t in tasks if t != task]


def test_jaxjob_coordinator_all_reduce(tmp_path, config):
    r = run(os.path.join(HERE, "jaxjob.yaml"), workspace=tmp_path / "ws", config=config, timeout=120)
    assert r.state == "SUCCEEDED", r.error
    out = json.loads(logs(r.workspace, "jax-allreduce-worker-0", "jax").splitlines()[-1])
    assert out == {"process_id": 0, "num_processes": 3, "part": out["part"], "total": 332833500, "ok": True}


torch = pytest.importorskip("torch", reason="torch is not installed")


@pytest.mark.slow
def test_pytorchjob_trains_with_gloo_across_two_processes_and_saves_the_model(tmp_path, config):
    r = run(os.path.join(HERE, "pytorchjob.yaml"), workspace=tmp_path / "ws", config=config, timeout=300)
    assert r.state == "SUCCEEDED", r.error
    model_dir = r.workspace.pvc_dir("models") / "pytorch-ddp"
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["in_sync"] is True and metrics["accuracy"] > 0.9
    state = torch.load(model_dir / "model.pt")
    assert set(state) == {"weight", "bias"}
    assert "rank 0/2 master 127.0.0.1:" in logs(r.workspace, "pytorch-ddp-master-0", "pytorch")
    assert r.tasks["pytorch-ddp-master-0"].volumes == [{"claim": "models", "mountPath": "/mnt/models"}]


@pytest.mark.slow
def test_trainjob_torch_distributed_two_nodes(tmp_path, config):
    r = run(os.path.join(HERE, "trainjob.yaml"), workspace=tmp_path / "ws", config=config, timeout=300)
    assert r.state == "SUCCEEDED", r.error
    assert r.object["status"]["conditions"][-1]["reason"] == "AllJobsCompleted"
    assert r.object["status"]["jobsStatus"] == [{"name": "node", "ready": 0, "succeeded": 1, "failed": 0, "active": 0,
                                                 "suspended": 0}]
    metrics = json.loads((r.workspace.pvc_dir("models") / "trainjob-ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["in_sync"] is True
    assert sorted(r.tasks) == ["torch-ddp-node-0-0", "torch-ddp-node-0-1"]
