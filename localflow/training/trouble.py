"""Why a replica is in trouble, read from its Pod's status and log: a container restarting in place, a failure.

A Pod with ``restartPolicy: OnFailure`` (the PyTorchJob default) or ``Always`` whose program exits
non-zero is restarted in place by the kubelet with a growing back-off (Kubernetes
``pkg/kubelet/kuberuntime``: ``CrashLoopBackOff``); the Pod stays ``Running`` and only
``containerStatuses[].restartCount``, ``state.waiting`` and ``lastState.terminated`` tell. These
helpers turn that into the one-line error a progress line shows::

    restarting (3 restarts): exit code 2; last log line: python: can't open file '/opt/x.py'

They are pure except :func:`last_log_line`, which reads a container log file
(workspace ``logs/<namespace>/<pod>/<container>.log``).
"""
from __future__ import annotations

import os

__all__ = ["shorten", "exit_detail", "restart_trouble", "restart_error", "last_log_line", "MAX_MESSAGE"]

MAX_MESSAGE = 400   # characters of a container's termination message kept in an error
_MAX_LOG_LINE = 240
_TAIL_BYTES = 8192


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` stripped; when longer than ``limit`` characters, its head and tail joined by `` … ``
    (a message's head says what failed, a traceback's tail why)."""
    text = str(text).strip()
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half].rstrip()} … {text[-half:].lstrip()}"


def exit_detail(term: dict) -> str:
    """``exit code 2`` from a ``terminated`` container state, plus `` (<reason>)`` unless the reason is
    the plain ``Error``, plus ``: <message>`` when the kubelet recorded one."""
    out = f"exit code {term.get('exitCode')}"
    if term.get("reason") and term.get("reason") != "Error":
        out += f" ({term['reason']})"
    if term.get("message"):
        out += f": {shorten(term['message'])}"
    return out


def restart_trouble(statuses: list[dict]) -> tuple[str, int, str | None] | None:
    """Whether a container keeps restarting in place: ``(container name, its restartCount,
    exit_detail of its last termination or None when the status no longer holds it)`` for the
    container with the most restarts, or None when none restarted. ``statuses`` is a Pod's
    ``status.containerStatuses`` (``restartCount``, ``state.waiting.reason: CrashLoopBackOff``,
    ``lastState.terminated``, as the kubelet writes them)."""
    worst = None
    for cs in statuses or []:
        n = int(cs.get("restartCount") or 0)
        if n <= 0 or (worst is not None and n <= worst[1]):
            continue
        last = (cs.get("lastState") or {}).get("terminated")
        worst = (cs.get("name"), n, exit_detail(last) if last else None)
    return worst


def restart_error(restarts: int, detail: str | None) -> str:
    """``restarting (3 restarts): <detail>`` — the error of a replica that is still RUNNING while its
    container crash-loops (``detail`` as :func:`restart_trouble` gives it, maybe with the log line)."""
    text = f"restarting ({restarts} restart{'s' if restarts != 1 else ''})"
    return f"{text}: {detail}" if detail else text


def last_log_line(path: str | os.PathLike) -> str | None:
    """The last non-blank line of a container log file (at most 240 characters; None when the file
    is missing or empty). Reads only the file's last 8 KiB."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - _TAIL_BYTES))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    for line in reversed(tail.splitlines()):
        if line.strip():
            return shorten(line, _MAX_LOG_LINE)
    return None
