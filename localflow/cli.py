"""The ``localflow`` command: kubectl-shaped and thin.

Each command calls one library function (:mod:`localflow.api`, the stores) and turns a
:class:`~localflow.errors.LocalflowError` into one line on stderr and its exit code: 2 for a bad
spec or bad input, 1 for a failed run or a missing object, 130 for Ctrl-C. No traceback reaches
the user unless ``LOCALFLOW_DEBUG=1``.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

import click

from localflow.errors import LocalflowError, NotFound, SpecError
from localflow.errors import escape as printable

OUTPUTS = ("json", "yaml")
METADATA_KINDS = {"runs": "runs", "run": "runs", "artifacts": "artifacts", "artifact": "artifacts",
                  "executions": "executions", "execution": "executions"}


def _err(message: str) -> None:
    click.echo(f"error: {printable(message)}", err=True)  # a spec's control characters never reach the terminal


def handle_errors(fn):
    """Run a command body; map errors to one stderr line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LocalflowError as e:
            _err(str(e))
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            _err("interrupted: the run was canceled and recorded")
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as e:  # a bug: say so in one line, keep the traceback for debugging
            if os.environ.get("LOCALFLOW_DEBUG"):
                raise
            _err(f"internal error: {type(e).__name__}: {e} (set LOCALFLOW_DEBUG=1 for the traceback)")
            sys.exit(1)

    return wrapper


workspace_option = click.option("--workspace", "-w", envvar="LOCALFLOW_HOME", default=None,
                                help="Workspace directory (default ./.localflow; env LOCALFLOW_HOME).")
namespace_option = click.option("--namespace", "-n", default="default", show_default=True, help="Namespace.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="localflow")
def cli() -> None:
    """localflow: Kubeflow on one machine. Run compiled KFP pipelines and Kubeflow training jobs
    locally, with the cluster's semantics, and inspect them like kubectl."""


def _parse_params(values: tuple[str, ...]) -> dict:
    params = {}
    for item in values:
        if "=" not in item:
            raise SpecError(f"-p {item}", "expected NAME=VALUE", fix="e.g. -p learning_rate=0.1")
        k, v = item.split("=", 1)
        params[k.strip()] = v
    return params


@cli.command()
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Pipeline parameter (repeatable); JSON for LIST/STRUCT values.")
@click.option("--executor", "-e", type=click.Choice(["subprocess", "docker"]), default="subprocess", show_default=True,
              help="How Pods run: local processes or Docker containers.")
@workspace_option
@click.option("--config", "-c", "config", default=None, help="localflow.yaml with image mappings (default ./localflow.yaml).")
@click.option("--no-cache", is_flag=True, help="Do not reuse cached task results.")
@click.option("--no-install", is_flag=True,
              help="Never install packages_to_install into cached venvs (a task lacking them fails, naming them).")
@click.option("--name", default=None, help="Run name (default <pipeline>-<random>).")
@namespace_option
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default=None, help="Print the resulting objects as a List.")
@handle_errors
def run(spec, params, executor, workspace, config, no_cache, no_install, name, namespace, output):
    """Run SPEC (a compiled pipeline YAML or a training job YAML) to completion.

    \b
    Examples:
      localflow run scenarios/pipelines/training_pipeline.yaml -p min_accuracy=0.9
      localflow run scenarios/training/pytorchjob.yaml --config scenarios/training/localflow.yaml
      localflow run pipeline.yaml --executor docker -o yaml
    """
    from localflow import api
    from localflow.render import as_list, dump

    progress = _Progress(enabled=output is None)
    result = api.run(spec, _parse_params(params), executor, workspace, config=config, cache=not no_cache,
                     namespace=namespace, on_task=progress, run_name=name, **({"install": False} if no_install else {}))
    if output:
        items = [result.object] + list(result.pods) if result.object else list(result.pods)
        click.echo(dump(as_list(items), output))
    else:
        progress.summary(result)
    sys.exit(0 if result.succeeded else 1)


