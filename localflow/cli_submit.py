"""``localflow export`` and ``localflow submit``: the same files, sent to a real cluster
(:mod:`localflow.export`). Registered on the ``cli`` group at the end of :mod:`localflow.cli`."""
from __future__ import annotations

import click

from localflow.cli import OUTPUTS, _parse_params, cli, handle_errors

__all__: list[str] = []


def _config(path):
    from localflow.config import load_config

    return load_config(path)


@cli.command("export")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--config", "-c", "config", default=None, help="localflow.yaml whose image map is reversed (default ./localflow.yaml).")
@click.option("-o", "--output", type=click.Choice(OUTPUTS), default="yaml", show_default=True)
@click.option("-n", "--namespace", default=None, help="Set metadata.namespace where the spec names none.")
@handle_errors
def export_cmd(spec, config, output, namespace):
    """Write the objects `submit` would send for SPEC: checked as `run` checks them, with the image
    map reversed (host paths back to container paths, local images back to cluster images).

    \b
    Examples:
      localflow export scenarios/training/pytorchjob.yaml -c scenarios/training/localflow.yaml
      localflow export scenarios/pipelines/params.yaml -o json
    """
    import json

    import yaml

    from localflow.export import export_spec

    docs = export_spec(spec, _config(config), namespace=namespace).documents()
    if output == "json":
        click.echo(json.dumps(docs[0] if len(docs) == 1 else {"kind": "List", "apiVersion": "v1", "items": docs}, indent=2))
    else:
        click.echo(yaml.safe_dump_all(docs, sort_keys=False), nl=False)


@cli.command("submit")
@click.argument("spec", type=click.Path(dir_okay=False))
@click.option("--context", default=None, help="kubeconfig context of the cluster (default: the current one).")
@click.option("--kubeconfig", default=None, type=click.Path(dir_okay=False), help="kubeconfig file (default $KUBECONFIG or ~/.kube/config).")
@click.option("--kfp-host", default=None, metavar="URL", help="KFP API of the cluster, for a pipeline (http://HOST:PORT).")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A pipeline parameter (repeatable).")
@click.option("--config", "-c", "config", default=None, help="localflow.yaml whose image map is reversed (default ./localflow.yaml).")
@click.option("-n", "--namespace", default="default", show_default=True, help="Namespace for objects that name none.")
@handle_errors
def submit_cmd(spec, context, kubeconfig, kfp_host, params, config, namespace):
    """Send SPEC to a real cluster: Kubeflow and core kinds by server-side apply through the
    `kubernetes` client, a pipeline to the cluster's KFP API (`kfp.Client`). The file is checked
    and exported first, as `localflow export` writes it.

    \b
    Examples:
      localflow submit scenarios/training/tfjob.yaml --context my-cluster
      localflow submit scenarios/jobs/job.yaml --kubeconfig ~/.kube/prod.yaml -n team-a
      localflow submit scenarios/pipelines/params.yaml --kfp-host http://127.0.0.1:8080 -p n=3
    """
    from localflow.export import export_spec, submit

    exported = export_spec(spec, _config(config), namespace=namespace)
    submit(exported, context=context, kubeconfig=kubeconfig, kfp_host=kfp_host, namespace=namespace,
           params=_typed(_parse_params(params)) if params else None, log=click.echo)


def _typed(params: dict) -> dict:
    """``-p`` values as JSON where they parse (``3``, ``0.1``, ``true``, ``[1, 2]``), else strings:
    the KFP API takes typed runtime parameters."""
    import json

    out = {}
    for k, v in params.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
