"""localflow: Kubeflow on one machine.

``localflow.run(spec)`` runs a compiled Kubeflow Pipelines IR (or a kfp pipeline function), or a
Kubeflow training job, here and now with the cluster's semantics, and returns a :class:`Run`.
See :mod:`localflow.api` for the runtime and :mod:`localflow.cli` for the command line.
"""
from __future__ import annotations

__version__ = "0.1.0"

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
