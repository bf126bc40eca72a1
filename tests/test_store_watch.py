"""The store's change log: cross-process watches, tombstones, resume from a resourceVersion, 410
Gone after compaction, and opening a workspace written before the log existed."""
from __future__ import annotations

import json
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

import pytest

from localflow.clock import FakeClock
from localflow.errors import Gone, SpecError
from localflow.fakes import LogLimits, ObjectStore
from localflow.fakes.watch import POLLER_THREAD_NAME

# A writer process: one ConfigMap write per line read on stdin, stamped with the wall time just
# before the write; prints the resourceVersion it got.
WRITER = r"""
import json, sys, time
from localflow.fakes import ObjectStore
s = ObjectStore(sys.argv[1])
for line in sys.stdin:
    op, name = line.split()
    stamp = {"metadata": {"annotations": {"t": repr(time.time())}}}
    if op == "create":
        obj = s.create({"kind": "ConfigMap", "metadata": {"name": name, **stamp["metadata"]}})
    elif op == "patch":
        obj = s.patch("cm", name, {"data": {"k": "v"}, **stamp})
    else:
        obj = s.delete("cm", name)
    print(obj["metadata"]["resourceVersion"], flush=True)
s.close()
"""

# A watcher process: watches ConfigMaps since argv[2] and prints each event as a JSON line until
# it has seen argv[3] events.
WATCHER = r"""
import json, sys
from localflow.fakes import ObjectStore
s = ObjectStore(sys.argv[1])
w = s.watch("cm", since=sys.argv[2])
print("ready", flush=True)
for _ in range(int(sys.argv[3])):
    ev = w.get(timeout=30)
    if ev is None:
        sys.exit("timed out")
    print(json.dumps({"type": ev.type, "object": ev.object}), flush=True)
s.close()
"""


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "localflow.db"


@pytest.fixture
def store(db_path):
    s = ObjectStore(db_path)
    yield s
    s.close()


def cm(name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def names(events):
    return [(e.type, e.object["metadata"]["name"]) for e in events]


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_watch_sees_another_processes_writes_within_50_ms(db_path, store):
    w = store.watch("cm")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    latencies, got = [], []
    try:
        ops = [("create", f"c{i}") for i in range(15)] + [("patch", "c3"), ("delete", "c4")]
        for op, name in ops:
            writer.stdin.write(f"{op} {name}\n")
            writer.stdin.flush()
            rv = writer.stdout.readline().strip()
            ev = w.get(timeout=5)  # the bounded poll: the event must come, and soon
            received = time.time()
            assert ev is not None, f"no event for {op} {name} within 5 s"
            assert ev.resource_version == rv
            got.append(ev)
            if op != "delete":
                latencies.append(received - float(ev.object["metadata"]["annotations"]["t"]))
    finally:
        writer.stdin.close()
        assert writer.wait(timeout=30) == 0
    assert names(got) == [("ADDED", f"c{i}") for i in range(15)] + [("MODIFIED", "c3"), ("DELETED", "c4")]
    assert got[-2].object["data"] == {"k": "v"}
    assert statistics.median(latencies) < 0.05, latencies
    w.close()


def test_a_watcher_process_sees_this_processes_writes_and_tombstones(db_path, store):
    owner = store.create(cm("owner"))
    start = store.resource_version
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(db_path), start, "4"], stdout=subprocess.PIPE, text=True)
    assert watcher.stdout.readline().strip() == "ready"
    child = store.create({**cm("child"), "metadata": {"name": "child", "ownerReferences": [ref]}})
    store.patch("cm", "owner", {"data": {"a": "1"}})
    last_owner = store.get("cm", "owner")
    deleted = store.delete("cm", "owner")
    lines = [json.loads(watcher.stdout.readline()) for _ in range(4)]
    assert watcher.wait(timeout=30) == 0
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [
        ("ADDED", "child"), ("MODIFIED", "owner"), ("DELETED", "owner"), ("DELETED", "child")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in lines]
    assert rvs == list(range(int(start) + 1, int(start) + 5))  # the deletes took versions of their own
    tomb = lines[2]["object"]
    assert tomb["data"] == last_owner["data"] == {"a": "1"}  # the last state ...
    assert tomb["metadata"]["resourceVersion"] == deleted["metadata"]["resourceVersion"] == str(rvs[2])
    assert lines[3]["object"]["metadata"]["uid"] == child["metadata"]["uid"]


def test_deletes_bump_the_resource_version_and_replay_as_tombstones(store):
    a = store.create(cm("a", x="1"))
    before = store.resource_version
    gone = store.delete("cm", "a")
    assert int(store.resource_version) == int(before) + 1
    assert int(gone["metadata"]["resourceVersion"]) == int(before) + 1 > int(a["metadata"]["resourceVersion"])
    with store.watch(since=before) as w:
        (ev,) = w.drain()
    assert ev.type == "DELETED" and ev.object == gone and ev.object["data"] == {"x": "1"}
    assert store.list("cm") == []


