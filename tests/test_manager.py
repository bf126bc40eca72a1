"""The controller manager on a real object store: resync, de-duplication, owner enqueue, requeue
and failure backoff on a FakeClock, 410 relist, ownership between two managers (two stores, and a
second process killed with SIGKILL), wait_for, and clean stops. Waits are bounded polls."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from localflow.clock import Clock, FakeClock
from localflow.controllers import leases
from localflow.controllers.manager import MANAGER_ANNOTATION, THREAD_PREFIX, ControllerManager, WaitTimeout, wait_for
from localflow.errors import NotFound, SpecError
from localflow.fakes import LogLimits, ObjectStore


class Recorder:
    """Reconciles ConfigMaps (owning Secrets): records each call, returns ``result``, raises for
    the names in ``fail`` (a countdown per name)."""

    kind = "ConfigMap"
    owns = ("Secret",)

    def __init__(self, result=None, fail=None):
        self.calls: list[tuple] = []
        self.result = result
        self.fail = dict(fail or {})
        self.lock = threading.Lock()

    def reconcile(self, key):
        with self.lock:
            self.calls.append(key)
            if self.fail.get(key[2], 0) > 0:
                self.fail[key[2]] -= 1
                raise RuntimeError(f"boom {key[2]}")
        return self.result

    def count(self, name):
        with self.lock:
            return sum(1 for k in self.calls if k[2] == name)


def cm(name, **data):
    return {"kind": "ConfigMap", "metadata": {"name": name}, "data": {k: str(v) for k, v in data.items()}}


def key(name):
    return ("ConfigMap", "default", name)


def until(cond, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def db(tmp_path):
    return tmp_path / "localflow.db"


@pytest.fixture
def store(db):
    s = ObjectStore(db, FakeClock())
    yield s
    s.close()


def manager_threads():
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


def owner_of(store, name):
    return (store.get("cm", name)["metadata"].get("annotations") or {}).get(MANAGER_ANNOTATION)


# ---------------------------------------------------------------- one manager


def test_start_lists_and_reconciles_everything_and_claims_it(store):
    for n in "abc":
        store.create(cm(n))
    rec = Recorder()
    mgr = ControllerManager(store, store.clock)
    mgr.register(rec)
    assert mgr.run_until_idle() == 3
    assert sorted(rec.calls) == [key("a"), key("b"), key("c")], "each object once (the claim's own event is no change)"
    assert {owner_of(store, n) for n in "abc"} == {mgr.id}
    assert mgr.is_alive(mgr.id) and mgr.id.startswith(f"{os.getpid()}-")
    mgr.stop()
    assert not mgr.is_alive(mgr.id)


def test_events_are_deduplicated_and_each_change_reconciles(store):
    rec = Recorder()
    mgr = ControllerManager(store, store.clock)
    mgr.register(rec)
    store.create(cm("a"))
    assert mgr.run_until_idle() == 1
    for i in range(5):
        store.patch("cm", "a", {"data": {"i": str(i)}})
    assert mgr.run_until_idle() == 1 and rec.count("a") == 2, "five changes before the worker ran: one reconcile"
    store.patch("cm", "a", {"data": {"i": "x"}})
    assert mgr.run_until_idle() == 1 and rec.count("a") == 3
    assert mgr.run_until_idle() == 0
    mgr.stop()


def test_an_owned_objects_event_enqueues_its_controller_owner(store):
    rec = Recorder()
    mgr = ControllerManager(store, store.clock)
    mgr.register(rec)
    owner = store.create(cm("owner"))
    mgr.run_until_idle()
    rec.calls.clear()

    def secret(name, controller, kind="ConfigMap", api="v1", owner_name="owner"):
        ref = {"apiVersion": api, "kind": kind, "name": owner_name, "uid": owner["metadata"]["uid"], "controller": controller}
        return {"kind": "Secret", "metadata": {"name": name, "ownerReferences": [ref]}, "type": "Opaque", "data": {}}

    store.create(secret("mine", True))
    assert mgr.run_until_idle() == 1 and rec.calls == [key("owner")]
    store.create(secret("not-controller", False))
    store.create(secret("other-kind", True, kind="TFJob", api="kubeflow.org/v1"))
    store.create({"kind": "Secret", "metadata": {"name": "orphan"}, "type": "Opaque"})
    assert mgr.run_until_idle() == 0 and rec.calls == [key("owner")]
    store.delete("secret", "mine")
    assert mgr.run_until_idle() == 1 and rec.calls == [key("owner")] * 2, "a deleted Pod/Secret wakes its owner"
    mgr.stop()


def test_requeue_after_runs_on_the_fake_clock(store):
    rec = Recorder(result=30.0)
    mgr = ControllerManager(store, store.clock)
    mgr.register(rec)
    store.create(cm("a"))
    assert mgr.run_until_idle() == 1
    store.clock.advance(29.5)
    assert mgr.run_until_idle() == 0 and mgr.queue.next_ready_in() == pytest.approx(0.5)
    store.clock.advance(0.5)
    assert mgr.run_until_idle() == 1 and rec.count("a") == 2
    rec.result = None
    store.clock.advance(30)
    assert mgr.run_until_idle() == 1 and rec.count("a") == 3
    store.clock.advance(3600)
    assert mgr.run_until_idle() == 0
    mgr.stop()


def test_threaded_worker_is_woken_by_fake_clock_advance(store):
    rec = Recorder(result=600.0)
    mgr = ControllerManager(store, store.clock, workers=2)
    mgr.register(rec)
    store.create(cm("a"))
    mgr.start()
    try:
        with pytest.raises(SpecError, match="before the manager starts"):
            mgr.register(Recorder())
        until(lambda: rec.count("a") == 1, what="the first reconcile")
        store.clock.advance(600)  # a blocked worker must wake now, with no real waiting
        until(lambda: rec.count("a") == 2, what="the requeued reconcile after advance()")
        assert rec.count("a") == 2
    finally:
        mgr.stop()
    assert manager_threads() == []


def test_a_failing_reconcile_is_retried_with_backoff_and_never_kills_the_manager(store):
    rec = Recorder(fail={"a": 2})
    mgr = ControllerManager(store, store.clock)
    mgr.register(rec)
    store.create(cm("a"))
    store.create(cm("b"))
    assert mgr.run_until_idle() == 2 and rec.count("a") == 1 and mgr.errors == 1
    assert mgr.queue.num_requeues(key("a")) == 1
    store.clock.advance(0.005)
    assert mgr.run_until_idle() == 1 and rec.count("a") == 2 and mgr.errors == 2
    store.clock.advance(0.009)
    assert mgr.run_until_idle() == 0, "the second retry waits 10 ms"
    store.clock.advance(0.001)
    assert mgr.run_until_idle() == 1 and rec.count("a") == 3
    assert mgr.queue.num_requeues(key("a")) == 0, "a success forgets the backoff"
    assert rec.count("b") == 1
    mgr.stop()


def test_threaded_failures_are_logged_and_other_keys_go_on(store, caplog):
    rec = Recorder(fail={"bad": 10**9})
    mgr = ControllerManager(store, store.clock, workers=1)
    mgr.register(rec)
    store.create(cm("bad"))
    with mgr.start():
        until(lambda: rec.count("bad") >= 1)
        store.create(cm("good"))
        until(lambda: rec.count("good") == 1, what="the good key despite the failing one")
        until(lambda: store.clock.advance(1000) or rec.count("bad") >= 3, what="backoff retries as the clock moves")
    assert "reconcile of ConfigMap default/bad failed" in caplog.text and "boom bad" in caplog.text
    assert manager_threads() == []


def test_resync_after_restart_continues_and_adopts(store):
    rec1 = Recorder()
    m1 = ControllerManager(store, store.clock)
    m1.register(rec1)
    store.create(cm("a"))
    m1.run_until_idle()
    m1.stop()
    store.create(cm("b"))  # created while no manager runs
    store.patch("cm", "a", {"data": {"k": "v"}})
    rec2 = Recorder()
    m2 = ControllerManager(store, store.clock)
    m2.register(rec2)
    assert m2.run_until_idle() == 2 and sorted(rec2.calls) == [key("a"), key("b")]
    assert owner_of(store, "a") == m2.id and owner_of(store, "b") == m2.id
    adopted = [e for e in store.events_for(store.get("cm", "a")) if e["reason"] == "Adopted"]
    assert adopted and m1.id in adopted[0]["message"]
    m2.stop()


def test_a_watch_410_gone_relists(db):
    clock = FakeClock()
    # The manager's store never polls for other writers (1 h), the writer compacts its log to one
    # entry after each write: the manager's watch falls behind the log and must relist.
    mine = ObjectStore(db, clock, poll_interval=3600)
    writer = ObjectStore(db, clock, log_limits=LogLimits(max_entries=1, max_age=None, compact_every=1))
    try:
        rec = Recorder()
        mgr = ControllerManager(mine, clock)
        mgr.register(rec)
        assert mgr.run_until_idle() == 0
        lists = mgr.relists
        for n in "abcde":
            writer.create(cm(n))
        mine.create({"kind": "Secret", "metadata": {"name": "poke"}, "type": "Opaque"})  # publishes: gap found
        assert mgr.run_until_idle() == 5
        assert sorted(rec.calls) == [key(n) for n in "abcde"]
        assert mgr.relists > lists, "the Gone watch was relisted"
        mgr.stop()
    finally:
        writer.close()
        mine.close()


def test_stop_joins_every_thread(store):
    mgr = ControllerManager(store, store.clock, workers=3)
    mgr.register(Recorder())
    mgr.start()
    assert len(manager_threads()) == 3 + 2 + 1  # workers, a watch per kind, the heartbeat
    mgr.stop()
    mgr.stop()
    assert manager_threads() == []
    with pytest.raises(SpecError):
        mgr.start()


# ---------------------------------------------------------------- two managers


def test_two_managers_never_both_reconcile_one_object_and_adopt_after_stop(db):
    clock = FakeClock()
    s1, s2 = ObjectStore(db, clock), ObjectStore(db, clock)
    try:
        r1, r2 = Recorder(), Recorder()
        m1, m2 = ControllerManager(s1, clock), ControllerManager(s2, clock)
        m1.register(r1)
        m2.register(r2)
        for n in "abc":
            s1.create(cm(n))
        assert m1.run_until_idle() == 3
        m2.run_until_idle()
        assert r2.calls == [] and set(m2.foreign_keys()) == {key(n) for n in "abc"}
        s2.create(cm("d"))  # m2 gets to it first
        m2.run_until_idle()
        m1.run_until_idle()
        assert r2.calls == [key("d")] and key("d") not in r1.calls
        for n in "abcd":  # changes wake both managers; only the owner reconciles
            s1.patch("cm", n, {"data": {"x": "1"}})
        m1.run_until_idle()
        m2.run_until_idle()
        assert sorted(set(r1.calls)) == [key("a"), key("b"), key("c")] and set(r2.calls) == {key("d")}
        assert m1.is_alive(m2.id) and m2.is_alive(m1.id)
        m1.stop()
        assert not m2.is_alive(m1.id)
        before = len(r2.calls)
        m2.run_until_idle()
        assert sorted(r2.calls[before:]) == [key("a"), key("b"), key("c")], "the stopped manager's objects are adopted"
        assert {owner_of(s2, n) for n in "abcd"} == {m2.id}
        m2.stop()
    finally:
        s1.close()
        s2.close()


def test_an_expired_lease_is_adopted(db):
    clock = FakeClock()
    s1, s2 = ObjectStore(db, clock), ObjectStore(db, clock)
    try:
        r1, r2 = Recorder(), Recorder()
        m1 = ControllerManager(s1, clock, lease_duration=10)
        m2 = ControllerManager(s2, clock, lease_duration=10)
        m1.register(r1)
        m2.register(r2)
        s1.create(cm("a"))
        m1.run_until_idle()
        m2.run_until_idle()
        assert r2.calls == []
        clock.advance(9)
        m2.run_until_idle()
        assert r2.calls == [] and m2.is_alive(m1.id)
        clock.advance(2)  # m1 hung: it never renewed its lease
        assert not m2.is_alive(m1.id)
        assert m2.run_until_idle() == 1 and r2.calls == [key("a")] and owner_of(s1, "a") == m2.id
        m1.run_until_idle()  # m1 comes back: it renews, sees m2 owns the object, and keeps off
        s1.patch("cm", "a", {"data": {"y": "1"}})
        m1.run_until_idle()
        assert r1.calls == [key("a")]
        m1.stop()
        m2.stop()
    finally:
        s1.close()
        s2.close()


def test_two_threaded_managers_never_overlap_on_one_object(db):
    clock = Clock()
    s1, s2 = ObjectStore(db, clock), ObjectStore(db, clock)
    active: dict = {}
    overlaps, by = [], {}
    guard = threading.Lock()

    class Busy(Recorder):
        def __init__(self, store, name):
            super().__init__()
            self.store, self.name = store, name

        def reconcile(self, k):
            with guard:
                if k in active:
                    overlaps.append((k, active[k], self.name))
                active[k] = self.name
                by.setdefault(k, set()).add(self.name)
            try:
                obj = self.store.get("cm", k[2])
                n = int((obj.get("data") or {}).get("n", "0"))
                if n < 3:
                    self.store.patch("cm", k[2], {"data": {"n": str(n + 1)}})
                return None
            finally:
                with guard:
                    del active[k]

    m1 = ControllerManager(s1, clock, workers=2, heartbeat=0.05)
    m2 = ControllerManager(s2, clock, workers=2, heartbeat=0.05)
    m1.register(Busy(s1, "m1"))
    m2.register(Busy(s2, "m2"))
    try:
        m1.start()
        m2.start()
        names = [f"o{i}" for i in range(12)]
        for n in names:
            (s1 if n[-1] in "02468" else s2).create(cm(n))
        until(lambda: all(s1.get("cm", n).get("data", {}).get("n") == "3" for n in names), 30, "every object reconciled to n=3")
        assert overlaps == []
        assert all(len(v) == 1 for v in by.values()), f"an object was reconciled by both managers: {by}"
    finally:
        m1.stop()
        m2.stop()
        s1.close()
        s2.close()


CHILD = r"""
import sys
from localflow.controllers.manager import ControllerManager
from localflow.fakes import ObjectStore

