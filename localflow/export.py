"""From one machine to a cluster: the objects ``localflow export`` writes and ``localflow submit`` sends.

A spec that runs here is checked exactly as ``localflow run`` checks it (the kind table's loader and
admission: one line naming the field path for a bad spec), then written back as a cluster takes it,
with ``localflow.yaml``'s image map reversed so nothing local leaks into a cluster spec: a host
directory the map mounts (``paths: {/opt/app: ./src}``) becomes its container path again, and a
local Docker image the map substitutes (``docker: localflow/python:3.11``) its cluster image.

``submit`` sends Kubeflow and core kinds with server-side apply through the ``kubernetes`` client
(``PATCH application/apply-patch+yaml``, field manager ``localflow``, as ``kubectl apply
--server-side`` does) to the context or kubeconfig named, and a compiled pipeline to a KFP API
with ``kfp.Client(host=...).create_run_from_pipeline_package`` — the same calls a user would make.
"""
from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from localflow import kinds as kind_table
from localflow.config import Config
from localflow.errors import LocalflowError, SpecError
from localflow.specs.loader import detect_kind, load_documents

__all__ = ["Exported", "export_spec", "reverse_image_map", "submit"]


@dataclass
class Exported:
    """What a spec file becomes for a cluster: ``objects`` (Kubernetes objects, in file order) and
    ``pipeline`` (the compiled KFP pipeline, or None), with ``source`` the file's path."""

    objects: list[dict]
    pipeline: list[dict] | None  # the pipeline's documents: the PipelineSpec (+ its platforms document)
    source: str

    def documents(self) -> list[dict]:
        """Every document, as a multi-document YAML file would hold them."""
        return list(self.pipeline or []) + self.objects


