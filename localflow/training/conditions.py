"""Job condition list rules of the Training Operator (``pkg/util/status.go``, ``UpdateJobConditions``).

Conditions are dicts ``{type, status, reason, message, lastUpdateTime, lastTransitionTime}`` with
``status`` the strings ``"True"``/``"False"``. Rules:

- once a ``Failed=True`` condition exists, nothing changes any more;
- setting a condition with the same type, status and reason as the existing one is a no-op;
  otherwise the old condition of that type is removed and the new one appended at the end
  (``lastTransitionTime`` is kept when the status did not change);
- ``Running`` and ``Restarting`` exclude each other;
- setting ``Succeeded`` or ``Failed`` flips an existing ``Running`` to ``"False"``.

The ``kubectl get`` State column is the type of the last condition (:func:`state`).
"""
from __future__ import annotations

import copy

__all__ = ["CONDITION_TYPES", "reason", "get_condition", "has_true", "is_finished", "is_succeeded", "is_failed",
           "update_conditions", "state"]

CONDITION_TYPES = ("Created", "Running", "Restarting", "Succeeded", "Suspended", "Failed")


def reason(kind: str, what: str) -> str:
    """``<Kind><Reason>``: ``reason("PyTorchJob", "Succeeded") == "PyTorchJobSucceeded"``."""
    return f"{kind}{what}"


def get_condition(conditions: list[dict] | None, type_: str) -> dict | None:
    """The condition of ``type_`` or None."""
    for c in conditions or []:
        if c.get("type") == type_:
            return c
    return None


def has_true(conditions: list[dict] | None, type_: str) -> bool:
    """Whether a condition of ``type_`` with status ``"True"`` exists."""
    c = get_condition(conditions, type_)
    return c is not None and c.get("status") == "True"


def is_failed(status: dict | None) -> bool:
    """``Failed=True`` present."""
    return has_true((status or {}).get("conditions"), "Failed")


def is_succeeded(status: dict | None) -> bool:
    """``Succeeded=True`` present."""
    return has_true((status or {}).get("conditions"), "Succeeded")


def is_finished(status: dict | None) -> bool:
    """Succeeded or Failed."""
    return is_failed(status) or is_succeeded(status)


def update_conditions(conditions: list[dict] | None, type_: str, status: str, reason_: str, message: str,
                      now: str) -> list[dict]:
    """Return the condition list after setting one condition (rules in the module docstring).

    ``status`` is ``"True"`` or ``"False"``; ``now`` an RFC 3339 timestamp. The input list is not
    mutated.
    """
    conds = copy.deepcopy(conditions or [])
    if any(c.get("type") == "Failed" and c.get("status") == "True" for c in conds):
        return conds
    current = get_condition(conds, type_)
    if current is not None and current.get("status") == status and current.get("reason") == reason_:
        return conds
    new = {"type": type_, "status": status, "reason": reason_, "message": message,
           "lastUpdateTime": now, "lastTransitionTime": now}
    if current is not None and current.get("status") == status:
        new["lastTransitionTime"] = current.get("lastTransitionTime", now)
    out = []
    for c in conds:
        if c.get("type") == type_:
            continue
        if (type_, c.get("type")) in (("Restarting", "Running"), ("Running", "Restarting")):
            continue
        if type_ in ("Failed", "Succeeded") and c.get("type") == "Running":
            c = dict(c, status="False")
        out.append(c)
    out.append(new)
    return out


def state(status: dict | None) -> str:
    """The ``kubectl get`` State column: the type of the last condition (``""`` when none)."""
    conds = (status or {}).get("conditions") or []
    return conds[-1].get("type", "") if conds else ""
