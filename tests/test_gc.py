"""`localflow gc` after the localflow process running a run was killed (subprocess executor)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


from cli_support import lf


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_gc_marks_the_dead_run_failed_after_its_pod_processes_died_with_it(tmp_path):
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(ROOT / "scenarios/pipelines/sleep_fanout.yaml"),
                             "-p", "seconds=120", "-W", str(ws)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        pids = []
        while time.monotonic() < deadline and len(pids) < 3:
            out = lf("get", "pods", "-W", ws, "-o", "json")
            if out.returncode == 0:
                items = json.loads(out.stdout)["items"]
                pids = [int(cs["containerID"].split("://")[1]) for p in items
                        for cs in (p["status"].get("containerStatuses") or []) if cs.get("containerID")
                        and "running" in cs["state"]]
            time.sleep(0.1)
        assert len(pids) >= 3, "pods did not start"
        os.killpg(proc.pid, signal.SIGKILL)  # localflow dies; its watchdog kills its Pods' process groups
        proc.wait(30)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.02)
        assert not any(_alive(p) for p in pids), "pod processes outlived kill -9 of localflow"
        dry = lf("gc", "--dry-run", "-W", ws)
        assert dry.returncode == 0 and "would remove: 1 dead run(s)" in dry.stdout
        out = lf("gc", "-W", ws)
        assert out.returncode == 0, out.stderr
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids):
            time.sleep(0.05)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
        runs = json.loads(lf("get", "runs", "-W", ws, "-o", "json").stdout)["items"]
        assert runs[0]["state"] == "FAILED" and "gc" in runs[0]["error"]
        pods = json.loads(lf("get", "pods", "-W", ws, "-o", "json").stdout)["items"]
        assert {p["status"]["phase"] for p in pods} == {"Failed"}
        assert {p["status"].get("reason") for p in pods} == {"Orphaned"}
        from localflow.fakes import ObjectStore

        with ObjectStore(ws / "localflow.db") as store:
            assert store.get("Run", runs[0]["name"])["status"]["state"] == "FAILED"
        execs = json.loads(lf("get", "executions", "-W", ws, "-o", "json").stdout)["items"]
        assert not [x for x in execs if x["state"] in ("NEW", "RUNNING")]
        assert "0 dead run(s)" in lf("gc", "-W", ws).stdout  # nothing left to do
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_gc_leaves_a_live_run_alone(tmp_path):
    ws = tmp_path / "ws"
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(ROOT / "scenarios/pipelines/sleep_fanout.yaml"),
                             "-p", "seconds=20", "-W", str(ws)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = lf("get", "runs", "-W", ws, "-o", "json")
            if out.returncode == 0 and json.loads(out.stdout)["items"] and json.loads(out.stdout)["items"][0]["state"] == "RUNNING":
                break
            time.sleep(0.1)
        assert "0 dead run(s)" in lf("gc", "-W", ws).stdout
        assert json.loads(lf("get", "runs", "-W", ws, "-o", "json").stdout)["items"][0]["state"] == "RUNNING"
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
