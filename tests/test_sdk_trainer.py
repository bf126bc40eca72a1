"""The real ``kubeflow`` 0.5.0 ``TrainerClient`` (Kubernetes backend, own venv, tests/sdk_envs.py)
against ``localflow serve`` over HTTP: it lists the built-in runtimes the server serves, and the
TrainJob it posts runs on the server's workers (the runtime's image mapped to this interpreter)."""
from __future__ import annotations

import sys

import pytest
import yaml

from localflow.pytest_plugin import LocalflowServer
from tests.sdk_envs import run_sdk_script

# slow; the first run also creates the SDK venv from PyPI (minutes), hence the longer timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_trainer_client_trains_a_function_on_the_torch_distributed_runtime(tmp_path):
    config = tmp_path / "localflow.yaml"
    # torch-distributed's image (localflow/training/runtimes.py); python and torchrun come from this machine
    config.write_text(yaml.safe_dump({"images": {"*pytorch/pytorch:*": {"python": sys.executable,
                                                                      "env": {"OMP_NUM_THREADS": "1"}}}}))
    server = LocalflowServer(tmp_path / "ws", args=["-c", config])
    try:
        kc = tmp_path / "kubeconfig"
        assert server.cli("kubeconfig", "--file", kc).returncode == 0
        out = run_sdk_script("kubeflow", "trainer_client.py", kc, "2", timeout=600)
    finally:
        server.stop()
    assert out["runtimes"] == ["jax-distributed", "torch-distributed", "xgboost-distributed"]
    assert out["runtime_framework"] == "torch"
    assert out["status"] == "Complete"
    assert out["num_nodes"] == 2
    assert out["steps"] == [["node-0", "Succeeded"], ["node-1", "Succeeded"]]
    assert any("rank 0 of 2: w=2.00" in line for line in out["logs"]), out["logs"]
    assert any("rank 0 of 2: w=2.00" in line for line in out["logs_follow"]), out["logs_follow"]
    assert out["listed"] == [True]
    assert out["listed_after_delete"] == []


def test_builtin_cluster_training_runtimes_are_served_and_a_stored_one_wins(tmp_path):
    import json
    import urllib.request

    from localflow.apiserver import ApiServer
    from localflow.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    server = ApiServer(ws.db_path, logs_dir=ws.logs_dir)
    url = server.start()

    def call(path, method="GET", body=None):
        req = urllib.request.Request(url + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    base = "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes"
    try:
        code, doc = call(base)
        assert code == 200 and [o["metadata"]["name"] for o in doc["items"]] == [
            "jax-distributed", "torch-distributed", "xgboost-distributed"]
        code, doc = call(base + "?labelSelector=trainer.kubeflow.org/framework%3Dtorch")
        assert [o["metadata"]["name"] for o in doc["items"]] == ["torch-distributed"]
        code, rt = call(base + "/torch-distributed")
        assert code == 200 and rt["spec"]["template"]["spec"]["replicatedJobs"][0]["name"] == "node"
        mine = {**rt, "metadata": {"name": "torch-distributed", "labels": {"trainer.kubeflow.org/framework": "torch",
                                                                           "mine": "yes"}}}
        assert call(base, "POST", mine)[0] == 201
        code, doc = call(base)
        assert [o["metadata"].get("labels", {}).get("mine") for o in doc["items"]] == [None, "yes", None]
        assert call(base + "/torch-distributed")[1]["metadata"]["labels"]["mine"] == "yes"
        assert call(base + "/no-such-runtime")[0] == 404
    finally:
        server.stop()
