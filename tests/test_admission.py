"""Admission on every store write, and the kind table that feeds it (issue 8, "One kind table",
"Object store: admission", "Bad input").

Every writer goes through the store's admission: an invalid TFJob written straight into an
``ObjectStore`` is refused with the error ``localflow run`` gives for the same file; status writes
skip validation; a Secret's ``stringData`` is encoded by the store; a stale resourceVersion is a
Conflict. Corpus specs (../shared/corpus) are used where they exist and skipped where not.
"""
from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from localflow import kinds
from localflow.clock import FakeClock
from localflow.errors import Conflict, SpecError
from localflow.fakes import ObjectStore, register_admission, register_kind
from localflow.specs.loader import detect_kind, load_documents
from localflow.specs.training import load_job

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the upstream corpus is not at {CORPUS}")


@pytest.fixture
def store(tmp_path):
    s = ObjectStore(tmp_path / "localflow.db", clock=FakeClock())
    yield s
    s.close()


def tfjob(name="tf", container="tensorflow", **worker):
    spec = {"replicas": 2, "template": {"spec": {"containers": [{"name": container, "image": "python:3.11",
                                                                  "command": ["python", "-c", "pass"]}]}}, **worker}
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
            "spec": {"tfReplicaSpecs": {"Worker": spec}}}


def lf(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "localflow", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "LOCALFLOW_HOME": ""})


# ---------------------------------------------------------------- direct writes are admitted


@pytest.mark.slow  # one `localflow run` subprocess
def test_invalid_tfjob_written_into_the_store_gets_the_error_localflow_run_gives(store, tmp_path):
    bad = tfjob(container="tf")  # the TFJob webhook wants a container named tensorflow
    with pytest.raises(SpecError) as direct:
        store.create(bad)
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(bad))
    p = lf("run", spec, "--workspace", tmp_path / "ws")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip() == f"error: {direct.value}"
    assert direct.value.path == "TFJob.spec.tfReplicaSpecs.Worker.template.spec.containers"
    assert store.list("TFJob") == []  # nothing was written


def test_an_update_or_patch_that_breaks_a_stored_job_is_refused_and_the_object_kept(store):
    good = store.create(tfjob())
    broken = copy.deepcopy(good)
    broken["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = -1
    with pytest.raises(SpecError) as err:
        store.update(broken)
    assert err.value.path == "TFJob.spec.tfReplicaSpecs.Worker.replicas"
    with pytest.raises(SpecError) as err:
        store.patch("TFJob", "tf", {"spec": {"tfReplicaSpecs": {"Wroker": {"replicas": 1}}}})
    assert err.value.path == "TFJob.spec.tfReplicaSpecs.Wroker" and "unsupported replica type" in err.value.message
    assert store.get("TFJob", "tf") == good  # neither write happened


def test_the_store_defaults_training_jobs_as_localflow_run_stores_them(store):
    stored = store.create(tfjob())
    assert stored["spec"] == load_job(tfjob())["spec"]  # the operator's defaults (ports, restartPolicy, runPolicy)


def test_status_writes_skip_admission_and_spec_writes_do_not(store):
    register_kind("admission.example.com/v1", "Gizmo")
    seen = []
    register_admission("admission.example.com", "Gizmo", validate=lambda obj, old: seen.append((obj["spec"], old is None)))
    g = store.create({"apiVersion": "admission.example.com/v1", "kind": "Gizmo", "metadata": {"name": "g"},
                      "spec": {"n": 1}})
    assert seen == [({"n": 1}, True)]
    store.update_status("Gizmo", "g", {"phase": "Running"})
    store.set_condition("Gizmo", "g", "Ready", True)
    store.patch("Gizmo", "g", {"metadata": {"labels": {"a": "b"}}})  # metadata only: it was admitted already
    assert len(seen) == 1
    store.patch("Gizmo", "g", {"spec": {"n": 2}})
    g = store.get("Gizmo", "g")
    g["spec"]["n"] = 3
    store.update(g)
    assert seen[1:] == [({"n": 2}, False), ({"n": 3}, False)]


def test_a_pod_is_validated_when_created_and_its_status_writes_are_not(store):
    with pytest.raises(SpecError) as err:
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}})
    assert err.value.path == "Pod.spec.containers" and "at least one container" in err.value.message
    with pytest.raises(SpecError) as err:
        store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                      "spec": {"containers": [{"name": "Main_1", "image": "python"}]}})
    assert err.value.path == "Pod.spec.containers[0].name"
    store.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                  "spec": {"containers": [{"name": "main", "image": "python"}]}})
    import time

    t0 = time.perf_counter()
    for i in range(200):  # the kubelet's writes: the status subresource, no hook at all
        store.update_status("Pod", "p", {"phase": "Running", "n": i})
    per_write = (time.perf_counter() - t0) / 200
    assert store.get("Pod", "p")["status"]["n"] == 199 and per_write < 0.05


