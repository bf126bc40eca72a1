"""Say errors in the words of the interface the user called.

Errors raised below the API name the inputs as the command line spells them (``-p n_rows``,
``--executor docker``, ``--config``): that is what most users type. A caller of the Python API
passed ``params={...}``, ``executor=...``, ``config=...`` instead, so :func:`to_python_api`
rewrites an error's field path, message and fix into those argument names before
:func:`localflow.run` raises it. The CLI raises errors as they are.
"""
from __future__ import annotations

import re

from localflow.errors import AlreadyExists, LocalflowError, SpecError

__all__ = ["to_python_api", "python_text", "python_path"]

_NAME = r"[A-Za-z_][\w.-]*"
_P_ASSIGN = re.compile(rf"-p ({_NAME})=('[^']*'|\S+?)(?=[)\s,;]|$)")
_P_PATH = re.compile(rf"-p ({_NAME})")
_FLAG_VALUE = {"--executor": "executor", "--config": "config", "--workspace": "workspace", "--name": "run_name"}
_PATHS = {"--executor": "executor", "--config": "config", "--workspace": "workspace", "--name": "run_name",
          "-c": "container"}


def _py_value(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    return {"true": "True", "false": "False"}.get(text, text)


def python_text(text: str) -> str:
    """``text`` with command-line flags replaced by the Python API's arguments:
    ``-p n=5`` -> ``params={'n': 5}``, ``--executor docker`` -> ``executor="docker"``, ``--config`` ->
    ``config=``, ``--workspace`` -> ``workspace=``, ``--no-cache`` -> ``cache=False``."""
    if not text:
        return text
    text = _P_ASSIGN.sub(lambda m: f"params={{{m.group(1)!r}: {_py_value(m.group(2))}}}", text)
    text = _P_PATH.sub(lambda m: f"params[{m.group(1)!r}]", text)
    text = text.replace("--no-cache", "cache=False")
    for flag, arg in _FLAG_VALUE.items():
        text = re.sub(rf"{flag} (?!or\b|and\b)([\w./-]+)", lambda m, a=arg: f'{a}="{m.group(1)}"', text)
        text = re.sub(rf"{flag}\b", f"{arg}=", text)
    return text


def python_path(path: str) -> str:
    """A field path that names a command-line flag, as the Python argument (``-p n`` ->
    ``params['n']``, ``--config`` -> ``config``); other paths unchanged."""
    if not path:
        return path
    m = _P_PATH.fullmatch(path)
    if m:
        return f"params[{m.group(1)!r}]"
    return _PATHS.get(path, path)


def to_python_api(exc: LocalflowError) -> LocalflowError:
    """Rewrite ``exc`` in place for a caller of the Python API and return it (its type, exit code
    and attributes stay). An :class:`AlreadyExists` for a job of an earlier run gets its fix in API
    terms (``run_name=``)."""
    fix = exc.fix
    if isinstance(exc, AlreadyExists) and getattr(exc, "job_kind", None):
        ns = "" if exc.job_namespace == "default" else f" -n {exc.job_namespace}"
        fix = (f"run it under a new name (run_name={exc.job_name + '-2'!r}) or delete the old one first "
               f"(`localflow delete {exc.job_kind.lower()} {exc.job_name}{ns}`; its run records stay)")
    else:
        fix = python_text(fix) if fix else fix
    if isinstance(exc, SpecError):
        path = python_path(exc.path)
        body = exc.message[len(exc.path) + 2:] if exc.path and exc.message.startswith(f"{exc.path}: ") else exc.message
        exc.path = path
        exc.message = f"{path}: {python_text(body)}" if path else python_text(body)
    else:
        exc.message = python_text(exc.message)
    exc.fix = fix
    exc.args = (exc.message + (f" ({fix})" if fix else ""),) + tuple(exc.args[1:])
    return exc
