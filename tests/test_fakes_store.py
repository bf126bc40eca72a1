"""The fake object store behaves like the Kubernetes API server where controllers can tell."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localflow.clock import FakeClock
from localflow.errors import AlreadyExists, Conflict, NotFound, SpecError
from localflow.training.runtimes import BUILTIN_RUNTIMES
from localflow.fakes import (
    ObjectStore,
    Requirement,
    format_selector,
    matches,
    merge_patch,
    parse_selector,
    register_kind,
    resolve_kind,
)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "localflow.db"


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def store(db_path, clock):
    s = ObjectStore(db_path, clock=clock)
    yield s
    s.close()


def pod(name, labels=None, owners=(), namespace=None, **spec):
    meta = {"name": name}
    if labels:
        meta["labels"] = labels
    if namespace:
        meta["namespace"] = namespace
    if owners:
        meta["ownerReferences"] = [
            {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"], "uid": o["metadata"]["uid"]}
            for o in owners
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "main", "image": "python"}], **spec}}


def job(name):
    """A valid PyTorchJob (the store admits only what the training operator's webhook would)."""
    worker = {"replicas": 1, "template": {"spec": {"containers": [{"name": "pytorch", "image": "python"}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name},
            "spec": {"pytorchReplicaSpecs": {"Worker": worker}}}


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---------------------------------------------------------------- create / get


def test_create_fills_server_side_metadata(store, clock):
    obj = store.create(pod("a"))
    meta = obj["metadata"]
    assert meta["namespace"] == "default"
    assert len(meta["uid"]) == 36
    assert meta["resourceVersion"] == "1"
    assert meta["generation"] == 1
    assert meta["creationTimestamp"] == clock.rfc3339() == "2026-01-01T00:00:00Z"
    assert store.get("Pod", "a") == obj


def test_create_does_not_modify_the_callers_dict(store):
    manifest = pod("a")
    store.create(manifest)
    assert "uid" not in manifest["metadata"]


def test_results_are_deep_copies(store):
    store.create(pod("a", labels={"x": "1"}))
    got = store.get("pods", "a")
    got["metadata"]["labels"]["x"] = "changed"
    got["spec"]["containers"].clear()
    again = store.get("pods", "a")
    assert again["metadata"]["labels"]["x"] == "1"
    assert again["spec"]["containers"]


def test_resource_versions_increase_across_kinds(store):
    rvs = [int(store.create(pod(f"p{i}"))["metadata"]["resourceVersion"]) for i in range(3)]
    rvs.append(int(store.create(job("j"))["metadata"]["resourceVersion"]))
    assert rvs == sorted(rvs) and len(set(rvs)) == 4
    assert store.resource_version == str(rvs[-1])


def test_missing_kind_is_a_spec_error_with_path(store):
    with pytest.raises(SpecError) as err:
        store.create({"metadata": {"name": "a"}})
    assert err.value.path == "kind"


def test_missing_name_is_a_spec_error_with_path(store):
    with pytest.raises(SpecError) as err:
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {}})
    assert err.value.path == "Pod.metadata.name"


def test_invalid_name_is_rejected_like_the_api_server(store):
    with pytest.raises(SpecError, match="not a valid name"):
        store.create(pod("Bad_Name"))


def test_unknown_kind_lists_known_kinds(store):
    with pytest.raises(SpecError) as err:
        store.create({"apiVersion": "v1", "kind": "Gadget", "metadata": {"name": "g"}})
    assert "pytorchjobs" in str(err.value)


def test_generate_name_makes_a_unique_name(store):
    spec = {"containers": [{"name": "main", "image": "python"}]}
    a = store.create({"kind": "Pod", "metadata": {"generateName": "train-"}, "spec": spec})
    b = store.create({"kind": "Pod", "metadata": {"generateName": "train-"}, "spec": spec})
    assert a["metadata"]["name"].startswith("train-") and len(a["metadata"]["name"]) == len("train-") + 5
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert a["apiVersion"] == "v1"


def test_already_exists_on_same_kind_namespace_and_name(store):
    store.create(pod("a"))
    with pytest.raises(AlreadyExists, match='Pod "a" already exists in namespace "default"'):
        store.create(pod("a"))
    store.create(pod("a", namespace="other"))  # another namespace is fine
    store.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}})  # another kind too
    assert len(store.list(namespace=None)) == 3


