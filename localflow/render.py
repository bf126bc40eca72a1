"""kubectl-shaped output: tables, ``-o json|yaml`` Lists, ``describe`` text.

Pure functions from objects/rows to text, so the CLI stays a thin layer and tests can check the
shapes. Follows kubectl's printers (kubernetes/kubectl ``pkg/cmd/get``, ``pkg/describe``):
``NAME READY STATUS RESTARTS AGE`` for Pods, ``kind: List`` with ``items`` for ``-o json|yaml``.
"""
from __future__ import annotations

import functools

import calendar
import json
import time
from typing import Any, Iterable

import yaml


def age(ts: str | None, now: float | None = None) -> str:
    """kubectl's short age (``5s``, ``3m``, ``2h``, ``4d``) of an RFC 3339 timestamp."""
    if not ts:
        return "<unknown>"
    try:
        t = calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return ts
    d = max(0, int((now if now is not None else time.time()) - t))
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= n:
            return f"{d // n}{unit}"
    return f"{d}s"


def as_list(items: Iterable[dict]) -> dict:
    """Wrap objects as a kubectl ``List``."""
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def dump(obj: Any, fmt: str) -> str:
    """``json`` (2-space indent, like kubectl) or ``yaml`` text of ``obj``."""
    if fmt == "json":
        return json.dumps(obj, indent=2, default=str)
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns separated by three spaces, as kubectl prints."""
    cells = [headers] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def pod_row(pod: dict, wide: bool = False) -> list[Any]:
    """``NAME READY STATUS RESTARTS AGE`` (+ ``IP NODE`` when wide) of a Pod."""
    st = pod.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or []) or len(cs)
    ready = sum(1 for c in cs if c.get("ready"))
    status = st.get("phase", "Pending")
    for c in cs:
        term = (c.get("state") or {}).get("terminated")
        wait = (c.get("state") or {}).get("waiting")
        if wait and wait.get("reason"):
            status = wait["reason"]
        elif term and status == "Failed":
            status = term.get("reason") or "Error"
    if status == "Succeeded":
        status = "Completed"
    if status == "Failed" and st.get("reason"):
        status = st["reason"]
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    row = [pod["metadata"]["name"], f"{ready}/{total}", status, restarts, age(pod["metadata"].get("creationTimestamp"))]
    if wide:
        row += [st.get("podIP") or "<none>", (pod.get("spec") or {}).get("nodeName") or "<none>"]
    return row


def event_row(ev: dict) -> list[Any]:
    """``LAST SEEN TYPE REASON OBJECT MESSAGE`` of an Event."""
    io = ev.get("involvedObject") or {}
    count = ev.get("count") or 1
    seen = age(ev.get("lastTimestamp"))
    if count > 1:
        seen += f" (x{count})"
    return [seen, ev.get("type", ""), ev.get("reason", ""), f"{io.get('kind', '').lower()}/{io.get('name', '')}",
            ev.get("message", "")]


def describe(obj: dict, events: list[dict]) -> str:
    """kubectl-describe-like text: the object as indented YAML fields, then its Events table."""
    meta = obj.get("metadata") or {}
    lines = [f"Name:         {meta.get('name')}", f"Namespace:    {meta.get('namespace', '')}",
             f"Kind:         {obj.get('kind')}", f"API Version:  {obj.get('apiVersion')}",
             f"Created:      {meta.get('creationTimestamp')}"]
    if meta.get("labels"):
        lines.append("Labels:       " + "\n              ".join(f"{k}={v}" for k, v in meta["labels"].items()))
    if meta.get("ownerReferences"):
        lines.append("Controlled By:  " + ", ".join(f"{o['kind']}/{o['name']}" for o in meta["ownerReferences"]))
    for section in ("spec", "status"):
        if obj.get(section):
            lines.append(f"{section.capitalize()}:")
            text = yaml.safe_dump(obj[section], sort_keys=False, default_flow_style=False)
            lines.extend("  " + ln for ln in text.rstrip().splitlines())
    lines.append("Events:")
    if events:
        body = table(["Type", "Reason", "Age", "From", "Message"],
                     [[e.get("type"), e.get("reason"), age(e.get("lastTimestamp")) + (f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""),
                       (e.get("source") or {}).get("component", ""), e.get("message")] for e in events])
        lines.extend("  " + ln for ln in body.splitlines())
    else:
        lines.append("  <none>")
    return "\n".join(lines)


def _data_count(obj: dict) -> int:
    keys = set((obj.get("data") or {})) | set((obj.get("stringData") or {})) | set((obj.get("binaryData") or {}))
    return len(keys)


def _header(obj: dict) -> list[str]:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    ann = meta.get("annotations") or {}
    return [f"Name:         {meta.get('name')}", f"Namespace:    {meta.get('namespace', '')}",
            "Labels:       " + ("\n              ".join(f"{k}={v}" for k, v in labels.items()) or "<none>"),
            "Annotations:  " + ("\n              ".join(f"{k}: {v}" for k, v in ann.items()) or "<none>")]


def _events(events: list[dict]) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    body = table(["Type", "Reason", "Age", "From", "Message"],
                 [[e.get("type"), e.get("reason"), age(e.get("lastTimestamp")), (e.get("source") or {}).get("component", ""),
                   e.get("message")] for e in events])
    return ["Events:"] + ["  " + ln for ln in body.splitlines()]


def describe_configmap(obj: dict, events: list[dict]) -> str:
    """``kubectl describe configmap``: each key with its value under ``Data``, binary keys by size
    (kubectl ``pkg/describe`` ``ConfigMapDescriber``)."""
    lines = _header(obj) + ["", "Data", "===="]
    for k, v in sorted((obj.get("data") or {}).items()):
        lines += [f"{k}:", "----", str(v), ""]
    lines += ["", "BinaryData", "===="]
    import base64

    for k, v in sorted((obj.get("binaryData") or {}).items()):
        try:
            n = len(base64.b64decode(v))
        except (ValueError, TypeError):
            n = len(str(v))
        lines.append(f"{k}: {n} bytes")
    return "\n".join(lines + [""] + _events(events))


def describe_secret(obj: dict, events: list[dict]) -> str:
    """``kubectl describe secret``: its type and each key with the size of its value, never the
    value (kubectl ``pkg/describe`` ``SecretDescriber``: ``password:  8 bytes``)."""
    import base64

    sizes: dict[str, int] = {}
    for k, v in (obj.get("data") or {}).items():
        try:
            sizes[k] = len(base64.b64decode(v))
        except (ValueError, TypeError):
            sizes[k] = len(str(v))
    for k, v in (obj.get("stringData") or {}).items():
        sizes[k] = len(str(v).encode())
    lines = _header(obj) + ["", f"Type:  {obj.get('type') or 'Opaque'}", "", "Data", "===="]
    lines += [f"{k}:  {n} bytes" for k, n in sorted(sizes.items())]
    return "\n".join(lines + [""] + _events(events))


# ---------------------------------------------------------------- printer columns

@functools.lru_cache(maxsize=512)
def _compiled(path: str):
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.ext import parse

    try:
        return parse(path if path.startswith("$") else "$" + path)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:  # noqa: BLE001 - the parser raises bare Exception too
        raise ValueError(f"unsupported JSONPath {path!r}: {exc}") from None


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Every value the kubectl JSONPath ``path`` selects in ``obj`` (``.a.b``, ``[N]``, ``[-1:]``
    slices, ``[*]``, ``[?(@.key==value)]`` filters, ``['dotted.key']``), as CRD
    ``additionalPrinterColumns`` use them (k8s.io/client-go ``util/jsonpath``), evaluated by the
    ``jsonpath-ng`` library (its extended parser, for filters). A missing field selects nothing.
    Raises ``ValueError`` for a path the library cannot parse."""
    return [m.value for m in _compiled(path).find(obj)]


