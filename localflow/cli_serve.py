"""The server's commands: ``serve``, ``status``, ``wait``, and the ``run --detach``/``get -w``/``apply``
paths that go through a server (:mod:`localflow.server`).

Kept apart from :mod:`localflow.cli` so that module stays the kubectl-shaped core; imported at its
end, this module registers its commands on the same ``cli`` group and reuses its option decorators
and error handling.
"""
from __future__ import annotations

import os
import sys

import click

from localflow.cli import (OUTPUTS, _metadata_rows, _open_stores, _parse_params, _rerun_fix, cli, handle_errors,
                           namespace_option, workspace_option)
from localflow.errors import NotFound, SpecError

__all__ = ["server_running", "run_on_server", "apply_runnable", "get_watch"]



def server_running(workspace) -> bool:
    """Whether a live server serves the workspace (``--workspace`` value or None)."""
    from localflow.server import server_status
    from localflow.workspace import resolve_workspace

    return server_status(resolve_workspace(workspace))["running"]


def _follow_hint(obj: dict, workspace, ws) -> str:
    meta = obj["metadata"]
    flags = (f" -W {ws.root}" if workspace else "") + (f" -n {meta['namespace']}" if meta.get("namespace", "default") != "default" else "")
    kind = "run" if obj["kind"] == "Run" else obj["kind"].lower()
    done = "Complete" if obj["kind"] in ("Job", "TrainJob") else "Succeeded"  # the kind's own condition
    return (f"follow it: localflow get {kind} {meta['name']} -w{flags}  or  "
            f"localflow wait {kind}/{meta['name']} --for=condition={done} --timeout=1h{flags}")


def run_on_server(ctx, spec, params, executor, workspace, config, no_cache, no_install, name, namespace, output,
                   detach):
    """``run`` through the workspace's server: create the object; with ``--detach`` return at once
    (starting a server in the background if none runs), else relay its progress and exit code."""
    from localflow.errors import AlreadyExists
    from localflow.server import ensure_server, submit
    from localflow.server.follow import follow_run
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    try:  # the object first: a bad spec is refused before any server is started for it
        obj = submit(spec, _parse_params(params), executor, ws, config=config, cache=not no_cache,
                     install=False if no_install else None, namespace=namespace, run_name=name, output=output)
    except AlreadyExists as exc:
        if getattr(exc, "job_kind", None):
            raise AlreadyExists(exc.message, fix=_rerun_fix(ctx, exc)) from None
        raise
    # a server starting now lists the unowned object and claims it
    status, started = ensure_server(ws) if detach else ({}, False)
    if started:
        click.echo(f"started a localflow server for workspace {ws.root} in the background (pid {status['pid']}, "
                   f"log {status['log']}); stop it with: localflow serve --stop -W {ws.root}", err=True)
    if not detach:
        sys.exit(follow_run(ws, obj))
    kind = "run" if obj["kind"] == "Run" else obj["kind"].lower()
    if output in ("json", "yaml"):  # as `kubectl create -o json` prints the created object
        from localflow.render import dump

        click.echo(dump(obj, output).rstrip("\n"))
    else:
        click.echo(f"{kind}/{obj['metadata']['name']} created")
    click.echo(_follow_hint(obj, workspace, ws), err=True)


def apply_runnable(filename, workspace, namespace) -> bool:
    """``apply -f`` of a file holding a pipeline or a job: the server runs it in the background
    (True: done); without a server, one line saying how to start one (exit 2). False: nothing runnable."""
    from localflow import api
    from localflow.server import server_status, submit
    from localflow.server.submit import runnable_kinds
    from localflow.specs.loader import detect_kind
    from localflow.workspace import resolve_workspace

    kind, docs, source = api.load_spec(filename)
    runnable = set(runnable_kinds()[1:]) | {"PipelineSpec"}
    found = next(((i, k) for i, k in enumerate(detect_kind(d) for d in docs) if k in runnable), None)
    if found is None:
        return False
    ws = resolve_workspace(workspace)
    status = server_status(ws)
    if not status["running"]:
        raise SpecError(f"{source}: document {found[0] + 1}",
                        f"{found[1]} is run, and no localflow server runs on workspace {ws.root} to run it in the background",
                        fix=f"start one (`localflow serve -W {ws.root}`) and apply again, or `localflow run {source} "
                            f"--detach -W {ws.root}` (starts one), or run it here: `localflow run {source} -W {ws.root}`")
    obj = submit(filename, None, "subprocess", ws, namespace=namespace)
    kind = "run" if obj["kind"] == "Run" else obj["kind"].lower()
    click.echo(f"{kind}/{obj['metadata']['name']} created (the localflow server, pid {status['pid']}, runs it)")
    click.echo(_follow_hint(obj, workspace, ws), err=True)
    return True


