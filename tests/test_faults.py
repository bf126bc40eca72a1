"""Faults leave a true record (issue 7 §4): a full disk or an internal error mid-run ends the run
FAILED in one line, Ctrl-C/SIGTERM (once or repeated) ends every execution and DAG execution
CANCELED with exit 130, `gc` cancels the DAG executions of dead runs, and the node's maxPods cap
queues Pods (or refuses a gang that can never fit) instead of creating them all.

Real `localflow run` subprocesses, real signals, pipelines compiled by the real kfp compiler; waits
are bounded polls.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from kfp import compiler, dsl
from kfp.dsl import Artifact, Output

from localflow.api import open_runtime
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.scheduler import TOO_MANY_PODS, Capacity

from pipeline_support import BASE, intervals, max_overlap

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def lf_run(*args, **popen) -> subprocess.Popen:
    return subprocess.Popen([PY, "-m", "localflow", "run", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


import functools

import cli_support

lf = functools.partial(cli_support.lf, cwd=cli_support.ROOT, timeout=120)


def poll(fn, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def records(ws: Path):
    """(runs, executions, objects) as the workspace holds them after the run."""
    with MetadataStore(ws / "localflow.db") as md, ObjectStore(ws / "localflow.db") as store:
        return md.list_runs(), md.list_executions(), store.list(None, None)


def gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


# ---------------------------------------------------------------- pipelines used below


@dsl.component(base_image=BASE)
def fill(mib: int, out: Output[Artifact]):
    with open(out.path, "wb") as f:
        for _ in range(mib):
            f.write(b"x" * (1 << 20))


@dsl.component(base_image=BASE)
def echo(text: str) -> str:
    return text


@dsl.pipeline(name="disk-full")
def disk_full(mib: int):
    f = fill(mib=mib).set_caching_options(False)
    echo(text="after").after(f).set_caching_options(False)


@dsl.component(base_image=BASE)
def hang(started: str, i: int):
    import os
    import time

    with open(os.path.join(started, str(i)), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)


@dsl.pipeline(name="nested-hang")
def nested_hang(started: str):
    with dsl.ParallelFor([1, 2]) as i:
        with dsl.If(i > 0):
            hang(started=started, i=i).set_caching_options(False)


@dsl.container_component
def gatekeeper(gate: str, started: str):
    """A plain container (no kfp executor writing outputs): it ends well even when its run's
    directory is gone, so the fault is met by localflow itself when it starts the next task."""
    return dsl.ContainerSpec(image="busybox", command=["sh", "-c", 'echo $$ > "$1"; while [ ! -e "$0" ]; do sleep 0.02; done'],
                             args=[gate, started])


@dsl.pipeline(name="broken-root")
def broken_root(gate: str, started: str):
    g = gatekeeper(gate=gate, started=started).set_caching_options(False)
    echo(text="after").after(g).set_caching_options(False)


@dsl.component(base_image=BASE)
def span(i: int, out_dir: str):
    import json
    import os
    import time

    start = time.time()
    time.sleep(0.3)
    with open(os.path.join(out_dir, f"{i}.json"), "w") as f:
        json.dump({"start": start, "end": time.time()}, f)


@dsl.pipeline(name="many-items")
def many_items(out_dir: str):
    with dsl.ParallelFor([0, 1, 2, 3, 4, 5]) as i:
        span(i=i, out_dir=out_dir).set_caching_options(False)


def compiled(tmp_path: Path, fn) -> Path:
    path = tmp_path / f"{fn.name}.yaml"
    compiler.Compiler().compile(fn, str(path))
    return path


# ---------------------------------------------------------------- disk full


@pytest.fixture
def small_workspace(tmp_path):
    """A 48 MiB tmpfs mounted as the workspace (root only)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    why = None
    if os.geteuid() != 0:
        why = "mounting a tmpfs needs root"
    else:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(ws)], capture_output=True, text=True)
        if done.returncode != 0:
            why = f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        yield ws
    finally:
        subprocess.run(["umount", "-l", str(ws)], capture_output=True)