class _Progress:
    """Live progress on stderr: one line per task state change, coloured with rich."""

    COLORS = {"RUNNING": "cyan", "SUCCEEDED": "green", "FAILED": "red", "SKIPPED": "yellow", "CANCELED": "magenta",
              "PENDING": "white"}

    def __init__(self, enabled: bool):
        from rich.console import Console

        self.enabled = enabled
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.t0 = time.monotonic()

    def __call__(self, rec) -> None:
        if not self.enabled:
            return
        state = rec.state
        label = "CACHED" if getattr(rec, "cached", False) and state == "SUCCEEDED" else state
        color = self.COLORS.get(state, "white")
        extra = ""
        if getattr(rec, "error", None) and state == "RUNNING":  # a retry or a restarting container
            from rich.markup import escape

            label, color, extra = "RETRYING", "yellow", f"  [dim]{escape(printable(rec.error))}[/dim]"
        elif getattr(rec, "error", None) and state in ("FAILED", "SKIPPED"):
            from rich.markup import escape

            extra = f"  [dim]{escape(printable(rec.error))}[/dim]"
        elif getattr(rec, "pod", None) and state == "RUNNING":
            extra = f"  [dim]pod/{rec.pod}[/dim]"
        self.console.print(f"[dim]{time.monotonic() - self.t0:7.2f}s[/dim] [{color}]{label:<9}[/{color}] {rec.name}{extra}",
                           markup=True)

    def summary(self, result) -> None:
        from rich.console import Console

        out = Console(highlight=False, soft_wrap=True)  # the result goes to stdout, progress to stderr
        color = "green" if result.succeeded else "red"
        out.print(f"[bold {color}]{result.kind} {result.name} {result.state}[/] "
                           f"in {time.monotonic() - self.t0:.2f}s (workspace {result.workspace.root})")
        if result.error and not result.succeeded:
            out.print(printable(result.error), style="red", markup=False)
        from rich.markup import escape

        for k, v in (result.outputs or {}).items():
            shown = v.get("uri") if isinstance(v, dict) and "uri" in v else json.dumps(v, default=str)
            out.print(f"  output {escape(printable(str(k)))} = {escape(printable(str(shown)))}")


def _open_stores(workspace):
    from localflow.fakes import ObjectStore
    from localflow.metadata import MetadataStore
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    if not ws.db_path.exists():
        raise NotFound(f"no localflow workspace at {ws.root}", fix="run something first (`localflow run SPEC`) or pass --workspace")
    return ws, ObjectStore(ws.db_path), MetadataStore(ws.db_path)


@cli.command()
@click.argument("kind")
@click.argument("name", required=False)
@click.option("-o", "--output", type=click.Choice(OUTPUTS + ("wide",)), default=None)
@click.option("-l", "--selector", default=None, help="Label selector, e.g. pipeline/runid=<id>.")
@click.option("--run", "run_name", default=None, help="Only what belongs to this run (name or id).")
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True)
@workspace_option
@handle_errors
def get(kind, name, output, selector, run_name, namespace, all_namespaces, workspace):
    """List objects of KIND (pods, events, runs, artifacts, executions, tfjobs, pytorchjobs, ...).

    \b
    Examples:
      localflow get runs
      localflow get pods -o wide
      localflow get pods --run demo-pipeline-x7k2p
      localflow get pytorchjobs my-job -o yaml
      localflow get artifacts --run demo-pipeline-x7k2p -o json
    """
    from localflow import render
    from localflow.fakes import resolve_kind

    ws, store, md = _open_stores(workspace)
    ns = None if all_namespaces else namespace
    if kind.lower() in METADATA_KINDS:
        if selector:
            raise SpecError("-l", f"{kind} are metadata records, which carry no labels",
                            fix="filter by run with --run NAME, or select objects: localflow get pods -l ...")
        rows = _metadata_rows(md, METADATA_KINDS[kind.lower()], name, run_name)
        if METADATA_KINDS[kind.lower()] == "runs" and ns is not None and name is None:
            rows = [r for r in rows if (r.get("namespace") or "default") == ns]
        if output in OUTPUTS:
            click.echo(render.dump(rows if name is None else rows[0], output))
            return
        click.echo(_metadata_table(METADATA_KINDS[kind.lower()], rows, output == "wide"))
        return
    info = resolve_kind(kind)
    if name:
        items = [store.get(info.kind, name, ns or "default")]
    elif info.kind == "Event" and run_name:
        # Events carry no labels: keep those about the run's own objects (the run, its job, its Pods)
        run_id = md.get_run(run_name)["id"]
        uids = {o["metadata"]["uid"] for o in store.list(None, None, label_selector={"localflow.dev/run-id": run_id})}
        items = [e for e in store.list("Event", ns, label_selector=selector)
                 if (e.get("involvedObject") or {}).get("uid") in uids]
    else:
        sel = selector
        if run_name:
            run_id = md.get_run(run_name)["id"]
            sel = f"localflow.dev/run-id={run_id}" + (f",{selector}" if selector else "")
        items = store.list(info.kind, ns, label_selector=sel)
    if output in OUTPUTS:
        click.echo(render.dump(items[0] if name else render.as_list(items), output))
        return
    if not items:
        click.echo(f"No resources found in {ns or 'any'} namespace.", err=True)
        return
    if info.kind == "Pod":
        headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"] + (["IP", "NODE"] if output == "wide" else [])
        rows = [render.pod_row(p, output == "wide") for p in items]
    elif info.kind == "Event":
        headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
        rows = [render.event_row(e) for e in items]
    else:
        headers = ["NAME", "STATE", "AGE"]
        rows = [render.object_row(o) for o in items]
    if ns is None and info.namespaced:  # -A: say where each object lives, as kubectl does
        headers = ["NAMESPACE"] + headers
        rows = [[o["metadata"].get("namespace", "")] + r for o, r in zip(items, rows)]
    click.echo(render.table(headers, rows))