def test_get_missing_names_kind_namespace_and_cli_hint(store):
    with pytest.raises(NotFound) as err:
        store.get("po", "nope", namespace="team")
    msg = str(err.value)
    assert 'Pod "nope"' in msg and '"team"' in msg and "localflow get pods" in msg


def test_cluster_scoped_kinds_have_no_namespace(store):
    rt = store.create({"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
                       "metadata": {"name": "torch", "namespace": "ignored"},
                       "spec": copy.deepcopy(BUILTIN_RUNTIMES["torch-distributed"]["spec"])})
    assert "namespace" not in rt["metadata"]
    assert store.get("clustertrainingruntimes", "torch", namespace="anything") == rt
    assert [o["metadata"]["name"] for o in store.list("ClusterTrainingRuntime", namespace="x")] == ["torch"]
    assert store.list(namespace="default") == []  # namespaced listing leaves cluster-scoped out


# ---------------------------------------------------------------- list / selectors


def test_list_is_ordered_by_creation_not_update(store):
    for name in ("c", "a", "b"):
        store.create(pod(name))
    store.update_status("Pod", "c", {"phase": "Running"})
    assert [p["metadata"]["name"] for p in store.list("Pod")] == ["c", "a", "b"]


def test_list_filters_by_namespace_kind_labels_and_owner(store):
    owner = store.create(job("j"))
    store.create(pod("w0", labels={"role": "worker", "idx": "0"}, owners=[owner]))
    store.create(pod("w1", labels={"role": "worker", "idx": "1"}, owners=[owner]))
    store.create(pod("m", labels={"role": "master"}))
    store.create(pod("o", labels={"role": "worker"}, namespace="other"))
    names = lambda objs: [o["metadata"]["name"] for o in objs]  # noqa: E731
    assert names(store.list("Pod")) == ["w0", "w1", "m"]
    assert names(store.list("Pod", namespace=None)) == ["w0", "w1", "m", "o"]
    assert names(store.list("Pod", label_selector="role=worker")) == ["w0", "w1"]
    assert names(store.list("Pod", label_selector={"role": "worker", "idx": "1"})) == ["w1"]
    assert names(store.list("Pod", label_selector="role in (master,chief)")) == ["m"]
    assert names(store.list("Pod", label_selector="role!=worker")) == ["m"]
    assert names(store.list("Pod", label_selector="!idx")) == ["m"]
    assert names(store.list("Pod", label_selector="idx,idx notin (0)")) == ["w1"]
    assert names(store.list(owner_uid=owner["metadata"]["uid"])) == ["w0", "w1"]
    assert names(store.list()) == ["j", "w0", "w1", "m"]


@pytest.mark.parametrize(
    "selector, labels, expected",
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),  # != matches a missing key, as upstream
        ("a notin (x)", {}, True),
        ("a in (x,y)", {}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "1"}, False),
        ("n>3", {"n": "4"}, True),
        ("n<3", {"n": "x"}, False),
        ("a=b, c in ( x , y ),!d", {"a": "b", "c": "y"}, True),
        ("", {"anything": "1"}, True),
        ({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "c", "operator": "NotIn", "values": ["z"]}]}, {"a": "b"}, True),
        ({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, {"a": "b"}, False),
        ({"app": "x"}, {"app": "x", "more": "y"}, True),
        (None, {}, True),
    ],
)
def test_label_selector_semantics(selector, labels, expected):
    assert matches(labels, selector) is expected


@pytest.mark.parametrize("bad", ["a=b=c", "a in ()", "a in (x", "=b", "a,,b", "a>x", "bad key=1", {"matchExpressions": [{"key": "a", "operator": "Near"}]}])
def test_bad_selectors_are_spec_errors(bad):
    with pytest.raises(SpecError):
        parse_selector(bad, "spec.selector")


