"""The node's public names, where callers have always imported them from.

The node itself lives in :mod:`localflow.node`: kube-scheduler (:mod:`localflow.node.scheduling`),
kubelet (:mod:`localflow.node.kubelet`), Pod status transitions (:mod:`localflow.node.podstatus`)
and Pod resolution (:mod:`localflow.node.resolve`); :class:`Scheduler` is
:class:`localflow.node.node.Scheduler`.
"""
from __future__ import annotations

from localflow.node import (DEFAULT_MAX_PODS, NETWORK_ANNOTATION, NODE_NAME, PYTHON_ANNOTATION, TOO_MANY_PODS,
                            WORKSPACE_LABEL, Capacity, Scheduler, expand_vars, pod_requests, workspace_id)

__all__ = ["Scheduler", "Capacity", "pod_requests", "expand_vars", "workspace_id", "NODE_NAME", "NETWORK_ANNOTATION",
           "PYTHON_ANNOTATION", "WORKSPACE_LABEL", "DEFAULT_MAX_PODS", "TOO_MANY_PODS"]
