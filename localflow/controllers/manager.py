"""The controller manager: level-triggered reconcilers fed by store watches, one manager per process.

Follows controller-runtime's manager and controller (``pkg/manager``, ``pkg/internal/controller``
``reconcileHandler``) over client-go's informer pattern (``tools/cache/reflector.go``: list, then
watch from the list's resourceVersion, relist on ``410 Gone``):

- A reconciler is any object with ``kind`` (the kind it reconciles, any spelling
  :func:`localflow.fakes.kinds.resolve_kind` takes), ``owns`` (a tuple of kinds it creates) and
  ``reconcile(key) -> float | None`` where ``key`` is ``(Kind, namespace, name)``; it returns the
  seconds after which to reconcile the key again, or ``None`` (done until the next change). It
  reads everything it needs from the store each time: nothing only in memory. An optional
  ``in_scope(key) -> bool`` limits it to some objects (an embedded ``localflow run`` reconciles
  only its own job): keys out of scope are neither claimed nor reconciled.
- One informer per watched kind lists every object (the resync at start) and then watches the
  store -- which sees the writes of every process on the workspace. An event of a reconciled
  kind queues its key; an event of an owned kind queues the key of its controller owner
  (``metadata.ownerReferences`` entry with ``controller: true``), as controller-runtime's
  ``handler.EnqueueRequestForOwner(..., OnlyControllerOwner())``. A reconciler may also have
  ``watches`` ``{kind: fn(obj) -> [key, ...]}`` for related objects it does not own (the Service
  controller's Pods by selector), as ``handler.EnqueueRequestsFromMapFunc``. A ``Gone`` watch relists.
- Keys go through one :class:`~localflow.controllers.workqueue.WorkQueue` (de-duplicated; a
  requeue after N seconds runs on the injected clock). Worker threads call ``reconcile``; an
  exception is logged and the key retried with per-key exponential backoff (5 ms .. 1000 s);
  it never stops the manager. A success forgets the key's backoff.
- Work is never reconciled by two managers at once: before reconciling an object the manager
  claims it by writing the annotation ``localflow.dev/manager: <its id>`` with a
  resourceVersion-checked patch (a concurrent claim gets ``Conflict`` and retries). An object
  another live manager owns is skipped; once that manager stops, dies (its pid is gone) or lets
  its lease expire (see :mod:`.leases`), the heartbeat adopts its objects.

Use :meth:`ControllerManager.start`/:meth:`~ControllerManager.stop` (threads), or, for
deterministic tests, never start it and call :meth:`~ControllerManager.run_until_idle` (all work
on the calling thread). :func:`wait_for` waits over a watch until an object satisfies a predicate.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.errors import Conflict, Gone, LocalflowError, NotFound, SpecError
from localflow.fakes.kinds import KindInfo, api_group, resolve_kind

from . import leases
from .leases import LeaseTable, new_identity
from .workqueue import ItemExponentialFailureRateLimiter, WorkQueue

__all__ = ["ControllerManager", "Reconciler", "Key", "MANAGER_ANNOTATION", "WaitTimeout", "wait_for", "controller_owner"]

log = logging.getLogger(__name__)

MANAGER_ANNOTATION = "localflow.dev/manager"
THREAD_PREFIX = "localflow-manager"
Key = tuple  # (Kind, namespace, name)


class Reconciler(Protocol):
    """What :meth:`ControllerManager.register` takes (see the module docstring)."""

    kind: str
    owns: tuple

    def reconcile(self, key: Key) -> float | None: ...


def controller_owner(obj: dict) -> dict | None:
    """The ``metadata.ownerReferences`` entry of ``obj`` with ``controller: true``, or ``None``."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


