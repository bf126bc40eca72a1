"""localflow: Kubeflow on one machine.

``localflow.run(spec)`` runs a compiled Kubeflow Pipelines IR (or a kfp pipeline function), or a
Kubeflow training job, here and now with the cluster's semantics, and returns a :class:`Run`.
See :mod:`localflow.api` for the runtime and :mod:`localflow.cli` for the command line.
"""
from __future__ import annotations

import os as _os
import signal as _signal
import sys as _sys

__version__ = "0.1.0"


def _interrupted_while_starting(signum, frame):  # pragma: no cover - runs in the signal's moment
    """Ctrl-C (or SIGTERM) while the ``localflow`` command is still importing: nothing has started,
    so one line and exit 130, not a traceback from the middle of an import (the CLI installs its own
    handlers as soon as it is imported: :func:`localflow.cli.main`)."""
    _os.write(2, b"error: interrupted while starting; nothing was run\n")
    _os._exit(130)


def _is_cli() -> bool:
    """Whether this process is the ``localflow`` command (console script or ``python -m localflow``),
    judged from the interpreter's own command line: a library import leaves signals alone."""
    argv = list(getattr(_sys, "orig_argv", None) or _sys.argv)
    scripts = [a for a in argv[1:] if not a.startswith("-")][:1] or [""]
    return _os.path.basename(scripts[0]) == "localflow" or any(
        a == "-m" and b == "localflow" for a, b in zip(argv, argv[1:]))


if _is_cli() and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
    _signal.signal(_signal.SIGINT, _interrupted_while_starting)
    _signal.signal(_signal.SIGTERM, _interrupted_while_starting)

from localflow import kinds as _kinds  # noqa: E402,F401  (registers every kind and its admission hooks in the store)
from localflow.api import Run, Runtime, open_runtime, run  # noqa: E402
from localflow.errors import (  # noqa: E402
    ExecutorError,
    LocalflowError,
    NotFound,
    RunFailed,
    SpecError,
    Unschedulable,
)

__all__ = [
    "run",
    "Run",
    "Runtime",
    "open_runtime",
    "LocalflowError",
    "SpecError",
    "NotFound",
    "RunFailed",
    "ExecutorError",
    "Unschedulable",
    "__version__",
]