def test_a_task_that_fills_the_disk_fails_the_run_in_one_line_with_a_true_record(tmp_path, small_workspace):
    """The task writes 200 MiB into a 48 MiB workspace. SQLite may find the disk full too: the
    database's 4 MiB reserve (``localflow.db-reserve``) is freed then, so the failure is recorded."""
    ws = small_workspace
    proc = lf_run(compiled(tmp_path, disk_full), "-p", "mib=200", "-W", ws)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err + out and "internal error" not in err + out
    lines = [ln for ln in (out + err).splitlines() if str(ws) in ln and "No space left on device" in ln]
    assert lines, out + err
    runs, execs, objects = records(ws)
    [run] = runs
    assert run["state"] == "FAILED" and "No space left on device" in run["error"] and run["finished_at"]
    states = {(x["type"], x["name"]): x["state"] for x in execs}
    assert states[("system.ContainerExecution", "fill")] == "FAILED"
    assert states[("system.DAGExecution", "disk-full")] == "FAILED"
    assert ("system.ContainerExecution", "echo") not in states  # skipped: never ran
    [run_obj] = [o for o in objects if o["kind"] == "Run"]
    assert run_obj["status"]["state"] == "FAILED"
    assert {o["status"]["phase"] for o in objects if o["kind"] == "Pod"} == {"Failed"}


def test_a_training_replica_that_fills_the_disk_fails_the_job_in_one_line(small_workspace, tmp_path):
    ws = small_workspace
    code = ("import sys\nwith open(sys.argv[1], 'wb') as f:\n    for _ in range(200):\n"
            "        f.write(b'x' * (1 << 20))")
    job = tfjob("filler", 1)
    tmpl = job["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    tmpl["containers"][0].update(command=[PY, "-c", code, "/data/big"], volumeMounts=[{"name": "d", "mountPath": "/data"}])
    tmpl["volumes"] = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]
    spec = tmp_path / "filler.yaml"
    spec.write_text(yaml.safe_dump(job))
    proc = lf_run(spec, "-W", ws)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err
    assert "Traceback" not in err + out and "internal error" not in err + out
    assert [ln for ln in (out + err).splitlines() if str(ws) in ln and "No space left on device" in ln], out + err
    runs, execs, objects = records(ws)
    assert runs[0]["state"] == "FAILED" and "No space left on device" in runs[0]["error"]
    assert [x["state"] for x in execs] == ["FAILED"]
    [tf] = [o for o in objects if o["kind"] == "TFJob"]
    assert tf["status"]["conditions"][-1]["type"] == "Failed"


# ---------------------------------------------------------------- internal error mid-run


def test_the_run_directory_replaced_by_a_file_mid_run_fails_the_run_in_one_line(tmp_path):
    ws, gate, started = tmp_path / "ws", tmp_path / "gate", tmp_path / "started"
    proc = lf_run(compiled(tmp_path, broken_root), "-p", f"gate={gate}", "-p", f"started={started}", "-W", ws)
    try:
        poll(lambda: started.exists() and started.read_text(), "the first task to start")
        [run_dir] = [p for p in (ws / "artifacts").glob("*/*") if p.is_dir()]
        import shutil

        shutil.rmtree(run_dir)
        run_dir.write_text("not a directory")  # the next task's directory cannot be made
        gate.write_text("go")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert "Traceback" not in err + out and "internal error" not in err + out
    [line] = [ln for ln in out.splitlines() if str(ws) in ln and "Not a directory" in ln]
    assert line.startswith("localflow failed while running in workspace"), line
    runs, execs, objects = records(ws)
    assert runs[0]["state"] == "FAILED" and "Not a directory" in runs[0]["error"]
    assert not [x for x in execs if x["state"] in ("NEW", "RUNNING")], execs
    assert {x["state"] for x in execs if x["type"] == "system.DAGExecution"} == {"FAILED"}
    assert [o for o in objects if o["kind"] == "Run"][0]["status"]["state"] == "FAILED"


# ---------------------------------------------------------------- cancel


SIGNALS = {"ctrl-c": [signal.SIGINT], "sigterm": [signal.SIGTERM],
           "ctrl-c-during-shutdown": [signal.SIGINT, signal.SIGINT, signal.SIGTERM, signal.SIGINT]}


@pytest.mark.parametrize("signals", list(SIGNALS.values()), ids=list(SIGNALS))
def test_cancel_exits_130_and_ends_every_execution_and_dag_execution_canceled(tmp_path, signals):
    ws, started = tmp_path / "ws", tmp_path / "started"
    started.mkdir()
    proc = lf_run(compiled(tmp_path, nested_hang), "-p", f"started={started}", "-W", ws)
    pids = []
    try:
        poll(lambda: len(list(started.iterdir())) == 2 and all(p.read_text() for p in started.iterdir()),
             "both iterations' tasks to run")
        pids = [int(p.read_text()) for p in started.iterdir()]
        for sig in signals:  # the later ones arrive while the first one's cancel is being recorded
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "canceled" in err
    poll(lambda: all(gone(p) for p in pids), "the task processes to be gone", timeout=10)
    runs, execs, objects = records(ws)
    assert runs[0]["state"] == "CANCELED" and runs[0]["finished_at"]
    dags = [x for x in execs if x["type"] == "system.DAGExecution"]
    assert len(dags) == 5  # the root, two loop iterations, the condition inside each
    assert {x["state"] for x in execs} == {"CANCELED"}, [(x["name"], x["state"]) for x in execs]
    assert all(x["finished_at"] for x in execs)
    assert [o for o in objects if o["kind"] == "Run"][0]["status"]["state"] == "CANCELED"
    assert {o["status"]["phase"] for o in objects if o["kind"] == "Pod"} == {"Failed"}