def _metadata_id(what: str, name: str) -> int:
    try:
        return int(name)
    except ValueError:
        raise SpecError(f"{what[:-1]} {name}", f"{what} are named by their numeric ID",
                        fix=f"list the IDs with `localflow get {what}`") from None


def _metadata_rows(md, what: str, name: str | None, run_name: str | None) -> list[dict]:
    run_id = md.get_run(run_name)["id"] if run_name else None
    if what == "runs":
        if name:
            return [md.get_run(name)]
        return md.list_runs()
    if what == "artifacts":
        if name:
            return [md.get_artifact(_metadata_id(what, name))]
        return md.list_artifacts(run_id=run_id)
    if name:
        return [md.get_execution(_metadata_id(what, name))]
    return md.list_executions(run_id=run_id)


def _metadata_table(what: str, rows: list[dict], wide: bool) -> str:
    from localflow import render

    if what == "runs":
        return render.table(["NAME", "KIND", "STATE", "EXECUTOR", "AGE"] + (["ID", "SPEC"] if wide else []),
                            [[r["name"], r["kind"], r["state"], r.get("executor"), render.age(r.get("created_at"))]
                             + ([r["id"], r.get("spec_path")] if wide else []) for r in rows])
    if what == "artifacts":
        return render.table(["ID", "NAME", "TYPE", "URI"] + (["METADATA"] if wide else []),
                            [[a["id"], a["name"], a.get("schema_title") or a.get("type"), a["uri"]]
                             + ([json.dumps(a.get("metadata") or {})] if wide else []) for a in rows])
    return render.table(["ID", "NAME", "TYPE", "STATE", "POD"] + (["FINGERPRINT"] if wide else []),
                        [[e["id"], e["name"], e["type"], e["state"], e.get("pod_name") or ""]
                         + ([(e.get("fingerprint") or "")[:16]] if wide else []) for e in rows])


@cli.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
@workspace_option
@handle_errors
def describe(kind, name, namespace, workspace):
    """Show one object in detail with its Events.

    \b
    Examples:
      localflow describe pod demo-pipeline-x7k2p-train-q2w4e
      localflow describe run demo-pipeline-x7k2p
      localflow describe pytorchjob my-job
    """
    from localflow import render
    from localflow.fakes import resolve_kind

    ws, store, md = _open_stores(workspace)
    if kind.lower() in ("artifact", "artifacts", "execution", "executions"):
        what = METADATA_KINDS[kind.lower()]
        row = _metadata_rows(md, what, name, None)[0]
        if what == "artifacts":
            row = {**row, "lineage": md.lineage(row["id"])}
        click.echo(render.dump(row, "yaml"))
        return
    info = resolve_kind(kind)
    if info.kind == "Run" and not _exists(store, "Run", name, namespace):
        obj = _run_object(store, md, name, namespace)
        if obj is None:  # the object was deleted: its metadata history remains
            record = md.get_run(name)
            click.echo(render.dump(record, "yaml") + "# the run's object was deleted; this is its metadata record")
            return
    else:
        obj = store.get(info.kind, name, namespace)
    click.echo(render.describe(obj, store.events_for(obj)))


def _run_object(store, md, name: str, namespace: str) -> dict | None:
    """The object a run of any kind is mirrored by (a pipeline's Run, a training job), by run name
    or id; None when that object was deleted. NotFound when no run has that name."""
    from localflow.fakes import resolve_kind

    record = md.get_run(name)
    kind = "Run" if record["kind"] == "PipelineRun" else record["kind"]
    try:
        return store.get(resolve_kind(kind).kind, record["name"], record.get("namespace") or namespace)
    except (NotFound, SpecError):
        return None


def _exists(store, kind, name, ns) -> bool:
    try:
        store.get(kind, name, ns)
        return True
    except NotFound:
        return False