def test_watch_resumes_from_a_resource_version_with_every_writer_and_no_duplicate(db_path, store):
    store.create(cm("listed"))
    items, rv = store.list_with_rv("cm")
    assert type(items) is list and [o["metadata"]["name"] for o in items] == ["listed"] and rv == store.resource_version
    other = ObjectStore(db_path)  # a second connection stands for another writer
    try:
        for i in range(3):
            store.create(cm(f"mine{i}"))
            other.create(cm(f"theirs{i}"))
        store.delete("cm", "listed")
    finally:
        other.close()
    with ObjectStore(db_path) as reader, reader.watch("cm", since=rv) as w:
        got = w.drain()
        assert names(got) == [("ADDED", "mine0"), ("ADDED", "theirs0"), ("ADDED", "mine1"), ("ADDED", "theirs1"),
                              ("ADDED", "mine2"), ("ADDED", "theirs2"), ("DELETED", "listed")]
        assert w.resource_version == store.resource_version
        store.create(cm("live"))
        ev = w.get(timeout=5)
        assert names([ev]) == [("ADDED", "live")] and w.drain() == []
        middle = got[3].resource_version
    with store.watch("cm", since=middle) as w:
        assert [e.object["metadata"]["name"] for e in w.drain()] == ["mine2", "theirs2", "listed", "live"]


def test_interleaved_writes_of_two_processes_arrive_once_in_resource_version_order(db_path, store):
    n = 150
    code = (
        "import sys; from localflow.fakes import ObjectStore; s = ObjectStore(sys.argv[1])\n"
        f"for i in range({n}): s.create({{'kind': 'ConfigMap', 'metadata': {{'name': f'p{{i}}'}}}})\n"
    )
    with store.watch("cm") as w:
        proc = subprocess.Popen([sys.executable, "-c", code, str(db_path)])
        for i in range(n):
            store.create(cm(f"t{i}"))
        assert proc.wait(timeout=60) == 0
        events = []
        assert wait_for(lambda: events.extend(w.drain()) or len(events) >= 2 * n)
    rvs = [int(e.resource_version) for e in events]
    assert len(events) == 2 * n
    assert rvs == list(range(rvs[0], rvs[0] + 2 * n))  # every version once, none skipped, in order
    assert {e.object["metadata"]["name"] for e in events} == {f"p{i}" for i in range(n)} | {f"t{i}" for i in range(n)}


