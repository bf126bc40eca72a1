"""Errors raised by localflow, each carrying what failed, where, and how to fix it.

Every module may import this one; it imports nothing of localflow. The CLI turns a
:class:`LocalflowError` into one line on stderr and its :attr:`exit_code` (2 for a bad spec or
bad input, 1 for a run that failed), never a traceback.
"""
from __future__ import annotations

import re

# C0 and C1 control characters, DEL, and the Unicode format characters a terminal acts on (bidi
# overrides and isolates, line/paragraph separators): a spec's strings must not move the cursor,
# recolor the terminal or reorder what the user reads.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ``\\u202e``).

    Idempotent (its output holds no control character); backslashes are kept as they are. Every
    :class:`LocalflowError` message goes through it, so one error is one printable line.
    """
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or (
        f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), str(text))


class LocalflowError(Exception):
    """Base of every error localflow raises on purpose.

    ``str(err)`` is the whole message shown to the user. ``exit_code`` is the CLI's exit status.
    """

    exit_code = 1

    def __init__(self, message: str, *, fix: str | None = None):
        self.message = escape(message)
        self.fix = escape(fix) if fix else fix
        super().__init__(self.message + (f" ({self.fix})" if self.fix else ""))


class SpecError(LocalflowError):
    """A spec, parameter or config value is invalid.

    ``path`` is the field path in the document, written as Kubernetes writes it
    (``PyTorchJob.spec.pytorchReplicaSpecs.Worker.replicas``,
    ``root.inputDefinitions.parameters['n']``); the message reads ``<path>: <problem> (<fix>)``.
    Exit code 2.
    """

    exit_code = 2

    def __init__(self, path: str, message: str, *, fix: str | None = None):
        self.path = escape(path)
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
