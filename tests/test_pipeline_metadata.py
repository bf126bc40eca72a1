"""What a pipeline run records: the runs row, ML Metadata contexts, executions (NEW, RUNNING,
COMPLETE, FAILED, CANCELED; CACHED is in test_pipeline_caching_retry.py), artifacts, INPUT/OUTPUT
events with lineage both ways, the v2beta1 Run object with task details, and the Pods (labels,
phases, container statuses, logs). A failing task never loses what other tasks recorded."""
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Model, Output

from localflow.scheduler import Capacity
from pipeline_support import BASE, container_executions, metadata_of


@dsl.component(base_image=BASE)
def make_data(n: int, data: Output[Dataset]) -> int:
    print(f"making {n} rows")
    with open(data.path, "w") as f:
        f.write("x\n" * n)
    return n


@dsl.component(base_image=BASE)
def train(data: Input[Dataset], model: Output[Model]):
    with open(data.path) as f, open(model.path, "w") as m:
        m.write(str(len(f.read().splitlines())))


@dsl.pipeline(name="lineage")
def lineage_pipeline(n: int = 3):
    d = make_data(n=n)
    train(data=d.outputs["data"])


def test_run_records_contexts_executions_artifacts_and_lineage_both_ways(localflow):
    run = localflow.run(lineage_pipeline)
    assert run.state == "SUCCEEDED", run.error
    make, tr = run.task("make-data"), run.task("train")
    with metadata_of(localflow) as md:
        row = md.get_run(run.id)
        assert row["state"] == "SUCCEEDED" and row["name"] == run.name and row["kind"] == "PipelineRun"
        assert row["pipeline_name"] == "lineage" and row["parameters"] == {"n": 3} and row["finished_at"]
        assert md.get_run(run.name)["id"] == run.id

        [run_ctx] = [c for c in (md.get_context(i) for i in range(1, 10) if _has_context(md, i))
                     if c["type"] == "system.PipelineRun" and c["name"] == run.name]
        assert run_ctx["properties"]["run_id"] == run.id
        in_ctx = md.executions_in_context(run_ctx["id"])
        assert {e["id"] for e in in_ctx} >= {make.execution_id, tr.execution_id}
        root = next(e for e in in_ctx if e["type"] == "system.DAGExecution" and e["parent_id"] is None)
        assert root["state"] == "COMPLETE" and root["name"] == "lineage"

        ex = md.get_execution(make.execution_id)
        assert ex["type"] == "system.ContainerExecution" and ex["state"] == "COMPLETE"
        assert ex["parent_id"] == root["id"] and ex["pod_name"] == make.pod
        assert ex["inputs"]["parameters"] == {"n": 3} and ex["outputs"]["parameters"] == {"Output": 3}
        assert ex["started_at"] and ex["finished_at"] and ex["properties"]["task"] == "make-data"

        data_art = make.outputs["artifacts"]["data"][0]
        model_art = tr.outputs["artifacts"]["model"][0]
        assert {a["id"] for a in md.artifacts_in_context(run_ctx["id"])} == {data_art["id"], model_art["id"]}
        # forward: what did train consume and produce?
        assert [(a["id"], a["event"]) for a in md.artifacts_of(tr.execution_id)] == [
            (data_art["id"], {"type": "INPUT", "key": "data", "index": 0}),
            (model_art["id"], {"type": "OUTPUT", "key": "model", "index": 0}),
        ]
        # backward: where did the model come from, and its input?
        assert md.lineage(model_art["id"])["producer"]["id"] == tr.execution_id
        up = md.lineage(data_art["id"])
        assert up["producer"]["id"] == make.execution_id
        assert [c["id"] for c in up["consumers"]] == [tr.execution_id]


def _has_context(md, i) -> bool:
    try:
        md.get_context(i)
        return True
    except Exception:
        return False


def test_run_object_and_pods_are_kubernetes_shaped(localflow):
    run = localflow.run(lineage_pipeline)
    assert run.object["kind"] == "Run" and run.object["apiVersion"] == "pipelines.kubeflow.org/v2beta1"
    status = run.object["status"]
    assert status["state"] == "SUCCEEDED" and status["runId"] == run.id and status["finishedAt"]
    details = {d["taskId"]: d for d in status["runDetails"]["taskDetails"]}
    assert details["make-data"]["state"] == "SUCCEEDED" and details["make-data"]["podName"] == run.task("make-data").pod

    assert len(run.pods) == 2
    pod = next(p for p in run.pods if p["metadata"]["name"] == run.task("make-data").pod)
    labels = pod["metadata"]["labels"]
    assert labels["pipeline/runid"] == run.id and labels["pipelines.kubeflow.org/task_name"] == "make-data"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Run"
    assert pod["status"]["phase"] == "Succeeded"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    assert "making 3 rows" in run.logs("make-data")


@dsl.component(base_image=BASE)
def wait_for(gate: str) -> str:
    import os
    import time

    deadline = time.time() + 60
    while not os.path.exists(gate):
        if time.time() > deadline:
            raise SystemExit("gate never opened")
        time.sleep(0.02)
    return gate


@dsl.pipeline(name="gated")
def gated(gate_a: str, gate_b: str):
    wait_for(gate=gate_a).set_cpu_request("1").set_caching_options(False)
    wait_for(gate=gate_b).set_cpu_request("1").set_caching_options(False)


