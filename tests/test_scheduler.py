"""The scheduler + subprocess executor: admission, Pod status, restarts, deadlines, kills, volumes.

Real processes only; waits poll the object store with a deadline, never a fixed sleep.
"""
from __future__ import annotations

import sys
import time

import psutil
import pytest

from localflow.api import open_runtime, read_logs
from localflow.clock import FakeClock
from localflow.config import parse_config
from localflow.errors import Unschedulable
from localflow.scheduler import Capacity, expand_vars, pod_requests

PY = sys.executable


def pod(name, argv, *, cpu=None, memory=None, mem_limit=None, env=None, restart="Never", image="python:3.11", **spec):
    res = {}
    if cpu or memory:
        res["requests"] = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    if mem_limit:
        res["limits"] = {"memory": mem_limit}
    container = {"name": "main", "image": image, "command": argv[:1], "args": argv[1:], "resources": res,
                 "env": env or []}
    container.update(spec.pop("container", {}))
    return {"metadata": {"name": name, "labels": {"app": "t"}},
            "spec": {"restartPolicy": restart, "containers": [container], **spec}}


def wait_phase(store, name, phases=("Succeeded", "Failed"), timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = store.get("Pod", name)
        if p["status"].get("phase") in phases:
            return p
        time.sleep(0.02)
    raise AssertionError(f"pod {name} stayed {store.get('Pod', name)['status'].get('phase')}")


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as runtime:
        yield runtime


def terminated(p):
    return p["status"]["containerStatuses"][0]["state"]["terminated"]


def test_pod_runs_to_succeeded_with_kubelet_status_and_events(rt):
    rt.scheduler.submit(pod("ok", [PY, "-c", "print('hello')"]))
    p = wait_phase(rt.store, "ok")
    assert p["status"]["phase"] == "Succeeded"
    t = terminated(p)
    assert t["exitCode"] == 0 and t["reason"] == "Completed"
    assert {c["type"] for c in p["status"]["conditions"]} >= {"PodScheduled", "Ready", "ContainersReady"}
    reasons = [e["reason"] for e in rt.store.events_for(p)]
    assert "Scheduled" in reasons and "Started" in reasons
    log = rt.workspace.logs_dir / p["metadata"]["uid"] / "main" / "0.log"  # named by uid, never by spec strings
    assert log.read_text() == "hello\n"


def test_failing_container_sets_exit_code_and_error_reason(rt):
    rt.scheduler.submit(pod("bad", [PY, "-c", "import sys; sys.exit(3)"]))
    p = wait_phase(rt.store, "bad")
    assert p["status"]["phase"] == "Failed"
    assert terminated(p)["exitCode"] == 3
    assert terminated(p)["reason"] == "Error"


def test_pod_that_does_not_fit_waits_pending_with_failed_scheduling_event(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=1, memory=8 << 30)) as rt:
        stamp = tmp_path / "first"
        rt.scheduler.submit(pod("first", [PY, "-c", f"import time; time.sleep(0.5); open({str(stamp)!r}, 'w').write(str(time.time()))"], cpu="1"))
        rt.scheduler.submit(pod("second", [PY, "-c", "import time; print(time.time())"], cpu="600m"))
        second = rt.store.get("Pod", "second")
        assert second["status"]["phase"] == "Pending"
        ev = [e for e in rt.store.events_for(second) if e["reason"] == "FailedScheduling"]
        assert ev and ev[0]["message"] == "0/1 nodes are available: Insufficient cpu."
        cond = {c["type"]: c for c in second["status"]["conditions"]}["PodScheduled"]
        assert cond["status"] == "False" and cond["reason"] == "Unschedulable"
        wait_phase(rt.store, "second")
        started_second = float(read_logs(rt.workspace, "second", "main"))
        assert started_second >= float(stamp.read_text())


def test_request_larger_than_machine_fails_fast(rt):
    with pytest.raises(Unschedulable) as e:
        rt.scheduler.submit(pod("huge", [PY, "-c", "pass"], cpu="64"))
    assert "Insufficient cpu" in str(e.value)
    assert rt.store.list("Pod") == []


