"""Parameter values of the KFP v2 IR: casting, parsing, formatting and reading them back.

``google.protobuf.Value`` has no integer, so every ``NUMBER_INTEGER`` value in a compiled
pipeline is a double (``defaultValue: 5.0``). These functions take the declared
``parameterType`` (the enum name as written in the IR, e.g. ``"NUMBER_INTEGER"``) and turn a
value into the Python value user code must see: ``int`` for NUMBER_INTEGER, ``float`` for
NUMBER_DOUBLE, ``str``, ``bool``, ``list``, ``dict``. Integral doubles nested inside LIST and
STRUCT values become ``int`` as well, because the backend serialises them with Go ``protojson``
(``1.0`` -> ``1``), which is what a component running on a cluster receives.

Follows kubeflow/pipelines ``api/v2alpha1/pipeline_spec.proto`` (ParameterType),
``backend/src/v2/metadata/converter.go`` (reading output parameter files),
``backend/src/v2/driver/util.go`` ``pbValueToString`` (placeholder formatting) and
``backend/src/v2/driver/resolve.go`` (defaults and optional inputs).
"""
from __future__ import annotations

import difflib
import json
import math
import re
from decimal import Decimal
from typing import Any

from localflow.errors import SpecError

__all__ = [
    "PARAMETER_TYPES",
    "normalize_type",
    "cast_parameter",
    "parse_cli_value",
    "format_value",
    "read_output_parameter",
    "zero_value",
    "resolve_input_definitions",
    "MAX_SAFE_INTEGER",
]

#: ``ParameterType.ParameterTypeEnum`` names by wire number.
PARAMETER_TYPES: dict[int, str] = {
    0: "PARAMETER_TYPE_ENUM_UNSPECIFIED",
    1: "NUMBER_DOUBLE",
    2: "NUMBER_INTEGER",
    3: "STRING",
    4: "BOOLEAN",
    5: "LIST",
    6: "STRUCT",
    7: "TASK_FINAL_STATUS",
    8: "TASK_CONFIG",
}
_KNOWN = frozenset(PARAMETER_TYPES.values()) - {"PARAMETER_TYPE_ENUM_UNSPECIFIED"}

#: Largest integer a double holds exactly; NUMBER_INTEGER values must lie within +/- this.
MAX_SAFE_INTEGER = 2**53 - 1

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_BASE10_INT = re.compile(r"[+-]?[0-9]+\Z")


def normalize_type(parameter_type: str | int, path: str = "parameterType") -> str:
    """Return the enum name for ``parameter_type`` (a name such as ``"LIST"`` or its number).

    Raises SpecError at ``path`` for an unknown or unspecified type.
    """
    if isinstance(parameter_type, int) and not isinstance(parameter_type, bool):
        parameter_type = PARAMETER_TYPES.get(parameter_type, str(parameter_type))
    if parameter_type not in _KNOWN:
        raise SpecError(
            path,
            f"unknown parameterType {parameter_type!r} (known: {', '.join(sorted(_KNOWN))})",
            fix="recompile the pipeline with kfp>=2",
        )
    return parameter_type


def _type_name(value: Any) -> str:
    return type(value).__name__