db, out = sys.argv[1], sys.argv[2]

class Holder:
    kind = "ConfigMap"
    owns = ()
    def reconcile(self, key):
        with open(out, "a") as f:
            f.write(key[2] + "\n")
        return 0.05  # work in progress: keep coming back, never finish

store = ObjectStore(db)
mgr = ControllerManager(store, workers=1, lease_duration=60, heartbeat=0.1)
mgr.register(Holder())
mgr.start()
print(mgr.id, flush=True)
sys.stdin.read()  # until killed
"""


@pytest.mark.slow
def test_a_killed_managers_objects_are_adopted_by_another_process(db, tmp_path):
    clock = Clock()
    s = ObjectStore(db, clock)
    names = ["p0", "p1", "p2"]
    for n in names:
        s.create(cm(n))
    out = tmp_path / "child.log"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), str(out)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    mgr = None
    try:
        child_id = child.stdout.readline().strip()
        assert child_id.startswith(f"{child.pid}-")
        until(lambda: all(owner_of(s, n) == child_id for n in names), 20, "the child to claim every object")

        class Finisher(Recorder):
            def reconcile(self, k):
                super().reconcile(k)
                if s.get("cm", k[2]).get("data", {}).get("by") != mgr.id:
                    s.patch("cm", k[2], {"data": {"by": mgr.id}})

        rec = Finisher()
        mgr = ControllerManager(s, clock, workers=2, lease_duration=60, heartbeat=0.05)
        mgr.register(rec)
        mgr.start()
        until(lambda: set(mgr.foreign_keys()) == {key(n) for n in names}, 20, "the second manager to see the child's claims")
        assert rec.calls == [] and mgr.is_alive(child_id)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        until(lambda: all(s.get("cm", n).get("data", {}).get("by") == mgr.id for n in names), 20,
              "the objects of the killed manager to be adopted (pid gone; its 60 s lease not expired)")
        assert not mgr.is_alive(child_id) and leases.is_alive(db, mgr.id)
        assert {owner_of(s, n) for n in names} == {mgr.id}
        assert set(out.read_text().split()) == set(names)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        if mgr is not None:
            mgr.stop()
        s.close()


# ---------------------------------------------------------------- wait_for


def test_wait_for_returns_the_object_once_the_predicate_holds(db):
    clock = Clock()
    s, other = ObjectStore(db, clock), ObjectStore(db, clock)
    try:
        def later():
            other.create(cm("w", phase="Running"))
            other.patch("cm", "w", {"data": {"phase": "Succeeded"}})

        t = threading.Timer(0.05, later)
        t.start()
        obj = wait_for(s, "cm", "w", "default", lambda o: o.get("data", {}).get("phase") == "Succeeded", timeout=20, clock=clock)
        t.join()
        assert obj["data"]["phase"] == "Succeeded"
        assert wait_for(s, "configmaps", "w", predicate=lambda o: True, timeout=0, clock=clock)["metadata"]["name"] == "w"
    finally:
        s.close()
        other.close()


def test_wait_for_times_out_on_the_fake_clock_and_names_the_object(store):
    store.create(cm("w", phase="Running"))
    with pytest.raises(WaitTimeout, match=r'ConfigMap "w" in namespace "default" did not reach it: timed out after 0 s waiting for Succeeded'):
        wait_for(store, "cm", "w", predicate=lambda o: False, timeout=0, clock=store.clock, what="Succeeded")
    errors = []

    def waiter():
        try:
            wait_for(store, "cm", "missing", predicate=lambda o: True, timeout=30, clock=store.clock)
        except WaitTimeout as err:
            errors.append(str(err))

    t = threading.Thread(target=waiter)
    t.start()
    deadline = time.monotonic() + 10
    while t.is_alive() and time.monotonic() < deadline:
        store.clock.advance(5)
        t.join(0.05)
    assert not t.is_alive() and errors and "does not exist" in errors[0]


def test_wait_for_a_deleted_object_says_so(store):
    store.create(cm("w"))
    threading.Timer(0.05, lambda: store.delete("cm", "w")).start()
    with pytest.raises(NotFound, match="was deleted while waiting"):
        wait_for(store, "cm", "w", predicate=lambda o: False, timeout=None, clock=store.clock)