def tfjob(name: str, replicas: int, code: str = "import time; time.sleep(120)") -> dict:
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
            "spec": {"tfReplicaSpecs": {"Worker": {"replicas": replicas, "restartPolicy": "Never", "template": {
                "spec": {"containers": [{"name": "tensorflow", "image": "python:3.11",
                                         "command": [PY, "-c", code]}]}}}}}}


@pytest.mark.parametrize("signals", [SIGNALS["sigterm"], SIGNALS["ctrl-c-during-shutdown"]],
                         ids=["sigterm", "ctrl-c-during-shutdown"])
def test_cancel_of_a_training_job_exits_130_and_ends_every_replica_canceled(tmp_path, signals):
    spec, ws = tmp_path / "job.yaml", tmp_path / "ws"
    spec.write_text(yaml.safe_dump(tfjob("sleepy", 2)))
    proc = lf_run(spec, "-W", ws)
    pids = []
    try:
        def running():
            out = lf("get", "pods", "-W", ws, "-o", "json")
            items = json.loads(out.stdout)["items"] if out.returncode == 0 and out.stdout.strip() else []
            found = [int(cs["containerID"].split("://")[1]) for p in items
                     for cs in p["status"].get("containerStatuses") or []
                     if "running" in cs.get("state", {}) and str(cs.get("containerID", "")).startswith("process://")]
            return found if len(found) == 2 else None

        pids = poll(running, "both replicas running", timeout=180)
        for sig in signals:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    poll(lambda: all(gone(p) for p in pids), "the replica processes to be gone", timeout=10)
    runs, execs, objects = records(ws)
    assert runs[0]["state"] == "CANCELED"
    assert len(execs) == 2 and {x["state"] for x in execs} == {"CANCELED"}
    [job] = [o for o in objects if o["kind"] == "TFJob"]
    assert job["status"]["conditions"][-1]["type"] == "Failed"


# ---------------------------------------------------------------- gc


def test_gc_cancels_the_executions_and_dag_executions_of_a_run_killed_with_sigkill(tmp_path):
    ws, started = tmp_path / "ws", tmp_path / "started"
    started.mkdir()
    proc = lf_run(compiled(tmp_path, nested_hang), "-p", f"started={started}", "-W", ws, start_new_session=True)
    pids = []
    try:
        poll(lambda: len(list(started.iterdir())) == 2 and all(p.read_text() for p in started.iterdir()),
             "both iterations' tasks to run")
        pids = [int(p.read_text()) for p in started.iterdir()]
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        _, execs, _ = records(ws)
        assert {x["state"] for x in execs if x["type"] == "system.DAGExecution"} == {"RUNNING"}
        out = lf("gc", "-W", ws)
        assert out.returncode == 0, out.stderr
        poll(lambda: all(gone(p) for p in pids), "the task processes to be gone", timeout=10)
    finally:
        for pid in pids:
            if not gone(pid):
                os.killpg(pid, signal.SIGKILL)
    runs, execs, objects = records(ws)
    assert runs[0]["state"] == "FAILED" and "gc" in runs[0]["error"]
    assert len([x for x in execs if x["type"] == "system.DAGExecution"]) == 5
    assert {x["state"] for x in execs} == {"CANCELED"}, [(x["name"], x["state"]) for x in execs]
    assert all(x["finished_at"] for x in execs)


# ---------------------------------------------------------------- maxPods


