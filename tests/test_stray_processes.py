"""The suite's guard (tests/conftest.py) against processes a test leaves behind, run on a real inner
pytest session: a test that leaves a process — its child, or a grandchild under a living child — fails
naming it, and the process is gone afterwards; a test that cleans up passes."""
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent

INNER = '''
import os, subprocess, sys, time

def test_leaves_a_child(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    (tmp_path.parent / "pids").open("a").write(f"{p.pid}\\n")

def test_leaves_a_grandchild(tmp_path):
    # a child that starts a grandchild in its own session (as localflow starts a Pod) and keeps running
    code = ("import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
            "start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); print(p.pid, flush=True); "
            "time.sleep(300)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    (tmp_path.parent / "pids").open("a").write(f"{child.pid}\\n{child.stdout.readline()}")

def test_cleans_up():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
'''


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def test_a_test_that_leaves_processes_fails_and_they_are_killed(tmp_path):
    (tmp_path / "conftest.py").write_text((HERE / "conftest.py").read_text())
    (tmp_path / "test_inner.py").write_text(INNER)
    base = tmp_path / "base"
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={base}",
                        "--rootdir", str(tmp_path), str(tmp_path / "test_inner.py")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       env={**os.environ, "LOCALFLOW_STRAY": "fail"})
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "test_leaves_a_child left 1 process(es) running (killed)" in out
    assert "test_leaves_a_grandchild left 2 process(es) running (killed)" in out
    assert "3 passed, 2 errors" in out, out  # every test ran; the teardown of the two that left processes failed
    pids = [int(x) for x in (base / "pids").read_text().split()]
    assert len(pids) == 3
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