def _untyped_numbers(value: Any) -> Any:
    """Integral doubles inside containers become ints (what Go protojson gives user code)."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
        return int(value)
    if isinstance(value, list):
        return [_untyped_numbers(v) for v in value]
    if isinstance(value, tuple):
        return [_untyped_numbers(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _untyped_numbers(v) for k, v in value.items()}
    return value


def _container(value: Any, want: type, parameter_type: str, path: str) -> Any:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SpecError(
                path,
                f"{parameter_type} value is a string that is not JSON ({exc.msg} at char {exc.pos})",
                fix=f"pass a JSON {'array' if want is list else 'object'}",
            ) from None
    if isinstance(value, tuple) and want is list:
        value = list(value)
    if not isinstance(value, want):
        raise SpecError(
            path,
            f"expected a {'list' if want is list else 'dict'} for {parameter_type} "
            f"(got {_type_name(value)} {value!r})",
        )
    return _untyped_numbers(value)


def cast_parameter(value: Any, parameter_type: str | int, path: str) -> Any:
    """Cast one parameter value to the Python type its ``parameterType`` declares.

    - NUMBER_INTEGER: ``int``; an integral float (``5.0``) becomes ``5``; ``5.5``, bools,
      strings and values beyond +/-(2**53-1) raise SpecError.
    - NUMBER_DOUBLE: ``float`` (ints accepted).
    - STRING: ``str`` only; BOOLEAN: ``bool`` only.
    - LIST / STRUCT / TASK_FINAL_STATUS / TASK_CONFIG: a list or dict, or a JSON string of one;
      integral doubles nested inside become ints.
    - ``None`` stays ``None`` (a null value, treated as absent by IfPresent).

    Raises SpecError at ``path`` naming the expected type and the value received.
    """
    ptype = normalize_type(parameter_type, path)
    if value is None:
        return None
    if ptype == "NUMBER_INTEGER":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, f"expected an integer (got {_type_name(value)} {value!r})")
        if isinstance(value, float):
            if not value.is_integer():
                raise SpecError(
                    path,
                    f"expected an integer (got {value!r}, which has a fractional part)",
                    fix="pass a whole number or declare the input as float",
                )
            value = int(value)
        if abs(value) > MAX_SAFE_INTEGER:
            raise SpecError(
                path,
                f"integer {value} is outside +/-(2**53-1); KFP stores integers as doubles",
            )
        return value
    if ptype == "NUMBER_DOUBLE":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, f"expected a number (got {_type_name(value)} {value!r})")
        return float(value)
    if ptype == "STRING":
        if not isinstance(value, str):
            raise SpecError(path, f"expected a string (got {_type_name(value)} {value!r})")
        return value
    if ptype == "BOOLEAN":
        if not isinstance(value, bool):
            raise SpecError(path, f"expected true or false (got {_type_name(value)} {value!r})")
        return value
    if ptype == "LIST":
        return _container(value, list, ptype, path)
    return _container(value, dict, ptype, path)


def parse_cli_value(text: str, parameter_type: str | int, path: str) -> Any:
    """Parse the VALUE of a command-line ``-p NAME=VALUE`` for a parameter of ``parameter_type``.

    STRING: the text as is. NUMBER_INTEGER: base-10 integer, or an integral number such as
    ``5.0``. NUMBER_DOUBLE: a float. BOOLEAN: ``true``/``false`` (also the Go ``ParseBool``
    forms ``1 t T TRUE True 0 f F FALSE False``). LIST / STRUCT: JSON array / object.
    Raises SpecError at ``path`` with the fix to apply.
    """
    ptype = normalize_type(parameter_type, path)
    if ptype == "STRING":
        return text
    stripped = text.strip()
    if ptype == "NUMBER_INTEGER":
        if _BASE10_INT.match(stripped):
            return cast_parameter(int(stripped), ptype, path)
        try:
            number = float(stripped)
        except ValueError:
            raise SpecError(path, f"expected an integer (got {text!r})", fix="pass e.g. -p NAME=5") from None
        return cast_parameter(number, ptype, path)
    if ptype == "NUMBER_DOUBLE":
        try:
            return float(stripped)
        except ValueError:
            raise SpecError(path, f"expected a number (got {text!r})", fix="pass e.g. -p NAME=0.5") from None
    if ptype == "BOOLEAN":
        if stripped in _GO_TRUE:
            return True
        if stripped in _GO_FALSE:
            return False
        raise SpecError(path, f"expected true or false (got {text!r})", fix="pass -p NAME=true or -p NAME=false")
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        want = "array" if ptype == "LIST" else "object"
        raise SpecError(
            path,
            f"{ptype} value is not valid JSON ({exc.msg} at char {exc.pos})",
            fix=f"""pass a JSON {want}, e.g. -p NAME='{"[1, 2]" if want == "array" else '{"a": 1}'}'""",
        ) from None
    return cast_parameter(value, ptype, path)


def _format_float(value: float) -> str:
    """Go ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, no exponent, no ``.0``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_value(value: Any) -> str:
    """Format a parameter value the way the backend substitutes it into a command line.

    ``str`` as is; numbers without exponent and without a trailing ``.0`` (``5``, ``0.25``);
    ``true``/``false``; lists and dicts as compact JSON (integral doubles inside written as
    ints, non-ASCII kept); ``None`` as ``""``. Follows ``driver/util.go`` ``pbValueToString``.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _format_float(value)
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_untyped_numbers(value), separators=(",", ":"), ensure_ascii=False)
    raise TypeError(f"cannot format {type(value).__name__} {value!r} as a parameter value")


def read_output_parameter(text: str, parameter_type: str | int, path: str) -> Any:
    """Convert the text of an output parameter file into a value, as ``metadata/converter.go`` does.

    STRING: raw text, not trimmed. NUMBER_INTEGER: trimmed, base-10 integer (``5.0`` is
    rejected). NUMBER_DOUBLE: trimmed float. BOOLEAN: trimmed Go ``ParseBool`` forms.
    LIST / STRUCT: JSON that must be an array / object. Raises SpecError at ``path``.
    """
    ptype = normalize_type(parameter_type, path)
    if ptype == "STRING":
        return text
    stripped = text.strip()
    if ptype == "NUMBER_INTEGER":
        if not _BASE10_INT.match(stripped):
            raise SpecError(
                path,
                f"output is not a base-10 integer (got {_short(text)})",
                fix="write the integer without a decimal point, e.g. str(int(value))",
            )
        value = int(stripped)
        if not -(2**63) <= value < 2**63:
            raise SpecError(path, f"output integer {stripped} does not fit in 64 bits")
        return value
    if ptype == "NUMBER_DOUBLE":
        try:
            if "_" in stripped:
                raise ValueError
            return float(stripped)
        except ValueError:
            raise SpecError(path, f"output is not a number (got {_short(text)})") from None
    if ptype == "BOOLEAN":
        if stripped in _GO_TRUE:
            return True
        if stripped in _GO_FALSE:
            return False
        raise SpecError(path, f"output is not a boolean (got {_short(text)})", fix="write true or false")
    want = list if ptype == "LIST" else dict
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise SpecError(path, f"output is not valid JSON ({exc.msg} at char {exc.pos})") from None
    if not isinstance(value, want):
        raise SpecError(
            path,
            f"output JSON is a {_type_name(value)}, but {ptype} needs a JSON "
            f"{'array' if want is list else 'object'}",
        )
    return _untyped_numbers(value)


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def zero_value(parameter_type: str | int) -> Any:
    """Zero value of a type: 0, 0.0, "", False, [], {} (structs, final status and config: {})."""
    ptype = normalize_type(parameter_type)
    return {
        "NUMBER_INTEGER": 0,
        "NUMBER_DOUBLE": 0.0,
        "STRING": "",
        "BOOLEAN": False,
        "LIST": [],
    }.get(ptype, {})


def resolve_input_definitions(
    input_defs: dict | None,
    given: dict,
    path: str = "root.inputDefinitions",
    *,
    fill_zero: bool = False,
) -> dict:
    """Compute the parameter values of a component (or the pipeline root) from its inputs.

    ``input_defs`` is a ComponentSpec ``inputDefinitions`` mapping (``{"parameters": {name:
    {parameterType, defaultValue?, isOptional?, literals?}}}``); ``given`` maps names to values
    (already Python values; use :func:`parse_cli_value` first for text). For each declared
    parameter: a given non-null value is cast; else ``defaultValue`` is cast; else an optional
    parameter is left out (or set to its zero value when ``fill_zero``, section 1.1 of the IR
    notes); else SpecError ``<path>.parameters['n']: required parameter has no value``.
    Given names that are not declared raise SpecError listing the declared ones. A declared
    ``literals`` list restricts the value to one of its entries.
    Returns ``{name: value}`` with declared names only.
    """
    params = (input_defs or {}).get("parameters") or {}
    known = ", ".join(sorted(params)) or "none"
    for name in given:
        if name not in params:
            near = difflib.get_close_matches(name, list(params), n=1)
            raise SpecError(
                f"{path}.parameters['{name}']",
                f"unknown parameter (known: {known})",
                fix=f"did you mean {near[0]!r}?" if near else "check the spelling with the pipeline's inputDefinitions",
            )
    resolved: dict = {}
    for name, spec in params.items():
        ppath = f"{path}.parameters['{name}']"
        ptype = spec.get("parameterType", "PARAMETER_TYPE_ENUM_UNSPECIFIED")
        if given.get(name) is not None:
            value = cast_parameter(given[name], ptype, ppath)
        elif "defaultValue" in spec and spec["defaultValue"] is not None:
            value = cast_parameter(spec["defaultValue"], ptype, f"{ppath}.defaultValue")
        elif spec.get("isOptional"):
            if fill_zero:
                resolved[name] = zero_value(ptype)
            continue
        else:
            raise SpecError(ppath, "required parameter has no value", fix=f"pass -p {name}=VALUE")
        literals = spec.get("literals")
        if literals:
            allowed = [cast_parameter(v, ptype, f"{ppath}.literals") for v in literals]
            if value not in allowed:
                raise SpecError(
                    ppath,
                    f"value {value!r} is not one of the allowed literals {allowed!r}",
                    fix=f"pass one of: {', '.join(format_value(v) for v in allowed)}",
                )
        resolved[name] = value
    return resolved