_names = st.from_regex(r"[a-z0-9]([a-z0-9._-]{0,10}[a-z0-9])?", fullmatch=True)
_keys = st.one_of(_names, st.builds(lambda p, n: f"{p}/{n}", st.from_regex(r"[a-z]{1,5}\.[a-z]{2,3}", fullmatch=True), _names))
_reqs = st.one_of(
    st.builds(lambda k, v: Requirement(k, "=", (v,)), _keys, _names),
    st.builds(lambda k, v: Requirement(k, "!=", (v,)), _keys, _names),
    st.builds(lambda k, vs: Requirement(k, "in", tuple(vs)), _keys, st.lists(_names, min_size=1, max_size=3)),
    st.builds(lambda k, vs: Requirement(k, "notin", tuple(vs)), _keys, st.lists(_names, min_size=1, max_size=3)),
    st.builds(lambda k: Requirement(k, "exists"), _keys),
    st.builds(lambda k: Requirement(k, "!"), _keys),
    st.builds(lambda k, n: Requirement(k, ">", (str(n),)), _keys, st.integers(-50, 50)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(_reqs, max_size=5))
def test_selector_string_round_trips(reqs):
    assert parse_selector(format_selector(reqs)) == reqs


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_keys, _names, max_size=4), st.dictionaries(_keys, _names, max_size=4))
def test_equality_selector_dict_and_string_agree(selector, labels):
    as_string = ",".join(f"{k}={v}" for k, v in selector.items())
    expected = all(labels.get(k) == v for k, v in selector.items())
    assert matches(labels, selector) is expected
    assert matches(labels, as_string) is expected


# ---------------------------------------------------------------- kinds


@pytest.mark.parametrize("name", ["Pod", "pod", "pods", "PO", "po"])
def test_resolve_kind_accepts_every_spelling(name):
    assert resolve_kind(name).kind == "Pod"


def test_resolve_kind_group_suffix_and_registration(store):
    assert resolve_kind("runs.pipelines.kubeflow.org").api_version == "pipelines.kubeflow.org/v2beta1"
    assert resolve_kind("isvc").kind == "InferenceService"
    register_kind("example.com/v1", "Widget", short_names=["wdg"])
    register_kind("other.example.com/v1", "Widget")
    with pytest.raises(SpecError, match="ambiguous"):
        resolve_kind("widgets")
    assert resolve_kind("widgets.example.com").group == "example.com"
    w = store.create({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    store.create({"apiVersion": "other.example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})  # other group: no clash
    assert store.get("wdg", "w") == w


# ---------------------------------------------------------------- update / patch / status


def test_update_with_stale_resource_version_conflicts(store):
    first = store.create(pod("a"))
    second = store.get("Pod", "a")
    first["metadata"]["labels"] = {"x": "1"}
    store.update(first)
    second["metadata"]["labels"] = {"y": "2"}
    with pytest.raises(Conflict, match="modified"):
        store.update(second)
    assert store.get("Pod", "a")["metadata"]["labels"] == {"x": "1"}


def test_update_keeps_identity_and_bumps_generation_only_on_spec_change(store, clock):
    created = store.create(pod("a"))
    clock.advance(60)
    obj = dict(created, status={"phase": "Running"})
    obj["metadata"] = {k: v for k, v in created["metadata"].items() if k not in ("uid", "creationTimestamp")}
    after_status = store.update(obj)
    assert after_status["metadata"]["generation"] == 1
    assert after_status["metadata"]["uid"] == created["metadata"]["uid"]
    assert after_status["metadata"]["creationTimestamp"] == created["metadata"]["creationTimestamp"]
    after_status["spec"]["restartPolicy"] = "Never"
    after_spec = store.update(after_status)
    assert after_spec["metadata"]["generation"] == 2
    assert int(after_spec["metadata"]["resourceVersion"]) > int(after_status["metadata"]["resourceVersion"])


def test_update_of_missing_object_is_not_found(store):
    with pytest.raises(NotFound):
        store.update(pod("ghost"))


def test_update_with_another_uid_conflicts(store):
    old = store.create(pod("a"))
    store.delete("Pod", "a")
    store.create(pod("a"))
    old["metadata"].pop("resourceVersion")
    with pytest.raises(Conflict, match="uid"):
        store.update(old)


def test_optimistic_concurrency_loses_no_increment_across_threads(store):
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "counter"}, "data": {"n": "0"}})

    def bump(times):
        for _ in range(times):
            while True:
                cm = store.get("cm", "counter")
                cm["data"]["n"] = str(int(cm["data"]["n"]) + 1)
                try:
                    store.update(cm)
                    break
                except Conflict:
                    continue

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("cm", "counter")["data"]["n"] == "100"


def test_merge_patch_follows_rfc7386():
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3], "n": {"x": None, "y": 1}}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3], "n": {"y": 1}}
    assert target["c"] == {"d": "e", "f": "g"}  # input untouched
    assert merge_patch({"a": 1}, ["x"]) == ["x"]