# ---------------------------------------------------------------- Secrets: stringData encoded by the store


def test_secret_string_data_is_encoded_into_data_by_the_store(store):
    s = store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                      "data": {"user": base64.b64encode(b"old").decode(), "host": base64.b64encode(b"h").decode()},
                      "stringData": {"user": "ada", "password": "hunter22"}})
    assert "stringData" not in s
    assert {k: base64.b64decode(v).decode() for k, v in s["data"].items()} == \
        {"user": "ada", "password": "hunter22", "host": "h"}  # stringData wins over data, as the API server does
    s["stringData"] = {"token": "t0k"}
    updated = store.update(s)
    assert base64.b64decode(updated["data"]["token"]) == b"t0k" and "stringData" not in updated


@pytest.mark.parametrize("secret, path", [
    ({"stringData": {"port": 5432}}, "Secret.stringData['port']"),
    ({"stringData": {"bad/key": "x"}}, "Secret.stringData['bad/key']"),
    ({"data": {"k": "not base64!"}}, "Secret.data['k']"),
])
def test_a_bad_secret_written_into_the_store_names_the_field(store, secret, path):
    with pytest.raises(SpecError) as err:
        store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, **secret})
    assert err.value.path == path


def test_apply_of_the_same_secret_twice_is_unchanged(tmp_path):
    from localflow.api import apply

    f = tmp_path / "s.yaml"
    f.write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: api}\nstringData: {token: abc}\n")
    ((verb, obj),) = apply(f, tmp_path / "ws")
    assert verb == "created" and base64.b64decode(obj["data"]["token"]) == b"abc"
    assert [v for v, _ in apply(f, tmp_path / "ws")] == ["unchanged"]


# ---------------------------------------------------------------- optimistic concurrency


