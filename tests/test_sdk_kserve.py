"""The real ``kserve`` 0.21.0 ``KServeClient`` (own venv with ``kubernetes`` 36.0.3, tests/sdk_envs.py)
against ``localflow serve`` over HTTP: InferenceServices stored and served (no KServe controller yet;
the script writes the Ready status KServe's controller would, so ``create(watch=True)`` can end)."""
from __future__ import annotations

import pytest

from localflow.pytest_plugin import LocalflowServer
from tests.sdk_envs import run_sdk_script

# slow; the first run also creates the SDK venv from PyPI (minutes), hence the longer timeout
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def test_kserve_client_creates_watches_gets_and_deletes_inference_services(tmp_path):
    server = LocalflowServer(tmp_path / "ws")
    try:
        kc = tmp_path / "kubeconfig"
        assert server.cli("kubeconfig", "--file", kc).returncode == 0
        out = run_sdk_script("kserve", "kserve_client.py", kc, timeout=180)
    finally:
        server.stop()
    assert out["created"] == {"name": "sklearn-iris", "uid": True, "format": "sklearn"}
    assert out["got_storage_uri"] == "gs://kfserving-examples/models/sklearn/1.0/model"
    assert out["ready_before"] is False
    assert out["watched_ready"] is True
    assert out["listed"] == ["sklearn-iris", "sklearn-watched"]
    assert out["listed_after_delete"] == []
    assert out["get_deleted"] == "404"
