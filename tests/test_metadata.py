"""The metadata store records runs, executions, artifacts and lineage as ML Metadata does for KFP."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from localflow.clock import FakeClock
from localflow.errors import NotFound, SpecError
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.workspace import Workspace, resolve_workspace

CONTAINER = "system.ContainerExecution"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def workspace(tmp_path):
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def md(workspace, clock):
    store = MetadataStore(workspace.db_path, clock=clock)
    yield store
    store.close()


# ---------------------------------------------------------------- runs


def test_run_lifecycle_with_clock_timestamps(md, clock):
    run = md.create_run("r-1", "train-run", "PipelineRun", pipeline_name="train", spec_path="/p.yaml",
                        parameters={"lr": 0.1, "epochs": 3})
    assert run == {
        "id": "r-1", "name": "train-run", "kind": "PipelineRun", "pipeline_name": "train", "spec_path": "/p.yaml",
        "state": "PENDING", "parameters": {"lr": 0.1, "epochs": 3}, "outputs": {}, "error": None,
        "executor": "subprocess", "namespace": "default", "created_at": "2026-01-01T00:00:00Z", "finished_at": None,
    }
    md.update_run("r-1", state="RUNNING")
    clock.advance(90)
    done = md.update_run("r-1", state="FAILED", error="task train failed", outputs={"acc": 0.9}, finished=True)
    assert done["state"] == "FAILED" and done["error"] == "task train failed"
    assert done["outputs"] == {"acc": 0.9}
    assert done["finished_at"] == "2026-01-01T00:01:30Z"


def test_get_run_by_name_returns_the_newest(md, clock):
    md.create_run("a", "nightly", "PipelineRun")
    clock.advance(1)
    md.create_run("b", "nightly", "PipelineRun")
    assert md.get_run("nightly")["id"] == "b"
    assert md.get_run("a")["id"] == "a"
    assert [r["id"] for r in md.list_runs()] == ["a", "b"]


def test_missing_run_and_bad_state_are_reported(md):
    with pytest.raises(NotFound, match="localflow get runs"):
        md.get_run("nope")
    with pytest.raises(NotFound):
        md.update_run("nope", state="RUNNING")
    md.create_run("r", "r", "TFJob")
    with pytest.raises(SpecError, match="SUCCEEDED"):
        md.update_run("r", state="DONE")
    with pytest.raises(SpecError, match="already exists"):
        md.create_run("r", "r", "TFJob")


# ---------------------------------------------------------------- contexts


def test_put_context_is_get_or_create(md):
    pipeline = md.put_context("system.Pipeline", "train")
    run_ctx = md.put_context("system.PipelineRun", "r-1", {"namespace": "default"})
    assert md.put_context("system.Pipeline", "train") == pipeline
    assert md.put_context("system.PipelineRun", "r-1", {"extra": 1}) == run_ctx
    assert run_ctx != pipeline
    assert md.get_context(run_ctx)["properties"] == {"namespace": "default", "extra": 1}


def test_contexts_group_executions_and_artifacts(md):
    ctx = md.put_context("system.PipelineRun", "r-1")
    ex = md.create_execution("r-1", CONTAINER, "train")
    art = md.create_artifact("file:///a/model", "system.Model", "model")
    md.associate(ctx, ex)
    md.associate(ctx, ex)  # idempotent
    md.attribute(ctx, art)
    assert [e["id"] for e in md.executions_in_context(ctx)] == [ex]
    assert [a["id"] for a in md.artifacts_in_context(ctx)] == [art]
    with pytest.raises(NotFound):
        md.associate(ctx, 999)


# ---------------------------------------------------------------- executions


def test_execution_updates_and_filters(md, clock):
    dag = md.create_execution("r-1", "system.DAGExecution", "root")
    ex = md.create_execution("r-1", CONTAINER, "train", inputs={"lr": 0.1}, parent_id=dag, attempt=1,
                             fingerprint="fp", properties={"image": "python:3.11"})
    clock.advance(5)
    md.update_execution(ex, state="RUNNING", pod_name="r-1-train-abc", started=True, properties={"pid": 12})
    clock.advance(5)
    got = md.update_execution(ex, state="COMPLETE", outputs={"loss": 0.2}, finished=True)
    assert got["inputs"] == {"lr": 0.1} and got["outputs"] == {"loss": 0.2}
    assert got["properties"] == {"image": "python:3.11", "pid": 12}
    assert got["pod_name"] == "r-1-train-abc" and got["parent_id"] == dag and got["attempt"] == 1
    assert (got["created_at"], got["started_at"], got["finished_at"]) == (
        "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z", "2026-01-01T00:00:10Z")
    assert [e["name"] for e in md.list_executions(run_id="r-1")] == ["root", "train"]
    assert [e["id"] for e in md.list_executions(state="COMPLETE")] == [ex]
    assert [e["id"] for e in md.list_executions(type="system.DAGExecution")] == [dag]
    assert md.list_executions(name="train", run_id="other") == []
    with pytest.raises(SpecError):
        md.update_execution(ex, state="DONE")
    with pytest.raises(NotFound):
        md.get_execution(12345)


# ---------------------------------------------------------------- artifacts and lineage


def test_lineage_both_ways(md):
    prep = md.create_execution("r-1", CONTAINER, "preprocess")
    train = md.create_execution("r-1", CONTAINER, "train")
    evaluate = md.create_execution("r-1", CONTAINER, "evaluate")
    data = md.create_artifact("file:///ws/artifacts/r-1/preprocess/data", "system.Dataset", "data", run_id="r-1",
                              metadata={"rows": 178})
    model = md.create_artifact("file:///ws/artifacts/r-1/train/model", "system.Model", "model", run_id="r-1")
    md.add_event(prep, data, "OUTPUT", "data")
    md.add_event(train, data, "INPUT", "data")
    md.add_event(evaluate, data, "INPUT", "test_data")
    md.add_event(train, model, "OUTPUT", "model")
    md.add_event(evaluate, model, "INPUT", "model")
    md.add_event(evaluate, model, "INPUT", "model")  # idempotent

    data_lineage = md.lineage(data)
    assert data_lineage["producer"]["name"] == "preprocess"
    assert [c["name"] for c in data_lineage["consumers"]] == ["train", "evaluate"]
    assert md.lineage(model)["producer"]["id"] == train

    ins = md.artifacts_of(evaluate, "INPUT")
    assert [(a["name"], a["event"]) for a in ins] == [
        ("model", {"type": "INPUT", "key": "model", "index": 0}),
        ("data", {"type": "INPUT", "key": "test_data", "index": 0}),
    ]
    assert [a["id"] for a in md.artifacts_of(train)] == [data, model]
    assert md.artifacts_of(train, "OUTPUT")[0]["schema_title"] == "system.Model"
    assert ins[1]["metadata"] == {"rows": 178}
    with pytest.raises(SpecError):
        md.add_event(train, model, "PRODUCED", "model")
    with pytest.raises(NotFound):
        md.lineage(999)


def test_artifact_without_producer_has_empty_lineage(md):
    imported = md.create_artifact("file:///data.csv", "system.Dataset", "data")
    assert md.lineage(imported) == {"producer": None, "consumers": [], "cached_by": []}


def test_update_and_list_artifacts(md):
    a = md.create_artifact("file:///m", "system.Model", "model", run_id="r-1", metadata={"framework": "sklearn"})
    md.create_artifact("file:///d", "system.Dataset", "data", run_id="r-2")
    got = md.update_artifact(a, metadata={"accuracy": 0.93}, uri="file:///m2")
    assert got["metadata"] == {"framework": "sklearn", "accuracy": 0.93} and got["uri"] == "file:///m2"
    assert got["schema_version"] == "0.0.1"
    assert [x["id"] for x in md.list_artifacts(run_id="r-1")] == [a]
    assert [x["name"] for x in md.list_artifacts(schema_title="system.Dataset")] == ["data"]
    assert len(md.list_artifacts()) == 2
    with pytest.raises(NotFound):
        md.update_artifact(999, uri="x")


# ---------------------------------------------------------------- cache


def test_find_cached_finds_the_newest_complete_execution_across_runs(md, clock):
    assert md.find_cached("fp") is None
    old = md.create_execution("run-1", CONTAINER, "train", fingerprint="fp")
    md.update_execution(old, state="COMPLETE", outputs={"v": 1}, finished=True)
    clock.advance(10)
    new = md.create_execution("run-2", CONTAINER, "train", fingerprint="fp")
    model = md.create_artifact("file:///run-2/model", "system.Model", "model", run_id="run-2")
    md.add_event(new, model, "OUTPUT", "model")
    md.update_execution(new, state="COMPLETE", outputs={"v": 2}, finished=True)
    clock.advance(10)
    failed = md.create_execution("run-3", CONTAINER, "train", fingerprint="fp")
    md.update_execution(failed, state="FAILED", finished=True)
    md.create_execution("run-4", CONTAINER, "train", fingerprint="fp", state="CACHED")
    md.create_execution("run-5", CONTAINER, "train", fingerprint="other")

    hit = md.find_cached("fp")
    assert hit["id"] == new and hit["run_id"] == "run-2" and hit["outputs"] == {"v": 2}
    assert [(o["key"], o["index"], o["artifact"]["uri"]) for o in hit["output_artifacts"]] == [("model", 0, "file:///run-2/model")]
    assert md.find_cached("unknown") is None and md.find_cached("") is None


def test_find_cached_is_visible_from_a_later_store_on_the_same_file(workspace):
    with MetadataStore(workspace.db_path) as first:
        ex = first.create_execution("run-1", CONTAINER, "train", fingerprint="fp")
        first.update_execution(ex, state="COMPLETE", outputs={"x": 1}, finished=True)
    with MetadataStore(workspace.db_path) as second:
        assert second.find_cached("fp")["outputs"] == {"x": 1}


# ---------------------------------------------------------------- sharing and threads


def test_metadata_and_object_store_share_the_workspace_db(workspace, md):
    objects = ObjectStore(workspace.db_path)
    try:
        objects.create({"apiVersion": "pipelines.kubeflow.org/v2beta1", "kind": "Run", "metadata": {"name": "r-1"}})
        md.create_run("r-1", "r-1", "PipelineRun")
        other = MetadataStore(workspace.db_path)
        try:
            assert other.get_run("r-1")["kind"] == "PipelineRun"
        finally:
            other.close()
        assert objects.get("runs", "r-1")["kind"] == "Run"
    finally:
        objects.close()


def test_concurrent_writers_get_distinct_ids(md):
    ids: list[int] = []
    lock = threading.Lock()

    def work(t):
        for i in range(25):
            ex = md.create_execution(f"run-{t}", CONTAINER, f"task-{i}")
            art = md.create_artifact(f"file:///{t}/{i}", "system.Artifact", "out")
            md.add_event(ex, art, "OUTPUT", "out")
            md.update_execution(ex, state="COMPLETE", finished=True)
            with lock:
                ids.append(ex)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 100
    assert len(md.list_executions(state="COMPLETE")) == 100
    assert all(md.lineage(a["id"])["producer"] is not None for a in md.list_artifacts())


def test_values_that_are_not_json_are_spec_errors(md):
    with pytest.raises(SpecError, match="run.parameters"):
        md.create_run("r", "r", "PipelineRun", parameters={"f": object()})


# ---------------------------------------------------------------- workspace


def test_workspace_layout(tmp_path):
    ws = Workspace(tmp_path / "w")
    assert not ws.root.exists()
    ws.ensure()
    assert ws.db_path == ws.root / "localflow.db"
    assert ws.artifacts_dir.is_dir() and ws.logs_dir.is_dir()
    assert ws.pvc_dir("data") == ws.root / "pvc" / "data"
    assert ws.pod_dir("1234") == ws.root / "pods" / "1234"
    with pytest.raises(SpecError):
        ws.pvc_dir("../escape")


def test_workspace_resolution_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOCALFLOW_HOME", raising=False)
    assert resolve_workspace().root == (tmp_path / ".localflow").resolve()
    monkeypatch.setenv("LOCALFLOW_HOME", "from-env")
    assert resolve_workspace().root == (tmp_path / "from-env").resolve()
    assert resolve_workspace("explicit").root == (tmp_path / "explicit").resolve()
    assert Path(resolve_workspace().root).is_absolute()
