"""Where each replica of a v1 job listens: the operator's service names, rewritten for this machine.

The operator gives every replica a headless service ``<job>-<type>-<index>`` and every replica of
a type the same named container port (kubeflow/training-operator ``pkg/controller.v1/common/service.go``,
``GenGeneralName``). Two addressing modes map that onto one machine:

- ``"loopback"`` (subprocess executor): every host is ``127.0.0.1`` and every replica gets its
  own free port from a :class:`~localflow.training.ports.PortAllocator`, so no two replicas of a
  job can collide;
- ``"dns"`` (docker executor): the operator's host names ``<job>-<type>-<index>`` (containers
  of one job share a network where these resolve) with the type's named port (default 2222,
  23456, ...), exactly as in a cluster.
"""
from __future__ import annotations

from dataclasses import dataclass

from localflow.errors import SpecError
from localflow.training.defaults import replica_specs
from localflow.training.kinds import KINDS, TrainingKind
from localflow.training.ports import PortAllocator

__all__ = ["Endpoint", "ADDRESSING_MODES", "LOOPBACK_HOST", "replica_name", "type_port", "plan_endpoints",
           "ordered_types"]

ADDRESSING_MODES = ("loopback", "dns")
LOOPBACK_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Endpoint:
    """``host`` (name or IP) and TCP ``port`` of one replica; ``str()`` gives ``host:port``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def replica_name(job_name: str, rtype: str, index: int) -> str:
    """``<job>-<lower(rtype)>-<index>`` with ``/`` replaced by ``-`` (the Pod and service name)."""
    return f"{job_name}-{rtype.lower()}-{index}".replace("/", "-")


def type_port(info: TrainingKind, rspec: dict) -> int:
    """The containerPort named ``info.port_name`` on the default-named container, else the kind default."""
    for c in (((rspec or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
        if c.get("name") == info.container:
            for p in c.get("ports") or []:
                if p.get("name") == info.port_name and p.get("containerPort"):
                    return int(p["containerPort"])
    return info.port


def ordered_types(job: dict) -> list[str]:
    """Replica types present in ``job``, in the kind's canonical order."""
    info = KINDS[job["kind"]]
    specs = replica_specs(job)
    return [t for t in info.replica_types if t in specs]


def plan_endpoints(job: dict, addressing: str, ports: PortAllocator | None = None) -> dict[tuple[str, int], Endpoint]:
    """``{(replica type, index): Endpoint}`` for every replica of a defaulted v1 ``job``.

    ``addressing`` is ``"loopback"`` (needs ``ports``) or ``"dns"``. Raises :class:`SpecError`
    for an unknown mode.
    """
    if addressing not in ADDRESSING_MODES:
        raise SpecError("addressing", f"unknown addressing mode {addressing!r}",
                        fix="use " + " or ".join(ADDRESSING_MODES))
    info = KINDS[job["kind"]]
    name = job["metadata"]["name"]
    specs = replica_specs(job)
    ports = ports or PortAllocator()
    out: dict[tuple[str, int], Endpoint] = {}
    for rtype in ordered_types(job):
        rs = specs[rtype]
        for i in range(int(rs.get("replicas", 1))):
            if addressing == "loopback":
                out[(rtype, i)] = Endpoint(LOOPBACK_HOST, ports.allocate())
            else:
                out[(rtype, i)] = Endpoint(replica_name(name, rtype, i), type_port(info, rs))
    return out