def test_patch_merges_and_protects_identity(store):
    created = store.create(pod("a", labels={"keep": "1", "drop": "1"}))
    out = store.patch("Pod", "a", {"metadata": {"labels": {"drop": None, "new": "2"}, "name": "renamed", "uid": "x"},
                                   "spec": {"restartPolicy": "Never"}})
    assert out["metadata"]["labels"] == {"keep": "1", "new": "2"}
    assert out["metadata"]["name"] == "a" and out["metadata"]["uid"] == created["metadata"]["uid"]
    assert out["metadata"]["generation"] == 2
    assert out["spec"]["containers"] == created["spec"]["containers"]


def test_patch_with_stale_resource_version_conflicts(store):
    created = store.create(pod("a"))
    store.patch("Pod", "a", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(Conflict):
        store.patch("Pod", "a", {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}})


def test_update_status_replaces_status_and_keeps_generation(store):
    store.create(pod("a"))
    store.update_status("Pod", "a", {"phase": "Running", "podIP": "127.0.0.1"})
    out = store.update_status("Pod", "a", {"phase": "Succeeded"})
    assert out["status"] == {"phase": "Succeeded"}
    assert out["metadata"]["generation"] == 1


def test_set_condition_moves_transition_time_only_when_status_changes(store, clock):
    store.create(job("j"))
    t0 = clock.rfc3339()
    first = store.set_condition("pytorchjobs", "j", "Running", "True", reason="Started", message="running")
    clock.advance(10)
    same = store.set_condition("pytorchjobs", "j", "Running", "True", reason="Started", message="running")
    assert same["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]  # identical: no write
    t1 = clock.rfc3339()
    reworded = store.set_condition("pytorchjobs", "j", "Running", "True", reason="Scaled", message="3 workers")
    (cond,) = reworded["status"]["conditions"]
    assert cond["lastTransitionTime"] == t0 and cond["lastUpdateTime"] == t1
    clock.advance(10)
    flipped = store.set_condition("pytorchjobs", "j", "Running", False, reason="Done")
    (cond,) = flipped["status"]["conditions"]
    assert cond["status"] == "False" and cond["lastTransitionTime"] == clock.rfc3339()
    both = store.set_condition("pytorchjobs", "j", "Succeeded", "True")
    assert [c["type"] for c in both["status"]["conditions"]] == ["Running", "Succeeded"]
    with pytest.raises(SpecError):
        store.set_condition("pytorchjobs", "j", "Succeeded", "yes")


# ---------------------------------------------------------------- delete / garbage collection


def test_delete_cascades_through_owner_references(store):
    j = store.create(job("j"))
    p0 = store.create(pod("j-worker-0", owners=[j]))
    store.create(pod("j-worker-1", owners=[j]))
    store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "grandchild", "ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": "j-worker-0", "uid": p0["metadata"]["uid"]}]}})
    store.create(pod("bystander"))
    with store.watch() as w:
        deleted = store.delete("PyTorchJob", "j")
        events = w.drain()
    assert deleted["metadata"]["name"] == "j"
    assert [o["metadata"]["name"] for o in store.list(namespace=None)] == ["bystander"]
    assert [(e.type, e.object["metadata"]["name"]) for e in events] == [
        ("DELETED", "j"), ("DELETED", "j-worker-0"), ("DELETED", "j-worker-1"), ("DELETED", "grandchild")]
    with pytest.raises(NotFound):
        store.delete("PyTorchJob", "j")


def test_foreground_deletion_reports_dependents_first(store):
    j = store.create(job("j"))
    store.create(pod("p", owners=[j]))
    with store.watch() as w:
        store.delete("PyTorchJob", "j", propagation="Foreground")
        assert [e.object["metadata"]["name"] for e in w.drain()] == ["p", "j"]


