"""The workspace: one directory holding everything a localflow installation keeps.

Layout: ``localflow.db`` (object store + metadata, SQLite), ``artifacts/`` (pipeline artifacts,
the local stand-in for the KFP pipeline root bucket), ``logs/`` (container logs),
``pvc/<claim>/`` (PersistentVolumeClaim contents) and ``pods/<uid>/`` (per-Pod scratch).
Chosen as: explicit ``--workspace`` > ``$LOCALFLOW_HOME`` > ``./.localflow``.
"""
from __future__ import annotations

import os
from pathlib import Path

from localflow.errors import SpecError

__all__ = ["Workspace", "resolve_workspace", "ENV_VAR", "DEFAULT_DIR"]

ENV_VAR = "LOCALFLOW_HOME"
DEFAULT_DIR = ".localflow"


def _safe_component(kind: str, name: str) -> str:
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise SpecError(kind, f"{name!r} cannot name a directory", fix="use letters, digits, '-', '_' or '.'")
    return name


class Workspace:
    """Paths of one workspace; nothing is created until :meth:`ensure`.

    ``root``, ``db_path``, ``artifacts_dir``, ``logs_dir`` are absolute :class:`pathlib.Path`.
    """

    def __init__(self, path):
        self.root = Path(path).expanduser().resolve()
        self.db_path = self.root / "localflow.db"
        self.artifacts_dir = self.root / "artifacts"
        self.logs_dir = self.root / "logs"

    def pvc_dir(self, name: str) -> Path:
        """Host directory backing PersistentVolumeClaim ``name`` (``pvc/<name>``)."""
        return self.root / "pvc" / _safe_component("persistentVolumeClaim.claimName", name)

    def pod_dir(self, uid: str) -> Path:
        """Private scratch directory of the Pod with ``uid`` (``pods/<uid>``)."""
        return self.root / "pods" / _safe_component("Pod.metadata.uid", uid)

    def ensure(self) -> "Workspace":
        """Create the root and its standard directories if missing; returns self.
        Raises :class:`SpecError` when the root exists but is not a directory."""
        if self.root.exists() and not self.root.is_dir():
            raise SpecError("--workspace", f"{self.root} exists and is not a directory", fix="choose another path")
        try:
            for d in (self.root, self.artifacts_dir, self.logs_dir, self.root / "pvc", self.root / "pods"):
                d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpecError("--workspace", f"cannot create {self.root}: {e.strerror}",
                            fix="choose a writable directory (--workspace or LOCALFLOW_HOME)") from None
        return self

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Workspace) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)


def resolve_workspace(explicit=None) -> Workspace:
    """The workspace to use: ``explicit`` (a ``--workspace`` value) if given, else
    ``$LOCALFLOW_HOME`` if set and non-empty, else ``./.localflow``; always an absolute path."""
    if explicit:
        return Workspace(explicit)
    env = os.environ.get(ENV_VAR)
    if env:
        return Workspace(env)
    return Workspace(Path.cwd() / DEFAULT_DIR)
