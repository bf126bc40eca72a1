"""Metrics collection and trial-job status, as Katib computes them.

- :func:`parse_text`: kubeflow/katib ``pkg/metricscollector/v1beta1/file-metricscollector/file-metricscollector.go``
  ``parseLogsInTextFormat``: lines that contain no metric name are skipped; a leading RFC 3339 token is
  the timestamp (else ``0001-01-01T00:00:00Z``); every match of each filter (default
  ``common/const.go`` ``DefaultFilter``) whose trimmed group 1 equals a metric name gives a log with
  the trimmed group 2; no objective match at all gives one ``unavailable`` log (``newObservationLog``).
- :func:`observation`: the trial controller's ``getMetrics`` (min/max over values that parse as
  floats, ``unavailable`` when none does; latest by timestamp, later entries winning ties).
- :func:`job_condition`: ``trial/util/job_util.go``: the GJSON ``failureCondition`` first, then
  ``successCondition``, evaluated on the job with gjson-py; a non-empty result decides.

The StdOut collector reads the primary container's log file (what Katib's wrapper redirects into
``/var/log/katib/metrics.log``) after the container ended: localflow's kubelet already writes each
container's output to its log file, so no command rewrite or sidecar is needed.
"""
from __future__ import annotations

import re
from datetime import datetime

__all__ = ["DEFAULT_FILTER", "UNAVAILABLE", "parse_text", "observation", "objective_value", "job_condition"]

DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
UNAVAILABLE = "unavailable"
ZERO_TIME = "0001-01-01T00:00:00Z"


def _timestamp(token: str) -> str | None:
    try:
        datetime.fromisoformat(token.replace("Z", "+00:00"))
    except ValueError:
        return None
    return token if "T" in token else None


def parse_text(text: str, metrics: list[str], filters: list[str] | None = None) -> list[dict]:
    """Observation logs ``[{timestamp, name, value}]`` from collector text (see the module docstring);
    ``metrics[0]`` is the objective."""
    regs = [re.compile(f) for f in (filters or [DEFAULT_FILTER])]
    logs = []
    for line in text.split("\n"):
        if not any(m in line for m in metrics):
            continue
        first, sep, _ = line.partition(" ")
        ts = (_timestamp(first) if sep else None) or ZERO_TIME
        for reg in regs:
            for m in reg.finditer(line):
                if reg.groups < 2:
                    continue
                name, value = (m.group(1) or "").strip(), (m.group(2) or "").strip()
                if name in metrics:
                    logs.append({"timestamp": ts, "name": name, "value": value})
    if not any(entry["name"] == metrics[0] for entry in logs):
        return [{"timestamp": ZERO_TIME, "name": metrics[0], "value": UNAVAILABLE}]
    return logs


def _num(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:
        return None


def observation(logs: list[dict], strategies: list[dict]) -> dict:
    """``{metrics: [{name, min, max, latest}]}`` for each metric with a strategy (values as strings)."""
    out = []
    for s in strategies:
        name = s["name"]
        mine = [e for e in logs if e["name"] == name]
        if not mine:
            continue
        nums = [(n, e["value"]) for e in mine if (n := _num(e["value"])) is not None]
        latest = max(enumerate(mine), key=lambda ie: (ie[1]["timestamp"], ie[0]))[1]["value"]
        out.append({"name": name, "min": min(nums)[1] if nums else UNAVAILABLE,
                    "max": max(nums)[1] if nums else UNAVAILABLE, "latest": latest})
    return {"metrics": out}


def objective_value(obs: dict | None, name: str, strategy: str) -> str | None:
    """The objective's value by its strategy, falling back to ``latest`` when min/max is unavailable;
    None when the observation has no such metric."""
    for m in (obs or {}).get("metrics") or []:
        if m.get("name") == name:
            v = m.get(strategy if strategy in ("min", "max") else "latest")
            return m.get("latest") if v in (None, UNAVAILABLE) else v
    return None


def job_condition(job: dict, success: str, failure: str) -> tuple[str, dict] | None:
    """``("Failed" | "Succeeded", first matched element)`` by the GJSON conditions, else None."""
    import gjson

    for state, expr in (("Failed", failure), ("Succeeded", success)):
        try:
            got = gjson.get(job, expr)
        except Exception:  # noqa: BLE001 - gjson raises its own errors for paths that do not resolve
            got = None
        if isinstance(got, dict) and got or isinstance(got, list) and got:
            first = got[0] if isinstance(got, list) else got
            return state, first if isinstance(first, dict) else {}
    return None