def reverse_image_map(doc, config: Config):
    """``doc`` with the image map undone (see the module docstring); strings only, structure kept."""
    host_to_container: list[tuple[str, str]] = []
    docker_to_image: dict[str, str] = {}
    for pattern, m in config.images.entries.items():
        for container_dir, host_dir in (m.paths or {}).items():
            host_to_container.append((str(host_dir).rstrip("/"), str(container_dir).rstrip("/")))
        if m.docker_image and not any(ch in pattern for ch in "*?["):
            # a local image several cluster images share cannot be told apart: it stays as written
            docker_to_image[m.docker_image] = None if m.docker_image in docker_to_image else pattern
    host_to_container.sort(key=lambda hc: -len(hc[0]))  # the deepest mount wins, as the executor maps it

    def fix(value):
        if isinstance(value, dict):
            return {k: (docker_to_image.get(v) or v if k == "image" and isinstance(v, str) else fix(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, str):
            for host, container in host_to_container:
                if value == host or value.startswith(host + "/"):
                    return container + value[len(host):]
                if host in value:  # inside a shell line or a flag (--data=/home/me/x)
                    value = value.replace(host + "/", container + "/").replace(host, container)
            return value
        return value

    return fix(copy.deepcopy(doc))


def _check(doc: dict, path: str) -> None:
    """Admission of the kind table (defaulting + validation on a copy), as a store write would run it."""
    k = kind_table.for_document(doc["kind"])
    if k is None:
        return
    obj = copy.deepcopy(doc)
    mutate, validate = k.hook("mutate"), k.hook("validate")
    if mutate is not None:
        obj = mutate(obj) or obj
    if validate is not None:
        validate(obj, None)


def export_spec(spec: str | os.PathLike, config: Config, *, namespace: str | None = None) -> Exported:
    """Load and check ``spec`` as ``localflow run`` would, and return it as a cluster takes it.
    ``namespace`` sets ``metadata.namespace`` of namespaced objects that do not name one. Raises
    :class:`SpecError` (exit 2) naming the field path."""
    source = str(spec)
    docs = load_documents(source)
    if not docs:
        raise SpecError(source, "the file holds no document")
    if detect_kind(docs[0]) == kind_table.PIPELINE_SPEC:
        from localflow.specs.pipeline import load_pipeline

        load_pipeline(docs, source)  # the checks `run` makes: a bad pipeline never leaves the machine
        return Exported([], [reverse_image_map(d, config) for d in docs], source)
    objects = []
    for i, doc in enumerate(docs):
        kind = detect_kind(doc, f"{source}[{i}]" if len(docs) > 1 else "")
        k = kind_table.for_document(kind)
        if k is None:
            raise SpecError(f"{source}: {kind}", "is not a kind localflow knows", fix="use a Kubeflow or core kind")
        _check(doc, source)
        obj = reverse_image_map(doc, config)
        meta = obj.setdefault("metadata", {})
        if namespace and k.namespaced and not meta.get("namespace"):
            meta["namespace"] = namespace
        for key in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
            meta.pop(key, None)
        obj.pop("status", None)
        objects.append(obj)
    return Exported(objects, None, source)


def submit(exported: Exported, *, context: str | None = None, kubeconfig: str | None = None, kfp_host: str | None = None,
           namespace: str = "default", params: dict | None = None, log=print) -> list[str]:
    """Send ``exported`` to a cluster; returns one line per object sent (``tfjob.kubeflow.org/x
    serverside-applied``, ``run <id> created``). Raises :class:`LocalflowError` with the cluster's
    message when it refuses, :class:`SpecError` when a pipeline has no ``kfp_host``."""
    out = []
    if exported.objects:
        try:
            from kubernetes import config as kconfig
            from kubernetes import dynamic
            from kubernetes.client import exceptions
        except ImportError:
            raise LocalflowError("submitting objects needs the `kubernetes` client", fix="pip install kubernetes") from None
        try:
            api_client = kconfig.new_client_from_config(config_file=kubeconfig, context=context)
        except Exception as exc:  # noqa: BLE001 - ConfigException, a YAML error, a missing file: one line
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            if kubeconfig and not os.path.exists(kubeconfig):
                raise SpecError("--kubeconfig", f"{kubeconfig} does not exist",
                                fix="write one with `localflow kubeconfig --file F` or name your cluster's") from None
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SpecError("--context" if context else "--kubeconfig", f"cannot use {context or where}: {first}",
                            fix="name a context of a valid kubeconfig (`kubectl config get-contexts`)") from None
        with api_client:
            client = dynamic.DynamicClient(api_client)
            for obj in exported.objects:
                k = kind_table.for_document(obj["kind"])
                ns = (obj["metadata"].get("namespace") or namespace) if k.namespaced else None
                try:
                    res = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
                    res.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=ns, field_manager="localflow",
                                          force_conflicts=True)
                except exceptions.ApiException as exc:
                    raise LocalflowError(f"the cluster refused {obj['kind']}/{obj['metadata'].get('name')}: "
                                         f"{_reason(exc)}") from None
                except Exception as exc:  # noqa: BLE001 - discovery errors of the client: one line
                    raise LocalflowError(f"cannot send {obj['kind']}/{obj['metadata'].get('name')}: {exc}",
                                         fix="is the context's server reachable? (`kubectl cluster-info`)") from None
                line = f"{k.singular or k.kind.lower()}.{k.group or 'core'}/{obj['metadata']['name']} serverside-applied"
                out.append(line)
                log(line)
    if exported.pipeline is not None:
        if not kfp_host:
            raise SpecError("--kfp-host", f"{exported.source} is a pipeline, which goes to a KFP API",
                            fix="pass --kfp-host http://HOST:PORT (the KFP UI/API address)")
        import kfp

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pipeline.yaml"
            path.write_text(yaml.safe_dump_all(exported.pipeline, sort_keys=False))
            try:
                result = kfp.Client(host=kfp_host).create_run_from_pipeline_package(str(path), arguments=params or {})
            except Exception as exc:  # noqa: BLE001 - kfp_server_api raises its own ApiException types
                raise LocalflowError(f"the KFP API at {kfp_host} refused the run: {exc}".splitlines()[0]) from None
        line = f"run {result.run_id} created"
        out.append(line)
        log(line)
    return out


def _reason(exc) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or str(exc.reason)
    except (ValueError, TypeError, AttributeError):
        return str(exc.reason)
