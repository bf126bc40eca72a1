"""Following objects from any process: ``get -w``, ``wait``, and ``run`` through a server.

- :func:`watch_objects` prints a table and then one row per change (``kubectl get -w``; kubectl's
  ``printers`` print each watch event as a row of the same table), or each changed object as a
  JSON/YAML document; ``watch_only`` skips the initial list (``--watch-only``).
- :func:`wait_for` is ``kubectl wait`` (``staging/src/k8s.io/kubectl/pkg/cmd/wait/wait.go``):
  ``condition=NAME[=VALUE]`` (names compared case-insensitively, as kubectl does),
  ``delete``, ``jsonpath={.path}[=VALUE]``. localflow's objects that carry a state instead of
  conditions meet ``condition=X`` when ``status.state`` or ``status.phase`` is X (a pipeline Run's
  ``SUCCEEDED`` meets ``condition=Succeeded``). A runnable object that finished without meeting
  the condition ends the wait at once (it never will), with kubectl's exit code 1.
- :func:`follow_run` relays a server-run worker's progress and result (:mod:`.worker`), so
  ``localflow run`` with a server prints and exits as it does alone.

Every wait here is a watch on the store (seen within ~50 ms from any process) or a bounded poll of
a file; nothing sleeps a fixed time to wait for a state.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

from localflow.errors import Gone, LocalflowError, NotFound, SpecError

from .record import alive, server_dir, server_status
from .submit import outcome

__all__ = ["parse_duration", "parse_condition", "wait_for", "watch_objects", "columns", "follow_run", "WaitTimeout"]


class WaitTimeout(LocalflowError):
    """``kubectl wait`` timed out (exit 1): ``timed out waiting for the condition on <resource>/<name>``."""


def parse_duration(text: str, field: str = "--timeout") -> float:
    """Seconds in a Go duration (``30s``, ``5m``, ``1h30m``, ``500ms``, a bare number of seconds);
    a negative value means a week, as kubectl takes it. SpecError otherwise."""
    s = str(text).strip()
    try:
        value = float(s)
        return 7 * 86400.0 if value < 0 else value
    except ValueError:
        pass
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise SpecError(field, f"{text!r} is not a duration", fix="e.g. 30s, 5m, 1h")
    return sum(float(n) * units[u] for n, u in parts)


def parse_condition(text: str) -> tuple[str, str | None, str | None]:
    """``--for`` as ``("condition", name, value)``, ``("delete", None, None)`` or
    ``("jsonpath", path, value|None)``. SpecError for anything else."""
    t = str(text)
    if t == "delete":
        return "delete", None, None
    if t.startswith("condition="):
        rest = t[len("condition="):]
        name, _, value = rest.partition("=")
        if not name:
            raise SpecError("--for", "condition= needs a condition name", fix="e.g. --for=condition=Succeeded")
        return "condition", name, value or "True"
    if t.startswith("jsonpath="):
        rest = t[len("jsonpath="):]
        m = re.fullmatch(r"'?\{([^}]*)\}'?(?:=(.*))?", rest)
        if not m or not m.group(1).startswith("."):
            raise SpecError("--for", f"{rest!r} is not a JSONPath kubectl wait takes",
                            fix="e.g. --for=jsonpath='{.status.phase}'=Succeeded")
        return "jsonpath", m.group(1), m.group(2)
    raise SpecError("--for", f"{t!r} is not a condition to wait for",
                    fix="--for=condition=NAME[=VALUE], --for=delete or --for=jsonpath='{.path}'=VALUE")


def _jsonpath(obj, path: str):
    """``(value, found)`` of a kubectl JSONPath in ``obj`` (:func:`localflow.render.jsonpath`); several
    matches are a list, as kubectl prints them."""
    from localflow import render

    try:
        found = render.jsonpath(obj, path)
    except ValueError:
        return None, False
    if not found:
        return None, False
    return (found[0] if len(found) == 1 else found), True


def condition_met(obj: dict, how: tuple[str, str | None, str | None]) -> bool:
    """Whether ``obj`` meets a parsed ``--for`` (``delete`` is decided by the caller)."""
    what, name, value = how
    if what == "jsonpath":
        got, found = _jsonpath(obj, name)
        if not found:
            return False
        if value is None:
            return True
        return (json.dumps(got) if isinstance(got, (dict, list)) else str(got).lower() if isinstance(got, bool) else str(got)) == value
    st = obj.get("status") or {}
    for c in st.get("conditions") or []:
        if str(c.get("type", "")).lower() == name.lower():
            return str(c.get("status", "")).lower() == value.lower()
    if value.lower() == "true":
        for key in ("state", "phase"):
            if isinstance(st.get(key), str) and st[key].lower() == name.lower():
                return True
    return False


def wait_for(store, kind: str, name: str, namespace: str, how, timeout: float, *, resource: str) -> dict | None:
    """Wait until ``kind``/``namespace``/``name`` meets ``how`` (:func:`parse_condition`) within
    ``timeout`` seconds; returns the object (None for ``delete``). Raises :class:`NotFound` when the
    object does not exist (``delete``: returns at once), :class:`WaitTimeout` on timeout, and
    :class:`LocalflowError` when a runnable object finished without meeting the condition."""
    deadline = time.monotonic() + timeout
    label = f"{resource}/{name}"
    items, rv = store.list_with_rv(kind, namespace)
    obj = next((o for o in items if o["metadata"]["name"] == name), None)
    if obj is None:
        if how[0] == "delete":
            return None
        raise NotFound(f'{resource} "{name}" not found in namespace "{namespace}"')
    with store.watch(kind, namespace, since=rv) as w:
        while True:
            if how[0] != "delete":
                if condition_met(obj, how):
                    return obj
                state, message = outcome(obj) if obj.get("kind") in _runnable() else (None, None)
                if state == "SUCCEEDED" and how[0] == "condition" and how[1].lower() == "succeeded" \
                        and how[2].lower() == "true":
                    return obj  # a Job's or TrainJob's Complete is the success `run` reports
                if state is not None:
                    raise LocalflowError(f"{label} finished {state}" + (f": {message}" if message else "")
                                         + f"; the condition ({_describe(how)}) will never be met")
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(f"timed out waiting for the condition on {label}")
            ev = w.get(timeout=min(left, 1.0))
            if ev is None or ev.object["metadata"]["name"] != name:
                continue
            if ev.type == "DELETED":
                if how[0] == "delete":
                    return None
                raise LocalflowError(f"{label} was deleted while waiting for {_describe(how)}")
            obj = ev.object


def _describe(how) -> str:
    what, name, value = how
    if what == "condition":
        return f"condition={name}" + (f"={value}" if value != "True" else "")
    return f"jsonpath={{{name}}}" + (f"={value}" if value is not None else "")


def _runnable() -> set[str]:
    from .submit import runnable_kinds

    return set(runnable_kinds())


def columns(info, wide: bool):
    """``(headers, row(obj))`` of ``localflow get`` for a store kind (the same columns it prints:
    the kind table's printer columns, :mod:`localflow.kinds`, when there is one)."""
    from localflow import render

    from localflow import kinds as kind_table

    entry = kind_table.entry(info)
    cols = entry.columns if entry else (kind_table.AGE,)
    name = entry.name_column if entry else True
    headers, _ = render.rows_for([], cols, wide=wide, name=name)
    return headers, lambda o: render.rows_for([o], cols, wide=wide, name=name)[1][0]


def _aligned(widths: list[int], row: list) -> str:
    cells = ["" if c is None else str(c) for c in row]
    return "   ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def watch_objects(store, info, namespace: str | None, name: str | None, selector, output: str | None,
                  watch_only: bool, echo) -> None:
    """``kubectl get KIND [NAME] -w``: print, then print every change until KeyboardInterrupt
    (which returns normally: Ctrl-C ends a watch with exit code 0). ``echo(text)`` prints a line.
    The table's header is printed with the first row, as kubectl's table printer does: with the
    list, or -- an empty list, ``--watch-only`` -- with the first change."""
    from localflow import render

    headers, row = columns(info, output == "wide")
    if info.namespaced and namespace is None:
        headers = ["NAMESPACE"] + headers
        base_row = row
        row = lambda o: [o["metadata"].get("namespace", "")] + base_row(o)  # noqa: E731
    structured = output in ("json", "yaml")
    widths = [len(h) for h in headers]
    headed = False  # the header goes with the first row printed (an empty list printed none)

    def show(obj: dict) -> None:
        nonlocal widths, headed
        if structured:
            echo(json.dumps(obj, indent=4) if output == "json" else "---\n" + render.dump(obj, "yaml").rstrip())
            return
        r = row(obj)
        widths = [max(w, len("" if c is None else str(c))) for w, c in zip(widths, r)]
        if not headed:
            echo(_aligned(widths, headers))
            headed = True
        echo(_aligned(widths, r))

    try:
        items, rv = store.list_with_rv(info.kind, namespace, label_selector=selector)
        items = [o for o in items if name is None or o["metadata"]["name"] == name]
        if not watch_only:
            if structured:
                for o in items:
                    show(o)
            elif items:
                rows = [row(o) for o in items]
                cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
                widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
                for r in cells:
                    echo(_aligned(widths, r))
                headed = True
        while True:
            try:
                with store.watch(info.kind, namespace, label_selector=selector, since=rv) as w:
                    for ev in w:
                        rv = ev.resource_version or rv
                        if name is None or ev.object["metadata"]["name"] == name:
                            show(ev.object)
                    return
            except Gone:  # the log moved past us: relist from now, as a reflector does
                _, rv = store.list_with_rv(info.kind, namespace, label_selector=selector)
    except KeyboardInterrupt:
        return


