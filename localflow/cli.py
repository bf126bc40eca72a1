"""The ``localflow`` command: kubectl-shaped and thin.

Each command calls one library function (:mod:`localflow.api`, the stores) and turns a
:class:`~localflow.errors.LocalflowError` into one line on stderr and its exit code: 2 for a bad
spec or bad input, 1 for a failed run or a missing object, 130 for Ctrl-C. No traceback reaches
the user unless ``LOCALFLOW_DEBUG=1``.
"""
from __future__ import annotations

import functools
import os
import sys
import time

import click

from localflow.errors import LocalflowError, NotFound, SpecError
from localflow.errors import escape as printable

OUTPUTS = ("json", "yaml")


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


def _old_workspace_flag(ctx, param, value):
    """``-w DIR`` as the workspace (before ``-w`` became ``--watch``, as in kubectl): one line saying
    the new spelling, exit 2."""
    if value is not None:
        click.echo(f"error: -w is --watch now (as in kubectl); the workspace option is -W/--workspace "
                   f"(fix: -W {printable(value)})", err=True)
        ctx.exit(2)
    return value


def workspace_option(fn):
    """``--workspace/-W DIR``, and a hidden ``-w`` that explains the move (every command but ``get``,
    where ``-w`` is ``--watch``)."""
    fn = click.option("-w", "_old_workspace", hidden=True, default=None, expose_value=False, is_eager=True,
                      callback=_old_workspace_flag)(fn)
    return _workspace_only(fn)


