"""Label selectors: parse the kubectl string form or a dict, and match labels against them.

Follows kubernetes ``staging/src/k8s.io/apimachinery/pkg/labels/selector.go`` (string syntax
``a=b,a==b,c!=d,e in (x,y),f notin (z),g,!h,n>3,n<5``) and ``metav1.LabelSelector``
(``{"matchLabels": {...}, "matchExpressions": [{key, operator: In|NotIn|Exists|DoesNotExist, values}]}``).
Semantics as upstream: ``!=`` and ``notin`` also match objects that lack the key; an empty selector
matches everything.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from localflow.errors import SpecError

__all__ = ["Requirement", "parse_selector", "matches", "format_selector"]


# A qualified label key: optional DNS prefix "/" name; values: alphanumerics, '-', '_', '.'.
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_FIX = "use key=value, key!=value, key in (a,b), key notin (a,b), key, !key, key>N or key<N joined by commas"


@dataclass(frozen=True)
class Requirement:
    """One selector term: ``key``, ``op`` (one of ``= != in notin exists ! > <``), ``values``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict) -> bool:
        """Whether a labels dict satisfies this term."""
        has = self.key in labels
        val = labels.get(self.key)
        if self.op == "=":
            return has and val == self.values[0]
        if self.op == "!=":
            return not has or val != self.values[0]
        if self.op == "in":
            return has and val in self.values
        if self.op == "notin":
            return not has or val not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in (">", "<"):
            try:
                lv, rv = int(val), int(self.values[0])
            except (TypeError, ValueError):
                return False
            return lv > rv if self.op == ">" else lv < rv
        return False

    def __str__(self) -> str:
        if self.op in ("=", "!=", ">", "<"):
            return f"{self.key}{self.op}{self.values[0]}"
        if self.op in ("in", "notin"):
            return f"{self.key} {self.op} ({','.join(self.values)})"
        return self.key if self.op == "exists" else f"!{self.key}"


def _check(path: str, key: str, values: tuple[str, ...], text: str) -> None:
    if not _KEY.match(key) or len(key.rsplit("/", 1)[-1]) > 63:
        raise SpecError(path, f"invalid label key {key!r} in {text!r}", fix=_FIX)
    for v in values:
        if not _VALUE.match(v) or len(v) > 63:
            raise SpecError(path, f"invalid label value {v!r} in {text!r}", fix=_FIX)


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur))
    return [t.strip() for t in terms]


_SET = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<vals>[^()]*)\)$")
_CMP = re.compile(r"^(?P<key>[^=!<>\s]+)\s*(?P<op>==|=|!=|>|<)\s*(?P<val>[^=!<>\s]*)$")


def _parse_string(text: str, path: str) -> list[Requirement]:
    text = text.strip()
    if not text:
        return []
    reqs = []
    for term in _split_terms(text):
        if not term:
            raise SpecError(path, f"empty term in selector {text!r}", fix=_FIX)
        if m := _SET.match(term):
            vals = tuple(v.strip() for v in m["vals"].split(",")) if m["vals"].strip() else ()
            if not vals:
                raise SpecError(path, f"{m['op']} needs at least one value in {text!r}", fix=_FIX)
            _check(path, m["key"], vals, text)
            reqs.append(Requirement(m["key"], m["op"], vals))
        elif m := _CMP.match(term):
            op = "=" if m["op"] == "==" else m["op"]
            if op in (">", "<") and not re.fullmatch(r"-?\d+", m["val"]):
                raise SpecError(path, f"{op} needs an integer in {term!r}", fix=_FIX)
            _check(path, m["key"], (m["val"],) if op not in (">", "<") else (), text)
            reqs.append(Requirement(m["key"], op, (m["val"],)))
        elif term.startswith("!"):
            key = term[1:].strip()
            _check(path, key, (), text)
            reqs.append(Requirement(key, "!"))
        else:
            _check(path, term, (), text)
            reqs.append(Requirement(term, "exists"))
    return reqs


_EXPR_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def _parse_dict(sel: dict, path: str) -> list[Requirement]:
    if "matchLabels" in sel or "matchExpressions" in sel:
        extra = set(sel) - {"matchLabels", "matchExpressions"}
        if extra:
            raise SpecError(path, f"unknown LabelSelector fields {sorted(extra)}", fix="use matchLabels and matchExpressions")
        reqs = _parse_dict(sel.get("matchLabels") or {}, f"{path}.matchLabels")
        for i, expr in enumerate(sel.get("matchExpressions") or []):
            p = f"{path}.matchExpressions[{i}]"
            op = _EXPR_OPS.get((expr or {}).get("operator"))
            if op is None:
                raise SpecError(p + ".operator", f"unknown operator {expr.get('operator')!r}", fix="use one of " + ", ".join(_EXPR_OPS))
            key = str(expr.get("key", ""))
            vals = tuple(str(v) for v in expr.get("values") or ())
            if op in ("in", "notin") and not vals:
                raise SpecError(p + ".values", f"{expr['operator']} needs at least one value")
            if op in ("exists", "!") and vals:
                raise SpecError(p + ".values", f"{expr['operator']} takes no values")
            _check(p, key, vals, str(expr))
            reqs.append(Requirement(key, op, vals))
        return reqs
    reqs = []
    for k, v in sel.items():
        v = "" if v is None else str(v)
        _check(path, str(k), (v,), f"{k}={v}")
        reqs.append(Requirement(str(k), "=", (v,)))
    return reqs


def parse_selector(selector, path: str = "labelSelector") -> list[Requirement]:
    """Parse ``None``, a kubectl string, a ``{key: value}`` dict, a ``metav1.LabelSelector`` dict,
    or a list of :class:`Requirement` into requirements (all must hold). Raises :class:`SpecError`
    with ``path`` for bad syntax, keys or values."""
    if selector is None:
        return []
    if isinstance(selector, str):
        return _parse_string(selector, path)
    if isinstance(selector, dict):
        return _parse_dict(selector, path)
    if isinstance(selector, (list, tuple)) and all(isinstance(r, Requirement) for r in selector):
        return list(selector)
    raise SpecError(path, f"unsupported selector {selector!r}", fix="pass a string like 'a=b,c in (x,y)' or a dict")


def matches(labels: dict | None, selector) -> bool:
    """Whether ``labels`` satisfies every requirement of ``selector`` (any form parse_selector takes)."""
    labels = labels or {}
    return all(r.matches(labels) for r in parse_selector(selector))


def format_selector(requirements) -> str:
    """The kubectl string form of a selector; ``parse_selector(format_selector(r)) == r``."""
    return ",".join(str(r) for r in parse_selector(requirements))