def test_list_and_watch_across_processes_misses_nothing(db_path, store):
    code = (
        "import sys; from localflow.fakes import ObjectStore; s = ObjectStore(sys.argv[1])\n"
        "for i in range(300): s.create({'kind': 'ConfigMap', 'metadata': {'name': f'p{i}'}})\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(db_path)])
    assert wait_for(lambda: len(store.list("cm")) >= 5, timeout=30)
    items, w = store.list_and_watch("cm")
    seen = [o["metadata"]["name"] for o in items]
    assert proc.wait(timeout=60) == 0
    assert wait_for(lambda: seen.extend(e.object["metadata"]["name"] for e in w.drain()) or len(seen) >= 300)
    w.close()
    assert seen == [f"p{i}" for i in range(300)]


def test_a_compacted_resource_version_answers_410_gone(db_path):
    with ObjectStore(db_path, log_limits=LogLimits(max_entries=10, compact_every=5)) as s:
        for i in range(40):
            s.create(cm(f"c{i}"))
        stats = s.log_stats()
        assert stats["newest"] == 40 and stats["entries"] <= 15 and stats["oldest"] >= 25
        with pytest.raises(Gone) as err:
            s.watch("cm", since=3)
        assert str(err.value) == f"410 Gone: resourceVersion 3 is too old (oldest kept: {stats['oldest']}); relist"
        with s.watch("cm", since=stats["oldest"]) as w:
            assert len(w.drain()) == 40 - stats["oldest"]
    code = "import sys; from localflow.fakes import ObjectStore; ObjectStore(sys.argv[1]).watch('cm', since=3)"
    out = subprocess.run([sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "410 Gone: resourceVersion 3 is too old" in out.stderr


def test_compaction_bounds_the_log_by_bytes_and_by_age(tmp_path):
    limits = LogLimits(max_entries=None, max_bytes=20_000, max_age=None, compact_every=1)
    with ObjectStore(tmp_path / "bytes.db", log_limits=limits) as s:
        for i in range(100):
            s.create(cm(f"c{i}", blob="x" * 1000))
        stats = s.log_stats()
        (actual,) = sqlite3.connect(tmp_path / "bytes.db").execute("SELECT sum(size) FROM object_log").fetchone()
        assert stats["bytes"] == actual <= 20_000 and stats["entries"] >= 15
    # Large objects trigger compaction before compact_every writes: the bound holds within 1/16.
    limits = LogLimits(max_entries=None, max_bytes=64_000, max_age=None, compact_every=10_000)
    with ObjectStore(tmp_path / "big.db", log_limits=limits) as s:
        for i in range(200):
            s.create(cm(f"c{i}", blob="x" * 2000))
        assert s.log_stats()["bytes"] <= 64_000 + 64_000 // 16 + 2100
    clock = FakeClock()
    with ObjectStore(tmp_path / "age.db", clock=clock, log_limits=LogLimits(max_age=60, compact_every=1)) as s:
        for i in range(5):
            s.create(cm(f"old{i}"))
        clock.advance(61)
        s.create(cm("new"))
        assert s.log_stats() == {"entries": 1, "bytes": s.log_stats()["bytes"], "oldest": 5, "newest": 6}
        with pytest.raises(Gone):
            s.watch(since=4)


def test_one_poller_thread_serves_every_watch_and_stops_with_the_store(db_path):
    def pollers():
        return [t for t in threading.enumerate() if t.name == POLLER_THREAD_NAME]

    before = len(pollers())
    s = ObjectStore(db_path)
    assert len(pollers()) == before  # no thread until a watch opens
    watches = [s.watch("cm") for _ in range(5)] + [s.watch("pods", since=0)]
    assert len(pollers()) == before + 1
    other = ObjectStore(db_path)
    other.create(cm("x"))
    other.close()
    for w in watches[:5]:
        ev = w.get(timeout=5)
        assert ev is not None and ev.object["metadata"]["name"] == "x"
    s.close()
    assert wait_for(lambda: len(pollers()) == before)
    assert all(w.closed for w in watches)


def test_watch_rejects_a_malformed_resource_version(store):
    with pytest.raises(SpecError, match="resourceVersion"):
        store.watch("cm", since="latest")
    store.create(cm("a"))
    for bad in (-1, 2):
        with pytest.raises(SpecError, match="newest: 1"):
            store.watch("cm", since=bad)


# The schema localflow wrote before the change log existed (sqlite-utils made it).
OLD_SCHEMA = [
    'CREATE TABLE "objects" (\n   "uid" TEXT PRIMARY KEY,\n   "grp" TEXT NOT NULL,\n   "kind" TEXT NOT NULL,\n'
    '   "namespace" TEXT NOT NULL,\n   "name" TEXT NOT NULL,\n   "rv" INTEGER NOT NULL,\n   "seq" INTEGER NOT NULL,\n'
    '   "body" TEXT NOT NULL\n)',
    'CREATE UNIQUE INDEX "idx_objects_grp_kind_namespace_name"\n    ON "objects" ("grp", "kind", "namespace", "name")',
    'CREATE INDEX "idx_objects_kind_namespace_seq"\n    ON "objects" ("kind", "namespace", "seq")',
    'CREATE TABLE "object_counters" (\n   "name" TEXT PRIMARY KEY,\n   "value" INTEGER\n)',
]


def test_a_workspace_from_the_previous_version_opens_and_works(db_path):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u-p",
                                                           "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"}}
    event = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "p.1", "namespace": "default", "uid": "u-e",
                                                               "resourceVersion": "2"},
             "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": "p", "namespace": "default", "uid": "u-p"},
             "reason": "Started", "message": "started", "type": "Normal", "count": 1, "source": {"component": "kubelet"},
             "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z"}
    conn = sqlite3.connect(db_path)
    for stmt in OLD_SCHEMA:
        conn.execute(stmt)
    for rv, grp, obj in ((1, "", pod), (2, "", event)):
        m = obj["metadata"]
        conn.execute("INSERT INTO objects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (m["uid"], grp, obj["kind"], m["namespace"], m["name"], rv, rv, json.dumps(obj)))
    conn.execute("INSERT INTO object_counters VALUES ('resourceVersion', 2)")
    conn.commit()
    conn.close()
    with ObjectStore(db_path, clock=FakeClock()) as s:
        assert s.get("pods", "p")["metadata"]["uid"] == "u-p"
        assert [e["reason"] for e in s.events_for(pod)] == ["Started"]
        again = s.record_event(pod, "Started", "started", component="kubelet")  # de-dups against the old Event
        assert again["metadata"]["name"] == "p.1" and again["count"] == 2
        with pytest.raises(Gone, match="oldest kept: 2"):
            s.watch(since=1)
        with s.watch(since=2) as w:
            assert names(w.drain()) == [("MODIFIED", "p.1")]
        assert s.create(cm("new"))["metadata"]["resourceVersion"] == "4"
    with ObjectStore(db_path) as s:  # and it opens again, unchanged
        assert s.log_stats()["entries"] == 2 and len(s.list("events")) == 1
