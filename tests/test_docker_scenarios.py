"""Bundled scenarios on the docker executor: same results as on the subprocess executor, replicas
reaching each other by the operator's hostnames, and `localflow gc` after localflow is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from docker_support import docker_client, python_image, require_image  # noqa: F401  (fixtures)

import localflow
from localflow.config import parse_config

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "scenarios" / "pipelines"
TRAINING = ROOT / "scenarios" / "training"
TRAINING_IMAGE = "localflow/training-python:latest"


@pytest.fixture(scope="module")
def training_image(docker_client):  # noqa: F811
    return require_image(docker_client, TRAINING_IMAGE)


def run_both(spec, tmp_path, config=None, params=None):
    sub = localflow.run(spec, params, workspace=tmp_path / "sub", config=config)
    dock = localflow.run(spec, params, executor="docker", workspace=tmp_path / "docker", config=config)
    return sub, dock


def states(run):
    return {name: t.state for name, t in run.tasks.items()}


@pytest.mark.parametrize("name", ["container_components", "parallel_for"])
def test_pipeline_scenario_gives_the_same_results_in_containers(name, tmp_path, python_image):  # noqa: F811
    # no registry: the spec's alpine image is mapped to a local one, as a user's localflow.yaml would
    cfg = parse_config({"images": {"alpine:*": {"docker": python_image}}})
    sub, dock = run_both(PIPELINES / f"{name}.yaml", tmp_path, config=cfg)
    assert sub.state == dock.state == "SUCCEEDED", (sub.error, dock.error)
    assert dock.outputs == {k: v for k, v in sub.outputs.items()} or _same_but_uris(sub.outputs, dock.outputs)
    assert states(dock) == states(sub)
    pods = dock.pods
    assert pods and all(p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0 for p in pods)


def _same_but_uris(a: dict, b: dict) -> bool:
    def strip(v):
        if isinstance(v, dict) and "uri" in v:
            return {k: x for k, x in v.items() if k not in ("uri", "id")}
        if isinstance(v, list):
            return [strip(x) for x in v]
        return v
    return {k: strip(v) for k, v in a.items()} == {k: strip(v) for k, v in b.items()}


def test_training_pipeline_runs_in_a_container_with_scikit_learn(tmp_path, training_image):
    cfg = parse_config({"images": {"python:3.11": {"docker": TRAINING_IMAGE}}})
    run = localflow.run(PIPELINES / "training_pipeline.yaml", executor="docker", workspace=tmp_path, config=cfg)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["accuracy"] >= 0.9
    model = Path(run.task("train").outputs["artifacts"]["model"][0]["uri"])
    assert model.exists() and model.stat().st_size > 0


def test_failing_task_and_exit_handler_in_containers(tmp_path, python_image):  # noqa: F811
    run = localflow.run(PIPELINES / "exit_handler.yaml", {"fail": True}, executor="docker", workspace=tmp_path)
    assert run.state == "FAILED"
    assert run.task("final-status").state == "SUCCEEDED"
    assert run.task("final-status").outputs["parameters"]["Output"] == "FAILED exit-handler-1"


def test_tfjob_replicas_reach_each_other_by_operator_hostnames(tmp_path, python_image):  # noqa: F811
    run = localflow.run(TRAINING / "tfjob.yaml", executor="docker", workspace=tmp_path, config=TRAINING / "localflow.yaml")
    assert run.state == "SUCCEEDED", run.error
    pod = next(p for p in run.pods if p["metadata"]["name"].endswith("worker-0"))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    cluster = json.loads(env["TF_CONFIG"])["cluster"]
    hosts = [h.rsplit(":", 1)[0] for addrs in cluster.values() for h in addrs]
    job = run.name
    assert all(h.startswith(f"{job}-") for h in hosts), hosts
    assert "127.0.0.1" not in env["TF_CONFIG"]


def test_pytorchjob_trains_across_two_containers(tmp_path, training_image):
    run = localflow.run(TRAINING / "pytorchjob.yaml", executor="docker", workspace=tmp_path, config=TRAINING / "localflow.yaml")
    assert run.state == "SUCCEEDED", run.error
    worker = next(p for p in run.pods if "-worker-" in p["metadata"]["name"])
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"{run.name}-master-0"
    assert env["WORLD_SIZE"] == "2" and env["RANK"] == "1"


def _labelled(client, run_id):
    containers = client.containers.list(all=True, filters={"label": f"localflow.dev/run-id={run_id}"},
                                        ignore_removed=True)
    networks = client.networks.list(filters={"label": "localflow.dev/network"})
    return containers, [n for n in networks if (n.attrs.get("Labels") or {}).get("localflow.dev/run-id") == run_id]


def test_gc_after_localflow_is_killed_mid_run_leaves_nothing(tmp_path, docker_client, python_image):  # noqa: F811
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(PIPELINES / "sleep_fanout.yaml"),
                             "-p", "seconds=60", "--executor", "docker", "-W", str(ws)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        run_id = None
        while time.monotonic() < deadline:
            found = docker_client.containers.list(filters={"label": "localflow.dev/run-id", "status": "running"},
                                                  ignore_removed=True)
            mine = [c for c in found if str(ws) in json.dumps(c.attrs.get("Mounts") or [])]
            if len(mine) >= 2:
                run_id = mine[0].labels["localflow.dev/run-id"]
                break
            time.sleep(0.2)
        assert run_id, "no container of the run started"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert _labelled(docker_client, run_id)[0], "containers should outlive the killed localflow"
        out = subprocess.run([sys.executable, "-m", "localflow", "gc", "-W", str(ws)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        containers, networks = _labelled(docker_client, run_id)
        assert containers == [] and networks == []
        runs = yaml.safe_load(subprocess.run([sys.executable, "-m", "localflow", "get", "runs", "-W", str(ws), "-o", "yaml"],
                                             capture_output=True, text=True, check=True).stdout)["items"]
        assert runs[0]["state"] == "FAILED" and "gc" in runs[0]["error"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_ctrl_c_stops_every_container_in_parallel_and_records_the_cancel(tmp_path, docker_client, python_image):  # noqa: F811
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(PIPELINES / "sleep_fanout.yaml"),
                             "-p", "seconds=300", "--no-cache", "--executor", "docker", "-W", str(ws)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        mine = []
        while time.monotonic() < deadline and len(mine) < 4:
            found = docker_client.containers.list(filters={"label": "localflow.dev/run-id", "status": "running"},
                                                  ignore_removed=True)
            mine = [c for c in found if str(ws) in json.dumps(c.attrs.get("Mounts") or [])]
            time.sleep(0.2)
        assert len(mine) >= 4
        run_id = mine[0].labels["localflow.dev/run-id"]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # a second Ctrl-C must not cut the recording short
        proc.wait(120)
        # every container gets its grace period at the same time, not one after another
        assert time.monotonic() - t0 < 25
        assert proc.returncode == 130
        assert _labelled(docker_client, run_id)[0] == []
        runs = yaml.safe_load(subprocess.run([sys.executable, "-m", "localflow", "get", "runs", "-W", str(ws), "-o", "yaml"],
                                             capture_output=True, text=True, check=True).stdout)["items"]
        assert runs[0]["state"] == "CANCELED"
    finally:
        if proc.poll() is None:
            proc.kill()
