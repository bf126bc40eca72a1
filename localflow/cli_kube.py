"""``localflow kubeconfig``: a kubeconfig with a ``localflow`` context for the workspace's server,
so ``kubectl --context localflow …`` and ``kubernetes.config.load_kube_config(context="localflow")``
reach its Kubernetes API (:mod:`localflow.apiserver`).

The file has the shape client-go reads (``staging/src/k8s.io/client-go/tools/clientcmd/api/v1/types.go``):
a cluster and a user named ``localflow`` (no credentials: the server listens on 127.0.0.1 only)
and a context tying them with namespace ``default``. ``--merge`` adds or replaces those three
entries in an existing file and keeps everything else, as ``kubectl config set-*`` would.
"""
from __future__ import annotations

import os
from pathlib import Path

import click
import yaml

from localflow.cli import cli, handle_errors, workspace_option
from localflow.errors import SpecError

__all__ = ["kubeconfig_for", "merge_kubeconfig"]

NAME = "localflow"


def kubeconfig_for(server: str, name: str = NAME, namespace: str = "default") -> dict:
    """A kubeconfig dict whose current context ``name`` points at ``server`` (``http://127.0.0.1:PORT``)."""
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": name, "cluster": {"server": server}}],
            "users": [{"name": name, "user": {}}],
            "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
            "current-context": name}


def merge_kubeconfig(existing: dict | None, new: dict, *, set_current: bool = False) -> dict:
    """``existing`` with the clusters, users and contexts of ``new`` added or replaced by name; the
    current context moves to ``new``'s only when ``set_current`` or when there is none."""
    out = dict(existing or {})
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    for key in ("clusters", "users", "contexts"):
        names = {e["name"] for e in new.get(key) or []}
        kept = [e for e in out.get(key) or [] if isinstance(e, dict) and e.get("name") not in names]
        out[key] = kept + list(new.get(key) or [])
    if set_current or not out.get("current-context"):
        out["current-context"] = new["current-context"]
    return out


@cli.command()
@click.option("--merge", is_flag=True, help="Add the localflow context to FILE (default $KUBECONFIG or ~/.kube/config).")
@click.option("--file", "path", type=click.Path(dir_okay=False), default=None,
              help="The kubeconfig to write or merge into (default: print it).")
@click.option("--use", is_flag=True, help="With --merge: make localflow the current context.")
@workspace_option
@handle_errors
def kubeconfig(merge, path, use, workspace):
    """Print (or write) a kubeconfig for the workspace's server, with a `localflow` context.

    \b
    Examples:
      localflow kubeconfig > /tmp/kubeconfig && KUBECONFIG=/tmp/kubeconfig kubectl get pods
      localflow kubeconfig --merge            # then: kubectl --context localflow get tfjobs
      localflow kubeconfig --file ./kubeconfig
    """
    from localflow.server import server_status
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    st = server_status(ws)
    url = st["urls"].get("kubernetes") if st["running"] else None
    if not url:
        raise SpecError("kubeconfig", f"no localflow server with a Kubernetes API runs on workspace {ws.root}",
                        fix=f"start one: localflow serve -W {ws.root}")
    new = kubeconfig_for(url)
    if merge and path is None:
        path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    if path is None:
        click.echo(yaml.safe_dump(new, sort_keys=False), nl=False)
        return
    target = Path(path)
    existing = None
    if merge and target.exists():
        try:
            existing = yaml.safe_load(target.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SpecError(str(target), f"is not a kubeconfig: {exc.__class__.__name__}",
                            fix="fix the file or write a new one with --file") from None
        if not isinstance(existing, dict):
            raise SpecError(str(target), "is not a kubeconfig (not a mapping)", fix="write a new one with --file")
    data = merge_kubeconfig(existing, new, set_current=use) if merge else new
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".localflow-tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    os.chmod(tmp, 0o600)
    tmp.replace(target)
    click.echo(f"{'merged the localflow context into' if merge else 'wrote'} {target} (server {url}); "
               f"use it: kubectl {'--context localflow ' if merge and not use else ''}--kubeconfig {target} get pods")
