"""Validators for names, paths and numbers a spec sets, worded as the Kubernetes API server words them.

Follows kubernetes ``staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go``
(``IsDNS1123Label``, ``IsDNS1123Subdomain``, ``IsDNS1035Label``, ``IsValidPortName``,
``IsValidPortNum``, ``IsConfigMapKey``, ``IsEnvVarName``) and ``pkg/apis/core/validation/validation.go``
(``validateLocalDescendingPath``, ``validateLocalNonReservedPath``). Two kinds of functions:

- ``*_errors(value) -> list[str]``: the API server's messages for one value (``[]`` when valid);
- ``check_*(path, value, ...)``: raise :class:`~localflow.errors.SpecError` at the field path
  ``path`` (``TFJob.spec.tfReplicaSpecs.Worker.template.spec.containers[0].name``) with the first
  message and a fix; return the value when valid.

:func:`check_tree` walks a whole document once (iteratively, so no RecursionError): it refuses
NaN/Infinity, nesting deeper than :data:`MAX_DEPTH`, and turns non-string mapping keys into
strings as ``sigs.k8s.io/yaml`` does when it converts YAML to JSON.

Imports only :mod:`localflow.errors`; every layer may use it.
"""
from __future__ import annotations

import math
import re
from typing import Any

from localflow.errors import SpecError, escape

__all__ = [
    "INT32_MAX", "MAX_DEPTH", "DNS1123_LABEL_MAX", "DNS1123_SUBDOMAIN_MAX",
    "dns1123_label_errors", "dns1123_subdomain_errors", "dns1035_label_errors", "port_name_errors",
    "config_key_errors", "env_var_name_errors", "local_path_errors",
    "check_dns1123_label", "check_dns1123_subdomain", "check_dns1035_label", "check_port_name",
    "check_port_number", "check_config_key", "check_local_path", "check_int32", "check_string",
    "check_mapping", "check_list", "check_tree", "suggest_name", "field_path",
]

#: ``math.MaxInt32``: replicas, ports, numNodes and every ``int32`` field of the Kubernetes API.
INT32_MAX = 2**31 - 1
#: Deepest nesting of mappings/lists accepted in a document (compiled KFP IR stays under 20).
MAX_DEPTH = 100
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_LABEL = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_FMT = f"{_LABEL_FMT}(\\.{_LABEL_FMT})*"
_SUBDOMAIN = re.compile(f"^{_SUBDOMAIN_FMT}$")
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = re.compile(f"^{_DNS1035_FMT}$")
_CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"
_CONFIG_KEY = re.compile(f"^{_CONFIG_KEY_FMT}$")
_ENV_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV = re.compile(f"^{_ENV_FMT}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _max_len(n: int) -> str:
    return f"must be no more than {n} characters"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    eg = " or ".join(f"'{e}'" for e in examples)
    return f"{msg} (e.g. {eg}, regex used for validation is '{fmt}')"


def dns1123_label_errors(value: str) -> list[str]:
    """``IsDNS1123Label``: at most 63 characters of ``[a-z0-9-]``, alphanumeric at both ends."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _LABEL.match(value):
        errs.append(_regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                                 "or '-', and must start and end with an alphanumeric character",
                                 _LABEL_FMT, "my-name", "123-abc"))
    return errs


def dns1123_subdomain_errors(value: str) -> list[str]:
    """``IsDNS1123Subdomain``: at most 253 characters, dot-separated DNS-1123 labels."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _SUBDOMAIN.match(value):
        errs.append(_regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                 "characters, '-' or '.', and must start and end with an alphanumeric character",
                                 _SUBDOMAIN_FMT, "example.com"))
    return errs


def dns1035_label_errors(value: str) -> list[str]:
    """``IsDNS1035Label``: a DNS-1123 label that starts with a letter (Service and job names)."""
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1035.match(value):
        errs.append(_regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                 "start with an alphabetic character, and end with an alphanumeric character",
                                 _DNS1035_FMT, "my-name", "abc-123"))
    return errs