def _looks_like_path(value: str | None) -> bool:
    return bool(value) and ("/" in value or value.startswith(("~", ".")))


def _metadata_kind(kind: str, wide: bool):
    """``(what, table(rows) -> str)`` of a metadata kind (runs, executions, artifacts) as ``get``
    prints it (the kind table's record columns, :mod:`localflow.kinds`), or ``(None, None)``."""
    from localflow import kinds as kind_table, render

    rec = kind_table.record(kind)
    if rec is None:
        return None, None
    return rec.what, lambda rows: render.table(*render.rows_for(rows, rec.columns, wide=wide, name=False))


def get_watch(kind, name, output, selector, run_name, namespace, all_namespaces, workspace, watch_only):
    """``get -w``/``--watch-only``: the list, then every change by any process, until Ctrl-C (exit 0)."""
    from localflow.api import kind_info
    from localflow.server.follow import watch_metadata, watch_objects

    for value in (name, kind):
        if _looks_like_path(value):
            raise SpecError("-w", f"is --watch now (as in kubectl), and {value} looks like a workspace",
                            fix=f"pass the workspace as -W {value}")
    ws, store, md = _open_stores(workspace)
    ns = None if all_namespaces else namespace
    what, table = _metadata_kind(kind, output == "wide")
    if what is not None:

        def rows():
            found = _metadata_rows(md, what, name, run_name)
            if what == "runs" and ns is not None and name is None:
                found = [r for r in found if (r.get("namespace") or "default") == ns]
            return found

        watch_metadata(rows, table, click.echo, watch_only)
        return
    info = kind_info(kind)
    if name and os.path.isdir(name) and not any(o["metadata"]["name"] == name for o in store.list(info.kind, ns)):
        raise SpecError("-w", f"is --watch now (as in kubectl), and {name} is a directory, not a {info.singular}",
                        fix=f"pass the workspace as -W {name}")
    sel = selector
    if run_name:
        run_id = md.get_run(run_name)["id"]
        sel = f"localflow.dev/run-id={run_id}" + (f",{selector}" if selector else "")
    watch_objects(store, info, ns, name, sel, output, watch_only, click.echo)


@cli.command()
@click.option("--stop", is_flag=True, help="Stop the workspace's server (SIGTERM, a bounded wait, then SIGKILL).")
@click.option("--timeout", default="60s", show_default=True, help="With --stop: how long to wait for it to end.")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the Kubernetes API on 127.0.0.1 (0: a free one; `localflow status` shows it).")
@click.option("--config", "-c", "config", default=None, type=click.Path(dir_okay=False),
              help="localflow.yaml for objects created without one (by kubectl or an SDK).")
@workspace_option
@handle_errors
def serve(stop, timeout, port, config, workspace):
    """Run the workspace's server in the foreground: it runs what `run --detach` and `apply -f`
    hand it, and whatever runnable object nobody live owns. Ctrl-C or SIGTERM stop it cleanly
    (its runs are canceled and recorded, as Ctrl-C does to `localflow run`).

    \b
    Examples:
      localflow serve -W /tmp/ws
      localflow serve --port 6443            # kubectl and the SDKs: localflow kubeconfig --merge
      localflow serve -c scenarios/training/localflow.yaml   # the image map for what kubectl applies
      localflow serve --stop -W /tmp/ws
    """
    import signal
    import threading

    from localflow.server import Server, stop_server
    from localflow.server.follow import parse_duration
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    if stop:
        click.echo(stop_server(ws, parse_duration(timeout)))
        return
    server = Server(ws, port=port, config=config)
    done = threading.Event()

    def on_signal(signum, frame):
        done.set()
        server.wake()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    server.serve(done)


