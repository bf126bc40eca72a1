"""``localflow export`` and ``localflow submit``: the same files sent to a cluster, here a
``localflow serve`` standing in for one (the real ``kubernetes`` client over HTTP, another
kubeconfig context), as a user moving from laptop to cluster would."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli_support import lf

ROOT = Path(__file__).resolve().parents[1]
TRAINING = ROOT / "scenarios" / "training"


def test_export_reverses_the_image_map_and_keeps_the_spec(tmp_path):
    cfg = tmp_path / "localflow.yaml"
    src = tmp_path / "src"
    src.mkdir()
    cfg.write_text(yaml.safe_dump({"images": {"registry.example.com/team/train:1": {"paths": {"/opt/app": "src"},
                                                                                    "docker": "localflow/python:3.11"}}}))
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "c", "image": "localflow/python:3.11",
                                                   "command": ["python", f"{src}/train.py", f"--out={src}/model"]}]}}}}
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(job))
    out = lf("export", spec, "-c", cfg, "-n", "team-a", check=0).stdout
    (obj,) = list(yaml.safe_load_all(out))
    c = obj["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "registry.example.com/team/train:1"
    assert c["command"] == ["python", "/opt/app/train.py", "--out=/opt/app/model"]
    assert obj["metadata"] == {"name": "j", "namespace": "team-a"}
    assert str(tmp_path) not in out


def test_export_refuses_a_bad_spec_with_the_field_path(tmp_path):
    bad = yaml.safe_load((TRAINING / "tfjob.yaml").read_text())
    bad["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = -1
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(bad))
    p = lf("export", spec, check=2)
    assert p.stderr.count("\n") == 1 and "spec.tfReplicaSpecs.Worker.replicas" in p.stderr


def test_export_of_a_compiled_pipeline_is_the_pipeline(tmp_path):
    docs = list(yaml.safe_load_all(lf("export", ROOT / "scenarios" / "pipelines" / "params.yaml", check=0).stdout))
    assert docs[0]["pipelineInfo"] == list(yaml.safe_load_all((ROOT / "scenarios" / "pipelines" / "params.yaml").read_text()))[0]["pipelineInfo"]


@pytest.mark.slow
def test_submit_sends_a_job_with_server_side_apply_to_another_context(localflow_server, tmp_path):
    kc = tmp_path / "cluster-kubeconfig"
    assert localflow_server.cli("kubeconfig", "--file", kc).returncode == 0
    # the laptop's own workspace is elsewhere: submit goes only to the cluster's context
    p = lf("submit", TRAINING / "tfjob.yaml", "--kubeconfig", kc, "--context", "localflow", "-c", TRAINING / "localflow.yaml",
           check=0, cwd=tmp_path)
    name = yaml.safe_load((TRAINING / "tfjob.yaml").read_text())["metadata"]["name"]
    assert p.stdout.strip() == f"tfjob.kubeflow.org/{name} serverside-applied"
    got = json.loads(localflow_server.cli("get", "tfjobs", name, "-o", "json").stdout)
    assert got["metadata"]["name"] == name
    assert not (tmp_path / ".localflow").exists()
    # again: an update of the same object, not an error
    lf("submit", TRAINING / "tfjob.yaml", "--kubeconfig", kc, "-c", TRAINING / "localflow.yaml", check=0, cwd=tmp_path)


def test_submit_to_an_unknown_context_is_one_line_exit_2(tmp_path):
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": [],
                                  "current-context": ""}))
    p = lf("submit", TRAINING / "tfjob.yaml", "--kubeconfig", kc, "--context", "nope", check=2)
    assert p.stderr.count("\n") == 1 and "--context" in p.stderr


def test_submit_of_a_pipeline_without_a_kfp_host_says_so(tmp_path):
    p = lf("submit", ROOT / "scenarios" / "pipelines" / "params.yaml", check=2)
    assert "--kfp-host" in p.stderr and p.stderr.count("\n") == 1


def test_submit_with_a_malformed_or_missing_kubeconfig_is_one_line_exit_2(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    for kc in (bad, tmp_path / "missing.yaml"):
        p = lf("submit", ROOT / "scenarios" / "jobs" / "job.yaml", "--kubeconfig", kc, check=2)
        assert p.stderr.count("\n") == 1 and "--kubeconfig" in p.stderr and "internal error" not in p.stderr