def port_name_errors(value: str) -> list[str]:
    """``IsValidPortName`` (an IANA_SVC_NAME): 1-15 of ``[-a-z0-9]``, a letter, no ``--``, no edge ``-``."""
    errs = []
    if len(value) > 15:
        errs.append(_max_len(15))
    if not re.fullmatch(r"[-a-z0-9]+", value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search(r"[a-z]", value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value and (value[0] == "-" or value[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def _chdir_prefix(value: str) -> list[str]:
    if value == ".":
        return ["must not be '.'"]
    if value == "..":
        return ["must not be '..'"]
    if value.startswith(".."):
        return ["must not start with '..'"]
    return []


def config_key_errors(value: str) -> list[str]:
    """``IsConfigMapKey``: a ConfigMap/Secret data key (it becomes a file name in a volume)."""
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _CONFIG_KEY.match(value):
        errs.append(_regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                 _CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    return _chdir_prefix(value) + errs  # the most telling problem first: only the first is shown


def env_var_name_errors(value: str) -> list[str]:
    """``IsEnvVarName``: letters, digits, ``_ - .``, not starting with a digit (nor with ``..``)."""
    errs = []
    if not _ENV.match(value):
        errs.append(_regex_error("a valid environment variable name must consist of alphabetic characters, digits, "
                                 "'_', '-', or '.', and must not start with a digit", _ENV_FMT,
                                 "my.env-name", "MY_ENV.NAME", "MyEnvName1"))
    return errs + _chdir_prefix(value)


def local_path_errors(value: str, *, non_reserved: bool = False) -> list[str]:
    """``validateLocalDescendingPath``: relative, no ``..`` element (``subPath``, ``subPathExpr``).

    ``non_reserved`` adds ``validateLocalNonReservedPath``'s rule for ``items[].path`` of
    configMap/secret/downwardAPI/projected volumes: it must not start with ``..`` either. A NUL
    byte is refused too (no file system takes it).
    """
    errs = []
    if value.startswith("/"):
        errs.append("must be a relative path")
    if ".." in value.replace("\\", "/").split("/"):
        errs.append("must not contain '..'")
    elif non_reserved and value.startswith(".."):
        errs.append("must not start with '..'")
    if "\x00" in value:
        errs.append("must not contain a NUL character")
    return errs


# ------------------------------------------------------------------ raising forms

def suggest_name(value: Any, limit: int = DNS1123_LABEL_MAX) -> str:
    """A DNS-1123 label close to ``value`` (lower case, other characters to ``-``), for fixes."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(value).lower()).strip("-")[:limit].strip("-")
    return s or "my-name"


def _type(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def check_string(path: str, value: Any, *, required: bool = True, what: str = "a string") -> Any:
    """``value`` must be a string (non-empty when ``required``); returns it."""
    if value is None or value == "":
        if required:
            raise SpecError(path, "Required value: must be set", fix=f"set it to {what}")
        return value
    if not isinstance(value, str):
        raise SpecError(path, f"must be {what} (got {_type(value)} {_show(value)})",
                        fix="quote the value in the YAML" if isinstance(value, (int, float, bool)) else
                        f"set it to {what}")
    return value


def _check_name(path: str, value: Any, errors, fix_limit: int, required: bool) -> Any:
    if value is None or value == "":
        if required:
            raise SpecError(path, "Required value: must be set", fix="set a name, e.g. 'my-name'")
        return value
    check_string(path, value)
    errs = errors(value)
    if errs:
        raise SpecError(path, f"Invalid value {_show(value)}: {errs[0]}",
                        fix=f"rename it, e.g. {suggest_name(value, fix_limit)!r}")
    return value


def check_dns1123_label(path: str, value: Any, *, required: bool = True) -> Any:
    """Container, init-container, volume names and namespaces (:func:`dns1123_label_errors`)."""
    return _check_name(path, value, dns1123_label_errors, DNS1123_LABEL_MAX, required)


def check_dns1123_subdomain(path: str, value: Any, *, required: bool = True) -> Any:
    """Pod, ConfigMap, Secret, PVC and run names (:func:`dns1123_subdomain_errors`)."""
    return _check_name(path, value, dns1123_subdomain_errors, DNS1123_SUBDOMAIN_MAX, required)


def check_dns1035_label(path: str, value: Any, *, required: bool = True) -> Any:
    """Training job names (the operator's webhooks require DNS-1035; :func:`dns1035_label_errors`)."""
    if value is None or value == "":
        return _check_name(path, value, dns1035_label_errors, DNS1123_LABEL_MAX, required)
    check_string(path, value)
    errs = dns1035_label_errors(value)
    if errs:
        fix = suggest_name(value)
        fix = fix if fix[0].isalpha() else f"job-{fix}"[:DNS1123_LABEL_MAX].strip("-")
        raise SpecError(path, f"Invalid value {_show(value)}: {errs[0]}", fix=f"rename it, e.g. {fix!r}")
    return value


def check_port_name(path: str, value: Any, *, required: bool = False) -> Any:
    """``ports[].name`` (:func:`port_name_errors`)."""
    check_string(path, value, required=required, what="a port name")
    if value in (None, ""):
        return value
    errs = port_name_errors(value)
    if errs:
        raise SpecError(path, f"Invalid value {_show(value)}: {errs[0]}",
                        fix=f"rename it, e.g. {re.sub('-+', '-', suggest_name(value, 15))!r}")
    return value


def check_config_key(path: str, value: Any) -> Any:
    """A ConfigMap/Secret ``data`` key or an ``items[].key`` (:func:`config_key_errors`)."""
    check_string(path, value, what="a key")
    errs = config_key_errors(value)
    if errs:
        raise SpecError(path, f"Invalid value {_show(value)}: {errs[0]}",
                        fix="use letters, digits, '-', '_' and '.' only")
    return value


def check_local_path(path: str, value: Any, *, required: bool = False, non_reserved: bool = False) -> Any:
    """``subPath``/``subPathExpr`` (``non_reserved=False``) and volume ``items[].path``
    (``non_reserved=True``, ``required=True``): see :func:`local_path_errors`."""
    check_string(path, value, required=required, what="a relative path")
    if value in (None, ""):
        return value
    errs = local_path_errors(value, non_reserved=non_reserved)
    if errs:
        raise SpecError(path, f"Invalid value {_show(value)}: {errs[0]}",
                        fix="use a relative path inside the volume, e.g. 'conf/app.yaml'")
    return value


def check_int32(path: str, value: Any, *, lo: int = 0, hi: int = INT32_MAX, required: bool = False) -> Any:
    """An ``int32`` field (replicas, numNodes, ports): an integer (not a boolean, not ``1.5``) in
    ``[lo, hi]``; ``None`` passes unless ``required``. Returns the value."""
    if value is None:
        if required:
            raise SpecError(path, "Required value: must be set", fix=f"set an integer between {lo} and {hi}")
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(path, f"must be an integer (got {_type(value)} {_show(value)})",
                        fix=f"set an integer between {lo} and {hi}")
    if not lo <= value <= hi:
        raise SpecError(path, f"Invalid value {value}: must be between {lo} and {hi}, inclusive",
                        fix=f"set an integer between {lo} and {hi}")
    return value


def check_port_number(path: str, value: Any, *, required: bool = True, allow_zero: bool = False) -> Any:
    """``IsValidPortNum``: ``containerPort`` 1-65535 (``hostPort`` also 0 with ``allow_zero``)."""
    return check_int32(path, value, lo=0 if allow_zero else 1, hi=65535, required=required)


def check_mapping(path: str, value: Any, *, required: bool = False, what: str = "a mapping") -> dict | None:
    """``value`` must be a mapping (``None`` allowed unless ``required``); returns it."""
    if value is None and not required:
        return None
    if not isinstance(value, dict):
        raise SpecError(path, f"must be {what} (got {_type(value)} {_show(value)})" if value is not None else
                        "Required value: must be set",
                        fix="check the indentation and the ':' after each key" if value is not None else
                        f"set it to {what}")
    return value


def check_known_fields(path: str, value: dict, known: "tuple[str, ...] | frozenset[str]", what: str) -> None:
    """Refuse a key of mapping ``value`` that ``known`` lacks, as the API server's strict field
    validation does (kubectl's default ``--validate=strict``: ``unknown field "spec.backofLimit"``),
    at ``<path>.<key>`` with the nearest known field as the fix. ``what`` names the type (``a Job spec``)."""
    import difflib

    for key in value:
        if key not in known:
            near = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.7)
            raise SpecError(f"{path}.{escape(str(key))}", "unknown field",
                            fix=f"did you mean {near[0]!r}?" if near else f"remove it: {what} has no such field")


def check_list(path: str, value: Any, *, required: bool = False, what: str = "a list") -> list | None:
    """``value`` must be a list (``None`` allowed unless ``required``); returns it."""
    if value is None and not required:
        return None
    if not isinstance(value, list):
        raise SpecError(path, f"must be {what} (got {_type(value)} {_show(value)})" if value is not None else
                        "Required value: must be set",
                        fix="write each entry on its own line starting with '- '" if value is not None else
                        f"set it to {what}")
    return value


# ------------------------------------------------------------------ whole documents

def field_path(base: str, key: Any) -> str:
    """``base.key`` for identifier-like keys, ``base['key']`` for others (escaped), as paths are written."""
    k = str(key)
    if _IDENT.match(k):
        return f"{base}.{k}" if base else k
    return f"{base}[{escape(repr(k))}]"


def check_tree(doc: Any, path: str = "", *, max_depth: int = MAX_DEPTH) -> Any:
    """Check a whole loaded document in place and return it.

    Raises :class:`SpecError` naming the field path for a float NaN/Infinity anywhere (YAML
    ``.nan``/``.inf``: JSON and the API server have no such number) and for mappings/lists nested
    deeper than ``max_depth``. Mapping keys that are not strings (``1: x``, ``true: y``) become
    strings, as ``sigs.k8s.io/yaml`` makes them before the API server sees the object.
    Iterative: a deep document raises SpecError, never RecursionError.
    """
    stack: list[tuple[Any, str, int]] = [(doc, path, 0)]
    while stack:
        node, p, depth = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                raise SpecError(p or "document", f"{node!r} is not a number localflow accepts (NaN and Infinity "
                                "have no JSON form)", fix="write a finite number, or quote it to make it a string")
        elif isinstance(node, (dict, list)):
            if depth >= max_depth:
                raise SpecError(p or "document", f"is nested deeper than {max_depth} levels",
                                fix="flatten the value; no Kubeflow spec nests this deep")
            if isinstance(node, dict):
                if any(not isinstance(k, str) for k in node):
                    fixed = {(_key_text(k) if not isinstance(k, str) else k): v for k, v in node.items()}
                    node.clear()
                    node.update(fixed)
                for k, v in node.items():
                    if isinstance(v, (dict, list, float)):
                        stack.append((v, field_path(p, k), depth + 1))
            else:
                for i, v in enumerate(node):
                    if isinstance(v, (dict, list, float)):
                        stack.append((v, f"{p}[{i}]", depth + 1))
    return doc


def _key_text(key: Any) -> str:
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)
