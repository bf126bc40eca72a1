"""Helpers shared by the tests/test_pipeline_*.py files (not a test module).

They only read what a run left behind: the workspace's metadata rows (through
:class:`localflow.metadata.MetadataStore`), the Pod objects (through the fixture's runtime) and
files that task code wrote. Pipelines are compiled by the real kfp compiler inside each test.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from localflow.metadata import MetadataStore

BASE = "python:3.11"


@contextlib.contextmanager
def metadata_of(localflow):
    """The MetadataStore of a fixture's workspace (opened read/write, closed afterwards)."""
    md = MetadataStore(Path(localflow.workspace) / "localflow.db")
    try:
        yield md
    finally:
        md.close()


def executions(localflow, run) -> list[dict]:
    """Every execution row of ``run``, oldest first."""
    with metadata_of(localflow) as md:
        return md.list_executions(run_id=run.id)


def container_executions(localflow, run, name: str | None = None) -> list[dict]:
    """ContainerExecution rows of ``run`` (optionally those whose name (task path) is ``name``)."""
    rows = [e for e in executions(localflow, run) if e["type"] == "system.ContainerExecution"]
    return [e for e in rows if name is None or e["name"] == name]


def intervals(directory: Path) -> list[tuple[float, float]]:
    """(start, end) pairs that tasks wrote as JSON files ``*.json`` into ``directory``."""
    out = []
    for f in sorted(Path(directory).glob("*.json")):
        d = json.loads(f.read_text())
        out.append((d["start"], d["end"]))
    return out


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of spans that are open at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def pod_argv(localflow, pod_name: str) -> list[str]:
    """command + args of the main container of a Pod, as localflow handed it to the scheduler."""
    with localflow.runtime() as rt:
        pod = rt.store.get("Pod", pod_name, "default")
    c = pod["spec"]["containers"][0]
    return list(c.get("command") or []) + list(c.get("args") or [])


def exists(uri: str) -> bool:
    """True when a local artifact URI names an existing file or directory."""
    return os.path.exists(uri)