def test_dependent_with_another_live_owner_survives_and_loses_the_reference(store):
    a, b = store.create(job("a")), store.create(job("b"))
    store.create(pod("shared", owners=[a, b]))
    store.delete("PyTorchJob", "a")
    survivor = store.get("Pod", "shared")
    assert [r["name"] for r in survivor["metadata"]["ownerReferences"]] == ["b"]
    store.delete("PyTorchJob", "b")
    assert store.list("Pod") == []


def test_orphan_deletion_keeps_dependents_without_the_reference(store):
    j = store.create(job("j"))
    store.create(pod("p", owners=[j]))
    with store.watch(kind="Pod") as w:
        store.delete("PyTorchJob", "j", propagation="Orphan")
        (ev,) = w.drain()
    assert ev.type == "MODIFIED" and "ownerReferences" not in ev.object["metadata"]
    assert "ownerReferences" not in store.get("Pod", "p")["metadata"]
    with pytest.raises(SpecError):
        store.delete("Pod", "p", propagation="Later")


# ---------------------------------------------------------------- watch


def test_watch_sees_only_later_changes_matching_its_filter(store):
    store.create(pod("before", labels={"app": "x"}))
    with store.watch(kind="Pod", label_selector="app=x") as w:
        store.create(pod("match", labels={"app": "x"}))
        store.create(pod("other", labels={"app": "y"}))
        store.create(job("j"))
        store.update_status("Pod", "before", {"phase": "Running"})
        store.delete("Pod", "match")
        got = [(e.type, e.object["metadata"]["name"]) for e in w.drain()]
    assert got == [("ADDED", "match"), ("MODIFIED", "before"), ("DELETED", "match")]


def test_watch_events_carry_private_snapshots(store):
    with store.watch() as w1, store.watch() as w2:
        store.create(pod("a"))
        e1, e2 = w1.get(timeout=1), w2.get(timeout=1)
    e1.object["metadata"]["name"] = "mutated"
    assert e2.object["metadata"]["name"] == "a"


def test_watch_order_matches_resource_versions_across_writer_threads(store):
    n_threads, per_thread = 4, 30
    with store.watch(kind="Pod") as w:
        def writer(t):
            for i in range(per_thread):
                store.create(pod(f"t{t}-{i}"))
                store.update_status("Pod", f"t{t}-{i}", {"phase": "Running"})

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        events = w.drain()
    rvs = [int(e.object["metadata"]["resourceVersion"]) for e in events]
    assert len(events) == n_threads * per_thread * 2
    assert rvs == sorted(rvs) and len(set(rvs)) == len(rvs)
    seen_added = set()
    for e in events:
        name = e.object["metadata"]["name"]
        if e.type == "ADDED":
            seen_added.add(name)
        else:
            assert name in seen_added  # MODIFIED never precedes ADDED


def test_watch_get_blocks_until_an_event_from_another_thread(store):
    with store.watch(kind="Pod") as w:
        t = threading.Thread(target=lambda: store.create(pod("late")))
        t.start()
        ev = w.get(timeout=10)
        t.join()
    assert ev is not None and ev.type == "ADDED" and ev.object["metadata"]["name"] == "late"


def test_closing_a_watch_releases_a_blocked_reader_and_ends_iteration(store):
    w = store.watch()
    received = []

    def read():
        for ev in w:
            received.append(ev)

    reader = threading.Thread(target=read)
    reader.start()
    store.create(pod("a"))
    assert wait_for(lambda: len(received) == 1)
    w.close()
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert w.get(timeout=0.01) is None
    store.create(pod("b"))  # writes after close go nowhere and do not fail
    assert len(received) == 1


def test_an_unread_watch_never_blocks_writers(store):
    w = store.watch()
    for i in range(500):
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm{i}"}})
    assert len(w.drain()) == 500
    w.close()


def test_list_and_watch_misses_nothing_between_the_two(store):
    stop = threading.Event()
    created = []

    def writer():
        i = 0
        while not stop.is_set():
            store.create(pod(f"p{i}"))
            created.append(f"p{i}")
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    assert wait_for(lambda: len(created) >= 5)
    items, w = store.list_and_watch(kind="Pod")
    assert wait_for(lambda: len(created) >= len(items) + 5)
    stop.set()
    t.join()
    seen = [o["metadata"]["name"] for o in items] + [e.object["metadata"]["name"] for e in w.drain()]
    w.close()
    assert seen == created


