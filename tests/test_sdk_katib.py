"""The real ``kubeflow-katib`` 0.19.0 ``KatibClient`` (own venv with ``kubernetes`` 35.0.0,
tests/sdk_envs.py) against ``localflow serve`` over HTTP. The server's Katib controller runs the
Experiments meanwhile (tests/test_katib.py covers what it does); the checks here are API-level."""
from __future__ import annotations

from pathlib import Path

import pytest

from localflow.pytest_plugin import LocalflowServer
from tests.sdk_envs import run_sdk_script

# slow; the first run also creates the SDK venv from PyPI (minutes), hence the longer timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[1]
# Katib's own random-search example, from ../shared/corpus (never copied into the project)
RANDOM = ROOT.parent / "shared" / "corpus" / "katib" / "hp-tuning__random.yaml"


def test_katib_client_creates_lists_patches_and_deletes_experiments(tmp_path):
    if not RANDOM.exists():
        pytest.skip(f"the upstream corpus is not at {RANDOM.parent}")
    server = LocalflowServer(tmp_path / "ws")
    try:
        kc = tmp_path / "kubeconfig"
        assert server.cli("kubeconfig", "--file", kc).returncode == 0
        out = run_sdk_script("katib", "katib_client.py", kc, str(RANDOM))
    finally:
        server.stop()
    assert out["model"] == {"name": "sdk-model", "labels": {"made-by": "sdk-model"}, "uid": True, "algorithm": "random",
                            "max_trial_count": 3, "primary": "training-container"}
    assert out["duplicate"] == "A Katib Experiment with the name kubeflow/random already exists."
    assert out["yaml_parameters"] == ["lr", "momentum"]
    assert out["listed"] == {"default": ["sdk-model"], "kubeflow": ["random"]}
    assert out["trials_before"] == []
    assert out["trials"] == ["sdk-model-abc"]  # labelSelector katib.kubeflow.org/experiment=sdk-model
    assert out["optimal"] == {"trial": "sdk-model-abc", "lr": "0.02", "max": "0.97"}
    assert out["max_trial_count_after_edit"] == 5
    assert out["listed_after_delete"] == []
    assert "RuntimeError" in out["get_deleted"] and "sdk-model" in out["get_deleted"]