def watch_metadata(rows_fn, table_fn, echo, watch_only: bool, interval: float = 0.25) -> None:
    """``get runs|executions|artifacts -w``: the metadata store has no change log, so its rows are
    re-read every ``interval`` seconds and a row is printed when it is new or its state changed."""
    seen: dict = {}
    printed: list = []  # every row printed so far: later rows keep the columns of the first table
    first = True
    try:
        while True:
            rows = rows_fn()
            changed = [r for r in rows if seen.get(r.get("id")) != r.get("state")]
            for r in rows:
                seen[r.get("id")] = r.get("state")
            if changed and not (first and watch_only):
                text = table_fn(printed + changed).splitlines()
                echo("\n".join(text if not printed else text[-len(changed):]))
                printed += changed
            first = False
            time.sleep(interval)
    except KeyboardInterrupt:
        return


def follow_run(ws, obj: dict, *, out=None, err=None, grace: float = 60.0) -> int:
    """Relay a server-run object's worker: its stderr (live progress) as it is written, then its
    stdout (the result), and return its exit code. Ctrl-C (KeyboardInterrupt) sends the worker
    SIGTERM, so the run is canceled and recorded as ``localflow run`` does, and returns 130 once the
    worker ended (at most ``grace`` seconds). When the worker is gone without an exit code (its
    server was killed), the code follows the object's outcome."""
    out = out or sys.stdout.buffer
    err = err or sys.stderr.buffer
    base = server_dir(ws) / "runs" / obj["metadata"]["uid"]
    paths = {s: Path(f"{base}.{s}") for s in ("err", "out", "rc", "pid")}
    pos = 0
    interrupted = False
    deadline = gone_since = None
    from localflow.fakes import ObjectStore

    with ObjectStore(ws.db_path) as store:
        while True:
            try:
                if paths["err"].exists():
                    with open(paths["err"], "rb") as f:
                        f.seek(pos)
                        chunk = f.read()
                    if chunk:
                        pos += len(chunk)
                        err.write(chunk)
                        err.flush()
                if paths["rc"].exists():
                    if paths["err"].exists() and paths["err"].stat().st_size > pos:
                        continue  # the last lines first
                    if paths["out"].exists():
                        out.write(paths["out"].read_bytes())
                        out.flush()
                    code = int(paths["rc"].read_text().strip() or 1)
                    return 130 if interrupted else code
                worker = paths["pid"].read_text().strip() if paths["pid"].exists() else None
                if worker is None and not server_status(ws)["running"]:
                    raise LocalflowError("the localflow server stopped before it started the run",
                                         fix=f"see {server_dir(ws) / 'serve.log'}; start it with localflow serve -W {ws.root}")
                if worker is not None and "@" in worker and not alive(worker):
                    if gone_since is None:
                        gone_since = time.monotonic()
                    # the server writes the exit code as it reaps the worker; a killed server never does
                    if time.monotonic() - gone_since < 5.0 and server_status(ws)["running"]:
                        time.sleep(0.05)
                        continue
                    if paths["out"].exists():
                        out.write(paths["out"].read_bytes())
                        out.flush()
                    try:
                        state, _ = outcome(store.get(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"]))
                    except NotFound:
                        state = None
                    return 130 if interrupted else (0 if state == "SUCCEEDED" else 1)
                if deadline is not None and time.monotonic() > deadline:
                    return 130
                time.sleep(0.05)
            except KeyboardInterrupt:
                if interrupted:
                    continue
                interrupted = True
                deadline = time.monotonic() + grace
                worker = paths["pid"].read_text().strip() if paths["pid"].exists() else ""
                if not worker:  # not started yet: withdraw it (a worker that starts now finds it gone)
                    try:
                        store.delete(obj["kind"], obj["metadata"]["name"], obj["metadata"]["namespace"])
                    except LocalflowError:
                        pass
                    if not paths["pid"].exists():
                        return 130
                    worker = paths["pid"].read_text().strip()
                try:
                    os.kill(int(worker.split("@")[0]), signal.SIGTERM)
                except (ValueError, OSError):
                    pass
