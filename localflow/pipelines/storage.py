"""Remote storage maps: ``gs://``, ``s3://``, ``minio://`` and ``http(s)://`` URIs as local directories.

A pipeline written for a cluster names objects in buckets: an importer's ``artifact_uri``, the
``pipeline_root``, string inputs such as ``gs://bucket/data.csv``. On a cluster the launcher
reads them through the object store (kfp's ``Artifact.path`` even turns ``gs://b/k`` into the
FUSE path ``/gcs/b/k``, ``sdk/python/kfp/dsl/types/artifact_types.py``). Here the ``storage:``
section of ``localflow.yaml`` says which local directory holds each prefix::

    storage:
      gs://my-bucket/data: ./data      # gs://my-bucket/data/x.csv -> <dir of localflow.yaml>/data/x.csv

:class:`StorageMap` applies it. Metadata keeps the remote URIs, as the cluster records them; what a
task is handed (its ExecutorInput, hence every placeholder) names the local paths: input artifact
URIs (an unmapped remote one fails the task that needs it, naming the key to add) and string
parameter values under a mapped prefix. A mapped ``pipeline_root`` puts the run's outputs in the
mapped directory (:meth:`StorageMap.run_root`); an unmapped one keeps them in the workspace.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

from localflow.errors import SpecError

__all__ = ["REMOTE_SCHEMES", "StorageMap", "is_remote"]

#: URI schemes that name objects outside this machine.
REMOTE_SCHEMES = ("gs://", "s3://", "minio://", "http://", "https://", "oci://")


def is_remote(uri: object) -> bool:
    """True for a string URI whose scheme is one of :data:`REMOTE_SCHEMES`."""
    return isinstance(uri, str) and uri.lower().startswith(REMOTE_SCHEMES)


def _bucket_prefix(uri: str) -> str:
    """``gs://bucket/a/b.csv`` -> ``gs://bucket``: the shortest prefix worth mapping."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


@dataclass
class StorageMap:
    """``entries``: URI prefix (``gs://my-bucket/data``) -> absolute local directory."""

    entries: dict[str, str] = field(default_factory=dict)

    def resolve(self, uri: str) -> str | None:
        """The local path of ``uri`` under the longest mapped prefix (matched at a ``/`` boundary),
        or None when no prefix maps it."""
        best = None
        for prefix, directory in self.entries.items():
            bare = prefix.rstrip("/")
            if uri == bare or uri.startswith(bare + "/"):
                if best is None or len(bare) > len(best[0]):
                    best = (bare, directory)
        if best is None:
            return None
        rest = uri[len(best[0]):].lstrip("/")
        return os.path.join(best[1], rest) if rest else best[1]

    def local_path(self, uri: str, where: str) -> str:
        """``uri`` as a path on this machine: a mapped remote URI's local path, a local URI as it is.
        Raises SpecError at ``where`` for a remote URI no prefix maps, naming the key to add."""
        if not is_remote(uri):
            return uri
        found = self.resolve(uri)
        if found is None:
            prefix = _bucket_prefix(uri)
            raise SpecError(where, f"{uri} is remote storage that localflow cannot read",
                            fix=f"map it to a local directory in localflow.yaml: storage: {{{prefix}: ./{prefix.split('://', 1)[1] or 'data'}}}")
        return found

    def localize_executor_input(self, executor_input: dict, where: str) -> dict:
        """A copy of an ExecutorInput whose input artifact URIs are local paths (:meth:`local_path`;
        SpecError for an unmapped remote one, at ``where.inputs.artifacts['name']``) and whose string
        parameter values under a mapped prefix are local paths (unmapped ones stay: a string may
        name a URI the task reads itself, with its own client)."""
        if not self.entries and not _has_remote_artifact(executor_input):
            return executor_input
        ei = copy.deepcopy(executor_input)
        inputs = ei.get("inputs") or {}
        for name, value in list((inputs.get("parameterValues") or {}).items()):
            if is_remote(value):
                inputs["parameterValues"][name] = self.resolve(value) or value
        for name, entry in (inputs.get("artifacts") or {}).items():
            for art in entry.get("artifacts") or []:
                if art.get("uri"):
                    art["uri"] = self.local_path(art["uri"], f"{where}.inputs.artifacts['{name}']")
        return ei

    def run_root(self, pipeline_root: str | None) -> str | None:
        """The local directory of a remote ``pipeline_root`` when a prefix maps it, else None
        (the run's outputs then stay in the workspace, as for a pipeline that names none)."""
        if not is_remote(pipeline_root):
            return None
        return self.resolve(pipeline_root)

    def directories(self) -> list[str]:
        """Every mapped local directory (bind-mounted into containers under ``--executor docker``)."""
        return sorted(set(self.entries.values()))


def _has_remote_artifact(executor_input: dict) -> bool:
    arts = ((executor_input.get("inputs") or {}).get("artifacts") or {}).values()
    return any(is_remote(a.get("uri")) for e in arts for a in e.get("artifacts") or [])
