"""Kubernetes resource quantities: ``500m`` cpu, ``1.5Gi`` memory.

Parsing follows kubernetes ``staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go``:
a signed decimal number followed by a binary suffix (``Ki Mi Gi Ti Pi Ei``), a decimal suffix
(``n u m k M G T P E``) or a decimal exponent (``e3``, ``E-2``). Memory is rounded up to whole
bytes and cpu to whole millicores when formatted, as ``Quantity.Value()``/``MilliValue()`` round up.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from localflow.errors import SpecError

__all__ = ["parse_quantity", "parse_cpu", "parse_memory", "format_cpu", "format_memory"]

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9), "T": Decimal(10**12),
            "P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^(?P<num>[+-]?(\d+\.?\d*|\.\d+))(?P<suffix>[a-zA-Z]*|[eE][+-]?\d+)$")

_CPU_FORMS = "cores as a number (2, 0.5, 1e0) or millicores ('500m')"
_MEM_FORMS = "bytes (128974848, 1e3) or with a suffix: Ki Mi Gi Ti Pi Ei (powers of 1024) or k M G T P E (powers of 1000), e.g. '512Mi', '1.5G'"


def parse_quantity(value, path: str, forms: str = "a Kubernetes quantity such as 500m, 2, 1.5Gi") -> Decimal:
    """Exact value of a quantity (str, int or float) as a :class:`Decimal`.

    Raises :class:`SpecError` at ``path`` naming the accepted ``forms`` for anything else
    (booleans, empty strings, unknown suffixes such as ``1K`` or ``1gb``, NaN/inf).
    """
    if isinstance(value, bool) or value is None:
        raise SpecError(path, f"{value!r} is not a quantity", fix=f"use {forms}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise SpecError(path, f"{value!r} is not a quantity", fix=f"use {forms}")
        return Decimal(str(value))
    if not isinstance(value, str):
        raise SpecError(path, f"{value!r} is not a quantity", fix=f"use {forms}")
    m = _QUANTITY.match(value.strip())
    if not m:
        raise SpecError(path, f"{value!r} is not a quantity", fix=f"use {forms}")
    try:
        num = Decimal(m["num"])
    except InvalidOperation:  # pragma: no cover - the regex only lets numbers through
        raise SpecError(path, f"{value!r} is not a quantity", fix=f"use {forms}") from None
    suffix = m["suffix"]
    if suffix in _BINARY:
        return num * _BINARY[suffix]
    if suffix in _DECIMAL:
        return num * _DECIMAL[suffix]
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return num.scaleb(int(suffix[1:]))
    raise SpecError(path, f"{value!r} has unknown suffix {suffix!r}", fix=f"use {forms}")


def _non_negative(q: Decimal, value, path: str, forms: str) -> Decimal:
    if q < 0:
        raise SpecError(path, f"{value!r} must not be negative", fix=f"use {forms}")
    return q


def parse_cpu(value, path: str) -> float:
    """CPU quantity -> cores as float: ``"500m"`` -> 0.5, ``"2"``/``2`` -> 2.0, ``1.5``, ``"0.5"``.
    Raises :class:`SpecError` at ``path`` for malformed or negative values."""
    return float(_non_negative(parse_quantity(value, path, _CPU_FORMS), value, path, _CPU_FORMS))


def parse_memory(value, path: str) -> int:
    """Memory quantity -> bytes as int, rounded up: ``"128Mi"`` -> 134217728, ``"129M"`` ->
    129000000, ``"1e3"`` -> 1000, ``"0.5"`` -> 1. Raises :class:`SpecError` at ``path`` for
    malformed or negative values."""
    q = _non_negative(parse_quantity(value, path, _MEM_FORMS), value, path, _MEM_FORMS)
    return int(q.to_integral_value(rounding="ROUND_CEILING"))


def format_cpu(cores: float) -> str:
    """Cores -> canonical cpu quantity: whole cores as ``"2"``, else millicores rounded up
    (``0.5`` -> ``"500m"``, ``0.0001`` -> ``"1m"``)."""
    milli = int((Decimal(str(cores)) * 1000).to_integral_value(rounding="ROUND_CEILING"))
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def format_memory(n_bytes: int) -> str:
    """Bytes -> canonical memory quantity: the largest binary suffix that divides exactly
    (``134217728`` -> ``"128Mi"``), else the largest decimal one (``129000000`` -> ``"129M"``),
    else plain bytes. ``parse_memory(format_memory(n)) == n``."""
    n = int(n_bytes)
    if n == 0:
        return "0"
    for suffix, factor in reversed(list(_BINARY.items())):
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        factor = int(_DECIMAL[suffix])
        if n % factor == 0:
            return f"{n // factor}{suffix}"
    return str(n)