class _Informer:
    """List + watch of one kind (all namespaces), handing every object it sees to ``on_object``."""

    def __init__(self, store, info: KindInfo, on_object: Callable[[dict], None]):
        self.store, self.info, self.on_object = store, info, on_object
        self.watch = None
        self.relists = 0

    def relist(self) -> None:
        if self.watch is not None:
            self.watch.close()
        items, self.watch = self.store.list_and_watch(self.info.kind, namespace=None)
        self.relists += 1
        for obj in items:
            self.on_object(obj)

    def pump(self, timeout: float | None) -> int:
        """Hand on the events that arrived (waiting up to ``timeout`` s for the first; 0: none);
        relists on ``Gone``. Returns the number of events handled."""
        try:
            events = []
            if timeout:
                first = self.watch.get(timeout)
                if first is not None:
                    events.append(first)
            if events or not timeout:
                events += self.watch.drain()
        except Gone as err:
            log.info("watch of %s: %s; relisting", self.info.plural, err)
            self.relist()
            return 1
        for ev in events:
            self.on_object(ev.object)
        return len(events)

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


class ControllerManager:
    """Runs registered reconcilers over the objects of ``store`` (a :class:`localflow.fakes.store.ObjectStore`).

    ``clock``: delays, leases and heartbeats run on it (default: real time). ``workers``: worker
    threads of :meth:`start`. ``lease_duration``: seconds a manager is deemed alive after its last
    heartbeat; ``heartbeat``: seconds between heartbeats, which renew the lease and adopt the
    objects of managers no longer alive (default: a third of the lease). ``identity``: the
    manager's id (default ``<pid>-<uuid>``). ``rate_limiter``: backoff after failures.
    """

    def __init__(self, store, clock: Clock = SYSTEM_CLOCK, *, workers: int = 2, lease_duration: float = 15.0,
                 heartbeat: float | None = None, identity: str | None = None,
                 rate_limiter: ItemExponentialFailureRateLimiter | None = None):
        if workers < 1:
            raise SpecError("workers", f"must be at least 1 (got {workers})")
        if lease_duration <= 0:
            raise SpecError("lease_duration", f"must be > 0 seconds (got {lease_duration})")
        self.store = store
        self.clock = clock
        self.workers = int(workers)
        self.lease_duration = float(lease_duration)
        self.heartbeat = float(heartbeat) if heartbeat else self.lease_duration / 3
        self.id = identity or new_identity()
        self.queue = WorkQueue(clock, rate_limiter)
        self._reconcilers: dict[str, Reconciler] = {}  # Kind -> reconciler
        self._groups: dict[str, str] = {}  # Kind -> API group
        self._owners: dict[tuple[str, str], list[str]] = {}  # (group, owned Kind) -> owner Kinds
        self._mappers: dict[tuple[str, str], list] = {}  # (group, watched Kind) -> [fn(obj) -> keys]
        self._informers: dict[tuple[str, str], _Informer] = {}
        self._foreign: dict[Key, str] = {}  # keys skipped because another live manager owns them
        self._foreign_lock = threading.Lock()
        self._claims: dict[Key, str] = {}  # key -> resourceVersion of this manager's own claim write
        self._leases: LeaseTable | None = None
        self._last_renew = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._hb_cond = threading.Condition()
        self._unsubscribe = lambda: None
        self._state = "new"  # new -> manual | running -> stopped
        self.reconciles = 0
        self.errors = 0

    # ------------------------------------------------------------------ setup

    def register(self, reconciler: Reconciler) -> None:
        """Add a reconciler (before :meth:`start`). Raises :class:`SpecError` for an unknown kind
        or a kind that already has one."""
        if self._state != "new":
            raise SpecError("ControllerManager.register", "reconcilers must be registered before the manager starts")
        info = resolve_kind(reconciler.kind)
        if info.kind in self._reconcilers:
            raise SpecError("ControllerManager.register", f"{info.kind} already has a reconciler")
        owned = [resolve_kind(k) for k in getattr(reconciler, "owns", ()) or ()]
        watched = [(resolve_kind(k), fn) for k, fn in (getattr(reconciler, "watches", None) or {}).items()]
        self._reconcilers[info.kind] = reconciler
        self._groups[info.kind] = info.group
        for o in owned:
            self._owners.setdefault((o.group, o.kind), []).append(info.kind)
        for w, fn in watched:
            self._mappers.setdefault((w.group, w.kind), []).append(fn)
        for i in (info, *owned, *(w for w, _ in watched)):
            self._informers.setdefault((i.group, i.kind), _Informer(self.store, i, self._on_object))

    def enqueue(self, key: Key) -> None:
        """Queue ``(kind, namespace, name)`` for its reconciler now (kind in any spelling)."""
        info = resolve_kind(key[0])
        self.queue.add((info.kind, key[1] if info.namespaced else "", key[2]))

    def _on_object(self, obj: dict) -> None:
        kind, meta = obj.get("kind"), obj.get("metadata") or {}
        grp = api_group(obj.get("apiVersion", ""))
        ns = meta.get("namespace") or ""
        if kind in self._reconcilers and self._groups[kind] == grp:
            key = (kind, ns, meta.get("name"))
            if self._claims.pop(key, None) != meta.get("resourceVersion"):
                self.queue.add(key)  # (the event of this manager's own claim write changed nothing to reconcile)
        for mapper in self._mappers.get((grp, kind), ()):
            try:
                for key in mapper(obj) or ():
                    self.queue.add(tuple(key))
            except Exception:  # noqa: BLE001 - a mapper's fault must not stop the informer
                log.exception("manager %s: mapping %s %s failed", self.id, kind, meta.get("name"))
        owners = self._owners.get((grp, kind))
        ref = controller_owner(obj) if owners else None
        if ref and ref.get("kind") in owners and api_group(ref.get("apiVersion", "")) == self._groups[ref["kind"]]:
            owner_ns = ns if resolve_kind(ref["kind"], ref.get("apiVersion")).namespaced else ""
            self.queue.add((ref["kind"], owner_ns, ref.get("name")))

    def _open(self, state: str) -> None:
        if self._state == "stopped":
            raise SpecError("ControllerManager", "a stopped manager cannot run again", fix="create a new ControllerManager")
        if self._state != "new":
            return
        self._leases = LeaseTable(self.store.db_path, self.clock)
        self._leases.acquire(self.id, self.lease_duration)
        self._last_renew = self.clock.monotonic()
        self._state = state
        for inf in self._informers.values():
            inf.relist()

    # ------------------------------------------------------------------ running

    def start(self) -> "ControllerManager":
        """Record the lease, list every watched kind (queuing all keys) and start the informer,
        worker and heartbeat threads. Returns ``self``."""
        if self._state == "running":
            return self
        if self._state == "manual":
            raise SpecError("ControllerManager.start", "this manager is driven by run_until_idle()")
        self._open("running")
        self._unsubscribe = self.clock.on_advance(self._wake_heartbeat)
        for (_, kind), inf in self._informers.items():
            self._spawn(f"{THREAD_PREFIX}-watch-{kind}", self._informer_loop, inf)
        for i in range(self.workers):
            self._spawn(f"{THREAD_PREFIX}-worker-{i}", self._worker_loop)
        self._spawn(f"{THREAD_PREFIX}-heartbeat", self._heartbeat_loop)
        return self

    def _spawn(self, name: str, target, *args) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(t)
        t.start()

    def _informer_loop(self, inf: _Informer) -> None:
        while not self._stopping.is_set():
            try:
                inf.pump(0.2)
            except Exception:  # the store is closing, or a transient database error: retry, never die
                if self._stopping.is_set():
                    return
                log.exception("manager %s: watch of %s failed; relisting", self.id, inf.info.plural)
                self._stopping.wait(0.1)
                try:
                    inf.relist()
                except Exception:
                    log.debug("relist of %s failed", inf.info.plural, exc_info=True)

    def _worker_loop(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            self._process(key)

    def _wake_heartbeat(self) -> None:
        with self._hb_cond:
            self._hb_cond.notify_all()

    def _heartbeat_loop(self) -> None:
        next_beat = self.clock.monotonic() + self.heartbeat
        while not self._stopping.is_set():
            with self._hb_cond:
                wait = self.clock.timeout_until(next_beat)
                if wait is None or wait > 0:
                    self._hb_cond.wait(wait)
            if self._stopping.is_set():
                return
            if self.clock.monotonic() >= next_beat:
                next_beat = self.clock.monotonic() + self.heartbeat
                try:
                    self._beat()
                except Exception:
                    log.exception("manager %s: heartbeat failed", self.id)

    def _beat(self) -> None:
        """Renew the lease when due and queue the keys of owners that are no longer alive."""
        if self.clock.monotonic() - self._last_renew >= self.heartbeat:
            self._renew()
        with self._foreign_lock:
            owners = set(self._foreign.values())
        dead = {o for o in owners if not self._leases.is_alive(o)}
        if not dead:
            return
        with self._foreign_lock:
            keys = [k for k, o in self._foreign.items() if o in dead]
            for k in keys:
                del self._foreign[k]
        for k in keys:
            self.queue.add(k)

    def _renew(self) -> None:
        if not self._leases.renew(self.id):
            self._leases.acquire(self.id, self.lease_duration)
        self._last_renew = self.clock.monotonic()

    def run_until_idle(self, max_items: int = 100_000) -> int:
        """Drive the manager on the calling thread (no threads): list on the first call, then
        take in the watch events of every write made so far by any process, heartbeat, and
        reconcile every key that is ready (and those its reconciles queue), until none is. Keys requeued for later stay queued: advance the clock and call again. Returns the
        number of keys processed. Not for a manager that was :meth:`start`-ed."""
        if self._state == "running":
            raise SpecError("ControllerManager.run_until_idle", "this manager runs its own threads (start() was called)")
        self._open("manual")
        self._catch_up()
        done = 0
        while done < max_items:
            for inf in self._informers.values():
                inf.pump(0)
            self._beat()
            key = self.queue.get(timeout=0)
            if key is None:
                return done
            self._process(key)
            done += 1
        return done

    def process_one(self) -> Key | None:
        """Take in watch events and reconcile one ready key on the calling thread; returns it,
        or ``None`` when no key is ready (see :meth:`run_until_idle`)."""
        if self._state == "running":
            raise SpecError("ControllerManager.process_one", "this manager runs its own threads (start() was called)")
        self._open("manual")
        self._catch_up()
        self._beat()
        key = self.queue.get(timeout=0)
        if key is not None:
            self._process(key)
        return key

    def _catch_up(self, timeout: float = 10.0) -> None:
        """Take in the watch events of every write made so far, by any process: wait (at most
        ``timeout`` real seconds) until each informer's watch has passed the store's newest
        resourceVersion (other processes' writes arrive through the store's log poller)."""
        target = int(self.store.resource_version)
        deadline = time.monotonic() + timeout
        for inf in self._informers.values():
            inf.pump(0)
            while int(inf.watch.resource_version) < target and time.monotonic() < deadline:
                inf.pump(0.01)

    # ------------------------------------------------------------------ one key

    def _process(self, key: Key) -> None:
        reconciler = self._reconcilers.get(key[0])
        try:
            in_scope = getattr(reconciler, "in_scope", None)
            if reconciler is None or (in_scope is not None and not in_scope(key)) or not self._claim(key):
                self.queue.forget(key)
                return
            self.reconciles += 1
            result = reconciler.reconcile(key)
        except Exception:
            self.errors += 1
            log.exception("manager %s: reconcile of %s %s/%s failed; retrying with backoff", self.id, *key)
            self.queue.add_rate_limited(key)
        else:
            self.queue.forget(key)
            if result is not None:
                self.queue.add_after(key, float(result))
        finally:
            self.queue.done(key)

    def _claim(self, key: Key) -> bool:
        """True when this manager may reconcile ``key``: it owns the object, claimed it now, or
        the object does not exist (its reconciler cleans up). False when another live manager
        owns it (remembered for adoption) or a concurrent claim won (the key is queued again)."""
        if self.clock.monotonic() - self._last_renew >= self.heartbeat:
            self._renew()
        kind, ns, name = key
        try:
            obj = self.store.get(kind, name, ns)
        except NotFound:
            return True
        meta = obj.get("metadata") or {}
        owner = (meta.get("annotations") or {}).get(MANAGER_ANNOTATION)
        if owner == self.id:
            return True
        if owner and self._leases.is_alive(owner):
            with self._foreign_lock:
                self._foreign[key] = owner
            return False
        patch = {"metadata": {"resourceVersion": meta.get("resourceVersion"), "annotations": {MANAGER_ANNOTATION: self.id}}}
        try:
            claimed = self.store.patch(kind, name, patch, ns)
        except NotFound:
            return True
        except Conflict:
            self.queue.add(key)  # re-read and decide again after done()
            return False
        self._claims[key] = claimed["metadata"]["resourceVersion"]
        with self._foreign_lock:
            self._foreign.pop(key, None)
        if owner:
            self.store.record_event(claimed, "Adopted", f"controller manager {self.id} adopted it from {owner}, which is no longer alive")
        return True

    # ------------------------------------------------------------------ state

    def is_alive(self, manager_id: str) -> bool:
        """Whether the manager ``manager_id`` (this one or another, any process on the workspace)
        holds a live lease: not stopped, renewed within its duration, its process running."""
        if self._leases is None:  # not started, or stopped: ask the table directly
            return leases.is_alive(self.store.db_path, manager_id, self.clock)
        return self._leases.is_alive(manager_id)

    def foreign_keys(self) -> dict[Key, str]:
        """Keys this manager skipped because another live manager owns them: ``{key: owner id}``."""
        with self._foreign_lock:
            return dict(self._foreign)

    @property
    def relists(self) -> int:
        """How many lists the informers made (one per kind at start, one more per ``Gone``)."""
        return sum(i.relists for i in self._informers.values())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the threads (joining them, each within ``timeout`` s), close the watches and mark
        the lease stopped so another manager may adopt this one's objects at once. Idempotent."""
        if self._state == "stopped":
            return
        self._stopping.set()
        self.queue.shutdown()
        self._unsubscribe()
        self._wake_heartbeat()
        for inf in self._informers.values():
            inf.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is not threading.current_thread():  # stop() called from a reconcile
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        self._threads = []
        if self._leases is not None:
            try:
                self._leases.release(self.id)
            finally:
                self._leases.close()
                self._leases = None
        self._state = "stopped"
        if alive:
            log.warning("manager %s: threads still running after stop: %s", self.id, ", ".join(alive))

    def __enter__(self) -> "ControllerManager":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class WaitTimeout(LocalflowError):
    """:func:`wait_for` gave up: the object did not reach the awaited state in time. Exit code 1."""


def wait_for(store, kind: str, name: str, namespace: str | None = "default",
             predicate: Callable[[dict], bool] = lambda obj: True, timeout: float | None = 60.0,
             clock: Clock = SYSTEM_CLOCK, what: str = "the awaited state") -> dict:
    """Wait until the object ``kind``/``namespace``/``name`` satisfies ``predicate(obj)`` and
    return it (a watch, as ``kubectl wait`` does; changes made by any process count).

    ``timeout``: seconds on ``clock`` (``None``: no limit); with a :class:`FakeClock` the wait
    ends once the clock was advanced past it. An object that does not exist yet is waited for.
    Raises :class:`WaitTimeout` naming the object and ``what`` it waited for,
    :class:`NotFound` when the object is deleted while waited for.
    """
    info = resolve_kind(kind)
    ns = (namespace or "default") if info.namespaced else ""
    deadline = None if timeout is None else clock.monotonic() + float(timeout)
    last = None

    def open_and_check():
        w = store.watch(info.kind, ns or None)
        try:
            obj = store.get(info.kind, name, ns)
        except NotFound:
            return w, None, False
        return w, obj, predicate(obj)

    w, last, ok = open_and_check()
    try:
        while not ok:
            left = clock.timeout_until(deadline)
            if left == 0.0:
                where = f' in namespace "{ns}"' if ns else ""
                state = "does not exist" if last is None else "did not reach it"
                raise WaitTimeout(f'{info.kind} "{name}"{where} {state}: timed out after {timeout:g} s waiting for {what}',
                                  fix=f"inspect it with `localflow describe {info.singular} {name}`")
            try:
                ev = w.get(timeout=0.05 if left is None else min(left, 1.0))
            except Gone:
                w.close()
                w, last, ok = open_and_check()
                continue
            if ev is None or (ev.object.get("metadata") or {}).get("name") != name:
                continue
            if ev.type == "DELETED":
                raise NotFound(f'{info.kind} "{name}" was deleted while waiting for {what}')
            last = ev.object
            ok = predicate(last)
        return last
    finally:
        w.close()

