"""How a Pod's containers run on this machine (shipped as ``localflow.executors``).

An executor turns a resolved :class:`PodSpec` into running processes or containers and reports
each container's exit as a :class:`ContainerResult`. It knows nothing of Kubernetes objects,
pipelines or training jobs: the scheduler (``localflow.scheduler``) translates a Pod manifest into
a ``PodSpec`` and writes the Pod's status from the results. Executors import only
``localflow.errors`` and this package; never ``localflow.fakes`` or the CLI.

Adding an executor is one module defining an :class:`Executor` subclass and registering it in
:data:`EXECUTORS` by name.
"""
from __future__ import annotations

from .base import (
    ContainerResult,
    ContainerSpec,
    DrivenPod,
    Executor,
    ImageMapping,
    Mount,
    PodSpec,
    Resources,
    RunningPod,
)

__all__ = [
    "ContainerResult",
    "ContainerSpec",
    "Executor",
    "ImageMapping",
    "Mount",
    "PodSpec",
    "Resources",
    "RunningPod",
    "DrivenPod",
    "get_executor",
    "EXECUTOR_NAMES",
]

EXECUTOR_NAMES = ("subprocess", "docker")


def get_executor(name: str, **options) -> Executor:
    """Return a new executor by name (``subprocess`` or ``docker``).

    Raises :class:`localflow.errors.SpecError` for an unknown name and
    :class:`localflow.errors.ExecutorError` when the executor cannot work here (no Docker engine).
    """
    from localflow.errors import SpecError

    if name == "subprocess":
        from .subprocess import SubprocessExecutor

        return SubprocessExecutor(**options)
    if name == "docker":
        from .docker import DockerExecutor

        return DockerExecutor(**options)
    raise SpecError("--executor", f"unknown executor {name!r}", fix=f"use one of: {', '.join(EXECUTOR_NAMES)}")
