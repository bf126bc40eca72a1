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
from localflow.safepath import check_component, safe_join

__all__ = ["Workspace", "resolve_workspace", "ENV_VAR", "DEFAULT_DIR"]

ENV_VAR = "LOCALFLOW_HOME"
DEFAULT_DIR = ".localflow"


class Workspace:
    """Paths of one workspace; nothing is created until :meth:`ensure`.

    ``root``, ``db_path``, ``artifacts_dir``, ``logs_dir`` are absolute :class:`pathlib.Path`.
    """

    def __init__(self, path):
        self.root = Path(path).expanduser().resolve()
        self.db_path = self.root / "localflow.db"
        self.artifacts_dir = self.root / "artifacts"
        self.logs_dir = self.root / "logs"

    def pvc_dir(self, name: str, field: str = "persistentVolumeClaim.claimName") -> Path:
        """Host directory backing PersistentVolumeClaim ``name`` (``pvc/<name>``). ``name`` must be
        one directory entry (:func:`localflow.safepath.check_component`) and the result stay in the
        workspace (no symbolic link out); else :class:`SpecError` at ``field``."""
        return safe_join(self.root, "pvc", check_component(name, field, what="claim name"), field=field)

    def pod_dir(self, uid: str) -> Path:
        """Private scratch directory of the Pod with ``uid`` (``pods/<uid>``); SpecError for a uid
        that is not one directory entry."""
        return safe_join(self.root, "pods", check_component(uid, "Pod.metadata.uid", what="uid"),
                         field="Pod.metadata.uid")

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
