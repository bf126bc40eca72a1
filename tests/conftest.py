"""Suite-wide settings and guards.

Many tests observe what tasks did through side files in their ``tmp_path`` (outside the run's
workspace), which the subprocess sandbox would keep private: pytest's temp root is made writable
for Pods (``LOCALFLOW_SANDBOX_WRITABLE``). Sandbox tests write elsewhere (``/tmp/localflow-probe-*``,
``/usr/local``, ``/data``), so they still see the sandbox refuse or hide those writes.

A test leaves no process behind: after each test, every process the test started that still runs — a descendant of the pytest
process that was not there before the test: a ``localflow run`` it forgot to stop, the Pods of an
in-process run it did not close — is killed, and the test fails naming them
(``LOCALFLOW_STRAY=warn`` turns the failure into a warning). The warm executor's zygotes are shared
by the whole session on purpose and are not counted (what they fork is). Processes orphaned to
init (the Pods of a ``localflow`` killed with SIGKILL) are out of its sight: making pytest a child
subreaper would catch them, but would change the parent every test's processes see.
"""
from __future__ import annotations

import os
import time
import warnings

import psutil
import pytest

GRACE_S = 3.0  # processes that are already ending (a killed Pod's group) get this long to go


class StrayProcessWarning(pytest.PytestWarning):
    """A test left processes running (they were killed)."""


def _shared_helpers(me: psutil.Process) -> set[int]:
    """The session-wide warm zygotes and their wrappers (e.g. a sandbox launcher) up to pytest."""
    try:
        from localflow.executors import warm
    except ImportError:
        return set()
    keep: set[int] = set()
    for pid in warm.zygote_pids():
        try:
            p = psutil.Process(pid)
            keep.add(pid)
            keep.update(a.pid for a in p.parents() if a.pid != me.pid)
        except psutil.Error:
            continue
    return keep


def _is_zygote(p: psutil.Process) -> bool:
    """A warm fork server (its source is its ``-c`` program), however it was started (sandboxed too)."""
    try:
        args = p.cmdline()
        return args[1:4] == ["-S", "-E", "-c"] or any("The zygote (fork server)" in a for a in args)
    except psutil.Error:
        return False


def _describe(p: psutil.Process) -> str:
    try:
        return f"{p.pid} {' '.join(p.cmdline())[:160]}"
    except psutil.Error:
        return str(p.pid)


def _reap_zombies(me: psutil.Process, before: set[int]) -> None:
    """Collect the killed children of pytest itself (no one else will wait for them)."""
    for c in me.children():
        try:
            if c.pid not in before and c.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(c.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError, OSError):
            continue


@pytest.fixture(autouse=True)
def no_stray_processes(request):
    """Kill what the test started and left running; fail the test (or warn) when there was any."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    keep = _shared_helpers(me) | before

    def strays() -> list[psutil.Process]:
        out = []
        for p in me.children(recursive=True):
            try:
                if p.pid in keep or p.status() == psutil.STATUS_ZOMBIE or _is_zygote(p):
                    continue
            except psutil.Error:
                continue
            out.append(p)
        return out

    left = strays()
    if left:  # give what is already being stopped a moment
        deadline = time.monotonic() + GRACE_S
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = strays()
    described = [_describe(p) for p in left]
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    _reap_zombies(me, before)
    if described:
        msg = f"{request.node.nodeid} left {len(described)} process(es) running (killed): " + "; ".join(described)
        if os.environ.get("LOCALFLOW_STRAY", "fail") == "warn":
            warnings.warn(msg, StrayProcessWarning)
        else:
            pytest.fail(msg, pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def _tasks_may_write_the_test_temp_root(tmp_path_factory):
    from localflow.executors.sandbox import WRITABLE_VAR

    root = str(tmp_path_factory.getbasetemp())
    old = os.environ.get(WRITABLE_VAR)
    os.environ[WRITABLE_VAR] = root
    yield
    if old is None:
        os.environ.pop(WRITABLE_VAR, None)
    else:
        os.environ[WRITABLE_VAR] = old
