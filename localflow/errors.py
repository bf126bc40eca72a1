"""Errors raised by localflow, each carrying what failed, where, and how to fix it.

Every module may import this one; it imports nothing of localflow. The CLI turns a
:class:`LocalflowError` into one line on stderr and its :attr:`exit_code` (2 for a bad spec or
bad input, 1 for a run that failed), never a traceback.
"""
from __future__ import annotations


class LocalflowError(Exception):
    """Base of every error localflow raises on purpose.

    ``str(err)`` is the whole message shown to the user. ``exit_code`` is the CLI's exit status.
    """

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = message
        self.fix = fix
        super().__init__(message + (f" ({fix})" if fix else ""))


class SpecError(LocalflowError):
    """A spec, parameter or config value is invalid.

    ``path`` is the field path in the document, written as Kubernetes writes it
    (``PyTorchJob.spec.pytorchReplicaSpecs.Worker.replicas``,
    ``root.inputDefinitions.parameters['n']``); the message reads ``<path>: <problem> (<fix>)``.
    Exit code 2.
    """

    exit_code = 2

    def __init__(self, path: str, message: str, *, fix: str | None = None):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message, fix=fix)


class NotFound(LocalflowError):
    """A named object (run, Pod, artifact, image, file) does not exist. Exit code 1."""


class AlreadyExists(LocalflowError):
    """An object with the same kind, namespace and name exists already. Exit code 1."""


class Conflict(LocalflowError):
    """An update was made against a stale ``metadata.resourceVersion``. Exit code 1."""


class Gone(LocalflowError):
    """A watch asked for a resourceVersion the compacted change log no longer holds (HTTP 410): relist."""


class ExecutorError(LocalflowError):
    """An executor cannot run a container at all (no such executable, no Docker engine, no image).

    Raised before a process starts; the message names the image or engine and what to add
    (a ``localflow.yaml`` image mapping, ``--executor subprocess``, ``docker load``).
    """


class Unschedulable(SpecError):
    """A Pod requests more cpu or memory than the whole machine has; it could never start."""


class RunFailed(LocalflowError):
    """A run ended in FAILED or CANCELED state. Raised by callers that asked for success. Exit 1."""

    def __init__(self, message: str, *, run=None):
        self.run = run
        super().__init__(message)
