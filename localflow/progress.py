"""Live progress of ``localflow run`` on stderr: one line per state change of a task or replica.

Controllers call ``on_task(record)`` whenever anything about a task changes (its state, its Pod,
its error, its outputs); :class:`Progress` turns that stream into lines a person reads, printing
each *state change* once: a task that is reported SUCCEEDED twice (its DAG finishing after it, a
status rewrite) prints one SUCCEEDED line, a retry prints one RETRYING line and then the new
attempt's RUNNING line with its Pod, and a container restarting in place prints one line per
restart.
"""
from __future__ import annotations

import json
import os
import time

from localflow.errors import escape as printable

__all__ = ["Progress", "progress_line"]

COLORS = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red", "SKIPPED": "yellow", "CANCELED": "magenta",
          "PENDING": "white", "RETRYING": "yellow", "CACHED": "green"}


def progress_line(rec, previous: tuple | None) -> tuple[str, str, str] | None:
    """``(label, color, extra)`` for ``rec`` (a TaskRecord or ReplicaRecord), or None when it shows
    nothing new since ``previous`` (the tuple printed last for the same task). ``extra`` is rich
    markup (escaped)."""
    from rich.markup import escape

    state = rec.state
    error = getattr(rec, "error", None)
    pod = getattr(rec, "pod", None)
    label = "CACHED" if getattr(rec, "cached", False) and state == "SUCCEEDED" else state
    extra = ""
    if error and state == "RUNNING":  # a retry (a new Pod comes) or a container restarting in place
        if previous is not None and previous[3] == error:
            if previous[4] == pod:
                return None  # the same trouble, reported again
            label, extra = "RUNNING", f"  [dim]pod/{escape(str(pod))}[/dim]"  # the retry's new attempt started
        else:
            label, extra = "RETRYING", f"  [dim]{escape(printable(error))}[/dim]"
    elif error and state in ("FAILED", "SKIPPED", "CANCELED"):
        extra = f"  [dim]{escape(printable(error))}[/dim]"
    elif pod and state == "RUNNING":
        extra = f"  [dim]pod/{escape(str(pod))}[/dim]"
    if previous is not None and previous[0] == label and previous[1] == extra:
        return None
    return label, COLORS.get(label, "white"), extra


class Progress:
    """The ``on_task`` callback of ``localflow run``; ``enabled=False`` prints nothing (``-o``)."""

    def __init__(self, enabled: bool, console=None):
        from rich.console import Console

        self.enabled = enabled
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)
        self.console.on_broken_pipe = self._reader_gone  # rich's default exits the process: the run would be canceled
        self.t0 = time.monotonic()
        self._last: dict[str, tuple] = {}

    def __call__(self, rec) -> None:
        if not self.enabled:
            return
        from rich.markup import escape

        shown = progress_line(rec, self._last.get(rec.name))
        if shown is None:
            return
        label, color, extra = shown
        self._last[rec.name] = (label, extra, color, getattr(rec, "error", None), getattr(rec, "pod", None))
        self.console.print(f"[dim]{time.monotonic() - self.t0:7.2f}s[/dim] [{color}]{label:<9}[/{color}] "
                           f"{escape(printable(rec.name))}{extra}", markup=True)

    def _reader_gone(self) -> None:
        """Progress piped into ``head`` that has exited (EPIPE): the run goes on, unprinted."""
        self.enabled = False
        _silence(2)

    def summary(self, result) -> None:
        """The result on stdout: kind, name, state, time, workspace, the error, the outputs."""
        from rich.console import Console
        from rich.markup import escape

        out = Console(highlight=False, soft_wrap=True)
        out.on_broken_pipe = lambda: _silence(1)  # stdout's reader has exited: the run is recorded all the same
        color = "green" if result.succeeded else "red"
        out.print(f"[bold {color}]{result.kind} {escape(result.name)} {result.state}[/] "
                  f"in {time.monotonic() - self.t0:.2f}s (workspace {escape(str(result.workspace.root))})")
        if result.error and not result.succeeded:
            out.print(printable(result.error), style="red", markup=False)
        for k, v in (result.outputs or {}).items():
            shown = v.get("uri") if isinstance(v, dict) and "uri" in v else json.dumps(v, default=str)
            out.print(f"  output {escape(printable(str(k)))} = {escape(printable(str(shown)))}")


def _silence(fd: int) -> None:
    """Point ``fd`` (1 or 2) at /dev/null after its reader went away (EPIPE), so later writes and
    the interpreter's final flush neither fail nor cancel the run."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass
