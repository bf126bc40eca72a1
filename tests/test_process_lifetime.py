"""Task processes die with localflow: ``kill -9`` of a real ``localflow run`` leaves no process of
its tasks behind within 2 s — a shell task with a backgrounded child (cold) and a lightweight
Python task with a child of its own (warm, forked from a zygote) — with the sandbox and without.
"""
import os
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest
from kfp import compiler, dsl

from localflow.executors import sandbox
from pipeline_support import BASE

MARK = 3000 + uuid.uuid4().int % 997  # sleep durations no other process on this machine uses


@dsl.container_component
def shell_sleeps(seconds: int):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'sleep "$0" & sleep "$0"'], args=[seconds])


@dsl.component(base_image=BASE)
def python_sleeps(seconds: int, pid_file: str):
    import os
    import subprocess
    import time

    subprocess.Popen(["sleep", str(seconds + 1)])
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    time.sleep(seconds)


@dsl.pipeline(name="sleepers")
def sleepers(seconds: int, pid_file: str):
    shell_sleeps(seconds=seconds).set_caching_options(False)
    python_sleeps(seconds=seconds, pid_file=pid_file).set_caching_options(False)


def _task_processes(pid_file) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if len(cmd) == 2 and os.path.basename(cmd[0]) == "sleep" and cmd[1] in (str(MARK), str(MARK + 1)):
            found.append(p)
    if os.path.exists(pid_file):
        try:
            found.append(psutil.Process(int(open(pid_file).read())))
        except psutil.NoSuchProcess:
            pass
    return found


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _poll(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.parametrize("mode", ["sandbox", "no-sandbox"])
def test_kill_9_of_localflow_run_kills_every_task_process_within_2_s(tmp_path, mode):
    env = {**os.environ, "LOCALFLOW_WARM": "1"}
    if mode == "sandbox":
        if sandbox.unavailable_reason() is not None:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"bwrap is unusable: {sandbox.unavailable_reason()}")
            pytest.skip(f"bwrap is unusable here: {sandbox.unavailable_reason()}")
        env.pop(sandbox.ENV_VAR, None)
    else:
        env[sandbox.ENV_VAR] = "0"
    spec = tmp_path / "sleepers.yaml"
    compiler.Compiler().compile(sleepers, str(spec))
    ws = tmp_path / "ws"
    pid_file = str(ws / "python-task.pid")  # the workspace is writable for tasks
    proc = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(spec), "-W", str(ws),
                             "-p", f"seconds={MARK}", "-p", f"pid_file={pid_file}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        # 3 sleeps (2 of the shell, 1 of the Python task) and the Python task itself
        procs = _poll(lambda: (lambda ps: ps if len(ps) == 4 else None)(_task_processes(pid_file)), 120, "the tasks")
        warm_task = psutil.Process(int(open(pid_file).read()))
        assert warm_task.parent().pid != proc.pid  # forked by a zygote, not started by localflow
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(_alive(p) for p in procs):
            time.sleep(0.02)
        left = [p.pid for p in procs if _alive(p)]
        assert not left, f"task processes outlived kill -9 of localflow: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for p in _task_processes(pid_file):
            try:
                p.kill()
            except psutil.Error:
                pass
