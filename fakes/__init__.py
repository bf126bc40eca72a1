"""Fake Kubernetes control-plane state (shipped as ``localflow.fakes``).

:class:`ObjectStore` keeps Kubernetes-shaped objects (Pods, Events, Kubeflow custom resources)
in the workspace's SQLite file with resourceVersions, ownerReference cascading deletion, a change
log with watches that see every process's writes and resume from a resourceVersion
(:mod:`.changelog`, :mod:`.watch`), indexed, expiring Event recording (:mod:`.events`), and
per-kind admission hooks run on every create/update/patch (:mod:`.admission`);
:mod:`.kinds` is the discovery registry (``resolve_kind("po")``) and :mod:`.selectors` parses
label selectors. Imports only ``localflow.errors``,
``localflow.clock`` and ``localflow.dbconn`` from localflow; never the executors or the CLI.
"""
from __future__ import annotations

from .admission import register_admission
from .changelog import LogLimits
from .kinds import KindInfo, known_kinds, register_kind, resolve_kind
from .selectors import Requirement, format_selector, matches, parse_selector
from .store import ObjectStore, merge_patch
from .watch import ADDED, DELETED, MODIFIED, Watch, WatchEvent

__all__ = [
    "ObjectStore",
    "LogLimits",
    "Watch",
    "WatchEvent",
    "ADDED",
    "MODIFIED",
    "DELETED",
    "KindInfo",
    "register_kind",
    "register_admission",
    "resolve_kind",
    "known_kinds",
    "Requirement",
    "parse_selector",
    "format_selector",
    "matches",
    "merge_patch",
]
