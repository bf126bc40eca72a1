"""Bounded polls for tests: wait for a state without fixed sleeps."""
from __future__ import annotations

import time

import pytest


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate()`` until it returns a truthy value (returned) or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
