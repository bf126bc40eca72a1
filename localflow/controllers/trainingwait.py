"""Waiting for a training job (v1 kinds, TrainJob) to finish while a controller manager reconciles it.

The training controllers are reconcilers on the
:class:`~localflow.controllers.manager.ControllerManager`; whoever waits for a job (``localflow
run``, a server's worker, a test) only watches: :func:`wait_finished` follows the job and its
Pods over store watches -- as ``kubectl wait --for=condition=...`` would, with the Pods'
changes handed to a progress callback -- until the job's kind says it is finished
(:attr:`localflow.kinds.Kind.finished`) and the controller's cleanup of it is done.
:func:`run_on_manager` starts an in-process manager with the controller's reconcilers for the
length of one such wait.
"""
from __future__ import annotations

import time
from typing import Callable

from localflow.errors import NotFound

__all__ = ["wait_finished", "training_manager", "run_on_manager", "ReconcileErrors"]

_POLL_S = 0.25  # how long to wait for a Pod event before re-reading the job and the node's faults


def _deliver(events, on_change) -> None:
    if on_change is not None:
        for ev in events:
            on_change(ev.type, ev.object)


def wait_finished(store, scheduler, kind: str, name: str, namespace: str, selector: dict, *,
                  settled: Callable[[dict, list[dict]], bool] | None = None,
                  on_change: Callable[[str, dict], None] | None = None, timeout: float | None = None,
                  check: Callable[[], None] | None = None) -> dict:
    """Wait until the job ``kind``/``namespace``/``name`` is finished (its kind's ``finished``
    predicate in :mod:`localflow.kinds`) and ``settled(job, pods)`` holds (the controller's
    cleanup is done; default: nothing more), and return it -- or the last one seen once it is
    deleted (e.g. by ``ttlSecondsAfterFinished``).

    ``selector``: the labels of the job's Pods. ``on_change(event_type, pod)`` is called in this
    thread for the Pods as they are when the wait starts (``ADDED``), then for every change of one
    of them (``ADDED``, ``MODIFIED``, ``DELETED``) in commit order. Raises ``TimeoutError`` after
    ``timeout`` wall seconds, :class:`NotFound` if the job does not exist when the wait starts,
    and the node's :class:`~localflow.errors.SchedulerFault` for a Pod whose end could not be
    recorded (``scheduler.raise_fault``: the wait would otherwise never end), and whatever
    ``check()`` raises (called on every turn: e.g. :meth:`ReconcileErrors.raise_for`).
    """
    from localflow import kinds as kind_table

    start = time.monotonic()
    with store.watch(kind="Pod", namespace=namespace, label_selector=selector) as pods_w, \
            store.watch(kind=kind, namespace=namespace) as job_w:
        try:
            last = store.get(kind, name, namespace)
        except NotFound:
            raise NotFound(f"no {kind} {name!r} in namespace {namespace!r}") from None
        finished = kind_table.entry_of(last).finished
        pods = store.list("Pod", namespace, label_selector=selector)
        if on_change is not None:
            for pod in pods:
                on_change("ADDED", pod)
        while True:
            try:
                job = store.get(kind, name, namespace)
            except NotFound:  # the last version the store had (its DELETED event carries it)
                for ev in job_w.drain():
                    if (ev.object.get("metadata") or {}).get("name") == name:
                        last = ev.object
                _deliver(pods_w.drain(), on_change)
                return last
            last = job
            job_w.drain()
            if finished(job) is not None:
                pods = store.list("Pod", namespace, label_selector=selector)
                if settled is None or settled(job, pods):
                    _deliver(pods_w.drain(), on_change)
                    return job
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"{kind} {name} did not finish within {timeout}s")
            scheduler.raise_fault(p["metadata"]["name"] for p in store.list("Pod", namespace, label_selector=selector))
            if check is not None:
                check()
            first = pods_w.get(timeout=_POLL_S)
            _deliver(([first] if first is not None else []) + pods_w.drain(), on_change)


class ReconcileErrors:
    """The last exception each key's reconcile raised, for the one waiting on that key.

    The manager logs a failed reconcile and retries it with backoff; a ``localflow run`` waiting
    for the job would then wait for ever on a bug or a broken store. :meth:`wrap` a reconciler so
    its failures are kept here (and still raised to the manager); :meth:`raise_for` re-raises a
    key's failure in the waiting thread (a later success clears it)."""

    def __init__(self):
        self.errors: dict = {}

    def wrap(self, reconciler, only=None):
        """``reconciler`` with its failures recorded here; ``only``: the one key it reconciles
        (the manager's ``in_scope``), else every key of its kind."""
        errors = self.errors

        class _Recorded:
            kind, owns = reconciler.kind, getattr(reconciler, "owns", ())

            def in_scope(self, key):
                return only is None or tuple(key) == tuple(only)

            def reconcile(self, key):
                try:
                    out = reconciler.reconcile(key)
                except Exception as exc:
                    errors[tuple(key)] = exc
                    raise
                errors.pop(tuple(key), None)
                return out

        return _Recorded()

    def raise_for(self, key) -> None:
        """Raise the exception the last reconcile of ``key`` raised, if it failed."""
        err = self.errors.get(tuple(key))
        if err is not None:
            raise err


def training_manager(controller, *, identity: str | None = None, only=None):
    """``(manager, errors)``: a (not yet started) :class:`~localflow.controllers.manager.ControllerManager`
    on the controller's store and clock with its reconcilers registered (``controller.reconcilers()``,
    their failures kept in the :class:`ReconcileErrors`). ``only``: the one key ``(Kind,
    namespace, name)`` it may claim and reconcile -- an embedded run must leave the workspace's
    other jobs to their own managers. ``identity``: act for that manager id (a server's claim
    that a worker carries out)."""
    from localflow.controllers.manager import ControllerManager

    errors = ReconcileErrors()
    mgr = ControllerManager(controller.store, controller.clock, workers=2, identity=identity)
    for r in controller.reconcilers():
        mgr.register(errors.wrap(r, only))
    return mgr, errors


def run_on_manager(controller, job: dict, *, timeout: float | None = None, on_change=None,
                   identity: str | None = None) -> dict:
    """Start :func:`training_manager` for ``controller``, :func:`wait_finished` for ``job``
    (``controller.pod_selector(job)``, ``controller.settled``; a failed reconcile of the job is
    raised here), stop the manager, return the job. Only ``job`` is reconciled. ``identity``: as for :func:`training_manager`."""
    meta = job["metadata"]
    ns = meta.get("namespace") or "default"
    key = (job["kind"], ns, meta["name"])
    mgr, errors = training_manager(controller, identity=identity, only=key)
    try:
        mgr.start()
        return wait_finished(controller.store, controller.scheduler, job["kind"], meta["name"], ns,
                             controller.pod_selector(job), settled=controller.settled, on_change=on_change,
                             timeout=timeout, check=lambda: errors.raise_for(key))
    finally:
        mgr.stop()