# ---------------------------------------------------------------- events


def test_identical_events_are_counted_not_duplicated(store, clock):
    p = store.create(pod("a"))
    first = store.record_event(p, "BackOff", "Back-off restarting failed container", type="Warning", component="kubelet")
    clock.advance(30)
    store.record_event(p, "BackOff", "Back-off restarting failed container", type="Warning", component="kubelet")
    clock.advance(30)
    third = store.record_event(p, "BackOff", "Back-off restarting failed container", type="Warning", component="kubelet")
    assert third["metadata"]["name"] == first["metadata"]["name"]
    assert third["metadata"]["name"].startswith("a.")
    assert third["count"] == 3
    assert third["firstTimestamp"] == "2026-01-01T00:00:00Z" and third["lastTimestamp"] == "2026-01-01T00:01:00Z"
    assert third["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "a", "namespace": "default", "uid": p["metadata"]["uid"]}
    assert third["source"] == {"component": "kubelet"}
    assert len(store.list("events")) == 1


def test_events_for_lists_one_objects_events_oldest_first(store, clock):
    a, b = store.create(pod("a")), store.create(pod("b"))
    store.record_event(a, "Scheduled", "assigned default/a")
    clock.advance(1)
    store.record_event(b, "Scheduled", "assigned default/b")
    store.record_event(a, "Pulled", "image present")
    clock.advance(1)
    store.record_event(a, "Started", "started container main")
    assert [e["reason"] for e in store.events_for(a)] == ["Scheduled", "Pulled", "Started"]
    assert [e["reason"] for e in store.events_for(b)] == ["Scheduled"]
    with pytest.raises(SpecError):
        store.record_event(a, "X", "y", type="Error")


def test_events_of_a_deleted_object_remain(store):
    a = store.create(pod("a"))
    store.record_event(a, "Killing", "stopping")
    store.delete("Pod", "a")
    assert [e["reason"] for e in store.events_for(a)] == ["Killing"]


# ---------------------------------------------------------------- persistence / cross-connection


def test_second_store_on_the_same_file_reads_and_writes(db_path, store):
    store.create(pod("a"))
    other = ObjectStore(db_path)
    try:
        assert other.get("Pod", "a")["metadata"]["uid"] == store.get("Pod", "a")["metadata"]["uid"]
        made = other.create(pod("b"))
        assert int(made["metadata"]["resourceVersion"]) > int(store.get("Pod", "a")["metadata"]["resourceVersion"])
        assert [p["metadata"]["name"] for p in store.list("Pod")] == ["a", "b"]
    finally:
        other.close()


def test_another_process_reads_committed_objects_while_the_store_is_open(db_path, store):
    store.create(pod("a", labels={"app": "x"}))
    store.update_status("Pod", "a", {"phase": "Running"})
    code = (
        "import json, sys; from localflow.fakes import ObjectStore; "
        "s = ObjectStore(sys.argv[1]); print(json.dumps(s.list('pods'))); "
        "s.record_event(s.get('pods', 'a'), 'Seen', 'by another process'); s.close()"
    )
    out = subprocess.run([sys.executable, "-c", code, str(db_path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    (listed,) = json.loads(out.stdout)
    assert listed["status"] == {"phase": "Running"}
    assert [e["reason"] for e in store.events_for(listed)] == ["Seen"]


def test_objects_survive_reopening(db_path):
    with ObjectStore(db_path) as s:
        s.create(job("j"))
    with ObjectStore(db_path) as s:
        assert s.get("pytorchjob", "j")["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] == 1
        assert s.create(pod("p"))["metadata"]["resourceVersion"] == "2"


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path):
    db = tmp_path / "fresh.db"
    code = (
        "import sys; from localflow.fakes import ObjectStore; from localflow.metadata import MetadataStore\n"
        "o = ObjectStore(sys.argv[1]); m = MetadataStore(sys.argv[1])\n"
        "for i in range(10):\n"
        "    o.create({'kind': 'ConfigMap', 'metadata': {'generateName': 'c-'}}); m.create_execution('r', 't', 'n')\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    failures = [p.stderr.read() for p in procs if p.wait(timeout=60) != 0]
    assert failures == []
    with ObjectStore(db) as s:
        assert len(s.list("cm")) == 40 and s.resource_version == "40"