def test_a_stale_resource_version_is_a_conflict_not_an_overwrite(store):
    first = store.create(tfjob())
    store.patch("TFJob", "tf", {"metadata": {"labels": {"x": "1"}}})
    stale = copy.deepcopy(first)
    stale["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 1
    with pytest.raises(Conflict, match="the object has been modified"):
        store.update(stale)
    with pytest.raises(Conflict):
        store.patch("TFJob", "tf", {"metadata": {"resourceVersion": first["metadata"]["resourceVersion"]},
                                    "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1}}}})
    now = store.get("TFJob", "tf")
    assert now["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2 and now["metadata"]["labels"] == {"x": "1"}


# ---------------------------------------------------------------- the kind table


def test_the_loader_refuses_the_mpi_operators_mpijob_with_the_fix():
    with pytest.raises(SpecError) as err:
        detect_kind({"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob", "metadata": {"name": "m"}})
    assert err.value.path == "MPIJob.apiVersion" and err.value.fix.startswith("set apiVersion: kubeflow.org/v1")


def test_every_runnable_kind_is_accepted_by_the_loader_and_known_to_the_store():
    from localflow.fakes import resolve_kind

    for k in kinds.KINDS:
        assert resolve_kind(k.plural).kind == k.kind and resolve_kind(k.plural).namespaced == k.namespaced
        if not k.document:
            assert detect_kind({"apiVersion": k.api_version, "kind": k.kind}) == k.kind
        for hook in ("runner", "reconciler", "mutate", "validate", "recorder", "abandon", "describe", "loader"):
            if getattr(k, hook):
                assert callable(k.hook(hook)), f"{k.kind}.{hook}"
    assert {k.kind for k in kinds.runnable(jobs_only=True)} == \
        {"TFJob", "PyTorchJob", "XGBoostJob", "JAXJob", "PaddleJob", "MPIJob", "TrainJob", "Job", "Experiment"}


def _crds():
    for f in sorted((CORPUS / "crds").glob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc:
                yield doc


@needs_corpus
def test_names_scope_and_printer_columns_are_the_official_crds():
    checked = 0
    for crd in _crds():
        spec, names = crd["spec"], crd["spec"]["names"]
        k = kinds.entry(f'{names["plural"]}.{spec["group"]}')
        assert k is not None, names["kind"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        assert (k.group, k.version, k.kind, k.plural) == (spec["group"], version["name"], names["kind"], names["plural"])
        assert k.namespaced == (spec["scope"] == "Namespaced")
        assert set(names.get("shortNames") or ()) <= set(k.short_names)
        assert tuple(names.get("categories") or ()) == k.categories
        want = [(c["name"], c["jsonPath"], c["type"]) for c in version.get("additionalPrinterColumns") or []] or \
            [("Age", ".metadata.creationTimestamp", "date")]  # a CRD without columns prints NAME AGE
        assert [(c.name, c.json_path, c.type) for c in k.columns] == want, names["kind"]
        checked += 1
    assert checked >= 15


@needs_corpus
def test_every_corpus_training_job_the_loader_accepts_is_admitted_by_the_store(store):
    admitted = 0
    for f in sorted((CORPUS / "training-v1").glob("*.yaml")):
        for doc in load_documents(f):
            if doc.get("kind") not in ("TFJob", "PyTorchJob", "XGBoostJob", "JAXJob", "PaddleJob", "MPIJob"):
                continue
            try:
                expected = load_job(doc, gpus=kinds.ANY_GPUS)
            except SpecError as exc:  # refused by run: refused by the store with the same error
                with pytest.raises(SpecError) as err:
                    store.create(doc)
                assert (err.value.path, err.value.message) == (exc.path, exc.message)
                continue
            stored = store.create(doc)
            assert stored["spec"] == expected["spec"], f.name
            store.delete(doc["kind"], doc["metadata"]["name"], doc["metadata"].get("namespace") or "default")
            admitted += 1
    assert admitted >= 20


@pytest.mark.slow  # three `localflow get` subprocesses
def test_get_prints_the_crds_columns(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    mpi = {"apiVersion": "kubeflow.org/v1", "kind": "MPIJob", "metadata": {"name": "m"}, "spec": {"mpiReplicaSpecs": {
        "Launcher": {"replicas": 1, "template": {"spec": {"containers": [{"name": "mpi", "image": "x"}]}}}}}}
    with ObjectStore(ws / "localflow.db") as s:
        s.create(tfjob())
        s.set_condition("TFJob", "tf", "Created", True)
        s.set_condition("TFJob", "tf", "Running", False)  # the CRD prints the last condition, true or not
        s.create(mpi)
        s.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
                  "spec": {"clusterIP": "10.0.0.1", "ports": [{"port": 80}], "selector": {"app": "a"}}})
    tf = lf("get", "tfjobs", "--workspace", ws).stdout.splitlines()
    assert tf[0].split() == ["NAME", "STATE", "AGE"] and tf[1].split()[:2] == ["tf", "Running"]
    assert lf("get", "mpijobs", "--workspace", ws).stdout.splitlines()[0].split() == ["NAME", "AGE", "STATE"]
    svc = lf("get", "svc", "-o", "wide", "--workspace", ws).stdout.splitlines()
    assert svc[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert svc[1].split()[:5] == ["svc", "ClusterIP", "10.0.0.1", "<none>", "80/TCP"] and svc[1].split()[-1] == "app=a"


def test_finished_predicates_read_each_kinds_terminal_status():
    def cond(*pairs):
        return {"status": {"conditions": [{"type": t, "status": s, "message": f"{t} msg"} for t, s in pairs]}}

    tf, tj = kinds.entry("tfjobs"), kinds.entry("trainjobs")
    assert tf.finished(cond(("Created", "True"), ("Running", "True"))) is None
    assert tf.finished(cond(("Created", "True"), ("Running", "False"), ("Succeeded", "True"))) == ("SUCCEEDED", "Succeeded msg")
    assert tf.finished(cond(("Running", "False"), ("Failed", "True"))) == ("FAILED", "Failed msg")
    assert tj.finished(cond(("Complete", "True"))) == ("SUCCEEDED", "Complete msg")
    assert tj.finished(cond(("Succeeded", "True"))) is None  # a TrainJob completes, as JobSet does
    run = kinds.entry("pipelineruns")
    assert run.finished({"status": {"state": "RUNNING"}}) is None
    assert run.finished({"status": {"state": "FAILED", "error": {"message": "boom"}}}) == ("FAILED", "boom")
    pod = kinds.entry("po")
    assert pod.finished({"status": {"phase": "Running"}}) is None
    assert pod.finished({"status": {"phase": "Failed", "reason": "OOMKilled"}}) == ("FAILED", "OOMKilled")
    assert kinds.entry("secrets").finished is None


@pytest.mark.parametrize("path, want", [
    (".status.conditions[-1:].type", ["Running"]),
    (".status.conditions[?(@.type=='Ready')].status", ["False"]),
    (".status.traffic[?(@.latestRevision==true)].percent", [90]),
    (".spec.containers[*].name", ["a", "b"]),
    (".spec.containers[0].name", ["a"]),
    (".spec.missing.deeper", []),
])
def test_printer_column_jsonpath_subset(path, want):
    from localflow.render import jsonpath

    obj = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Running", "status": "True"}],
                      "traffic": [{"latestRevision": False, "percent": 10}, {"latestRevision": True, "percent": 90}]}}
    assert jsonpath(obj, path) == want