def test_gang_is_admitted_together_or_not_at_all(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        gate = tmp_path / "gate"
        rt.scheduler.submit(pod("blocker", [PY, "-c", f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.01)"], cpu="1"))
        wait_phase(rt.store, "blocker", ("Running",))
        rt.scheduler.submit_gang([pod("g-0", [PY, "-c", "pass"], cpu="1"), pod("g-1", [PY, "-c", "pass"], cpu="1")], gang="g")
        # one member alone would fit next to the blocker, but the gang must wait
        assert {rt.store.get("Pod", n)["status"]["phase"] for n in ("g-0", "g-1")} == {"Pending"}
        gate.write_text("go")
        for n in ("g-0", "g-1"):
            assert wait_phase(rt.store, n)["status"]["phase"] == "Succeeded"


def test_gang_larger_than_machine_is_refused_before_creating_pods(rt):
    with pytest.raises(Unschedulable):
        rt.scheduler.submit_gang([pod(f"w-{i}", [PY, "-c", "pass"], cpu="1") for i in range(3)], gang="w")
    assert rt.store.list("Pod") == []


def test_active_deadline_kills_pod_with_deadline_exceeded(rt):
    rt.scheduler.submit(pod("slow", [PY, "-c", "import time; time.sleep(60)"], activeDeadlineSeconds=1))
    p = wait_phase(rt.store, "slow", timeout=30)
    assert p["status"]["phase"] == "Failed"
    assert p["status"]["reason"] == "DeadlineExceeded"


def test_on_failure_restarts_in_place_and_counts_restarts(tmp_path):
    marker, gate = tmp_path / "marker", tmp_path / "gate"
    script = (f"import os,sys,time\nif not os.path.exists({str(marker)!r}):\n    open({str(marker)!r},'w').close(); sys.exit(1)\n"
              f"while not os.path.exists({str(gate)!r}): time.sleep(0.01)\n")
    clock = FakeClock()  # backoff (10 s) passes instantly
    with open_runtime(tmp_path / "ws", clock=clock, capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        rt.scheduler.submit(pod("flaky", [PY, "-c", script], restart="OnFailure"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the second run: running, with the first run's end as lastState
            cs = (rt.store.get("Pod", "flaky")["status"].get("containerStatuses") or [{}])[0]
            if "running" in (cs.get("state") or {}) and cs.get("lastState"):
                break
            time.sleep(0.01)
        assert cs["restartCount"] == 1 and cs["lastState"]["terminated"]["exitCode"] == 1
        gate.write_text("go")
        p = wait_phase(rt.store, "flaky")
        assert p["status"]["phase"] == "Succeeded"
        assert p["status"]["containerStatuses"][0]["restartCount"] == 1
        assert any(e["reason"] == "BackOff" for e in rt.store.events_for(p))


def test_kill_pod_leaves_no_process_of_the_group(rt, tmp_path):
    pidfile = tmp_path / "pids"
    # sh starts a grandchild in the background: the whole group must die
    # `$$$$` because Kubernetes turns `$$` into `$` in command and args
    script = f"sleep 300 & echo $! > {pidfile}; echo $$$$ >> {pidfile}; wait"
    rt.scheduler.submit(pod("sleeper", ["sh", "-c", script], image="busybox"))
    wait_phase(rt.store, "sleeper", ("Running",))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(pidfile.read_text().split() if pidfile.exists() else []) < 2:
        time.sleep(0.01)
    pids = [int(x) for x in pidfile.read_text().split()]
    rt.scheduler.kill_pod("sleeper", reason="Killed")
    p = wait_phase(rt.store, "sleeper")
    assert p["status"]["phase"] == "Failed" and terminated(p)["reason"] == "Killed"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(psutil.pid_exists(x) and psutil.Process(x).status() != "zombie" for x in pids):
        time.sleep(0.02)
    assert not any(psutil.pid_exists(x) and psutil.Process(x).status() != "zombie" for x in pids)


def test_shutdown_cancels_running_and_pending_pods(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=1, memory=8 << 30)) as rt:
        rt.scheduler.submit(pod("a", [PY, "-c", "import time; time.sleep(300)"], cpu="1"))
        rt.scheduler.submit(pod("b", [PY, "-c", "pass"], cpu="1"))
        wait_phase(rt.store, "a", ("Running",))
        rt.scheduler.shutdown(cancel=True)
        assert rt.store.get("Pod", "a")["status"]["phase"] == "Failed"
        b = rt.store.get("Pod", "b")
        assert b["status"]["phase"] == "Failed" and b["status"]["reason"] == "Canceled"


def test_memory_limit_overrun_is_oomkilled(rt):
    hog = "x = bytearray(400 * 1024 * 1024)\nimport time; time.sleep(30)"
    rt.scheduler.submit(pod("hog", [PY, "-c", hog], mem_limit="100Mi"))
    p = wait_phase(rt.store, "hog", timeout=60)
    assert p["status"]["phase"] == "Failed"
    assert terminated(p)["reason"] == "OOMKilled" and terminated(p)["exitCode"] == 137


def test_missing_executable_names_image_and_config_key(rt):
    rt.scheduler.submit(pod("nope", ["no-such-binary-xyz", "--help"], image="example.com/tool:1"))
    p = wait_phase(rt.store, "nope")
    t = terminated(p)
    assert t["reason"] == "ContainerCannotRun" and t["exitCode"] == 127
    assert "example.com/tool:1" in t["message"] and "localflow.yaml" in t["message"]


def test_env_expansion_field_refs_and_volumes(rt):
    env = [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y-$$(A)"},
           {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    # container paths reach the process through argv and env, where the executor rewrites them
    script = ("import os, sys; open(sys.argv[1],'w').write(os.environ['B']+' '+os.environ['POD']);"
              "open(os.environ['SCRATCH']+'/s','w').write('s')")
    env.append({"name": "SCRATCH", "value": "/scratch"})
    spec = pod("vol", [PY, "-c", script, "/data/out.txt"], env=env,
               container={"volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/scratch"}]},
               volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "models"}}, {"name": "tmp", "emptyDir": {}}])
    rt.scheduler.submit(spec)
    p = wait_phase(rt.store, "vol")
    assert p["status"]["phase"] == "Succeeded", rt.store.events_for(p)
    assert (rt.workspace.pvc_dir("models") / "out.txt").read_text() == "x-y-$(A) vol"


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "fallback"])
def test_image_mapping_shows_container_paths_or_rewrites_them_without_a_sandbox(tmp_path, monkeypatch, sandboxed):
    from localflow.executors import sandbox

    if sandboxed and sandbox.unavailable_reason():
        pytest.skip(f"bwrap is unusable here: {sandbox.unavailable_reason()}")
    monkeypatch.setenv(sandbox.ENV_VAR, "1" if sandboxed else "0")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("import sys, os; print(os.getcwd()); print(sys.argv[1])")
    cfg = parse_config({"images": {"registry.example/app:*": {"paths": {"/opt/app": str(app)}, "workdir": "/opt/app"}}})
    with open_runtime(tmp_path / "ws", config=cfg, capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        rt.scheduler.submit(pod("mapped", ["python3", "/opt/app/main.py", "--out=/opt/app/x"], image="registry.example/app:v2"))
        p = wait_phase(rt.store, "mapped")
        assert p["status"]["phase"] == "Succeeded"
        out = read_logs(rt.workspace, "mapped", "main").split()
        # sandboxed, /opt/app is a real (read-only) mount; otherwise paths are rewritten to the host's
        assert out == (["/opt/app", "--out=/opt/app/x"] if sandboxed else [str(app), f"--out={app}/x"])


@pytest.mark.parametrize("text,env,want", [
    ("$(A)", {"A": "1"}, "1"),
    ("$$(A)", {"A": "1"}, "$(A)"),
    ("$(MISSING)", {}, "$(MISSING)"),
    ("$(mktemp -d)", {}, "$(mktemp -d)"),
    ("a$(A)b$(B)", {"A": "1", "B": "2"}, "a1b2"),
])
def test_expand_vars_follows_kubernetes_rules(text, env, want):
    assert expand_vars(text, env) == want


def test_pod_requests_sum_containers_and_max_init_containers():
    p = {"spec": {"containers": [{"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
                                 {"resources": {"limits": {"cpu": "1", "memory": "512Mi"}}}],
                  "initContainers": [{"resources": {"requests": {"cpu": "2"}}}]}}
    cpu, mem = pod_requests(p)
    assert cpu == 2.0
    assert mem == (1 << 30) + (512 << 20)


def test_configmap_volume_items_paths_and_modes(rt):
    rt.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                     "data": {"run.sh": "echo from-configmap", "other": "x"}})
    spec = pod("cm", ["/etc/cfg/bin/run.sh"], image="busybox",
               container={"volumeMounts": [{"name": "c", "mountPath": "/etc/cfg"}]},
               volumes=[{"name": "c", "configMap": {"name": "cfg", "items": [{"key": "run.sh", "path": "bin/run.sh", "mode": 0o555}]}}])
    spec["spec"]["containers"][0]["command"] = ["sh", "-c", 'test ! -e "$0/../other" && exec "$0"', "/etc/cfg/bin/run.sh"]
    rt.scheduler.submit(spec)
    p = wait_phase(rt.store, "cm")
    assert p["status"]["phase"] == "Succeeded", terminated(p)
    assert read_logs(rt.workspace, "cm", "main") == "from-configmap\n"


