"""Events in the store: de-duplication through an index (never a scan of every Event), listing by
involved object, and expiry after the Event TTL on the store's clock."""
from __future__ import annotations

import sqlite3

import pytest

from localflow.clock import FakeClock
from localflow.fakes import ObjectStore
from localflow.fakes import events as ev_sql


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "localflow.db"


@pytest.fixture
def store(db_path, clock):
    s = ObjectStore(db_path, clock=clock)
    yield s
    s.close()


def pod(store, name):
    return store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "python"}]}})


def vm_steps(store, fn):
    """SQLite virtual-machine instructions run by ``fn()`` on the store's connection: a measure of
    the rows a statement visits that does not depend on the machine's speed."""
    steps = [0]

    def count():
        steps[0] += 1
        return 0

    store._conn.set_progress_handler(count, 1)
    try:
        fn()
    finally:
        store._conn.set_progress_handler(None, 1)
    return steps[0]


@pytest.mark.parametrize("sql", ["FIND_DUPLICATE", "EVENTS_FOR_UID", "EVENTS_FOR_NAME", "EXPIRED_EVENTS"])
def test_event_lookups_are_index_searches_not_scans(store, sql):
    text = getattr(ev_sql, sql)
    args = {"cutoff": 0, "limit": 10} if ":cutoff" in text else (("x",) * text.count("?"))
    plan = [row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + text, args)]
    assert plan and all(step.startswith("SEARCH") for step in plan), plan


def test_recording_a_repeat_costs_the_same_with_100_or_3000_events(store, clock):
    target = pod(store, "target")

    def repeat_cost():
        return vm_steps(store, lambda: store.record_event(target, "BackOff", "Back-off restarting", type="Warning"))

    store.record_event(target, "BackOff", "Back-off restarting", type="Warning")
    others = [pod(store, f"p{i}") for i in range(10)]
    for i in range(100):
        store.record_event(others[i % 10], "Pulled", f"image {i} present")
    small = repeat_cost()
    for i in range(100, 3000):
        store.record_event(others[i % 10], "Pulled", f"image {i} present")
    large = repeat_cost()
    (events,) = store._conn.execute("SELECT count(*) FROM objects WHERE kind = 'Event'").fetchone()
    assert events == 3001
    # A scan of 30x more Events would cost ~30x more; an index seek costs a few more B-tree levels.
    assert large < small * 1.5, (small, large)
    (bumped,) = [e for e in store.events_for(target) if e["reason"] == "BackOff"]
    assert bumped["count"] == 3
    assert vm_steps(store, lambda: store.events_for(target)) < small


def test_events_expire_after_the_ttl_on_the_store_clock(store, clock):
    a = pod(store, "a")
    old = store.record_event(a, "Scheduled", "assigned default/a")
    clock.advance(1800)
    kept = store.record_event(a, "Started", "started container main")
    clock.advance(1801)  # `old` is 3601 s old, `kept` 1801 s
    assert [e["reason"] for e in store.events_for(a)] == ["Started"]  # hidden at once
    before = store.resource_version
    with store.watch("events", since=before) as w:
        store.record_event(a, "Killing", "stopping")  # a write sweeps expired Events out
        got = [(e.type, e.object["reason"]) for e in w.drain()]
    assert got == [("DELETED", "Scheduled"), ("ADDED", "Killing")]
    assert sorted(e["reason"] for e in store.list("events")) == ["Killing", "Started"]
    (indexed,) = store._conn.execute("SELECT count(*) FROM event_index WHERE uid = ?", (old["metadata"]["uid"],)).fetchone()
    assert indexed == 0 and kept["metadata"]["uid"] in {e["metadata"]["uid"] for e in store.list("events")}


def test_the_event_ttl_is_configurable_and_maintain_expires_without_a_new_event(db_path, clock):
    with ObjectStore(db_path, clock=clock, event_ttl=60) as s:
        a = pod(s, "a")
        s.record_event(a, "Pulled", "image present")
        clock.advance(59)
        assert len(s.events_for(a)) == 1
        clock.advance(2)
        assert s.maintain()["events_expired"] == 1
        assert s.list("events") == []
    with ObjectStore(db_path, clock=clock, event_ttl=None) as s:
        a = s.get("pods", "a")
        s.record_event(a, "Pulled", "image present")
        clock.advance(10 * 86400)
        assert s.maintain()["events_expired"] == 0 and len(s.events_for(a)) == 1


def test_a_repeat_after_expiry_starts_a_new_event(store, clock):
    a = pod(store, "a")
    first = store.record_event(a, "BackOff", "Back-off", type="Warning")
    assert store.record_event(a, "BackOff", "Back-off", type="Warning")["count"] == 2
    clock.advance(3601)
    fresh = store.record_event(a, "BackOff", "Back-off", type="Warning")
    assert fresh["count"] == 1 and fresh["metadata"]["uid"] != first["metadata"]["uid"]
    assert [e["metadata"]["uid"] for e in store.list("events")] == [fresh["metadata"]["uid"]]


def test_events_written_directly_are_indexed_and_unindexed_on_delete(db_path, store, clock):
    a = pod(store, "a")
    ref = {k: a["metadata"].get(k, "") for k in ("name", "namespace", "uid")} | {"apiVersion": "v1", "kind": "Pod"}
    made = store.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "a.direct"}, "involvedObject": ref,
                         "reason": "Pulled", "message": "image present", "type": "Normal", "count": 1,
                         "source": {"component": "kubelet"}, "lastTimestamp": clock.rfc3339()})
    assert [e["metadata"]["name"] for e in store.events_for(a)] == ["a.direct"]
    bumped = store.record_event(a, "Pulled", "image present", component="kubelet")
    assert bumped["metadata"]["uid"] == made["metadata"]["uid"] and bumped["count"] == 2
    store.delete("events", "a.direct")
    assert store.events_for(a) == []
    (rows,) = sqlite3.connect(db_path).execute("SELECT count(*) FROM event_index").fetchone()
    assert rows == 0


def test_events_for_an_object_without_uid_match_kind_name_and_namespace(store):
    a = pod(store, "a")
    store.record_event(a, "Started", "started")
    assert [e["reason"] for e in store.events_for({"kind": "Pod", "metadata": {"name": "a", "namespace": "default"}})] == ["Started"]
    assert store.events_for({"kind": "Pod", "metadata": {"name": "a", "namespace": "other"}}) == []
