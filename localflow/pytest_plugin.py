"""pytest plugin (entry point ``pytest11``): the ``localflow`` and ``localflow_server`` fixtures.

Each test gets a :class:`LocalflowFixture` bound to its own workspace under ``tmp_path``, so runs
of different tests never share objects, metadata, artifacts or cache::

    def test_my_pipeline(localflow):
        run = localflow.run("pipeline.yaml", params={"n": 3})
        assert run.state == "SUCCEEDED"
        assert run.outputs["Output"] == 9

Modelled on moto's fixtures: a fresh backend per test, no global state.
"""
from __future__ import annotations

import pytest


class LocalflowFixture:
    """The Python API bound to one workspace: ``run``, ``runtime``, ``workspace``.

    ``run(spec, params=None, **kw)`` is :func:`localflow.run` with this fixture's workspace (and
    its ``executor``/``config`` defaults); ``runtime()`` opens the workspace's stores for inspection
    (a context manager yielding :class:`localflow.api.Runtime`).
    """

    def __init__(self, workspace, executor: str = "subprocess", config=None):
        self.workspace = workspace
        self.executor = executor
        self.config = config

    def run(self, spec, params=None, **kwargs):
        from localflow import api

        kwargs.setdefault("executor", self.executor)
        kwargs.setdefault("config", self.config)
        return api.run(spec, params, workspace=self.workspace, **kwargs)

    def runtime(self, **kwargs):
        from localflow import api

        kwargs.setdefault("config", self.config)
        return api.open_runtime(self.workspace, kwargs.pop("executor", self.executor), **kwargs)


@pytest.fixture
def localflow(tmp_path):
    """A :class:`LocalflowFixture` with an isolated workspace in ``tmp_path / ".localflow"``."""
    return LocalflowFixture(tmp_path / ".localflow")


class LocalflowServer:
    """A ``localflow serve`` process on its own workspace (the ``localflow_server`` fixture).

    ``workspace`` (a :class:`pathlib.Path`), ``pid``, ``process`` (its :class:`subprocess.Popen`),
    ``log`` (its output file); ``cli(*args)`` runs ``localflow ARGS -W <workspace>`` and returns
    the :class:`subprocess.CompletedProcess` (text); ``status()`` is ``localflow status -o json`` as
    a dict; ``stop()`` stops it (SIGTERM, then SIGKILL after ``grace`` seconds) and kills whatever
    it started that is still there. ``args``: more ``serve`` options (``["-c", "localflow.yaml"]``);
    ``kubernetes_url``: its Kubernetes API.
    """

    def __init__(self, workspace, *, start_timeout: float = 60.0, args=()):
        import subprocess
        import sys
        import time

        self.workspace = workspace
        workspace.mkdir(parents=True, exist_ok=True)
        self.log = workspace.parent / "localflow-serve.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "localflow", "serve", "-W", str(workspace), *map(str, args)],
                                            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.pid = self.process.pid
        deadline = time.monotonic() + start_timeout
        while not self.status()["running"]:  # bounded: the record appears once the lock is held
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"localflow serve did not start: {self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)

    def status(self) -> dict:
        from localflow.server import server_status
        from localflow.workspace import Workspace

        return server_status(Workspace(self.workspace))

    @property
    def kubernetes_url(self) -> str | None:
        """The server's Kubernetes API (``http://127.0.0.1:PORT``), for kubectl and the SDKs."""
        return self.status()["urls"].get("kubernetes")

    def cli(self, *args, timeout: float = 300, **kwargs):
        import subprocess
        import sys

        return subprocess.run([sys.executable, "-m", "localflow", *map(str, args), "-W", str(self.workspace)],
                              capture_output=True, text=True, timeout=timeout, **kwargs)

    def stop(self, grace: float = 60.0) -> int:
        """Stop the server; returns its exit code. Idempotent."""
        import signal

        import psutil

        try:
            family = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            family = []
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired
                self.process.kill()
                self.process.wait()
        for p in family:  # what it started and did not stop (it should have)
            try:
                p.kill()
            except psutil.Error:
                pass
        return self.process.returncode


@pytest.fixture
def localflow_server(tmp_path):
    """A :class:`LocalflowServer` serving ``tmp_path / "ws"``; stopped after the test, with every
    process it started."""
    server = LocalflowServer(tmp_path / "ws")
    try:
        yield server
    finally:
        server.stop()
