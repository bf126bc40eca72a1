"""Warm starts on the subprocess executor: Python containers forked from a zygote.

Real processes only. A warm container's parent is a zygote (``os.getppid()`` is one of
``warm.zygote_pids()``), a cold one's is this test process; every warm behaviour is compared
with the same container started cold (``SubprocessExecutor(warm=False)``).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import psutil
import pytest

from localflow.executors import warm
from localflow.executors.base import ContainerSpec, PodSpec, Resources
from localflow.executors.shims import shim_target
from localflow.executors.subprocess import SubprocessExecutor

#: every program first records its parent pid, so a test knows whether it ran warm
PPID = "import os as _o; open(_o.environ['LF_PPID_FILE'], 'w').write(str(_o.getppid())); del _o\n"


@pytest.fixture(autouse=True)
def _warm_allowed(monkeypatch):
    monkeypatch.delenv("LOCALFLOW_WARM", raising=False)


@pytest.fixture
def hot():
    return SubprocessExecutor(warm=True)


@pytest.fixture
def cold():
    return SubprocessExecutor(warm=False)


class Ran:
    def __init__(self, result, log: str, ppid: int | None):
        self.result, self.log, self.ppid = result, log, ppid

    @property
    def warm(self) -> bool:
        return self.ppid is not None and self.ppid in warm.zygote_pids()


def make_pod(tmp_path, name, argv, *, env=None, cwd=None, mem_limit=None, workdir=None) -> PodSpec:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    env = {"LF_PPID_FILE": str(tmp_path / f"{name}.ppid"), **(env or {})}
    c = ContainerSpec(name="main", image="python:3.11", argv=argv, env=env, working_dir=cwd,
                      resources=Resources(memory_limit=mem_limit), log_path=str(logs / f"{name}.log"))
    return PodSpec(uid=name, namespace="default", name=name, containers=[c],
                   workdir=str(workdir or tmp_path / "pods" / name), workspace_root=str(tmp_path))


def finish(tmp_path, name, running, timeout=60) -> Ran:
    results = running.wait(timeout)
    assert results is not None, f"pod {name} still running after {timeout} s"
    ppid_file = tmp_path / f"{name}.ppid"
    ppid = int(ppid_file.read_text()) if ppid_file.exists() and ppid_file.read_text() else None
    return Ran(results[0], (tmp_path / "logs" / f"{name}.log").read_text(), ppid)


def run(executor, tmp_path, name, argv, **kw) -> Ran:
    return finish(tmp_path, name, executor.start(make_pod(tmp_path, name, argv, **kw)))


def wait_for(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


PROGRAMS = {
    "ok_with_both_streams": ("print('to stdout'); import sys; print('to stderr', file=sys.stderr)", 0, "Completed"),
    "exit_3": ("import sys; sys.exit(3)", 3, "Error"),
    "exit_message": ("import sys; sys.exit('bad input: x')", 1, "Error"),
    "exit_none": ("raise SystemExit(None)", 0, "Completed"),
    "exit_256_wraps": ("raise SystemExit(256 + 7)", 7, "Error"),
    "uncaught_exception": ("def f():\n    raise ValueError('boom')\nf()", 1, "Error"),
    "chained_exception": ("try:\n    1/0\nexcept ZeroDivisionError:\n    raise KeyError('k')", 1, "Error"),
    "syntax_error": ("x = (", 1, "Error"),
    "keyboard_interrupt_exits_by_sigint": ("raise KeyboardInterrupt", 130, "Error"),
    "atexit_and_thread_join": ("import atexit, threading, time\natexit.register(print, 'atexit ran')\n"
                               "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()",
                               0, "Completed"),
    "unclosed_file_is_flushed": ("import os\nf = open(os.environ['LF_PPID_FILE'] + '.out', 'w')\nf.write('kept')\n"
                                 "print(open(os.environ['LF_PPID_FILE'] + '.out').read() == '')", 0, "Completed"),
}


@pytest.mark.parametrize("case", sorted(PROGRAMS))
def test_warm_container_ends_exactly_like_a_cold_one(hot, cold, tmp_path, case):
    code, exit_code, reason = PROGRAMS[case]
    before = warm.spawn_count()
    w = run(hot, tmp_path, f"w-{case}".replace("_", "-"), ["python", "-c", PPID + code])
    assert warm.spawn_count() == before + 1
    c = run(cold, tmp_path, f"c-{case}".replace("_", "-"), ["python", "-c", PPID + code])
    assert warm.spawn_count() == before + 1
    assert (w.warm and not c.warm) or case == "syntax_error"  # a syntax error runs nothing, not even PPID
    assert (w.result.exit_code, w.result.reason) == (c.result.exit_code, c.result.reason) == (exit_code, reason)
    assert w.log == c.log
    if case == "exit_message":
        assert "bad input: x" in w.log
    if case == "uncaught_exception":
        assert w.log.startswith("Traceback (most recent call last):\n") and w.log.endswith("ValueError: boom\n")
        assert "_run_child" not in w.log
    if case == "unclosed_file_is_flushed":
        assert (tmp_path / f"w-{case}.ppid.out".replace("_", "-")).read_text() == "kept"


PROBE = r"""
import json, os, signal, sys
out = {
    "argv": sys.argv, "orig_argv": sys.orig_argv, "path0": sys.path[0], "executable": sys.executable,
    "cwd": os.getcwd(), "env": dict(os.environ), "name": __name__, "globals": sorted(globals()),
    "spec": getattr(__spec__, "name", None), "own_group": os.getpgid(0) == os.getpid(),
    "own_session": os.getsid(0) == os.getpid(),
    "stdin_is_devnull": os.path.samestat(os.fstat(0), os.stat(os.devnull)),
    "signals": {s: str(signal.getsignal(getattr(signal, s))) for s in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGCHLD", "SIGHUP")},
    "stdout": [sys.stdout.encoding, sys.stdout.errors, sys.stdout.line_buffering, sys.stdout.write_through],
    "kfp_preloaded": "kfp.dsl.executor" in sys.modules, "sys_path": sys.path,
}
with open(sys.argv[-1], "w") as f:
    json.dump(out, f)
"""


def probe_both(hot, cold, tmp_path, name, argv_head, *, env=None, cwd=None):
    """Run the probe warm and cold in the same Pod workdir (same shim path); return both dumps and
    the warm run."""
    dumps = []
    for executor, tag in ((hot, "w"), (cold, "c")):
        out = tmp_path / f"{tag}-{name}.json"
        ran = run(executor, tmp_path, f"{tag}-{name}", [*argv_head, "arg one", str(out)], env=env, cwd=cwd,
                  workdir=tmp_path / "shared-pod")
        assert ran.result.exit_code == 0, ran.log
        dump = json.loads(out.read_text())
        dump["argv"][-1] = dump["orig_argv"][-1] = "<out>"
        dump["env"].pop("LF_PPID_FILE")
        assert dump["env"].pop("HOSTNAME") == f"{tag}-{name}"
        dumps.append((ran, dump))
    (w, wd), (c, cd) = dumps
    assert w.warm and not c.warm
    return wd, cd, w


def test_dash_c_sees_the_requested_env_cwd_and_cpython_argv(hot, cold, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    wd, cd, _ = probe_both(hot, cold, tmp_path, "probe-c", ["python", "-c", PPID + PROBE],
                        env={"GREETING": "hello"}, cwd=str(work))
    assert wd == cd
    assert wd["argv"] == ["-c", "arg one", "<out>"] and wd["path0"] == ""
    assert wd["cwd"] == str(work) and wd["env"]["GREETING"] == "hello" and "_KFP_RUNTIME" not in wd["env"]
    shim = tmp_path / "shared-pod" / "bin" / "python"
    # a venv's interpreter is shimmed by a script that execs it: then that is sys.executable
    assert wd["executable"] == (shim_target(str(shim)) or str(shim))
    assert wd["own_group"] and wd["own_session"] and wd["stdin_is_devnull"]
    assert wd["signals"]["SIGINT"].startswith("<built-in function default_int_handler")


def test_dash_m_runs_the_module_as_main_like_cpython(hot, cold, tmp_path):
    work = tmp_path / "modwork"
    work.mkdir()
    (work / "probe_mod.py").write_text(PPID + PROBE)
    wd, cd, _ = probe_both(hot, cold, tmp_path, "probe-m", ["python3", "-m", "probe_mod"], cwd=str(work))
    assert wd == cd
    assert wd["argv"] == [str(work / "probe_mod.py"), "arg one", "<out>"]
    assert wd["path0"] == str(work) and wd["name"] == "__main__" and wd["spec"] == "probe_mod"


def test_kfp_launcher_form_runs_on_the_preloaded_zygote_and_others_do_not(hot, tmp_path):
    launcher_head = "import os, sys\nos.environ['_KFP_RUNTIME'] = 'true'\n"
    out = tmp_path / "k.json"
    k = run(hot, tmp_path, "kfp-form", ["python", "-c", launcher_head + PPID + PROBE, "x", str(out)])
    assert k.warm and k.result.exit_code == 0, k.log
    assert json.loads(out.read_text())["kfp_preloaded"]
    out2 = tmp_path / "p.json"
    p = run(hot, tmp_path, "plain-form", ["python", "-c", PPID + PROBE, "x", str(out2)])
    assert p.warm and not json.loads(out2.read_text())["kfp_preloaded"]
    assert p.ppid != k.ppid  # two zygotes: one with kfp.dsl.executor_main imported, one plain


def test_kfp_without_runtime_flag_gets_the_full_package_warm_or_cold(hot, cold, tmp_path):
    code = PPID + "import kfp; print(hasattr(kfp, 'dsl'), hasattr(kfp, 'Client'))"
    w = run(hot, tmp_path, "full-kfp-w", ["python", "-c", code])
    c = run(cold, tmp_path, "full-kfp-c", ["python", "-c", code])
    assert w.warm and w.log == c.log == "True True\n"


def test_pythonpath_is_applied_by_cpython_on_a_zygote_of_its_own(hot, cold, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "helper_mod.py").write_text("VALUE = 'from PYTHONPATH'\n")
    code = PPID + "import helper_mod; print(helper_mod.VALUE)\n" + PROBE
    wd, cd, w = probe_both(hot, cold, tmp_path, "pythonpath", ["python", "-c", code], env={"PYTHONPATH": str(lib)})
    assert wd == cd and wd["sys_path"][:2] == ["", str(lib)]
    assert w.log.startswith("from PYTHONPATH\n")
    plain = run(hot, tmp_path, "no-pythonpath", ["python", "-c", PPID])
    assert plain.warm and plain.ppid != w.ppid


@pytest.mark.parametrize("argv, env, why", [
    (["python", "-c", PPID], {"PYTHONPATH": "src"}, "a relative PYTHONPATH entry depends on the Pod's cwd"),
    (["python", "-u", "-c", PPID], {}, "interpreter options"),
    (["/bin/sh", "-c", "python -c \"$0\"", PPID], {}, "not python"),
])
def test_containers_a_zygote_cannot_start_exactly_run_cold(hot, tmp_path, argv, env, why):
    r = run(hot, tmp_path, "fallback", argv, env=env)
    assert r.result.exit_code == 0, r.log
    assert not r.warm, why


def test_warm_is_off_with_localflow_warm_0(monkeypatch, tmp_path):
    monkeypatch.setenv("LOCALFLOW_WARM", "0")
    r = run(SubprocessExecutor(), tmp_path, "env-off", ["python", "-c", PPID])
    assert r.result.exit_code == 0 and not r.warm


def test_killing_a_warm_pod_kills_its_group_and_reports_killed(hot, tmp_path):
    code = PPID + ("import subprocess, time\np = subprocess.Popen(['sleep', '300'])\n"
                   "print('grandchild', p.pid, flush=True)\ntime.sleep(300)")
    pod = make_pod(tmp_path, "sleeper", ["python", "-c", code])
    running = hot.start(pod)
    log = tmp_path / "logs" / "sleeper.log"
    line = wait_for(lambda: log.exists() and "grandchild" in log.read_text() and log.read_text(), what="grandchild")
    grandchild = int(line.split()[1])
    [child] = running.pids()
    running.kill(grace_seconds=5)
    ran = finish(tmp_path, "sleeper", running)
    assert ran.warm
    assert (ran.result.exit_code, ran.result.reason) == (128 + signal.SIGTERM, "Killed")
    wait_for(lambda: gone(grandchild) and gone(child), what="the whole group to die")


def test_memory_limit_oom_kills_a_warm_pod(hot, tmp_path):
    code = PPID + "import time\nx = b'x' * (300 << 20)\ntime.sleep(60)"
    r = run(hot, tmp_path, "hog", ["python", "-c", code], mem_limit=100 << 20)
    assert r.warm
    assert (r.result.exit_code, r.result.reason) == (137, "OOMKilled")


def test_twenty_warm_pods_started_at_once_keep_their_own_exit_codes(hot, tmp_path):
    barrier = threading.Barrier(20)
    results: dict[int, Ran] = {}

    def one(i):
        pod = make_pod(tmp_path, f"many-{i}", ["python", "-c", PPID + f"print({i}); raise SystemExit({i})"])
        barrier.wait(30)
        results[i] = finish(tmp_path, f"many-{i}", hot.start(pod))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == list(range(20))
    for i, r in results.items():
        assert r.warm and r.result.exit_code == i and r.log == f"{i}\n"


def test_zygote_death_kills_its_running_children_and_the_next_start_works(hot, tmp_path):
    pod = make_pod(tmp_path, "orphan", ["python", "-c", PPID + "import time\nprint('up', flush=True)\ntime.sleep(300)"])
    running = hot.start(pod)
    log = tmp_path / "logs" / "orphan.log"
    wait_for(lambda: log.exists() and "up" in log.read_text(), what="the sleeper to start")
    zygote = int((tmp_path / "orphan.ppid").read_text())
    [child] = running.pids()
    assert zygote in warm.zygote_pids()
    os.kill(zygote, signal.SIGKILL)
    lost = finish(tmp_path, "orphan", running)
    assert (lost.result.exit_code, lost.result.reason) == (137, "Error")
    assert "zygote" in lost.result.message
    wait_for(lambda: gone(child), what="the orphaned child to be killed")
    after = run(hot, tmp_path, "after-crash", ["python", "-c", PPID + "print('fine')"])
    assert after.result.exit_code == 0 and after.log == "fine\n"
    assert after.warm and after.ppid != zygote  # a new zygote
    assert zygote not in warm.zygote_pids()


def test_a_forked_copy_of_localflow_leaves_the_parents_zygote_alone(hot, tmp_path):
    first = run(hot, tmp_path, "before-fork", ["python", "-c", PPID])
    assert first.warm
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the copy: it sees no zygote and closes only its own descriptor of the socket
        try:
            os.write(w, json.dumps(warm.zygote_pids()).encode())
        finally:
            os._exit(0)
    os.close(w)
    seen = json.loads(os.read(r, 1000))
    os.close(r)
    os.waitpid(pid, 0)
    assert seen == []
    again = run(hot, tmp_path, "after-fork", ["python", "-c", PPID])
    assert again.warm and again.ppid == first.ppid


@pytest.mark.parametrize("module, source, exit_code", [
    ("no_such_module_here", None, 1),
    ("raising_mod", "def f():\n    raise ValueError('from a module')\nf()\n", 1),
    ("exiting_mod", "import sys\nprint('bye')\nsys.exit(4)\n", 4),
])
def test_dash_m_failures_end_like_cold_ones(hot, cold, tmp_path, module, source, exit_code):
    work = tmp_path / "m"
    work.mkdir()
    if source is not None:
        (work / f"{module}.py").write_text(source)
    before = warm.spawn_count()
    w = run(hot, tmp_path, "w-mod", ["python", "-m", module], cwd=str(work), workdir=tmp_path / "shared-pod")
    assert warm.spawn_count() == before + 1
    c = run(cold, tmp_path, "c-mod", ["python", "-m", module], cwd=str(work), workdir=tmp_path / "shared-pod")
    assert w.result.exit_code == c.result.exit_code == exit_code
    assert w.log == c.log and w.log


def test_closing_a_wrapped_zygote_is_quick_and_leaves_no_zygote_behind():
    """A zygote under a wrapper that forks it (as bwrap does) is the wrapper's child: closing it
    (eviction, shutdown) must kill the zygote itself, not only the wrapper, or the reader waits
    for an EOF that never comes and the zygote lives on (regression: ~15 s per eviction)."""
    import time

    import psutil

    from localflow.executors.zygote import Zygote

    z = Zygote(sys.executable, preload=(), wrapper=("sh", "-c", '"$@"; :', "sh"))
    proc = z.spawn(["-c", "pass"], {"PATH": os.environ["PATH"]}, "/")
    assert proc.wait(30) == 0
    zpid = z._conn.pid
    assert zpid != z._conn.proc.pid  # really wrapped
    t0 = time.monotonic()
    z.close()
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5
    while psutil.pid_exists(zpid) and psutil.Process(zpid).status() != psutil.STATUS_ZOMBIE \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not psutil.pid_exists(zpid) or psutil.Process(zpid).status() == psutil.STATUS_ZOMBIE