def cell(obj: dict, column) -> Any:
    """One cell of ``kubectl get``: ``column.value(obj)`` when the column computes it (core kinds, as
    kubectl's printers do), else its ``json_path``'s values joined by spaces, as the API server's
    table convertor prints a CRD column (apiextensions-apiserver ``tableconvertor.go``); ``date``
    columns show an age, a missing value an empty cell."""
    if column.value is not None:
        return column.value(obj)
    found = jsonpath(obj, column.json_path)
    if not found or found == [None]:
        return ""
    if column.type == "date":
        return age(found[0])
    return " ".join(str(v).lower() if isinstance(v, bool) else (json.dumps(v) if isinstance(v, (dict, list)) else str(v))
                    for v in found)


def rows_for(items: list[dict], columns, *, wide: bool = False, name: bool = True) -> tuple[list[str], list[list[Any]]]:
    """``(headers, rows)`` of ``kubectl get`` for ``items`` with a kind's printer ``columns``:
    ``NAME`` first (unless ``name`` is false, as for Events), then the columns of priority 0 (and
    the others when ``wide``), headers upper-cased as kubectl prints them."""
    shown = [c for c in columns if wide or not c.priority]
    headers = (["NAME"] if name else []) + [c.name.upper() for c in shown]
    rows = [([o["metadata"]["name"]] if name else []) + [cell(o, c) for c in shown] for o in items]
    return headers, rows


# kubectl's columns of the core kinds (kubernetes pkg/printers/internalversion/printers.go)

def pod_ready(pod: dict) -> str:
    """``READY`` of a Pod: ready containers / containers."""
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or []) or len(cs)
    return f"{sum(1 for c in cs if c.get('ready'))}/{total}"


def pod_status(pod: dict) -> str:
    """``STATUS`` of a Pod: a waiting or terminated reason, ``Completed``, or the phase."""
    return pod_row(pod)[2]


def pod_restarts(pod: dict) -> int:
    """``RESTARTS`` of a Pod: the sum of its containers' restartCount."""
    return sum(int(c.get("restartCount") or 0) for c in (pod.get("status") or {}).get("containerStatuses") or [])


def created_age(obj: dict) -> str:
    """``AGE``: the age of ``metadata.creationTimestamp``."""
    return age((obj.get("metadata") or {}).get("creationTimestamp"))


def data_count(obj: dict) -> int:
    """``DATA`` of a Secret or ConfigMap: its number of keys."""
    return _data_count(obj)


def service_ports(svc: dict) -> str:
    """``PORT(S)`` of a Service: ``port[:nodePort]/protocol``, comma-separated, or ``<none>``."""
    ports = [f"{p.get('port')}{':' + str(p['nodePort']) if p.get('nodePort') else ''}/{p.get('protocol') or 'TCP'}"
             for p in (svc.get("spec") or {}).get("ports") or [] if isinstance(p, dict)]
    return ",".join(ports) or "<none>"


def service_selector(svc: dict) -> str:
    """``SELECTOR`` of a Service (``-o wide``): ``k=v`` pairs, or ``<none>``."""
    sel = (svc.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


def event_object(ev: dict) -> str:
    """``OBJECT`` of an Event: ``kind/name`` of the involved object, kind lower-cased."""
    io = ev.get("involvedObject") or {}
    return f"{io.get('kind', '').lower()}/{io.get('name', '')}"


def event_last_seen(ev: dict) -> str:
    """``LAST SEEN`` of an Event: the age of lastTimestamp, ``(xN)`` when it repeated."""
    return event_row(ev)[0]
