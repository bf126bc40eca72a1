"""CEL for KFP v2: task trigger conditions and ``parameterExpressionSelector`` (IR notes 4, 10.1).

Expressions are parsed and evaluated by cel-python (``celpy``), a real CEL implementation;
nothing is ever handed to Python ``eval``. ``celpy`` is imported on first use and each
expression is compiled once per process (``functools.lru_cache``).

Numbers: the backend hands conditions ``google.protobuf.Value`` numbers, which are all doubles,
and the compiler writes ``int(...)``/``double(...)`` around channels to compare them as it
intends (``int(inputs.parameter_values['x']) > 3``, ``x > double(3)``). So every number in the
parameter values (int or float, at any depth) enters CEL as a double, exactly as on a cluster.

Follows kubeflow/pipelines ``sdk/python/kfp/compiler/pipeline_spec_builder.py`` (how
conditions are written) and ``backend/src/v2/driver/{driver.go,resolve.go}`` (evaluation of
``triggerPolicy.condition`` and ``parameterExpressionSelector`` with cel-go).
"""
from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any

from localflow.errors import SpecError

__all__ = ["evaluate_condition", "apply_selector", "check_syntax", "to_cel", "from_cel"]

_lock = threading.Lock()


def _celpy():
    import celpy  # noqa: PLC0415 - lazy: the import costs ~70 ms

    return celpy