@cli.command()
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (default: the only one, or main).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the Pod ends.")
@namespace_option
@workspace_option
@handle_errors
def logs(pod, container, follow, namespace, workspace):
    """Print the logs of a Pod's container.

    \b
    Examples:
      localflow logs demo-pipeline-x7k2p-train-q2w4e
      localflow logs my-job-worker-0 -c pytorch -f
    """
    from localflow.api import read_logs

    ws, store, md = _open_stores(workspace)
    obj = store.get("Pod", pod, namespace)  # NotFound with a hint
    spec = obj.get("spec") or {}
    main = [c["name"] for c in spec.get("containers") or []]
    every = main + [c["name"] for c in spec.get("initContainers") or []]
    if container is None:  # kubectl's default: the only (or the default) regular container
        if len(main) != 1 and "main" not in main:
            raise SpecError("-c", f"pod {pod} has containers {', '.join(main)}", fix="choose one with -c NAME")
        container = main[0] if len(main) == 1 else "main"
    elif container not in every:
        raise NotFound(f"pod {pod} has no container {container!r}", fix=f"containers: {', '.join(every)}")
    if not (ws.logs_dir / namespace / pod / f"{container}.log").exists():
        statuses = (obj.get("status") or {}).get("containerStatuses") or []
        term = next(((cs.get("state") or {}).get("terminated") or {} for cs in statuses if cs.get("name") == container), {})
        why = f": {term.get('reason')}" + (f": {term['message']}" if term.get("message") else "") if term else ""
        if not follow or term:
            raise NotFound(f"container {container!r} of pod {pod} never started{why}")
    if not follow:
        click.echo(read_logs(ws, pod, container, namespace), nl=False)
        return
    path = ws.logs_dir / namespace / pod / f"{container}.log"
    pos = 0
    while True:
        chunk = b""
        if path.exists():
            with open(path, "rb") as f:
                f.seek(pos)
                chunk = f.read()
                pos += len(chunk)
            if chunk:
                click.echo(chunk.decode(errors="replace"), nl=False)
        phase = (store.get("Pod", pod, namespace).get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and not chunk:
            return
        time.sleep(0.2)


@cli.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
@workspace_option
@handle_errors
def delete(kind, name, namespace, workspace):
    """Delete an object and what it owns (ownerReferences cascade). Metadata history is kept.

    \b
    Example:
      localflow delete run demo-pipeline-x7k2p
    """
    from localflow.fakes import resolve_kind

    ws, store, md = _open_stores(workspace)
    info = resolve_kind(kind)
    if info.kind == "Run" and not _exists(store, "Run", name, namespace):
        obj = _run_object(store, md, name, namespace)
        if obj is None:
            raise NotFound(f"run {name} has no object left to delete (its metadata history stays)")
        info = resolve_kind(obj["kind"])
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", namespace)
    store.delete(info.kind, name, namespace)
    click.echo(f'{info.singular}.{info.group or "v1"} "{name}" deleted' if info.group else f'{info.singular} "{name}" deleted')


@cli.command("apply")
@click.option("-f", "--filename", "filename", required=True, type=click.Path(dir_okay=False),
              help="YAML file with the objects (multi-document).")
@namespace_option
@workspace_option
@handle_errors
def apply_cmd(filename, namespace, workspace):
    """Create or update objects (Secrets, ConfigMaps, PVCs, TrainingRuntimes, ...) in the workspace,
    like kubectl apply; runs and training jobs that refer to them find them there.

    \b
    Example:
      localflow apply -f secrets.yaml
    """
    from localflow.api import apply

    for verb, obj in apply(filename, workspace, namespace=namespace):
        click.echo(f"{obj['kind'].lower()}/{obj['metadata']['name']} {verb}")


@cli.command()
@workspace_option
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@handle_errors
def gc(workspace, dry_run):
    """Clean up after runs whose localflow process died: mark them FAILED and remove the Docker
    containers and networks this workspace left (never another workspace's).

    \b
    Example:
      localflow gc
    """
    from localflow.api import garbage_collect

    removed = garbage_collect(workspace, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: {len(removed['runs'])} dead run(s) marked FAILED, {len(removed['processes'])} process group(s), "
               f"{len(removed['containers'])} container(s), {len(removed['networks'])} network(s)")


@cli.group()
def images() -> None:
    """Local images for the docker executor (no registry needed)."""


@images.command("build-base", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
@handle_errors
def build_base(ctx):
    """Build localflow/debian, localflow/python:3.11 (with kfp) and localflow/busybox from a Debian
    root filesystem (debootstrap + docker import), without any registry. Options: --no-python,
    --no-busybox, --kfp-version V, --with REQUIREMENT, --training, --mirror URL, --force.

    \b
    Examples:
      localflow images build-base
      localflow images build-base --training --force
    """
    from localflow.images import main as images_main

    sys.exit(images_main(["build-base", *ctx.args]) or 0)


_interrupted = False


def _interrupt(signum, frame):
    """The first Ctrl-C or SIGTERM cancels the run (Pods killed, everything recorded); later ones
    are ignored, so they cannot cut that recording short."""
    global _interrupted
    if _interrupted:
        click.echo("localflow: already canceling; the Pods are being stopped", err=True)
        return
    _interrupted = True
    from localflow.faults import on_signal

    on_signal()  # raises KeyboardInterrupt now, or when the run's recording section ends


def main() -> None:
    """Console-script entry point. SIGTERM is handled like Ctrl-C."""
    import signal

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    cli(prog_name="localflow")


if __name__ == "__main__":
    main()