def _poll(fn, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = fn()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_execution_is_new_while_its_pod_waits_for_capacity_then_running_then_complete(localflow, tmp_path):
    gate_a, gate_b = tmp_path / "a", tmp_path / "b"
    seen_run_states = []
    result = {}
    with localflow.runtime(capacity=Capacity(cpu=1.0, memory=8 << 30)) as rt:
        def on_task(rec):
            seen_run_states.extend(r["status"]["state"] for r in rt.store.list("Run", "default"))

        th = threading.Thread(target=lambda: result.setdefault(
            "run", localflow.run(gated, params={"gate_a": str(gate_a), "gate_b": str(gate_b)}, runtime=rt,
                                 on_task=on_task)))
        th.start()
        try:
            with metadata_of(localflow) as md:
                def states():
                    rows = {e["name"]: e["state"] for e in md.list_executions(type="system.ContainerExecution")}
                    return rows if len(rows) == 2 else None

                assert _poll(lambda: states() == {"wait-for": "RUNNING", "wait-for-2": "NEW"} or None,
                             "wait-for RUNNING while wait-for-2 waits for a cpu")
                pending = [p for p in rt.store.list("Pod", "default") if p["status"]["phase"] == "Pending"]
                assert len(pending) == 1
                reasons = [e["reason"] for e in rt.store.events_for(pending[0])]
                assert "FailedScheduling" in reasons
                gate_a.touch()
                assert _poll(lambda: states() == {"wait-for": "COMPLETE", "wait-for-2": "RUNNING"} or None,
                             "wait-for-2 RUNNING once the cpu is free")
                gate_b.touch()
        finally:
            gate_a.touch()
            gate_b.touch()
            th.join(60)
    run = result["run"]
    assert run.state == "SUCCEEDED", run.error
    assert {e["state"] for e in container_executions(localflow, run)} == {"COMPLETE"}
    assert "RUNNING" in seen_run_states


@dsl.component(base_image=BASE)
def good(marker: str, data: Output[Dataset]) -> str:
    with open(data.path, "w") as f:
        f.write("kept")
    with open(marker, "w") as f:
        f.write("done")
    return "good"


@dsl.component(base_image=BASE)
def bad(marker: str, marker_bad: str):
    import os
    import sys
    import time

    deadline = time.time() + 60
    while not os.path.exists(marker):  # fail only after the sibling has finished
        if time.time() > deadline:
            break
        time.sleep(0.02)
    print("bad: giving up")
    open(marker_bad, "w").close()
    sys.exit(2)


@dsl.component(base_image=BASE)
def slow_sibling(marker: str) -> str:
    import os
    import time

    deadline = time.time() + 60
    while not os.path.exists(marker) and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # still running when its sibling fails
    return "slow done"


@dsl.component(base_image=BASE)
def downstream(text: str) -> str:
    return text


@dsl.pipeline(name="partial-failure")
def partial_failure(marker: str, marker_bad: str):
    g = good(marker=marker)
    b = bad(marker=marker, marker_bad=marker_bad)
    slow_sibling(marker=marker_bad)
    downstream(text=g.outputs["Output"]).after(b)


def test_a_failing_task_never_loses_what_other_tasks_recorded(localflow, tmp_path):
    run = localflow.run(partial_failure, params={"marker": str(tmp_path / "m"), "marker_bad": str(tmp_path / "mb")})
    assert run.state == "FAILED"
    assert run.task("bad").state == "FAILED" and "exit code 2" in run.task("bad").error
    assert run.task("good").state == "SUCCEEDED" and run.task("slow-sibling").state == "SUCCEEDED"
    assert run.task("downstream").state == "SKIPPED"
    assert "bad" in run.error
    with metadata_of(localflow) as md:
        rows = {e["name"]: e for e in md.list_executions(run_id=run.id, type="system.ContainerExecution")}
        assert set(rows) == {"good", "bad", "slow-sibling"}
        assert rows["good"]["state"] == "COMPLETE" and rows["good"]["outputs"]["parameters"] == {"Output": "good"}
        assert rows["bad"]["state"] == "FAILED" and "exit code 2" in rows["bad"]["error"]
        assert rows["slow-sibling"]["state"] == "COMPLETE"
        [art] = md.artifacts_of(rows["good"]["id"], "OUTPUT")
        assert Path(art["uri"]).read_text() == "kept"
        assert md.get_run(run.id)["state"] == "FAILED"
        root = [e for e in md.list_executions(run_id=run.id, type="system.DAGExecution")][0]
        assert root["state"] == "FAILED"


@dsl.component(base_image=BASE)
def hang(started: str) -> str:
    import os
    import time

    with open(started, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return "never"


@dsl.pipeline(name="interrupted")
def interrupted(started: str):
    h = hang(started=started).set_caching_options(False)
    downstream(text=h.output)


def test_ctrl_c_cancels_the_run_records_canceled_and_leaves_no_process(tmp_path):
    spec = tmp_path / "interrupted.yaml"
    compiler.Compiler().compile(interrupted, str(spec))
    started = tmp_path / "started"
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(spec), "-p", f"started={started}",
                             "--workspace", str(ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _poll(lambda: started.exists() and started.read_text(), "the task to start", timeout=60)
        task_pid = int(started.read_text())
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "canceled" in err
    _poll(lambda: not psutil.pid_exists(task_pid) or psutil.Process(task_pid).status() == psutil.STATUS_ZOMBIE,
          "the task process to be gone", timeout=10)
    from localflow.metadata import MetadataStore

    md = MetadataStore(ws / "localflow.db")
    try:
        [row] = md.list_runs()
        assert row["state"] == "CANCELED" and row["finished_at"]
        states = {e["name"]: e["state"] for e in md.list_executions(run_id=row["id"])}
        assert states["hang"] == "CANCELED"
        assert "downstream" not in states  # never started
    finally:
        md.close()
