"""Which localflow process drives a run, so a later ``localflow gc`` can tell a run whose process died.

A controller puts :func:`owner_annotations` on the object of the run it drives; :func:`owner_alive`
checks such an annotation. The start time guards against pid reuse.
"""
from __future__ import annotations

import psutil

OWNER_PID_ANNOTATION = "localflow.dev/owner-pid"


def owner_annotations() -> dict[str, str]:
    """``{"localflow.dev/owner-pid": "<pid>@<process start time, epoch seconds>"}`` for this process."""
    me = psutil.Process()
    return {OWNER_PID_ANNOTATION: f"{me.pid}@{me.create_time():.2f}"}


def owner_alive(value: str | None) -> bool:
    """True when the process named by an owner-pid annotation value still runs (same start time)."""
    try:
        pid, started = str(value).split("@")
        return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.5
    except (ValueError, psutil.Error):
        return False
