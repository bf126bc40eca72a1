"""pytest plugin (entry point ``pytest11``): the ``localflow`` fixture.

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
