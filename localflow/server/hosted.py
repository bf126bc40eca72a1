"""The controllers ``localflow serve`` hosts in its own process.

Kinds that run until deleted (``apps/v1`` ReplicaSet and Deployment, core ``v1`` Service: their
kind-table entries have a reconciler and no runner) are not handed to worker processes as runs are: the server runs one
:class:`~localflow.controllers.manager.ControllerManager` with their reconcilers, and a node
(scheduler + kubelet, :mod:`localflow.node`) for their Pods. Stopping the server stops both: the
Pods are killed (Failed), and the next server's ReplicaSets replace them, as a restarted node's
controllers would. A Service's local addresses are served by the server's node
(:mod:`localflow.node.services`) while it runs; the next server binds the same recorded ports.
"""
from __future__ import annotations

import contextlib

from localflow.workspace import Workspace


class HostedControllers:
    """The manager and node of one server. ``start()`` opens a runtime on ``ws`` (its default
    executor and config) and starts the manager; ``stop()`` stops the manager, then the node
    (canceling its Pods). ``kinds``: the kinds reconciled (Kind names)."""

    def __init__(self, ws: Workspace):
        self.ws = ws
        self.kinds: list[str] = []
        self._stack: contextlib.ExitStack | None = None
        self.manager = None

    def start(self) -> "HostedControllers":
        from localflow.controllers.deployment import DeploymentReconciler
        from localflow.controllers.manager import ControllerManager
        from localflow.controllers.replicaset import ReplicaSetReconciler
        from localflow.controllers.service import ServiceReconciler
        from localflow.runtime import open_runtime

        stack = contextlib.ExitStack()
        try:
            rt = stack.enter_context(open_runtime(self.ws))
            mgr = ControllerManager(rt.store, rt.clock)
            mgr.register(ReplicaSetReconciler(rt.store, rt.scheduler, rt.clock))
            mgr.register(DeploymentReconciler(rt.store, rt.clock))
            mgr.register(ServiceReconciler(rt.store, rt.scheduler, rt.clock))
            mgr.start()
            stack.callback(mgr.stop)
        except BaseException:
            stack.close()
            raise
        self._stack, self.manager = stack, mgr
        self.kinds = ["ReplicaSet", "Deployment", "Service"]
        return self

    def stop(self) -> None:
        """Idempotent: stop the manager, then close the runtime (its Pods are killed)."""
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()
