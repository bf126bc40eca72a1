"""The real ``kubeflow-training`` 1.9.4 ``TrainingClient`` (its own venv, tests/sdk_envs.py) against
``localflow serve`` over HTTP: the PyTorchJobs it creates really run on the server's workers, with
the SDK's generated image mapped to this interpreter by a ``localflow.yaml`` image map."""
from __future__ import annotations

import sys

import pytest
import yaml

from localflow.pytest_plugin import LocalflowServer
from tests.sdk_envs import run_sdk_script

# slow; the first run also creates the SDK venv from PyPI (minutes), hence the longer timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

#: the image kubeflow-training 1.9.4 generates for train_func (constants.PYTORCHJOB_BASE_IMAGE)
SDK_IMAGE = "docker.io/pytorch/pytorch:2.1.2-cuda11.8-cudnn8-runtime"
RANK_SCRIPT = "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], 'master', os.environ['MASTER_ADDR'])"  # 127.0.0.1: every replica is on this machine


def _replica(n: int) -> dict:
    return {"replicas": n, "restartPolicy": "OnFailure",
            "template": {"spec": {"containers": [{"name": "pytorch", "image": SDK_IMAGE,
                                                  "command": ["python", "-c", RANK_SCRIPT]}]}}}


def test_training_client_creates_runs_follows_updates_and_deletes_pytorchjobs(tmp_path):
    config = tmp_path / "localflow.yaml"
    config.write_text(yaml.safe_dump({"images": {"*pytorch/pytorch:*": {"python": sys.executable, "env": {"OMP_NUM_THREADS": "1"}}}}))
    job = tmp_path / "pytorchjob.yaml"
    job.write_text(yaml.safe_dump({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "sdk-yaml"},
                                   "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "pytorchReplicaSpecs": {"Master": _replica(1), "Worker": _replica(1)}}}))
    server = LocalflowServer(tmp_path / "ws", args=["-c", config])
    try:
        kc = tmp_path / "kubeconfig"
        assert server.cli("kubeconfig", "--file", kc).returncode == 0
        out = run_sdk_script("training", "training_client.py", kc, str(job), timeout=600)
    finally:
        server.stop()
    assert out["yaml_job"] == {"name": "sdk-yaml", "kind": "PyTorchJob", "uid": True}
    assert out["listed"] == ["sdk-torchrun", "sdk-train-func", "sdk-yaml"]
    assert "Succeeded" in out["yaml_conditions"]
    # the master pod only (label training.kubeflow.org/job-role=master), container pytorch
    assert list(out["yaml_logs"]) == ["sdk-yaml-master-0"]
    assert out["yaml_logs"]["sdk-yaml-master-0"].strip() == "rank 0 of 2 master 127.0.0.1"
    assert out["yaml_logs_follow"]["sdk-yaml-master-0"].strip() == "rank 0 of 2 master 127.0.0.1"
    assert "Succeeded" in out["func_conditions"] and out["func_succeeded"] is True
    assert out["func_image"] == SDK_IMAGE
    assert "final w=3.000" in out["func_logs"]["sdk-train-func-master-0"]
    assert "Succeeded" in out["torchrun_conditions"]
    assert out["torchrun_command"][0] == "torchrun"
    # every pod of the job (is_master=False): both replicas joined one gloo group of 2
    assert sorted(out["torchrun_logs"]) == ["sdk-torchrun-master-0", "sdk-torchrun-worker-0"]
    assert out["torchrun_logs"]["sdk-torchrun-master-0"].strip() == "rank 0 of 2 node 0: sum 1"
    assert out["torchrun_logs"]["sdk-torchrun-worker-0"].strip() == "rank 1 of 2 node 1: sum 1"
    assert out["labels_after_update"]["team"] == "sdk"
    assert out["listed_after_delete"] == []
