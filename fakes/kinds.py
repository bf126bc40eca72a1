"""Registry of the object kinds the fake API server knows, like a cluster's discovery API.

Each kind has an apiVersion, a Kind, a lowercase plural (what ``kubectl get`` takes), a singular,
short names, and whether it is namespaced. :func:`resolve_kind` accepts any of those spellings, as
kubectl's RESTMapper does (kubernetes ``staging/src/k8s.io/apimachinery/pkg/api/meta/restmapper.go``);
``plural.group`` (``runs.pipelines.kubeflow.org``) picks one kind when several groups share a name.

This module is only the registry: it knows no kind by itself. localflow's kind table
(``localflow/kinds.py``) registers every kind it has at import (fakes never import localflow's
core, so the table registers here, not the other way); tests and plug-ins add kinds with
:func:`register_kind`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from localflow.errors import SpecError

__all__ = ["KindInfo", "register_kind", "resolve_kind", "known_kinds", "api_group"]


def api_group(api_version: str) -> str:
    """Group of an apiVersion: ``kubeflow.org/v1`` -> ``kubeflow.org``; core ``v1`` -> ``""``."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


@dataclass(frozen=True)
class KindInfo:
    """One kind: ``api_version`` (``kubeflow.org/v1``), ``kind`` (``PyTorchJob``), ``plural``
    (``pytorchjobs``), ``singular`` (``pytorchjob``), ``short_names`` (``("po",)``), ``namespaced``,
    ``categories`` (``("all",)``: what ``kubectl get all`` would list)."""

    api_version: str
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...] = ()
    namespaced: bool = True
    categories: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        """API group (``""`` for the core group)."""
        return api_group(self.api_version)

    @property
    def resource(self) -> str:
        """``plural.group`` as kubectl prints it (``pytorchjobs.kubeflow.org``; ``pods`` for core)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


_lock = threading.Lock()
_kinds: dict[tuple[str, str], KindInfo] = {}  # (group, Kind) -> info


def register_kind(
    api_version: str,
    kind: str,
    plural: str | None = None,
    singular: str | None = None,
    short_names: tuple[str, ...] | list[str] = (),
    namespaced: bool = True,
    categories: tuple[str, ...] | list[str] = (),
) -> KindInfo:
    """Register (or replace) a kind; returns its :class:`KindInfo`.

    ``plural`` defaults to ``kind.lower() + "s"``, ``singular`` to ``kind.lower()``. A kind is keyed
    by (API group, Kind): registering the same pair again replaces the entry (e.g. a new version).
    """
    if not api_version or not kind:
        raise SpecError("register_kind", "api_version and kind are required")
    info = KindInfo(
        api_version=api_version,
        kind=kind,
        plural=(plural or kind.lower() + "s").lower(),
        singular=(singular or kind.lower()).lower(),
        short_names=tuple(s.lower() for s in short_names),
        namespaced=namespaced,
        categories=tuple(categories),
    )
    with _lock:
        _kinds[(info.group, kind)] = info
    return info


def known_kinds() -> list[KindInfo]:
    """Every registered kind, in registration order."""
    with _lock:
        return list(_kinds.values())


def _names(info: KindInfo) -> set[str]:
    return {info.kind.lower(), info.plural, info.singular, *info.short_names}


def resolve_kind(name: str, api_version: str | None = None) -> KindInfo:
    """Find a kind by plural, singular, short name or Kind (case-insensitive), optionally with a
    ``.group`` suffix (``runs.pipelines.kubeflow.org``, ``TFJob.kubeflow.org``). ``api_version``
    (``kubeflow.org/v1``) narrows the lookup to that group.

    Raises :class:`SpecError` (path ``kind``) when no kind or more than one matches, listing the
    known plurals.
    """
    if isinstance(name, KindInfo):
        return name
    if not isinstance(name, str) or not name:
        raise SpecError("kind", f"a kind name is required (got {name!r})", fix=_known_fix())
    key = name.strip().lower()
    group = api_group(api_version) if api_version is not None else None
    kinds = known_kinds()
    matches = [k for k in kinds if key in _names(k) and (group is None or k.group == group)]
    if not matches and "." in key and group is None:
        short, _, grp = key.partition(".")
        matches = [k for k in kinds if short in _names(k) and k.group == grp]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise SpecError(
            "kind",
            f"{name!r} is ambiguous: " + ", ".join(k.resource for k in matches),
            fix="name the group as <plural>.<group>",
        )
    where = f" in group {group or 'core'!r}" if group is not None else ""
    import difflib

    near = difflib.get_close_matches(key, sorted({n for k in kinds for n in _names(k)}), n=1, cutoff=0.8)
    fix = f"did you mean {near[0]!r}? " + _known_fix() if near else _known_fix()
    raise SpecError("kind", f"unknown kind {name!r}{where}", fix=fix)


def _known_fix() -> str:
    return "known kinds: " + ", ".join(sorted(k.plural for k in known_kinds()))
