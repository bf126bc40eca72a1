"""The node of this machine: kube-scheduler and kubelet.

- :mod:`.scheduling` — admission by requests, gangs, ``maxPods``, ``Unschedulable`` reasons;
- :mod:`.kubelet` — running a bound Pod: restarts, backoff, deadlines, logs, kills;
- :mod:`.podstatus` — every Pod status transition, as pure functions;
- :mod:`.resolve` — a stored Pod → the executor's ``PodSpec`` (``$(VAR)``, env, volumes, images);
- :mod:`.node` — :class:`Scheduler`, the node's public face (``localflow.scheduler`` re-exports it).

Imports point down: controllers → node → executors/fakes.
"""
from __future__ import annotations

from .node import Scheduler
from .resolve import NETWORK_ANNOTATION, NODE_NAME, PYTHON_ANNOTATION, WORKSPACE_LABEL, expand_vars, workspace_id
from .scheduling import DEFAULT_MAX_PODS, TOO_MANY_PODS, Capacity, pod_requests

__all__ = ["Scheduler", "Capacity", "pod_requests", "expand_vars", "workspace_id", "NODE_NAME", "NETWORK_ANNOTATION",
           "PYTHON_ANNOTATION", "WORKSPACE_LABEL", "DEFAULT_MAX_PODS", "TOO_MANY_PODS"]