_workspace_only = click.option("--workspace", "-W", envvar="LOCALFLOW_HOME", default=None,
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
@click.option("-d", "--detach", is_flag=True,
              help="Hand the run to the workspace's server and return at once (starts a server if none runs).")
@click.pass_context
@handle_errors
def run(ctx, spec, params, executor, workspace, config, no_cache, no_install, name, namespace, output, detach=False):
    """Run SPEC (a compiled pipeline YAML or a training job YAML) to completion.

    \b
    Examples:
      localflow run scenarios/pipelines/training_pipeline.yaml -p min_accuracy=0.9
      localflow run scenarios/training/pytorchjob.yaml --config scenarios/training/localflow.yaml
      localflow run pipeline.yaml --executor docker -o yaml
    """
    from localflow import api
    from localflow.errors import AlreadyExists
    from localflow.progress import Progress
    from localflow.render import as_list, dump

    from localflow import cli_serve

    if detach or cli_serve.server_running(workspace):
        return cli_serve.run_on_server(ctx, spec, params, executor, workspace, config, no_cache, no_install, name, namespace,
                              output, detach)
    progress = Progress(enabled=output is None)
    try:
        result = api.run(spec, _parse_params(params), executor, workspace, config=config, cache=not no_cache,
                         namespace=namespace, on_task=progress, run_name=name, surface="cli",
                         **({"install": False} if no_install else {}))
    except AlreadyExists as exc:
        if getattr(exc, "job_kind", None):
            raise AlreadyExists(exc.message, fix=_rerun_fix(ctx, exc)) from None
        raise
    if output:
        items = [result.object] + list(result.pods) if result.object else list(result.pods)
        click.echo(dump(as_list(items), output))
    else:
        progress.summary(result)
    sys.exit(0 if result.succeeded else 1)


def _given(ctx, name: str) -> bool:
    """Whether the user passed option ``name`` on the command line (not its default or env)."""
    from click.core import ParameterSource

    return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE


def _rerun_fix(ctx, exc) -> str:
    """The fix of a job that already exists: the user's own command with a new ``--name`` (every
    option they passed kept), or deleting the old job in the same workspace and namespace."""
    import shlex

    p = ctx.params
    cmd = ["localflow", "run", p["spec"]]
    for item in p["params"]:
        cmd += ["-p", item]
    if _given(ctx, "executor"):
        cmd += ["--executor", p["executor"]]
    ws = ["-W", p["workspace"]] if p["workspace"] and _given(ctx, "workspace") else []
    if p["config"]:
        cmd += ["--config", p["config"]]
    if p["no_cache"]:
        cmd += ["--no-cache"]
    if p.get("no_install"):
        cmd += ["--no-install"]
    if p["output"]:
        cmd += ["-o", p["output"]]
    cmd += [*ws, *(["-n", p["namespace"]] if p["namespace"] != "default" else []), "--name", f"{exc.job_name}-2"]
    delete = ["localflow", "delete", exc.job_kind.lower(), exc.job_name, *ws,
              *(["-n", exc.job_namespace] if exc.job_namespace != "default" else [])]
    return (f"run it under a new name (`{shlex.join(cmd)}`) or delete the old one first "
            f"(`{shlex.join(delete)}`; its run records stay)")


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
@click.option("-o", "--output", type=click.Choice(OUTPUTS + ("wide",)), default=None,
              help="json|yaml: a kubectl List (the object itself when NAME is given); wide: more columns.")
@click.option("-l", "--selector", default=None, help="Label selector, e.g. pipeline/runid=<id>.")
@click.option("--run", "run_name", default=None, help="Only what belongs to this run (name or id).")
@namespace_option
@click.option("-A", "--all-namespaces", is_flag=True, help="Objects of every namespace.")
@click.option("-w", "--watch", is_flag=True, help="After listing, print every change (by any process) until Ctrl-C.")
@click.option("--watch-only", is_flag=True, help="Print only the changes, without the list first.")
@_workspace_only
@handle_errors
def get(kind, name, output, selector, run_name, namespace, all_namespaces, workspace, watch=False, watch_only=False):
    """List objects of KIND (pods, events, runs, pipelineruns, artifacts, executions, secrets,
    configmaps, tfjobs, pytorchjobs, ...).

    \b
    Examples:
      localflow get runs
      localflow get pipelineruns
      localflow get pods -o wide
      localflow get pods --run demo-pipeline-x7k2p
      localflow get pytorchjobs my-job -o yaml
      localflow get artifacts --run demo-pipeline-x7k2p -o json
      localflow get secrets
    """
    from localflow import kinds as kind_table
    from localflow import render
    from localflow.api import kind_info

    if watch or watch_only:
        from localflow.cli_serve import get_watch

        return get_watch(kind, name, output, selector, run_name, namespace, all_namespaces, workspace, watch_only)
    ws, store, md = _open_stores(workspace)
    ns = None if all_namespaces else namespace
    record = kind_table.record(kind)
    if record is not None:
        if selector:
            raise SpecError("-l", f"{kind} are metadata records, which carry no labels",
                            fix="filter by run with --run NAME, or select objects: localflow get pods -l ...")
        rows = _metadata_rows(md, record.what, name, run_name)
        if record.what == "runs" and ns is not None and name is None:
            rows = [r for r in rows if (r.get("namespace") or "default") == ns]
        if output in OUTPUTS:
            click.echo(render.dump(rows[0] if name else render.as_list(rows), output))
            return
        click.echo(render.table(*render.rows_for(rows, record.columns, wide=output == "wide", name=False)))
        return
    info = kind_info(kind)
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
    entry = kind_table.entry(info)  # its printer columns (a kind from elsewhere: NAME AGE, as a CRD without any)
    headers, rows = render.rows_for(items, entry.columns if entry else (kind_table.AGE,), wide=output == "wide",
                                    name=entry.name_column if entry else True)
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
      localflow describe pipelinerun demo-pipeline-x7k2p
      localflow describe pytorchjob my-job
      localflow describe secret api
    """
    from localflow import kinds as kind_table
    from localflow import render
    from localflow.api import kind_info, object_exists, run_object

    ws, store, md = _open_stores(workspace)
    record = kind_table.record(kind)
    if record is not None and record.what != "runs":  # `describe run NAME` is the run's object
        what = record.what
        row = _metadata_rows(md, what, name, None)[0]
        if what == "artifacts":
            row = {**row, "lineage": md.lineage(row["id"])}
        click.echo(render.dump(row, "yaml"))
        return
    info = kind_info(kind)
    if info.kind == "Run" and not object_exists(store, "Run", name, namespace):
        obj = run_object(store, md, name, namespace)
        if obj is None:  # the object was deleted: its metadata history remains
            record = md.get_run(name)
            click.echo(render.dump(record, "yaml") + "# the run's object was deleted; this is its metadata record")
            return
    else:
        obj = store.get(info.kind, name, namespace)
    entry = kind_table.entry_of(obj)
    describer = (entry.hook("describe") if entry is not None else None) or render.describe
    click.echo(describer(obj, store.events_for(obj)))


@cli.command()
@click.argument("pod")
@click.option("-c", "--container", default=None, help="Container name (default: the only one, or main).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the Pod ends.")
@click.option("-p", "--previous", is_flag=True,
              help="The previous instance of the container (before it restarted), as kubectl logs -p.")
@namespace_option
@workspace_option
@handle_errors
def logs(pod, container, follow, previous, namespace, workspace):
    """Print the logs of a Pod's container.

    \b
    Examples:
      localflow logs demo-pipeline-x7k2p-train-q2w4e
      localflow logs my-job-worker-0 -c pytorch -f
      localflow logs my-job-worker-0 --previous
    """
    from localflow.api import log_file

    try:
        path = log_file(workspace, pod, container, namespace, previous=previous)
    except SpecError as exc:
        if exc.path == "container":  # the API's argument is this command's -c
            raise SpecError("-c", exc.message[len("container: "):], fix="choose one with -c NAME") from None
        raise
    except NotFound:
        if not follow or previous:
            raise
        path = None  # not started yet: wait for it below
    if not follow or previous:
        click.echo(path.read_text(errors="replace"), nl=False)
        return
    from localflow.fakes import ObjectStore
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    pos = 0
    with ObjectStore(ws.db_path) as store:
        while True:
            try:  # a container restarted in place logs its new instance to a new file: follow that one
                current = log_file(ws, pod, container, namespace)
            except NotFound:
                current = None
            if current != path:
                path, pos = current, 0
            chunk = b""
            if path is not None and path.exists():
                with open(path, "rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                    pos += len(chunk)
                if chunk:
                    click.echo(chunk.decode(errors="replace"), nl=False)
            phase = (store.get("Pod", pod, namespace).get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed") and not chunk:
                if path is None:
                    log_file(ws, pod, container, namespace)  # raises why the container never started
                return
            time.sleep(0.2)


@cli.command()
@click.argument("kind")
@click.argument("name")
@namespace_option
@workspace_option
@handle_errors
def delete(kind, name, namespace, workspace):
    """Delete an object and what it owns (ownerReferences cascade), with the logs of its Pods.
    Metadata history is kept.

    \b
    Examples:
      localflow delete run demo-pipeline-x7k2p
      localflow delete pytorchjob my-job
    """
    from localflow.api import delete as delete_object

    info, name, namespace = delete_object(kind, name, workspace, namespace=namespace)
    click.echo(f'{info.singular}.{info.group} "{name}" deleted' if info.group else f'{info.singular} "{name}" deleted')


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

    from localflow.cli_serve import apply_runnable

    if apply_runnable(filename, workspace, namespace):
        return
    for verb, obj in apply(filename, workspace, namespace=namespace):
        click.echo(f"{obj['kind'].lower()}/{obj['metadata']['name']} {verb}")


@cli.command()
@workspace_option
@click.option("--namespace", "-n", default=None,
              help="Only runs of this namespace (default: every namespace; containers are per workspace).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@handle_errors
def gc(workspace, namespace, dry_run):
    """Clean up after runs whose localflow process died: mark them FAILED and remove the Docker
    containers and networks this workspace left (never another workspace's).

    \b
    Examples:
      localflow gc --dry-run
      localflow gc -n team-a
    """
    from localflow.api import garbage_collect

    removed = garbage_collect(workspace, dry_run=dry_run, namespace=namespace)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: {len(removed['runs'])} dead run(s) marked FAILED, {len(removed['processes'])} process group(s), "
               f"{len(removed['containers'])} container(s), {len(removed['networks'])} network(s)")


@cli.group()
def images() -> None:
    """Local images for the docker executor (no registry needed)."""


@images.command("build-base")
@click.option("--tag", default=None, help="Python image tag (default localflow/python:3.11).")
@click.option("--no-python", is_flag=True, help="Build only the Debian base (and busybox).")
@click.option("--no-busybox", is_flag=True, help="Skip the busybox image.")
@click.option("--kfp-version", default=None, help="kfp version in the Python image (default: the one installed here).")
@click.option("--with", "extra", multiple=True, metavar="REQUIREMENT",
              help="Extra pip requirement installed into the Python image (repeatable).")
@click.option("--with-host", "host", multiple=True, metavar="DISTRIBUTION",
              help="Like --with, pinned to the version installed on this machine (repeatable).")
@click.option("--training", is_flag=True,
              help="Build localflow/training-python:latest instead (torch, scikit-learn from this machine), no busybox.")
@click.option("--mirror", default=None, help="Debian mirror URL (default: from /etc/apt sources).")
@click.option("--force", is_flag=True, help="Rebuild images that exist.")
@handle_errors
def build_base(tag, no_python, no_busybox, kfp_version, extra, host, training, mirror, force):
    """Build localflow/debian, localflow/python:3.11 (with kfp) and localflow/busybox from a Debian
    root filesystem (debootstrap + docker import), without any registry.

    \b
    Examples:
      localflow images build-base
      localflow images build-base --training --force
      localflow images build-base --with pandas==2.2.3
    """
    from localflow import images as images_mod

    tag = tag or images_mod.PYTHON_TAG
    host = list(host)
    if training:
        tag = images_mod.TRAINING_TAG if tag == images_mod.PYTHON_TAG else tag
        host += list(images_mod.TRAINING_PACKAGES)
        no_busybox = True
    report = images_mod.build_base(tag=tag, python=not no_python, busybox=not no_busybox, kfp_version=kfp_version,
                                   extra_requirements=list(extra), host_packages=host, mirror=mirror, force=force)
    for line in report.lines():
        click.echo(line)
    click.echo(f"total {report.total_seconds:.1f}s")


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
    try:
        code = cli.main(prog_name="localflow", standalone_mode=False)
    except click.UsageError as exc:  # one line, as every other bad input (click prints three)
        _err(_usage_line(exc))
        sys.exit(2)
    except click.ClickException as exc:
        _err(exc.format_message())
        sys.exit(exc.exit_code)
    except click.Abort:
        _err("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_line(exc: click.UsageError) -> str:
    """``<message> (fix: ...)`` for a bad option or argument: an option given before the command
    name is named with where it goes, anything else points at the command's ``-h``."""
    ctx = exc.ctx
    path = ctx.command_path if ctx is not None else "localflow"
    if isinstance(exc, click.NoSuchOption) and ctx is not None and ctx.parent is None and \
            exc.option_name in ("-W", "--workspace", "-n", "--namespace"):
        return (f"{exc.format_message()} (fix: options go after the command name, "
                f"e.g. localflow get runs {exc.option_name} ...)")
    return f"{exc.format_message()} (fix: see {path} -h)"


from localflow import cli_serve as _cli_serve  # noqa: E402,F401  (registers serve, status and wait on `cli`)
from localflow import cli_kube as _cli_kube  # noqa: E402,F401  (registers kubeconfig on `cli`)
from localflow import cli_submit as _cli_submit  # noqa: E402,F401  (registers export and submit on `cli`)

if __name__ == "__main__":
    main()
