"""``meta.k8s.io/v1`` ``Table`` responses, what ``kubectl get`` asks for
(``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

Columns are the kind table's printer columns (:mod:`localflow.kinds`): kubectl's for core kinds
(kubernetes ``pkg/printers/internalversion/printers.go``), the official CRDs'
``additionalPrinterColumns`` for Kubeflow kinds, whose cells the API server computes as
apiextensions-apiserver ``pkg/registry/customresource/tableconvertor/tableconvertor.go`` does
(``date`` columns as an age). Each row carries the object's ``PartialObjectMetadata`` (kubectl
reads it for ``-A`` and ``--show-labels``), or the whole object with ``includeObject=Object``.
"""
from __future__ import annotations

from localflow import kinds as kind_table
from localflow import render

__all__ = ["wants_table", "table", "TABLE_CONTENT_TYPE"]

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"
_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "date": "date"}


def wants_table(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for a ``meta.k8s.io`` Table (v1 or v1beta1)."""
    accept = (accept or "").replace(" ", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _definitions(k: kind_table.Kind | None) -> list[dict]:
    cols = [] if k is not None and not k.name_column else [
        {"name": "Name", "type": "string", "format": "name", "priority": 0,
         "description": "Name must be unique within a namespace."}]
    for c in (k.columns if k is not None else (kind_table.AGE,)):
        cols.append({"name": c.name, "type": _TYPES.get(c.type, "string"), "format": "", "priority": c.priority,
                     "description": c.json_path or c.name})
    return cols


def _row(obj: dict, k: kind_table.Kind | None, include: str) -> dict:
    cells = [] if k is not None and not k.name_column else [obj["metadata"]["name"]]
    for c in (k.columns if k is not None else (kind_table.AGE,)):
        try:
            value = render.cell(obj, c)
        except (KeyError, TypeError, ValueError, IndexError):
            value = None  # a malformed object gets an empty cell, never a 500
        cells.append(value if value != "" else None)
    if include == "None":
        ref = None
    elif include == "Object":
        ref = obj
    else:
        ref = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}
    return {"cells": cells, "object": ref}


def table(objs: list[dict], k: kind_table.Kind | None, *, resource_version: str = "", include: str = "Metadata",
          definitions: bool = True, continue_token: str | None = None) -> dict:
    """A ``Table`` of ``objs`` (one kind ``k``; None: Name and Age only). ``include``: the
    ``includeObject`` query value (``None``, ``Metadata`` — the default — or ``Object``);
    ``definitions`` false leaves ``columnDefinitions`` empty (later watch events may)."""
    meta = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": _definitions(k) if definitions else [],
            "rows": [_row(o, k, include) for o in objs]}
