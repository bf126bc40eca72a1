"""Admission: per-kind mutating (defaulting) and validating hooks the store runs on every write.

As the API server's admission chain (kubernetes ``staging/src/k8s.io/apiserver/pkg/admission``:
mutating plugins and webhooks first, then validating ones), :class:`~localflow.fakes.ObjectStore`
calls the hooks registered for an object's (API group, Kind) on ``create``, ``update`` and
``patch``, whoever writes (the CLI, a controller, an HTTP API), so an invalid object never reaches
the store. Writes of the status subresource (``update_status``, ``set_condition``) skip admission,
as the status subresource skips spec validation, and an update or patch that changes neither spec
nor any other top-level field but ``metadata``/``status`` skips it too (a stored object was
admitted when it was written): a Pod's status write costs no hook call.

Hooks are registered with :func:`register_admission` by the layer that knows the kinds
(``localflow/kinds.py``); this module imports nothing of localflow but its errors. A mutating hook
``mutate(obj) -> obj`` returns the defaulted object (it may change it in place); a validating hook
``validate(obj, old) -> None`` raises :class:`~localflow.errors.SpecError` naming the field path
(``old`` is the stored object on update/patch, ``None`` on create).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

__all__ = ["register_admission", "admit", "default", "hooks_for", "CREATE", "UPDATE"]

CREATE, UPDATE = "CREATE", "UPDATE"

Mutate = Callable[[dict], dict]
Validate = Callable[[dict, "dict | None"], None]


@dataclass(frozen=True)
class _Hooks:
    mutate: tuple[Mutate, ...] = ()
    validate: tuple[Validate, ...] = ()


_lock = threading.Lock()
_hooks: dict[tuple[str, str], _Hooks] = {}  # (group, Kind) -> hooks


def register_admission(group: str, kind: str, *, mutate: Mutate | None = None, validate: Validate | None = None) -> None:
    """Add a mutating and/or validating hook for objects of ``group``/``kind`` (``""`` for the core
    group). Hooks of one kind run in registration order, every mutating hook before any
    validating one. Registering the same function again is a no-op."""
    with _lock:
        h = _hooks.get((group, kind), _Hooks())
        m = h.mutate + ((mutate,) if mutate is not None and mutate not in h.mutate else ())
        v = h.validate + ((validate,) if validate is not None and validate not in h.validate else ())
        _hooks[(group, kind)] = _Hooks(m, v)


def hooks_for(group: str, kind: str) -> _Hooks | None:
    """The hooks of ``group``/``kind``, or None when it has none (one dict lookup)."""
    return _hooks.get((group, kind))


def _unchanged(obj: dict, old: dict | None) -> bool:
    """Whether ``obj`` differs from ``old`` only in ``metadata`` and ``status``."""
    if old is None:
        return False
    keys = (set(obj) | set(old)) - {"metadata", "status"}
    return all(obj.get(k) == old.get(k) for k in keys)


def admit(group: str, obj: dict, old: dict | None = None) -> dict:
    """Run the hooks of ``obj``'s kind on a write (``old``: the stored object of an update) and
    return the object to store. Raises what a hook raises (a :class:`SpecError` with the field
    path); the write is then not made."""
    h = _hooks.get((group, obj.get("kind")))
    if h is None or _unchanged(obj, old):
        return obj
    for fn in h.mutate:
        obj = fn(obj)
    for fn in h.validate:
        fn(obj, old)
    return obj


def default(group: str, obj: dict) -> dict:
    """``obj`` after the mutating hooks only (e.g. a Secret's ``stringData`` encoded into ``data``),
    as the store would keep it: what ``kubectl apply`` compares with the stored object."""
    h = _hooks.get((group, obj.get("kind")))
    for fn in (h.mutate if h else ()):
        obj = fn(obj)
    return obj
