"""Port allocation for loopback addressing: every replica of a job listens on its own port.

On the subprocess executor every Pod is 127.0.0.1, so the operator's fixed ports (2222 for every
TF task, 23456 for every PyTorch replica) would collide. A :class:`PortAllocator` hands out
distinct free ports; one allocator per job (or per controller) guarantees no two replicas of the
job get the same port even if the kernel would hand a just-released port out twice.
"""
from __future__ import annotations

import socket
import threading
from typing import Callable, Iterable

__all__ = ["PortAllocator", "PortPlan", "kernel_free_port", "PORTS_ANNOTATION", "saved_ports"]

PORTS_ANNOTATION = "localflow.dev/ports"  # the ports a job's plan handed out, in order: "31001,31002"


def kernel_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortAllocator:
    """Hands out distinct TCP ports.

    ``source``: a zero-argument callable returning a candidate port (default
    :func:`kernel_free_port`; tests pass e.g. ``iter(range(31000, 31100)).__next__`` for
    deterministic ports). ``reserved``: ports never handed out. Thread-safe. Raises
    ``RuntimeError`` when the source keeps returning ports already given (after 1000 tries).
    """

    def __init__(self, source: Callable[[], int] | None = None, reserved: Iterable[int] = ()):
        self._source = source or kernel_free_port
        self._given: set[int] = set(reserved)
        self._lock = threading.Lock()

    def allocate(self) -> int:
        """A port not handed out before by this allocator."""
        with self._lock:
            for _ in range(1000):
                port = int(self._source())
                if port not in self._given:
                    self._given.add(port)
                    return port
        raise RuntimeError("no free TCP port found after 1000 tries")

    def release(self, port: int) -> None:
        """Allow ``port`` to be handed out again (after its job finished)."""
        with self._lock:
            self._given.discard(port)

    def reserve(self, port: int) -> None:
        """Never hand out ``port`` (it is in use by a job planned elsewhere, e.g. by an earlier manager)."""
        with self._lock:
            self._given.add(int(port))

    __call__ = allocate


def saved_ports(obj: dict) -> list[int]:
    """The ports recorded on ``obj`` under :data:`PORTS_ANNOTATION` (empty if none or unreadable)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(PORTS_ANNOTATION) or ""
    try:
        return [int(p) for p in raw.split(",") if p.strip()]
    except ValueError:
        return []


class PortPlan:
    """The ports of one job's Pod plan, so that planning again gives the same addresses.

    Planning (``plan_endpoints``, ``trainjob_plan``) asks for ports in a fixed order; a
    ``PortPlan`` hands out ``saved`` (the ports recorded on the job, :func:`saved_ports`) in that
    order, reserving them in ``base``, then new ones from ``base``. ``used`` lists every port
    handed out; the controller records it on the job (:data:`PORTS_ANNOTATION`), so a restarted
    controller rebuilds a replica with the address its peers were told (nothing only in memory).
    """

    def __init__(self, base: PortAllocator, saved: Iterable[int] = ()):
        self.base = base
        self._saved = list(saved)
        self.used: list[int] = []
        for p in self._saved:
            base.reserve(p)

    def allocate(self) -> int:
        """The next saved port, else a new one from ``base``."""
        port = self._saved.pop(0) if self._saved else self.base.allocate()
        self.used.append(port)
        return port

    def annotation(self) -> str:
        """``used`` as the :data:`PORTS_ANNOTATION` value."""
        return ",".join(str(p) for p in self.used)

    __call__ = allocate