def test_image_entrypoint_from_the_image_map_when_the_container_sets_no_command(tmp_path):
    cfg = parse_config({"images": {"example/trainer:1": {"command": [PY, "-c", "import sys; print(sys.argv[1:])"],
                                                         "args": ["--default"]}}})
    with open_runtime(tmp_path / "ws", config=cfg, capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        for name, args in (("cmd-default", None), ("cmd-args", ["--epochs", "2"])):
            spec = pod(name, [], image="example/trainer:1")
            spec["spec"]["containers"][0].pop("command")
            spec["spec"]["containers"][0]["args"] = args or []
            rt.scheduler.submit(spec)
        assert wait_phase(rt.store, "cmd-default")["status"]["phase"] == "Succeeded"
        assert read_logs(rt.workspace, "cmd-default", "main") == "['--default']\n"
        wait_phase(rt.store, "cmd-args")
        assert read_logs(rt.workspace, "cmd-args", "main") == "['--epochs', '2']\n"


def test_container_without_command_and_unknown_image_fails_with_the_config_fix(rt):
    spec = pod("nocmd", [], image="example/unknown:1")
    spec["spec"]["containers"][0].pop("command")
    rt.scheduler.submit(spec)
    p = wait_phase(rt.store, "nocmd")
    assert p["status"]["phase"] == "Failed"
    assert p["status"]["reason"] == "CreateContainerConfigError"
    assert "localflow.yaml" in p["status"]["message"] and "example/unknown:1" in p["status"]["message"]


def test_image_mapped_to_a_venv_interpreter_runs_bare_python_inside_the_venv(tmp_path):
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    vpy = str(env_dir / "bin" / "python")
    cfg = parse_config({"images": {"example/venv:1": {"python": vpy}}})
    with open_runtime(tmp_path / "ws", config=cfg, capacity=Capacity(cpu=2, memory=8 << 30)) as rt:
        rt.scheduler.submit(pod("venv", ["python3", "-c", "import sys; print(sys.prefix)"], image="example/venv:1"))
        assert wait_phase(rt.store, "venv")["status"]["phase"] == "Succeeded"
        assert read_logs(rt.workspace, "venv", "main").strip() == str(env_dir)


def test_script_the_image_would_carry_fails_fast_without_a_crash_loop(rt):
    rt.scheduler.submit(pod("noscript", ["python3", "/opt/scenario/train.py"], image="example/trainer:2", restart="OnFailure"))
    p = wait_phase(rt.store, "noscript")
    t = terminated(p)
    assert p["status"]["phase"] == "Failed" and t["reason"] == "ContainerCannotRun"
    assert "/opt/scenario/train.py" in t["message"] and "example/trainer:2" in t["message"] and "paths" in t["message"]
    assert t.get("exitCode") == 127 and p["status"]["containerStatuses"][0]["restartCount"] == 0


def test_kill_during_restart_backoff_is_immediate(tmp_path):
    with open_runtime(tmp_path / "ws", capacity=Capacity(cpu=2, memory=8 << 30)) as rt:  # real clock: 10 s backoff
        rt.scheduler.submit(pod("crash", [PY, "-c", "import sys; sys.exit(1)"], restart="Always"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cs = (rt.store.get("Pod", "crash")["status"].get("containerStatuses") or [{}])[0]
            if (cs.get("state") or {}).get("waiting"):
                break
            time.sleep(0.02)
        t0 = time.monotonic()
        rt.scheduler.kill_pod("crash", reason="Canceled")
        p = wait_phase(rt.store, "crash", timeout=5)
        assert time.monotonic() - t0 < 3
        assert p["status"]["phase"] == "Failed" and p["status"]["reason"] == "Canceled"
        assert p["status"]["containerStatuses"][0]["restartCount"] >= 1
