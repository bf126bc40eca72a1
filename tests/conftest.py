"""Suite-wide settings.

Many tests observe what tasks did through side files in their ``tmp_path`` (outside the run's
workspace), which the subprocess sandbox would keep private: pytest's temp root is made writable
for Pods (``LOCALFLOW_SANDBOX_WRITABLE``). Sandbox tests write elsewhere (``/tmp/localflow-probe-*``,
``/usr/local``, ``/data``), so they still see the sandbox refuse or hide those writes.
"""
import os

import pytest


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