@cli.command()
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=None, help="json|yaml instead of lines.")
@workspace_option
@handle_errors
def status(output, workspace):
    """Whether a server runs on the workspace: pid, start time, and its endpoints' URLs.

    \b
    Examples:
      localflow status
      localflow status -o json
    """
    from localflow import render
    from localflow.server import server_status
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    st = server_status(ws)
    if output:
        click.echo(render.dump(st, output))
        return
    if st["running"]:
        click.echo(f"localflow server: running, pid {st['pid']}, since {st['started']}")
    else:
        stale = f" (stale record of pid {st['pid']})" if st["pid"] is not None else ""
        click.echo(f"localflow server: not running{stale}; start one: localflow serve -W {ws.root}")
    click.echo(f"workspace: {ws.root}")
    for k, v in st["urls"].items():
        click.echo(f"{k}: {v}")


@cli.command("wait")
@click.argument("target", metavar="KIND/NAME")
@click.argument("name", required=False)
@click.option("--for", "for_", required=True, metavar="CONDITION",
              help="condition=NAME[=VALUE], delete, or jsonpath='{.path}'=VALUE.")
@click.option("--timeout", default="30s", show_default=True, help="How long to wait (30s, 5m, 1h).")
@namespace_option
@workspace_option
@handle_errors
def wait_cmd(target, name, for_, timeout, namespace, workspace):
    """Wait until an object meets a condition, as kubectl wait: exit 0 when met, 1 on timeout.
    ``--for=delete`` of an object that does not exist succeeds at once and prints nothing, as
    kubectl's ``RunWait`` does (``staging/src/k8s.io/kubectl/pkg/cmd/wait/wait.go``: NotFound
    ignored for delete, no "no matching resources" error).

    \b
    Examples:
      localflow wait run/training-pipeline-x7k2p --for=condition=Succeeded --timeout=10m
      localflow wait pytorchjob/pytorch-ddp --for=condition=Succeeded --timeout=1h
      localflow wait pod/my-pod --for=jsonpath='{.status.phase}'=Succeeded
      localflow wait pytorchjob/pytorch-ddp --for=delete
    """
    from localflow.api import kind_info, object_exists, run_object
    from localflow.fakes import resolve_kind
    from localflow.server.follow import parse_condition, parse_duration, wait_for

    kind, _, nm = target.partition("/") if "/" in target else (target, "", name)
    if not nm:
        raise SpecError("KIND/NAME", f"{target!r} names no object", fix="e.g. localflow wait run/NAME --for=condition=Succeeded")
    how, seconds = parse_condition(for_), parse_duration(timeout)
    ws, store, md = _open_stores(workspace)
    info, ns = kind_info(kind), namespace
    if info.kind == "Run" and not object_exists(store, "Run", nm, ns):
        try:
            obj = run_object(store, md, nm, ns)
        except NotFound:  # not recorded yet (a run handed to the server a moment ago): its object by name
            from localflow.server.submit import runnable_kinds

            found = [o for k in runnable_kinds()[1:] for o in store.list(k, ns) if o["metadata"]["name"] == nm]
            obj = found[0] if len(found) == 1 else None
        if obj is not None:  # a run of another kind (a training job), by run name
            info, nm, ns = resolve_kind(obj["kind"]), obj["metadata"]["name"], obj["metadata"].get("namespace", ns)
    if how[0] == "delete" and not object_exists(store, info.kind, nm, ns):
        return  # kubectl: NotFound is ignored for --for=delete, nothing visited, nothing printed, exit 0
    wait_for(store, info.kind, nm, ns, how, seconds, resource=info.plural)
    label = f"{info.singular}.{info.group}" if info.group else info.singular
    click.echo(f"{label}/{nm} condition met")  # kubectl's printer says this for --for=delete too