def test_pods_over_max_pods_stay_pending_too_many_pods_then_run(tmp_path):
    gate = tmp_path / "gate"
    wait = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.02)"
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=64, memory=64 << 30)) as rt:
        rt.scheduler.max_pods = 2
        for n in ("a", "b", "c"):
            rt.scheduler.submit({"metadata": {"name": n}, "spec": {"restartPolicy": "Never", "containers": [
                {"name": "main", "image": "python:3.11", "command": [PY, "-c", wait]}]}})
        poll(lambda: [rt.store.get("Pod", n)["status"]["phase"] for n in "ab"] == ["Running"] * 2, "a and b to run")
        c = rt.store.get("Pod", "c")
        assert c["status"]["phase"] == "Pending"
        [cond] = [x for x in c["status"]["conditions"] if x["type"] == "PodScheduled"]
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", TOO_MANY_PODS)
        events = [e for e in rt.store.list("Event") if e["involvedObject"]["name"] == "c"]
        assert [(e["reason"], e["message"]) for e in events] == [("FailedScheduling", TOO_MANY_PODS)]
        gate.write_text("go")
        poll(lambda: all(rt.store.get("Pod", n)["status"]["phase"] == "Succeeded" for n in "abc"), "all three to end")


def test_a_tfjob_of_100000_replicas_is_refused_at_once_without_creating_pods(tmp_path):
    spec, ws = tmp_path / "huge.yaml", tmp_path / "ws"
    spec.write_text(yaml.safe_dump(tfjob("huge", 100000, "print('hi')")))
    t0 = time.monotonic()
    out = lf("run", spec, "-W", ws)
    assert time.monotonic() - t0 < 60
    assert out.returncode == 2, out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "TFJob.spec.tfReplicaSpecs.Worker.replicas" in line and "100000 Pods" in line and "maxPods" in line, line
    assert "Too many pods" in line and "Traceback" not in out.stderr
    runs, _, objects = records(ws)
    assert not [o for o in objects if o["kind"] == "Pod"]
    [job] = [o for o in objects if o["kind"] == "TFJob"]
    assert job["status"]["conditions"][-1]["type"] == "Failed"
    assert runs[0]["state"] == "FAILED"


def test_parallel_for_over_more_items_than_max_pods_queues_and_succeeds(tmp_path):
    out_dir, ws, cfg = tmp_path / "spans", tmp_path / "ws", tmp_path / "localflow.yaml"
    out_dir.mkdir()
    cfg.write_text("node: {maxPods: 2}\n")
    done = lf("run", compiled(tmp_path, many_items), "-p", f"out_dir={out_dir}", "-W", ws, "--config", cfg)
    assert done.returncode == 0, done.stderr
    spans = intervals(out_dir)
    assert len(spans) == 6 and max_overlap(spans) <= 2
    _, _, objects = records(ws)
    assert any(o["kind"] == "Event" and o["message"] == TOO_MANY_PODS for o in objects)


@pytest.mark.parametrize("node", ["{maxPods: 0}", "{maxPods: many}", "[1]", "{maxPod: 3}"])
def test_a_bad_node_setting_is_refused_in_one_line(tmp_path, node):
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text(f"node: {node}\n")
    spec = tmp_path / "job.yaml"
    spec.write_text(yaml.safe_dump(tfjob("j", 1, "print('hi')")))
    out = lf("run", spec, "-W", tmp_path / "ws", "--config", cfg)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "localflow.yaml: node" in line and "Traceback" not in out.stderr


# ---------------------------------------------------------------- the pieces, in-process


def test_an_interrupt_inside_a_critical_section_is_raised_when_it_ends():
    from localflow import faults

    old = signal.signal(signal.SIGINT, lambda signum, frame: faults.on_signal())
    try:
        steps = []
        with pytest.raises(KeyboardInterrupt):
            with faults.critical():
                signal.raise_signal(signal.SIGINT)  # a real signal, delivered to this thread's handler
                steps.append("recorded")  # the section runs to its end
        assert steps == ["recorded"]
        with pytest.raises(KeyboardInterrupt):  # outside a section it is raised at once
            signal.raise_signal(signal.SIGINT)
            steps.append("not reached")
        assert steps == ["recorded"]
    finally:
        signal.signal(signal.SIGINT, old)


def test_a_full_disk_frees_the_database_reserve_so_the_write_still_lands(small_workspace):
    from localflow import dbconn

    ws = small_workspace
    with ObjectStore(ws / "localflow.db") as store:
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "before"}, "data": {}})
        assert dbconn.reserve_space(ws / "localflow.db")
        with open(ws / "filler", "wb") as f:  # take every byte that is left
            try:
                while True:
                    f.write(b"x" * (1 << 16))
                    f.flush()
            except OSError as exc:
                assert exc.errno == 28
        big = {"k": "v" * (1 << 20)}  # needs fresh pages: only the reserve can give them
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "after"}, "data": big})
        assert store.get("ConfigMap", "after")["data"] == big
        assert dbconn.reserve_used(ws / "localflow.db")
        assert not os.path.exists(dbconn.reserve_path(ws / "localflow.db"))
