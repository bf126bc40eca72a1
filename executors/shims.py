"""The per-Pod shim directory: what bare program names mean inside a subprocess container.

A container's ``PATH`` starts with ``<pod dir>/bin``, which holds:

- ``python`` and ``python3``: the image's interpreter (``images[...].python`` or localflow's
  own). A symlink, except for a virtualenv's interpreter: CPython finds a venv by the
  ``pyvenv.cfg`` beside the path it was started by, so a symlink elsewhere would run the base
  interpreter without the venv's packages; then it is a two-line script (:data:`_SCRIPT`) that
  :func:`shim_target` recognises, so the warm path still knows which interpreter it means;
- ``sh``: the image's shell (``images[...].shell``, e.g. ``/bin/busybox``, which dispatches on
  ``argv[0]``), only when the image map names one.
"""
from __future__ import annotations

import os
import shlex

__all__ = ["shim_dir", "shim_target"]

_SCRIPT = '#!/bin/sh\nexec {python} "$@"\n'
_PREFIX, _SUFFIX = _SCRIPT.split("{python}")


def _is_venv_python(python: str) -> bool:
    return os.path.exists(os.path.join(os.path.dirname(os.path.abspath(python)), os.pardir, "pyvenv.cfg"))


def shim_dir(base: str, python: str, shell: str | None = None) -> str:
    """Create (once) and return ``<base>/bin`` with ``python``/``python3`` meaning ``python`` and,
    when ``shell`` is given, ``sh`` meaning ``shell``."""
    shim = os.path.join(base, "bin")
    os.makedirs(shim, exist_ok=True)
    entries = {"python": python, "python3": python}
    if shell:
        entries["sh"] = shell
    for name, target in entries.items():
        link = os.path.join(shim, name)
        if os.path.lexists(link):
            continue
        if name.startswith("python") and _is_venv_python(target):
            with open(link, "w") as f:
                f.write(_SCRIPT.format(python=shlex.quote(target)))
            os.chmod(link, 0o755)
        else:
            os.symlink(target, link)
    return shim


def shim_target(path: str) -> str | None:
    """The interpreter a ``python`` shim script written by :func:`shim_dir` runs, or None when
    ``path`` is anything else (read at most 4 KiB)."""
    try:
        with open(path, "rb") as f:
            text = f.read(4096).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not (text.startswith(_PREFIX) and text.endswith(_SUFFIX)):
        return None
    quoted = text[len(_PREFIX):-len(_SUFFIX)]
    try:
        words = shlex.split(quoted)
    except ValueError:
        return None
    return words[0] if len(words) == 1 and shlex.quote(words[0]) == quoted else None
