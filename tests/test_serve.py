"""``localflow serve``, ``status``, ``wait``, ``get -w`` and detached runs, through real processes.

Every wait is a watch (``localflow wait``) or a bounded poll; the server and its workers are real
``localflow`` processes, and each test checks with psutil that nothing it started is left.
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
from kfp import compiler, dsl

from localflow.pytest_plugin import LocalflowServer

ROOT = Path(__file__).resolve().parents[1]


from cli_support import lf
from polling import wait_until


@dsl.container_component
def say(msg: str):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "$0"'], args=[msg])


@dsl.container_component
def fail(code: int):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "about to fail"; exit "$0"'], args=[code])


@dsl.pipeline(name="serve-hello")
def hello(msg: str = "hi"):
    say(msg=msg).set_caching_options(False)


@dsl.pipeline(name="serve-fail")
def failing():
    fail(code=3).set_caching_options(False)


SLEEPY_JOB = """\
apiVersion: kubeflow.org/v1
kind: PyTorchJob
metadata:
  name: {name}
spec:
  pytorchReplicaSpecs:
    Master:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
          - name: pytorch
            image: python:3.11
            command: ["python", "-c", "import time; print('up', flush=True); time.sleep({seconds})"]
"""


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    d = tmp_path_factory.mktemp("specs")
    compiler.Compiler().compile(hello, str(d / "hello.yaml"))
    compiler.Compiler().compile(failing, str(d / "fail.yaml"))
    (d / "quick.yaml").write_text(SLEEPY_JOB.format(name="quick", seconds=0))
    (d / "sleepy.yaml").write_text(SLEEPY_JOB.format(name="sleepy", seconds=120))
    return d


def _family(pid: int) -> list[psutil.Process]:
    try:
        return [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _gone(procs: list[psutil.Process], timeout: float = 30.0) -> list[str]:
    """The processes of ``procs`` still running after ``timeout`` seconds (bounded wait)."""
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    left = []
    for p in alive:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            continue
    return left


def _runs(server) -> dict:
    return {r["name"]: r for r in json.loads(server.cli("get", "runs", "-o", "json").stdout)["items"]}


def test_status_and_a_second_server_refuses(localflow_server):
    st = json.loads(localflow_server.cli("status", "-o", "json").stdout)
    assert st["running"] is True and st["pid"] == localflow_server.pid
    assert st["started"].endswith("Z") and sorted(st["urls"]) == ["kfp", "kubernetes"]
    assert st["urls"]["kfp"] == st["urls"]["kubernetes"]  # the KFP v2beta1 API shares the port
    assert st["urls"]["kubernetes"].startswith("http://127.0.0.1:")
    second = localflow_server.cli("serve", timeout=60)
    assert second.returncode == 2, (second.stdout, second.stderr)
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {localflow_server.pid}" in lines[0] and "serve --stop" in lines[0]
    assert "running" in localflow_server.cli("status").stdout


def test_stop_says_what_it_did_and_a_stale_record_is_not_running(tmp_path):
    server = LocalflowServer(tmp_path / "ws")
    try:
        pid = server.pid
        p = lf("serve", "--stop", "-W", tmp_path / "ws", check=0)
        assert f"stopped the localflow server (pid {pid})" in p.stdout
        assert server.process.wait(timeout=30) == 0
        assert json.loads(lf("status", "-o", "json", "-W", tmp_path / "ws", check=0).stdout)["running"] is False
        assert "no localflow server runs" in lf("serve", "--stop", "-W", tmp_path / "ws", check=0).stdout
    finally:
        server.stop()
    # kill -9 leaves its record behind: a stale record of a dead pid is not running, and a new server starts
    server = LocalflowServer(tmp_path / "ws")
    try:
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=30)
        st = json.loads(lf("status", "-o", "json", "-W", tmp_path / "ws", check=0).stdout)
        assert st["running"] is False and st["pid"] == server.pid
        again = LocalflowServer(tmp_path / "ws")
        again.stop()
    finally:
        server.stop()


@pytest.mark.slow
def test_detach_then_wait_records_the_run_as_a_foreground_run(localflow_server, specs):
    p = localflow_server.cli("run", specs / "hello.yaml", "-p", "msg=detached", "--detach")
    assert p.returncode == 0, p.stderr
    name = p.stdout.strip().split()[0].split("/")[1]
    assert p.stdout.startswith(f"run/{name} created") and "localflow wait run/" in p.stderr
    w = localflow_server.cli("wait", f"run/{name}", "--for=condition=Succeeded", "--timeout=120s")
    assert w.returncode == 0, (w.stdout, w.stderr)
    assert w.stdout.strip() == f"run.pipelines.kubeflow.org/{name} condition met"
    runs = _runs(localflow_server)
    assert runs[name]["state"] == "SUCCEEDED" and runs[name]["kind"] == "PipelineRun"
    assert runs[name]["spec_path"] == str(specs / "hello.yaml")
    execs = json.loads(localflow_server.cli("get", "executions", "--run", name, "-o", "json").stdout)["items"]
    assert any(e["state"] == "COMPLETE" for e in execs), execs
    pod = json.loads(localflow_server.cli("get", "pods", "--run", name, "-o", "json").stdout)["items"][0]
    assert localflow_server.cli("logs", pod["metadata"]["name"]).stdout == "detached\n"
    # the Run object went from submitted to finished as one object
    obj = json.loads(localflow_server.cli("get", "pipelinerun", name, "-o", "json").stdout)
    assert obj["status"]["state"] == "SUCCEEDED" and obj["spec"]["pipelineSpec"]


@pytest.mark.slow
def test_run_through_a_server_prints_and_exits_as_alone(localflow_server, specs):
    ok = localflow_server.cli("run", specs / "hello.yaml", "-p", "msg=followed")
    assert ok.returncode == 0, ok.stderr
    assert "SUCCEEDED" in ok.stderr and "RUNNING" in ok.stderr  # live progress, one line per change
    assert ok.stdout.startswith("PipelineRun serve-hello-") and " SUCCEEDED in " in ok.stdout.splitlines()[0]
    bad = localflow_server.cli("run", specs / "fail.yaml")
    assert bad.returncode == 1, bad.stderr
    assert "FAILED" in bad.stdout and "exit code 3" in bad.stdout + bad.stderr
    refused = localflow_server.cli("run", specs / "hello.yaml", "-p", "nope=1")
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    job = localflow_server.cli("run", specs / "quick.yaml", "-o", "json")
    assert job.returncode == 0, job.stderr
    assert json.loads(job.stdout)["items"][0]["kind"] == "PyTorchJob"
    again = localflow_server.cli("run", specs / "quick.yaml")
    assert again.returncode == 1 and "--name quick-2" in again.stderr and f"-W {localflow_server.workspace}" in again.stderr


@pytest.mark.slow
def test_stop_cancels_the_runs_and_leaves_no_process(localflow_server, specs):
    p = localflow_server.cli("run", specs / "sleepy.yaml", "-d")
    assert p.returncode == 0 and p.stdout.startswith("pytorchjob/sleepy created"), p.stderr
    w = localflow_server.cli("wait", "pytorchjob/sleepy", "--for=condition=Running", "--timeout=120s")
    assert w.returncode == 0, w.stderr
    family = _family(localflow_server.pid)
    assert len(family) >= 3  # the server, the run's worker, its Pod
    stop = localflow_server.cli("serve", "--stop", timeout=120)
    assert stop.returncode == 0 and "stopped the localflow server" in stop.stdout, stop.stderr
    assert _gone(family) == []
    assert _runs(localflow_server)["sleepy"]["state"] == "CANCELED"
    job = json.loads(localflow_server.cli("get", "pytorchjob", "sleepy", "-o", "json").stdout)
    assert [c["type"] for c in job["status"]["conditions"] if c["status"] == "True"][-1] == "Failed"
    assert json.loads(localflow_server.cli("status", "-o", "json").stdout)["running"] is False


@pytest.mark.slow
def test_detach_without_a_server_starts_one(tmp_path, specs):
    ws = tmp_path / "ws"
    p = lf("run", specs / "quick.yaml", "--detach", "-W", ws, check=0)
    assert "started a localflow server" in p.stderr and "serve --stop" in p.stderr
    st = json.loads(lf("status", "-o", "json", "-W", ws, check=0).stdout)
    family = _family(st["pid"])
    try:
        assert st["running"] and family
        lf("wait", "pytorchjob/quick", "--for=condition=Succeeded", "--timeout=120s", "-W", ws, check=0)
        assert lf("wait", "run/quick", "--for=condition=Succeeded", "-W", ws, check=0).stdout.strip() == \
            "pytorchjob.kubeflow.org/quick condition met"
        assert "quick   PyTorchJob   SUCCEEDED" in lf("get", "runs", "-W", ws, check=0).stdout
        assert (ws / "server" / "serve.log").read_text().count("running pytorchjob/quick") == 1
    finally:
        lf("serve", "--stop", "-W", ws)
        left = _gone(family)
        for proc in family:
            try:
                proc.kill()
            except psutil.Error:
                pass
    assert left == []


def test_detach_with_output_prints_the_created_object(localflow_server, specs):
    p = lf("run", specs / "quick.yaml", "--name", "quick-json", "--detach", "-o", "json", "-W", localflow_server.workspace,
           check=0)
    obj = json.loads(p.stdout)
    assert (obj["kind"], obj["metadata"]["name"]) == ("PyTorchJob", "quick-json") and obj["metadata"]["uid"]
    lf("wait", "pytorchjob/quick-json", "--for=condition=Succeeded", "--timeout=120s", "-W", localflow_server.workspace,
       check=0)


def test_detach_of_a_bad_spec_is_refused_and_starts_no_server(tmp_path, specs):
    ws = tmp_path / "ws"
    bad = tmp_path / "bad.yaml"
    bad.write_text((specs / "quick.yaml").read_text().replace("replicas:", "replica:", 1))
    p = lf("run", bad, "--detach", "-W", ws, check=2)
    assert "replica: unknown field (did you mean 'replicas'?)" in p.stderr
    assert "started a localflow server" not in p.stderr
    assert json.loads(lf("status", "-o", "json", "-W", ws, check=0).stdout)["running"] is False


@pytest.mark.slow
def test_apply_of_a_runnable_kind(tmp_path, specs):
    p = lf("apply", "-f", specs / "quick.yaml", "-W", tmp_path / "ws", check=2)
    assert "localflow serve" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    server = LocalflowServer(tmp_path / "ws")
    try:
        a = server.cli("apply", "-f", specs / "quick.yaml")
        assert a.returncode == 0 and a.stdout.startswith("pytorchjob/quick created"), a.stderr
        w = server.cli("wait", "pytorchjob/quick", "--for=condition=Succeeded", "--timeout=120s")
        assert w.returncode == 0, w.stderr
    finally:
        server.stop()


class Lines:
    """The stdout lines of a running process, read by a thread (so a wait for one is bounded)."""

    def __init__(self, proc: subprocess.Popen):
        import queue
        import threading

        self.queue: "queue.Queue[str]" = queue.Queue()
        self.seen = ""
        self.peeked: list[str] = []
        threading.Thread(target=lambda: [self.queue.put(line) for line in proc.stdout], daemon=True).start()

    def until(self, needle: str, timeout: float = 30.0) -> str:
        """Lines read (from the last call on) until one contains ``needle``."""
        import queue

        got = ""
        deadline = time.monotonic() + timeout
        while needle not in got:
            if self.peeked:
                got += self.peeked.pop(0)
                continue
            try:
                got += self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{needle!r} not seen in {got!r}") from None
        self.seen += got
        return got

    def any(self, timeout: float) -> bool:
        """Whether a line arrives within ``timeout`` seconds (it is kept for :meth:`until`)."""
        import queue

        if self.peeked:
            return True
        try:
            line = self.queue.get(timeout=timeout)
        except queue.Empty:
            return False
        self.peeked.append(line)  # read first by the next until(), in order
        return True


def test_get_watch_streams_writes_of_other_processes(tmp_path):
    ws = tmp_path / "ws"
    cm = tmp_path / "cm.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\ndata:\n  a: '1'\n")
    lf("apply", "-f", cm, "-W", ws, check=0)
    watcher = subprocess.Popen([sys.executable, "-m", "localflow", "get", "configmaps", "-w", "-W", str(ws)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    only = subprocess.Popen([sys.executable, "-m", "localflow", "get", "configmaps", "--watch-only", "-W", str(ws)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        w, o = Lines(watcher), Lines(only)
        listed = w.until("first")
        assert listed.splitlines()[0].split() == ["NAME", "DATA", "AGE"]
        # --watch-only prints nothing before a change: change "second" until it has seen one (bounded)
        for value in range(30):
            cm.write_text(f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\ndata:\n  a: '{value}'\n  b: '2'\n")
            lf("apply", "-f", cm, "-W", ws, check=0)
            if o.any(timeout=1.0):
                break
        assert "second" in w.until("second")
        changes = o.until("second")
        assert "first" not in changes
        # --watch-only: the header comes with the first change, as kubectl's table printer prints it
        assert changes.splitlines()[0].split() == ["NAME", "DATA", "AGE"], changes
        for proc in (watcher, only):
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
            assert "Traceback" not in proc.stderr.read()
    finally:
        for proc in (watcher, only):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_get_watch_of_an_empty_collection_prints_the_header_with_the_first_row(tmp_path):
    ws = tmp_path / "ws"
    cm = tmp_path / "cm.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  a: '1'\n")
    lf("apply", "-f", cm, "-W", ws, check=0)  # the workspace exists; it has no Secret
    watcher = subprocess.Popen([sys.executable, "-m", "localflow", "get", "secrets", "-w", "-W", str(ws)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = Lines(watcher)
        # it lists (nothing) as soon as it has the database open; an `apply` needs far longer to start
        db = str(ws / "localflow.db")
        wait_until(lambda: any(f.path == db for f in psutil.Process(watcher.pid).open_files()), 60, what="the watcher")
        secret = tmp_path / "secret.yaml"
        secret.write_text("apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  t: x\n")
        lf("apply", "-f", secret, "-W", ws, check=0)
        got = lines.until("token").splitlines()
        assert got[0].split() == ["NAME", "TYPE", "DATA", "AGE"], got
        assert got[1].split()[:3] == ["token", "Opaque", "1"], got
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
        assert "Traceback" not in watcher.stderr.read()
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()


def test_wait_exit_codes_and_messages(tmp_path):
    ws = tmp_path / "ws"
    cm = tmp_path / "cm.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n")
    lf("apply", "-f", cm, "-W", ws, check=0)
    p = lf("wait", "configmap/settings", "--for=condition=Ready", "--timeout=1s", "-W", ws, check=1)
    assert p.stderr.strip() == "error: timed out waiting for the condition on configmaps/settings"
    ok = lf("wait", "configmap/settings", "--for=jsonpath={.data.mode}=fast", "-W", ws, check=0)
    assert ok.stdout.strip() == "configmap/settings condition met"
    gone = lf("wait", "configmap/nothing", "--for=delete", "-W", ws, check=0)  # kubectl: silent success
    assert (gone.stdout, gone.stderr) == ("", "")
    assert "not found" in lf("wait", "configmap/nothing", "--for=condition=Ready", "-W", ws, check=1).stderr
    bad = lf("wait", "configmap/settings", "--for=ready", "-W", ws, check=2)
    assert "--for" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "duration" in lf("wait", "configmap/settings", "--for=delete", "--timeout=soon", "-W", ws, check=2).stderr
    # --for=delete is met when another process deletes it
    waiter = subprocess.Popen([sys.executable, "-m", "localflow", "wait", "configmap/settings", "--for=delete",
                               "--timeout=60s", "-W", str(ws)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # once it has the workspace's database open it finds the object at once (a `delete` run now
        # needs far longer to start); an object already gone would be a silent success instead
        db = str(ws / "localflow.db")
        wait_until(lambda: any(f.path == db for f in psutil.Process(waiter.pid).open_files()), 60, what="the waiter")
        lf("delete", "configmap", "settings", "-W", ws, check=0)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, err
        assert out.strip() == "configmap/settings condition met"  # kubectl's words for --for=delete too
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()


def test_minus_w_is_watch_and_the_old_workspace_spelling_gets_a_hint(tmp_path, specs):
    ws = tmp_path / "ws"
    cm = tmp_path / "cm.yaml"
    cm.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n")
    lf("apply", "-f", cm, "-W", ws, check=0)
    for args in (["get", "pods", "-w", ws], ["get", "-w", ws, "pods"], ["run", specs / "hello.yaml", "-w", ws],
                 ["logs", "some-pod", "-w", ws], ["gc", "-w", ws]):
        p = lf(*args, check=2)
        assert len(p.stderr.strip().splitlines()) == 1 and f"-W {ws}" in p.stderr and "--watch" in p.stderr, (args, p.stderr)
    # a relative directory name given to get -w is a hint too, when no object has that name
    p = lf("get", "pods", "-w", "ws", "-W", ws, cwd=tmp_path, check=2)
    assert "-W ws" in p.stderr
    assert "settings" in lf("get", "configmaps", "-W", ws, check=0).stdout


def test_a_dead_managers_claim_is_taken_over_and_a_live_ones_is_left(tmp_path, specs):
    from localflow.fakes import ObjectStore
    from localflow.server.record import process_id
    from localflow.server.submit import MANAGER_ANNOTATION, submit
    from localflow.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    dead = submit(str(specs / "quick.yaml"), None, "subprocess", ws, run_name="orphaned")
    live = submit(str(specs / "quick.yaml"), None, "subprocess", ws, run_name="taken")
    with ObjectStore(ws.db_path) as store:
        for obj, owner in ((dead, "999999@1.00"), (live, process_id())):  # a pid that cannot exist; this pytest
            obj["metadata"]["annotations"][MANAGER_ANNOTATION] = owner
            store.update(obj)
    server = LocalflowServer(ws.root)
    try:
        w = server.cli("wait", "pytorchjob/orphaned", "--for=condition=Succeeded", "--timeout=120s")
        assert w.returncode == 0, w.stderr
        taken = json.loads(server.cli("get", "pytorchjob", "taken", "-o", "json").stdout)
        assert not taken.get("status") and taken["metadata"]["annotations"][MANAGER_ANNOTATION] == process_id()
        assert "taken" not in _runs(server)
    finally:
        server.stop()


@pytest.mark.slow
def test_a_run_survives_kill_9_of_its_server_and_the_next_server_stops_it(tmp_path, specs):
    (tmp_path / "survivor.yaml").write_text(SLEEPY_JOB.format(name="survivor", seconds=120))
    first = LocalflowServer(tmp_path / "ws")
    try:
        assert first.cli("run", tmp_path / "survivor.yaml", "-d").returncode == 0
        assert first.cli("wait", "pytorchjob/survivor", "--for=condition=Running", "--timeout=120s").returncode == 0
        family = _family(first.pid)[1:]  # its worker and the Pod
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
    finally:
        first.stop()
    assert family and all(p.is_running() for p in family)  # the run goes on without its server
    second = LocalflowServer(tmp_path / "ws")
    try:
        deadline = time.monotonic() + 60
        while "adopted the running worker" not in second.log.read_text():
            assert time.monotonic() < deadline, second.log.read_text()
            time.sleep(0.05)
        assert _runs(second)["survivor"]["state"] == "RUNNING"
    finally:
        assert second.stop() == 0
    assert _gone(family) == []
    assert _runs(second)["survivor"]["state"] == "CANCELED"


@dsl.container_component
def step(msg: str, seconds: int):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo "$0"; sleep "$1"'], args=[msg, seconds])


@dsl.pipeline(name="serve-two-steps")
def two_steps():
    first = step(msg="first", seconds=0).set_caching_options(False)
    step(msg="second", seconds=3).after(first).set_caching_options(False)


@pytest.mark.slow
def test_a_run_whose_process_died_is_resumed_without_running_finished_tasks_again(localflow_server, tmp_path):
    compiler.Compiler().compile(two_steps, str(tmp_path / "two.yaml"))
    p = localflow_server.cli("run", tmp_path / "two.yaml", "-d")
    assert p.returncode == 0, p.stderr
    name = p.stdout.split()[0].split("/")[1]
    deadline = time.monotonic() + 120
    while True:  # bounded: until the second task's Pod runs
        listed = localflow_server.cli("get", "pods", "--run", name, "-o", "json")  # fails until the run is recorded
        pods = json.loads(listed.stdout)["items"] if listed.returncode == 0 else []
        if any(p["metadata"]["labels"].get("pipelines.kubeflow.org/task_name") == "step-2"
               and (p.get("status") or {}).get("phase") == "Running" for p in pods):
            break
        assert time.monotonic() < deadline, pods
        time.sleep(0.1)
    uid = json.loads(localflow_server.cli("get", "pipelinerun", name, "-o", "json").stdout)["metadata"]["uid"]
    worker = int((localflow_server.workspace / "server" / "runs" / f"{uid}.pid").read_text().split("@")[0])
    os.kill(worker, signal.SIGKILL)  # the process driving the run dies mid-task
    w = localflow_server.cli("wait", f"run/{name}", "--for=condition=Succeeded", "--timeout=120s")
    assert w.returncode == 0, (w.stderr, localflow_server.log.read_text())
    assert f"resuming run/{name}" in localflow_server.log.read_text()
    execs = json.loads(localflow_server.cli("get", "executions", "--run", name, "-o", "json").stdout)["items"]
    by_name = {}
    for e in execs:
        by_name.setdefault(e["name"], []).append(e["state"])
    firsts = [v for k, v in by_name.items() if k.endswith("step")]
    assert firsts == [["COMPLETE"]], by_name  # the finished task was not run again
    seconds = [v for k, v in by_name.items() if k.endswith("step-2")][0]
    assert seconds[-1] == "COMPLETE" and len(seconds) == 2, by_name  # the lost attempt, then the new one
    assert _runs(localflow_server)[name]["state"] == "SUCCEEDED"


def test_a_batch_job_detached_is_run_by_the_server(localflow_server):
    spec = Path(__file__).resolve().parents[1] / "scenarios" / "jobs" / "job.yaml"
    p = localflow_server.cli("run", spec, "--detach")
    assert p.returncode == 0 and p.stdout.startswith("job/squares created"), p.stderr
    assert "--for=condition=Complete" in p.stderr
    for cond in ("Complete", "Succeeded"):  # the kind's condition, and the success `run` reports
        w = localflow_server.cli("wait", "job/squares", f"--for=condition={cond}", "--timeout=120s")
        assert w.returncode == 0, w.stderr
    assert _runs(localflow_server)["squares"]["state"] == "SUCCEEDED"


@pytest.mark.slow
def test_a_deployment_applied_to_a_server_runs_until_the_server_stops(tmp_path):
    """Deployments and ReplicaSets run until deleted: the server's own controller manager and node
    run them (not a worker per run); stopping the server stops their Pods' processes."""
    ws = tmp_path / "ws"
    server = subprocess.Popen([sys.executable, "-m", "localflow", "serve", "-W", str(ws)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not json.loads(lf("status", "-o", "json", "-W", ws, check=0).stdout)["running"]:
            assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
            time.sleep(0.1)
        assert lf("apply", "-f", ROOT / "scenarios" / "apps" / "deployment.yaml", "-W", ws, check=0).stdout.strip() == \
            "deployment/web created"
        lf("wait", "deployment/web", "--for=condition=Available", "--timeout=120s", "-W", ws, check=0)
        rows = [r.split() for r in lf("get", "pods", "-W", ws, check=0).stdout.splitlines()[1:]]
        assert len(rows) == 2 and all(r[1:3] == ["1/1", "Running"] for r in rows), rows
        assert lf("get", "deployments", "-W", ws, check=0).stdout.splitlines()[1].split()[1:4] == ["2/2", "2", "2"]
        family = _family(server.pid)
        assert len(family) >= 3  # the server and (at least) the two Pods' processes, which it owns
    finally:
        lf("serve", "--stop", "-W", ws)
        server.wait(60)
    assert _gone(family) == []


ONE_REPLICA = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sleeper
spec:
  replicas: 1
  selector:
    matchLabels: {app: sleeper}
  template:
    metadata:
      labels: {app: sleeper}
    spec:
      containers:
      - name: main
        image: python:3.11
        command: ["python", "-c", "import time; time.sleep(600)"]
"""


def _serve(ws) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, "-m", "localflow", "serve", "-W", str(ws)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: server.poll() is not None or json.loads(lf("status", "-o", "json", "-W", ws, check=0).stdout)["running"],
               60, what="the server to start")
    assert server.poll() is None, "the server did not start"
    return server


def _sleeper_pods(ws) -> list[dict]:
    return json.loads(lf("get", "pods", "-l", "app=sleeper", "-o", "json", "-W", ws, check=0).stdout)["items"]


def _pod_process(pod: dict) -> psutil.Process:
    (cs,) = pod["status"]["containerStatuses"]
    return psutil.Process(int(cs["containerID"].removeprefix("process://")))


@pytest.mark.slow
def test_a_restarted_server_fails_the_pods_its_dead_predecessor_left_running(tmp_path):
    """kill -9 of the server leaves its Deployment's Pod Running in the store with nobody to run it
    (its process dies with the server); the next server (a node starting again) marks the Pod
    Failed (reason Orphaned, with why) before its controllers run, and the ReplicaSet replaces it."""
    ws = tmp_path / "ws"
    (tmp_path / "d.yaml").write_text(ONE_REPLICA)
    first = _serve(ws)
    second = None
    leftovers: list[psutil.Process] = []
    try:
        lf("apply", "-f", tmp_path / "d.yaml", "-W", ws, check=0)
        (old,) = wait_until(lambda: [p for p in _sleeper_pods(ws) if p["status"].get("phase") == "Running"
                                     and p["status"].get("containerStatuses")], 120, what="the Pod to run")
        proc = _pod_process(old)
        leftovers = [proc, *_family(first.pid)]
        first.kill()
        first.wait(30)
        assert _gone([proc], 30) == []  # the executor's watchdog kills it (executors/lifetime.py)
        (stale,) = [p for p in _sleeper_pods(ws) if p["metadata"]["name"] == old["metadata"]["name"]]
        assert stale["status"]["phase"] == "Running"  # nobody is left to say otherwise
        second = _serve(ws)
        name = old["metadata"]["name"]

        def orphaned():
            events = json.loads(lf("get", "events", "-o", "json", "-W", ws, check=0).stdout)["items"]
            return [e for e in events if e["reason"] == "Orphaned" and e["involvedObject"]["name"] == name]

        (event,) = wait_until(orphaned, 120, what="the old Pod to be marked Failed")
        assert event["type"] == "Warning" and "the process that ran this Pod is gone" in event["message"]
        # Failed with the reason (or already deleted by its ReplicaSet, which replaces it)
        assert all(p["status"]["phase"] == "Failed" and p["status"]["reason"] == "Orphaned"
                   for p in _sleeper_pods(ws) if p["metadata"]["name"] == name)
        fresh = wait_until(lambda: [p for p in _sleeper_pods(ws) if p["status"].get("phase") == "Running"
                                    and p["metadata"]["name"] != name], 120, what="a replacement")
        assert len(fresh) == 1
        leftovers += [_pod_process(fresh[0]), *_family(second.pid)]
    finally:
        lf("serve", "--stop", "-W", ws)
        for server in (first, second):
            if server is not None and server.poll() is None:
                server.kill()
                server.wait(30)
    assert _gone(leftovers) == []


def test_a_run_whose_worker_is_stopped_before_it_began_is_recorded_canceled(tmp_path, specs):
    """Ctrl-C of the `run` that handed a Run to the server, in the moment its worker starts: the
    worker dies of SIGTERM before the runner records anything, and the Run ends CANCELED, not FAILED."""
    from localflow.fakes import ObjectStore
    from localflow.server import Server, submit
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(tmp_path / "ws")
    server = Server(ws, grace=30)
    server.start()
    try:
        obj = submit(str(specs / "hello.yaml"), None, "subprocess", ws)
        server._claim_and_run(obj)
        (worker,) = server.workers.values()
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(60)
        server.reap()
        with ObjectStore(ws.db_path) as store:
            run = store.get("Run", obj["metadata"]["name"])
            reasons = [e["reason"] for e in store.events_for(run)]
        # the signal lands while the worker is still importing: the server, not the runner, records the end
        assert run["status"] == {"state": "CANCELED",
                                 "error": {"message": "canceled before it started (its worker got signal 15)"}}
        assert "Canceled" in reasons and "FailedCreate" not in reasons
        # and it is a run like any other: `get runs` lists it CANCELED with the reason, once
        name = obj["metadata"]["name"]
        listed = json.loads(lf("get", "runs", "-o", "json", "-W", ws.root, check=0).stdout)["items"]
        (row,) = [r for r in listed if r["name"] == name]
        assert (row["kind"], row["state"], row["error"]) == (
            "PipelineRun", "CANCELED", "canceled before it started (its worker got signal 15)")
        assert row["finished_at"] and row["pipeline_name"] == "serve-hello"
        table = lf("get", "runs", "-W", ws.root, check=0).stdout
        assert any(line.split()[:1] == [name] and "CANCELED" in line for line in table.splitlines()), table
        server._record_run(run, "CANCELED", "again")  # a second end never duplicates it
        again = json.loads(lf("get", "runs", "-o", "json", "-W", ws.root, check=0).stdout)["items"]
        assert [r["name"] for r in again].count(name) == 1
    finally:
        server.shutdown()


@dsl.container_component
def marked(marks: str, gate: str):
    """Appends a line to ``marks`` each time it runs (executions counted in the workspace), then
    waits until ``gate`` exists."""
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c",
                             'echo run >> "$0"; while [ ! -e "$1" ]; do sleep 0.05; done'], args=[marks, gate])


@dsl.pipeline(name="serve-crash")
def crashable(a: str, b: str, c: str, open_gate: str, gate: str):
    first = marked(marks=a, gate=open_gate)  # cached: the first run computes it
    second = marked(marks=b, gate=open_gate).set_caching_options(False).after(first)
    marked(marks=c, gate=gate).set_caching_options(False).after(second)


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("killed", ["server", "server-and-worker"])
def test_kill_9_of_the_server_mid_pipeline_then_serve_again(tmp_path, killed):
    """Issue 8's crash test: ``kill -9`` of ``localflow serve`` while a pipeline's third task runs
    (and, for ``server-and-worker``, of the worker driving the run too: everything localflow had is
    gone), then ``localflow serve`` again: the run ends SUCCEEDED, the cached and the completed task
    are not executed again (each execution appends to a marker file in the workspace), no process
    is left, and the database passes ``PRAGMA integrity_check``."""
    import sqlite3

    ws = tmp_path / "ws"
    marks = ws / "marks"
    marks.mkdir(parents=True)
    compiler.Compiler().compile(crashable, str(tmp_path / "crash.yaml"))
    (marks / "open").write_text("")
    a, b, c = marks / "a", marks / "b", marks / "c"
    params = ["-p", f"a={a}", "-p", f"b={b}", "-p", f"c={c}", "-p", f"open_gate={marks / 'open'}"]
    first = LocalflowServer(ws)
    second = None
    seen: list[psutil.Process] = []
    try:
        warm = first.cli("run", tmp_path / "crash.yaml", *params, "-p", f"gate={marks / 'open'}")
        assert warm.returncode == 0, warm.stderr  # a, b, c once; a is cached from now on
        assert (_lines(a), _lines(b), _lines(c)) == (1, 1, 1)
        p = first.cli("run", tmp_path / "crash.yaml", *params, "-p", f"gate={marks / 'shut'}", "-d")
        assert p.returncode == 0, p.stderr
        name = p.stdout.split()[0].split("/")[1]
        wait_until(lambda: _lines(c) == 2, 120, what="the third task to run")
        uid = json.loads(first.cli("get", "pipelinerun", name, "-o", "json").stdout)["metadata"]["uid"]
        worker = int((ws / "server" / "runs" / f"{uid}.pid").read_text().split("@")[0])
        seen = _family(first.pid)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=30)
        if killed == "server-and-worker":
            os.kill(worker, signal.SIGKILL)
            assert _gone([q for q in seen if q.pid == worker], 30) == []
        second = LocalflowServer(ws)
        (marks / "shut").write_text("")  # the third task may finish now
        w = second.cli("wait", f"run/{name}", "--for=condition=Succeeded", "--timeout=180s")
        assert w.returncode == 0, (w.stderr, second.log.read_text())
        log = second.log.read_text()
        if killed == "server":  # its worker lived on and finished the run; the next server left it to it
            assert "adopted the running worker" in log, log
            assert (_lines(a), _lines(b), _lines(c)) == (1, 2, 2)
        else:  # continued where it stopped: only the task that was running runs again
            assert f"resuming run/{name}" in log, log
            assert (_lines(a), _lines(b), _lines(c)) == (1, 2, 3)
        runs = _runs(second)
        assert runs[name]["state"] == "SUCCEEDED"
        seen += _family(second.pid)
    finally:
        for server in (first, second):
            if server is not None:
                server.stop()
    assert _gone(seen) == []
    left = [p for p in psutil.process_iter(["cmdline"]) if any(str(ws) in part for part in p.info["cmdline"] or [])]
    assert left == [], [" ".join(p.info["cmdline"])[:120] for p in left]
    with sqlite3.connect(ws / "localflow.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
