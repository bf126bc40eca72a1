"""Resuming a pipeline run whose ``localflow`` process was killed with SIGKILL mid-pipeline.

A real ``localflow run`` process runs a pipeline until its ``wait_for`` task runs (it waits for a
file this test creates), is killed with SIGKILL, and a new controller in this process continues the
run (:func:`localflow.runners.resume_pipeline_run`): completed and cached tasks are not executed
again (counted in the metadata), the task that was running runs again, the run ends SUCCEEDED with
the outputs an uninterrupted run gives, and the database passes ``PRAGMA integrity_check``.
"""


import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from polling import wait_until
from kfp import compiler, dsl

from localflow.api import open_runtime
from localflow.errors import LocalflowError, NotFound
from localflow.metadata import MetadataStore
from localflow.runners import resume_pipeline_run

from pipeline_support import BASE

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@dsl.component(base_image=BASE)
def produce(n: int) -> int:
    return n * 10


@dsl.component(base_image=BASE)
def square(x: int) -> int:
    return x * x


@dsl.component(base_image=BASE)
def wait_for(gate: str, x: int) -> int:
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise SystemExit("the gate never opened")
        time.sleep(0.02)
    return x + 1


@dsl.component(base_image=BASE)
def total(xs: list, y: int) -> int:
    return sum(xs) + y


@dsl.pipeline(name="resumable")
def resumable(gate: str, n: int = 2) -> int:
    p = produce(n=n)  # cached: a first run computes it
    with dsl.ParallelFor([1, 2, 3]) as i:
        sq = square(x=i).set_caching_options(False)
    w = wait_for(gate=gate, x=p.output).set_caching_options(False).after(sq)
    return total(xs=dsl.Collected(sq.output), y=w.output).set_caching_options(False).output




def lf_run(*args) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "localflow", "run", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def execs(ws: Path, run_name: str) -> list[dict]:
    """The executions of run ``run_name`` (none while the run is not recorded yet)."""
    with MetadataStore(ws / "localflow.db") as md:
        try:
            return md.list_executions(run_id=md.get_run(run_name)["id"])
        except NotFound:
            return []


def by_task(rows: list[dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for x in rows:
        if x["type"] != "system.DAGExecution":
            out.setdefault(x["name"], []).append(x["state"])
    return out


@pytest.mark.slow
def test_a_run_killed_with_sigkill_is_resumed_without_repeating_finished_tasks(tmp_path):
    spec = tmp_path / "resumable.yaml"
    compiler.Compiler().compile(resumable, str(spec))
    ws, gate = tmp_path / "ws", tmp_path / "gate"
    opened = tmp_path / "opened"
    opened.write_text("")
    # a first run computes (and caches) produce; its gate is already open
    first = subprocess.run([PY, "-m", "localflow", "run", str(spec), "--workspace", str(ws), "--name", "warmup",
                            "-p", f"gate={opened}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr

    proc = lf_run(spec, "--workspace", ws, "--name", "r1", "-p", f"gate={gate}")
    try:
        wait_until(lambda: by_task(execs(ws, "r1")).get("wait-for") == ["RUNNING"], timeout=120,
                   what="wait-for to run")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    before = by_task(execs(ws, "r1"))
    assert before["produce"] == ["CACHED"]
    assert {before[f"for-loop-2[{i}].square"][0] for i in range(3)} == {"COMPLETE"}
    assert "total" not in before

    gate.write_text("open")
    seen = []
    with open_runtime(ws) as rt:
        obj = rt.store.get("Run", "r1")
        run = resume_pipeline_run(rt, obj, on_task=lambda rec: seen.append((rec.name, rec.state)))
        # a finished run is not resumed again
        with pytest.raises(LocalflowError, match="already ended SUCCEEDED"):
            resume_pipeline_run(rt, rt.store.get("Run", "r1"))
        pods = {p["metadata"]["name"]: p["status"] for p in rt.store.list("Pod", "default")}
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"Output": 1 + 4 + 9 + 21}
    assert run.task("produce").cached and run.task("for-loop-2[1].square").outputs["parameters"] == {"Output": 4}
    assert ("total", "SUCCEEDED") in seen

    after = by_task(execs(ws, "r1"))
    # finished tasks were not executed again; the one running when the process died ran again
    assert after["produce"] == ["CACHED"]
    assert all(after[f"for-loop-2[{i}].square"] == ["COMPLETE"] for i in range(3))
    assert after["wait-for"] == ["FAILED", "COMPLETE"] and after["total"] == ["COMPLETE"]
    dags = [x for x in execs(ws, "r1") if x["type"] == "system.DAGExecution"]
    assert len(dags) == 4 and {x["state"] for x in dags} == {"COMPLETE"}  # root + 3 iterations, reused
    lost = [s for s in pods.values() if s.get("reason") == "Orphaned"]
    assert len(lost) == 1 and lost[0]["phase"] == "Failed"
    assert all(s["phase"] in ("Succeeded", "Failed") for s in pods.values())

    with MetadataStore(ws / "localflow.db") as md:
        rec = md.get_run("r1")
    assert rec["state"] == "SUCCEEDED" and rec["outputs"]["parameters"] == {"Output": 35}
    con = sqlite3.connect(ws / "localflow.db")
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    out = subprocess.run([PY, "-m", "localflow", "get", "runs", "--workspace", str(ws)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "r1" in out.stdout and "SUCCEEDED" in out.stdout