def to_cel(value: Any, *, numbers_as_double: bool = True):
    """Python JSON-like value -> celpy value; numbers become doubles unless told otherwise."""
    from celpy import celtypes  # noqa: PLC0415

    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, (int, float)):
        if numbers_as_double or isinstance(value, float):
            return celtypes.DoubleType(float(value))
        return celtypes.IntType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, (list, tuple)):
        return celtypes.ListType([to_cel(v, numbers_as_double=numbers_as_double) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType(
            {celtypes.StringType(str(k)): to_cel(v, numbers_as_double=numbers_as_double) for k, v in value.items()}
        )
    raise TypeError(f"cannot pass {type(value).__name__} {value!r} to CEL")


def from_cel(value: Any) -> Any:
    """celpy value -> plain Python (bool, int, float, str, bytes, list, dict, None)."""
    from celpy import celtypes  # noqa: PLC0415

    if value is None or isinstance(value, celtypes.NullType):
        return None
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, (celtypes.IntType, celtypes.UintType)):
        return int(value)
    if isinstance(value, celtypes.DoubleType):
        return float(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    if isinstance(value, celtypes.BytesType):
        return bytes(value)
    if isinstance(value, (list, celtypes.ListType)):
        return [from_cel(v) for v in value]
    if isinstance(value, (dict, celtypes.MapType)):
        return {from_cel(k): from_cel(v) for k, v in value.items()}
    return value


class _ParseJsonError(Exception):
    """Raised by the CEL ``parseJson`` function; celpy lets it through to :func:`_run`."""


def _parse_json(arg):
    """CEL function ``parseJson(string) -> dyn`` registered for selectors."""
    from celpy import celtypes  # noqa: PLC0415

    if not isinstance(arg, celtypes.StringType):
        raise _ParseJsonError(f"parseJson expects a string, got {_cel_type_name(type(arg).__name__)}")
    try:
        decoded = json.loads(str(arg))
    except ValueError as exc:
        raise _ParseJsonError(f"parseJson: string_value is not JSON ({exc.msg} at char {exc.pos})") from None
    return to_cel(decoded, numbers_as_double=False)


def _cel_type_name(python_name: str) -> str:
    """``DoubleType`` -> ``double`` (CEL's own type names in messages)."""
    name = python_name[:-4] if python_name.endswith("Type") else python_name
    return {"Map": "map", "List": "list"}.get(name, name.lower())


@functools.lru_cache(maxsize=512)
def _program(expr: str, with_parse_json: bool):
    """Compile ``expr`` once; returns a celpy Runner, or raises the celpy parse error."""
    celpy = _celpy()
    with _lock:  # Environment.program() stores the runner on the environment
        env = celpy.Environment()
        ast = env.compile(expr)
        return env.program(ast, functions={"parseJson": _parse_json} if with_parse_json else None)


def _compile(expr: str, with_parse_json: bool, path: str, what: str):
    celpy = _celpy()
    if not isinstance(expr, str) or not expr.strip():
        raise SpecError(path, f"{what} is empty", fix="recompile the pipeline with kfp 2.x")
    try:
        return _program(expr, with_parse_json)
    except celpy.CELParseError as exc:
        where = f" at line {exc.line}, column {exc.column}" if exc.line is not None else ""
        first = str(exc.args[0]).splitlines()[0] if exc.args else "syntax error"
        raise SpecError(path, f"{what} {expr!r} is not valid CEL{where}: {first}") from None


def _run(program, activation: dict, expr: str, path: str, what: str):
    from celpy.evaluation import CELEvalError  # noqa: PLC0415

    try:
        result = program.evaluate(activation)
    except CELEvalError as exc:
        result = exc
    except _ParseJsonError as exc:
        raise SpecError(path, f"{what} {expr!r} failed: {exc}") from None
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as exc:  # celpy leaks some
        raise SpecError(path, f"{what} {expr!r} failed: {exc}") from None
    if isinstance(result, CELEvalError):
        raise SpecError(path, f"{what} {expr!r} failed: {_reason(result)}") from None
    return result


_OPERATORS = {
    "relation_eq": "==", "relation_ne": "!=", "relation_lt": "<", "relation_le": "<=",
    "relation_gt": ">", "relation_ge": ">=", "addition_add": "+", "addition_sub": "-",
    "multiplication_mul": "*", "multiplication_div": "/", "multiplication_mod": "%",
    "unary_not": "!", "unary_neg": "-",
}
_OVERLOAD = re.compile(r"found no matching overload for (?:Token\('RULE', '(?P<rule>\w+)'\)|(?P<fn>\S+)) applied to '\((?P<types>.*)\)'")
_CLASS = re.compile(r"<class '[\w.]*?(\w+)'>")


def _reason(err) -> str:
    args = err.args
    m = _OVERLOAD.search(str(args[0])) if args else None
    if m:
        op = _OPERATORS.get(m["rule"] or "", m["rule"] or m["fn"])
        types = [_cel_type_name(t) for t in _CLASS.findall(m["types"])]
        if len(types) == 1:
            return f"type mismatch: no {op} for {types[0]}"
        return f"type mismatch: no {op} between {' and '.join(types)}"
    if len(args) >= 3 and args[1] is KeyError:
        keys = ", ".join(repr(str(k)) for k in args[2]) if isinstance(args[2], tuple) else repr(args[2])
        return f"no such key {keys}"
    if len(args) >= 3 and isinstance(args[1], type) and args[2]:
        detail = args[2][0] if isinstance(args[2], tuple) else args[2]
        return f"{args[0]} ({detail})"
    return str(args[0]) if args else repr(err)


def check_syntax(expr: str, path: str, what: str = "condition") -> None:
    """Compile ``expr`` without evaluating it (pre-flight check of a spec): raises SpecError at
    ``path`` for an empty expression or a CEL syntax error. ``parseJson`` is allowed when
    ``what`` is ``"selector"``."""
    _compile(expr, what == "selector", path, what)


def evaluate_condition(expr: str, parameter_values: dict, path: str) -> bool:
    """Evaluate a ``triggerPolicy.condition`` over the group task's parameter values.

    ``parameter_values`` is the task's resolved inputs (``{'pipelinechannel--x': 5, ...}``),
    visible to CEL as ``inputs.parameter_values[...]``; numbers enter as doubles (see module
    doc). Returns the boolean result. Raises SpecError at ``path`` (e.g.
    ``root.dag.tasks['condition-1'].triggerPolicy.condition``) naming the expression and the
    reason for a syntax error, a missing key, a type mismatch or a non-boolean result.
    """
    program = _compile(expr, False, path, "condition")
    activation = {"inputs": to_cel({"parameter_values": parameter_values})}
    result = from_cel(_run(program, activation, expr, path, "condition"))
    if not isinstance(result, bool):
        raise SpecError(
            path,
            f"condition {expr!r} evaluated to {type(result).__name__} {result!r}, not a boolean",
            fix="a condition must compare values, e.g. int(x) > 3",
        )
    return result


def apply_selector(expr: str, value: Any, path: str) -> Any:
    """Apply a ``parameterExpressionSelector`` such as ``parseJson(string_value)["a"]`` or
    ``parseJson(string_value)[0]`` to a resolved input value.

    ``string_value`` is ``value`` itself when it is a string, else its JSON text. JSON numbers
    keep their kind (``1`` -> int, ``1.5`` -> float); the caller casts the result to the
    declared parameter type. Raises SpecError at ``path`` (the task input's
    ``parameterExpressionSelector``) for a bad expression or a missing key/index.
    """
    string_value = value if isinstance(value, str) else json.dumps(value)
    program = _compile(expr, True, path, "selector")
    from celpy import celtypes  # noqa: PLC0415

    activation = {"string_value": celtypes.StringType(string_value)}
    return from_cel(_run(program, activation, expr, path, "selector"))
