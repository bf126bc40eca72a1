"""The Kubernetes API over a workspace, exercised by the real kubectl and the real ``kubernetes``
Python client (no mock of either side): discovery, CRUD, Tables, patches, watches, errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml

from localflow.apiserver import ApiServer
from localflow.fakes import ObjectStore
from localflow.workspace import Workspace
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not on PATH")


@pytest.fixture
def api(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.ensure()
    server = ApiServer(ws.db_path, logs_dir=ws.logs_dir)
    url = server.start()
    kc = tmp_path / "kubeconfig"
    from localflow.cli_kube import kubeconfig_for

    kc.write_text(yaml.safe_dump(kubeconfig_for(url)))
    try:
        yield {"url": url, "kubeconfig": kc, "ws": ws, "cache": tmp_path / "kube-cache"}
    finally:
        server.stop()


def kubectl(api, *args, check: int | None = 0, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {"KUBECONFIG": str(api["kubeconfig"]), "KUBECACHEDIR": str(api["cache"]), "HOME": str(api["cache"]),
           "PATH": "/usr/bin:/bin:/usr/local/bin"}
    p = subprocess.run([KUBECTL, *map(str, args)], capture_output=True, text=True, env=env, input=stdin, timeout=timeout)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    return p


def request(api, path, method="GET", body=None, content_type="application/json", accept="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api["url"] + path, method=method, data=data,
                                 headers={"Content-Type": content_type, "Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type"), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), json.loads(err.read())


# ---------------------------------------------------------------- discovery


def test_aggregated_and_legacy_discovery_list_every_kind_with_names_and_subresources(api):
    code, ctype, agg = request(api, "/apis", accept="application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
    assert code == 200 and "as=APIGroupDiscoveryList" in ctype
    groups = {g["metadata"]["name"]: g for g in agg["items"]}
    kf = {r["resource"]: r for v in groups["kubeflow.org"]["versions"] for r in v["resources"]}
    assert {"tfjobs", "pytorchjobs", "experiments", "trials"} <= set(kf)
    assert kf["experiments"]["categories"] == ["all", "kubeflow", "katib"]
    assert [s["subresource"] for s in kf["tfjobs"]["subresources"]] == ["status"]
    assert groups["kubeflow.org"]["versions"][0]["version"] == "v1"
    code, ctype, legacy = request(api, "/apis")
    assert code == 200 and ctype == "application/json" and legacy["kind"] == "APIGroupList"
    assert {g["name"] for g in legacy["groups"]} == set(groups)
    _, _, core = request(api, "/api/v1")
    names = {r["name"]: r for r in core["resources"]}
    assert names["pods"]["shortNames"] == ["po"] and "pods/log" in names and "pods/status" in names
    _, _, isvc = request(api, "/apis/serving.kserve.io/v1beta1")
    assert isvc["resources"][0]["shortNames"] == ["isvc"]


@needs_kubectl
def test_kubectl_api_resources_and_version(api):
    out = kubectl(api, "api-resources").stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("inferenceservices"))
    assert row == ["inferenceservices", "isvc", "serving.kserve.io/v1beta1", "true", "InferenceService"]
    assert "Server Version: v1.32" in kubectl(api, "version").stdout


# ---------------------------------------------------------------- kubectl


@needs_kubectl
def test_kubectl_apply_get_describe_delete_a_tfjob(api):
    spec = ROOT / "scenarios" / "training" / "tfjob.yaml"
    assert kubectl(api, "apply", "-f", spec).stdout.strip() == "tfjob.kubeflow.org/tf-config-check created"
    # again: a three-way merge patch; defaulting (the container ports) puts back what it replaces
    assert kubectl(api, "apply", "-f", spec).stdout.split()[0] == "tfjob.kubeflow.org/tf-config-check"
    with ObjectStore(api["ws"].db_path) as store:  # another writer (a controller) sets a condition
        store.set_condition("TFJob", "tf-config-check", "Running", "True", "Running", "running")
    lines = kubectl(api, "get", "tfjobs").stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "AGE"] and lines[1].split()[:2] == ["tf-config-check", "Running"]
    obj = json.loads(kubectl(api, "get", "tfjob", "tf-config-check", "-o", "json").stdout)
    assert obj["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == 2 and obj["metadata"]["generation"] == 1
    assert "kubectl.kubernetes.io/last-applied-configuration" in obj["metadata"]["annotations"]
    assert "Running" in kubectl(api, "describe", "tfjob", "tf-config-check").stdout
    assert kubectl(api, "delete", "tfjob", "tf-config-check").stdout.strip() == 'tfjob.kubeflow.org "tf-config-check" deleted'
    p = kubectl(api, "get", "tfjob", "tf-config-check", check=1)
    assert "Error from server (NotFound)" in p.stderr and "tf-config-check" in p.stderr


@needs_kubectl
def test_kubectl_apply_of_an_invalid_job_names_the_field(api):
    bad = yaml.safe_load((ROOT / "scenarios" / "training" / "tfjob.yaml").read_text())
    bad["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = -1
    p = kubectl(api, "apply", "-f", "-", stdin=yaml.safe_dump(bad), check=1)
    assert "is invalid" in p.stderr and "spec.tfReplicaSpecs.Worker.replicas" in p.stderr
    code, _, st = request(api, "/apis/kubeflow.org/v1/namespaces/default/tfjobs", "POST", bad)
    assert code == 422 and st["reason"] == "Invalid"
    assert st["details"]["causes"][0]["field"] == "spec.tfReplicaSpecs.Worker.replicas"


@needs_kubectl
def test_kubectl_strategic_merge_and_json_patch_of_a_deployment(api):
    kubectl(api, "apply", "-f", ROOT / "scenarios" / "apps" / "deployment.yaml")
    dep = json.loads(kubectl(api, "get", "deploy", "web", "-o", "json").stdout)
    first = dep["spec"]["template"]["spec"]["containers"][0]["name"]
    patch = {"spec": {"template": {"spec": {"containers": [{"name": first, "env": [{"name": "MODE", "value": "x"}]}]}}}}
    kubectl(api, "patch", "deploy", "web", "--type", "strategic", "-p", json.dumps(patch))
    c = json.loads(kubectl(api, "get", "deploy", "web", "-o", "json").stdout)["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["name"] == first and {"name": "MODE", "value": "x"} in c[0]["env"]
    assert c[0]["image"] == dep["spec"]["template"]["spec"]["containers"][0]["image"]  # merged by name, not replaced
    kubectl(api, "patch", "deploy", "web", "--type", "json", "-p", '[{"op": "replace", "path": "/spec/replicas", "value": 3}]')
    assert json.loads(kubectl(api, "get", "deploy", "web", "-o", "json").stdout)["spec"]["replicas"] == 3
    kubectl(api, "label", "deploy", "web", "tier=front")
    assert kubectl(api, "get", "deploy", "-l", "tier=front", "-o", "name").stdout.strip() == "deployment.apps/web"
    assert kubectl(api, "get", "deploy", "-l", "tier!=front", "-o", "name").stdout.strip() == ""


@needs_kubectl
def test_kubectl_server_side_apply_creates_then_updates(api):
    job = ROOT / "scenarios" / "jobs" / "job.yaml"
    assert "serverside-applied" in kubectl(api, "apply", "--server-side", "-f", job).stdout
    doc = yaml.safe_load(job.read_text())
    doc["spec"]["backoffLimit"] = 5
    kubectl(api, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(doc))
    assert json.loads(kubectl(api, "get", "job", "squares", "-o", "json").stdout)["spec"]["backoffLimit"] == 5


@needs_kubectl
def test_kubectl_get_watch_sees_a_write_from_another_process(api):
    env = {"KUBECONFIG": str(api["kubeconfig"]), "KUBECACHEDIR": str(api["cache"]), "HOME": str(api["cache"])}
    watcher = subprocess.Popen([KUBECTL, "get", "configmaps", "-w", "--request-timeout=60s"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(watcher.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        code = ("from localflow.fakes import ObjectStore; s = ObjectStore(%r); "
                "s.create({'apiVersion': 'v1', 'kind': 'ConfigMap', 'metadata': {'name': 'from-elsewhere'}, 'data': {'a': '1'}})"
                % str(api["ws"].db_path))
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        wait_until(lambda: any("from-elsewhere" in ln for ln in lines), timeout=30, what="the watch to print the ConfigMap")
    finally:
        watcher.kill()
        watcher.wait()
    assert lines[0].split() == ["NAME", "DATA", "AGE"]


# ---------------------------------------------------------------- the kubernetes client


def test_kubernetes_client_crud_conflict_and_errors(api):
    kubernetes = pytest.importorskip("kubernetes")
    from kubernetes import client, config

    config.load_kube_config(config_file=str(api["kubeconfig"]), context="localflow")
    core = client.CoreV1Api()
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c1", "labels": {"app": "a"}}, "data": {"k": "v"}})
    assert cm.metadata.uid and cm.metadata.resource_version
    assert [c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="app in (a,b)").items] == ["c1"]
    stale = cm.metadata.resource_version
    core.patch_namespaced_config_map("c1", "default", {"data": {"k": "w"}})
    cm.data = {"k": "stale"}
    cm.metadata.resource_version = stale
    with pytest.raises(client.ApiException) as err:
        core.replace_namespaced_config_map("c1", "default", cm)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "c1"}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(client.ApiException) as err:
        core.read_namespaced_config_map("nope", "default")
    assert err.value.status == 404
    custom = client.CustomObjectsApi()
    job = yaml.safe_load((ROOT / "scenarios" / "training" / "pytorchjob.yaml").read_text())
    made = custom.create_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", job)
    got = custom.get_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", made["metadata"]["name"])
    assert got["metadata"]["uid"] == made["metadata"]["uid"]
    custom.patch_namespaced_custom_object_status("kubeflow.org", "v1", "default", "pytorchjobs", made["metadata"]["name"],
                                                 {"status": {"conditions": [{"type": "Created", "status": "True"}]}})
    got = custom.get_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", made["metadata"]["name"])
    assert got["status"]["conditions"][0]["type"] == "Created" and got["metadata"]["generation"] == 1
    custom.delete_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", made["metadata"]["name"])
    assert custom.list_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs")["items"] == []


def test_kubernetes_client_watch_replays_from_a_resource_version_and_sees_deletes(api):
    pytest.importorskip("kubernetes")
    from kubernetes import client, config, watch

    config.load_kube_config(config_file=str(api["kubeconfig"]))
    core = client.CoreV1Api()
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "after"}})
    core.delete_namespaced_config_map("before", "default")
    seen = []
    for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2):
        seen.append((ev["type"], ev["object"].metadata.name))
        if len(seen) == 2:
            break
    assert seen == [("ADDED", "after"), ("DELETED", "before")]
    # from resourceVersion unset: the current state first, as synthetic ADDED events
    seen = [(ev["type"], ev["object"].metadata.name)
            for ev in watch.Watch().stream(core.list_namespaced_config_map, "default", timeout_seconds=1)]
    assert seen == [("ADDED", "after")]


def test_a_watch_from_a_compacted_version_ends_with_410_gone(api):
    from localflow.fakes.changelog import LogLimits

    with ObjectStore(api["ws"].db_path, log_limits=LogLimits(max_entries=10, compact_every=5)) as store:
        for i in range(30):
            store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
        store.maintain()
        assert store.log_stats()["oldest"] > 2
    req = urllib.request.Request(api["url"] + "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=1&timeoutSeconds=2")
    with urllib.request.urlopen(req, timeout=30) as resp:
        first = json.loads(resp.readline())
    assert first["type"] == "ERROR" and first["object"]["code"] == 410 and first["object"]["reason"] == "Expired"


def test_tables_for_kubectl_get_use_the_crd_printer_columns(api):
    with ObjectStore(api["ws"].db_path) as store:
        store.create({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": {"name": "m"},
                      "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
                      "status": {"url": "http://m.default.example.com",
                                 "conditions": [{"type": "PredictorReady", "status": "True"}, {"type": "Ready", "status": "True"}]}})
    code, ctype, t = request(api, "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices",
                             accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert code == 200 and t["kind"] == "Table"
    names = [c["name"] for c in t["columnDefinitions"]]
    assert names[:3] == ["Name", "URL", "Ready"]
    row = dict(zip(names, t["rows"][0]["cells"]))
    assert row["URL"] == "http://m.default.example.com" and row["Ready"] == "True"
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_field_selectors_and_paging(api):
    with ObjectStore(api["ws"].db_path) as store:
        for i in range(5):
            store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"p{i}"}})
    _, _, one = request(api, "/api/v1/configmaps?fieldSelector=metadata.name%3Dp3")
    assert [o["metadata"]["name"] for o in one["items"]] == ["p3"]
    _, _, none = request(api, "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.namespace!%3Ddefault")
    assert none["items"] == []
    names, token = [], ""
    while True:
        _, _, page = request(api, "/api/v1/namespaces/default/configmaps?limit=2" + (f"&continue={token}" if token else ""))
        names += [o["metadata"]["name"] for o in page["items"]]
        token = page["metadata"].get("continue")
        if not token:
            break
    assert names == [f"p{i}" for i in range(5)]


# ---------------------------------------------------------------- localflow serve + kubectl


@needs_kubectl
@pytest.mark.slow
def test_a_job_applied_with_kubectl_is_run_by_the_server_and_its_logs_read_back(localflow_server, tmp_path):
    url = localflow_server.kubernetes_url
    assert url and url.startswith("http://127.0.0.1:")
    kc = tmp_path / "kc"
    p = localflow_server.cli("kubeconfig", "--file", kc)
    assert p.returncode == 0, p.stderr
    api = {"kubeconfig": kc, "cache": tmp_path / "cache"}
    assert kubectl(api, "apply", "-f", ROOT / "scenarios" / "jobs" / "job.yaml").stdout.strip() == "job.batch/squares created"
    kubectl(api, "wait", "job/squares", "--for=condition=Complete", "--timeout=120s", timeout=150)
    pods = kubectl(api, "get", "pods", "-l", "batch.kubernetes.io/job-name=squares", "-o", "json").stdout
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p["metadata"]["name"]
                for p in json.loads(pods)["items"] if p["status"]["phase"] == "Succeeded"}
    assert sorted(by_index) == ["0", "1", "2"]
    assert kubectl(api, "logs", by_index["2"]).stdout.strip() == "index 2: 4"
    assert "Complete" in kubectl(api, "get", "jobs").stdout


def test_kubeconfig_merge_keeps_other_contexts(localflow_server, tmp_path):
    kc = tmp_path / "config"
    kc.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "prod",
                                  "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443"}}],
                                  "users": [{"name": "prod", "user": {"token": "t"}}],
                                  "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "prod"}}]}))
    p = localflow_server.cli("kubeconfig", "--merge", "--file", kc)
    assert p.returncode == 0, p.stderr
    doc = yaml.safe_load(kc.read_text())
    assert doc["current-context"] == "prod"
    assert {c["name"] for c in doc["contexts"]} == {"prod", "localflow"}
    assert next(c for c in doc["clusters"] if c["name"] == "localflow")["cluster"]["server"] == localflow_server.kubernetes_url


def test_kubeconfig_without_a_server_is_one_line_exit_2(tmp_path):
    from tests.cli_support import lf

    p = lf("kubeconfig", "-W", tmp_path / "ws", check=2)
    assert p.stderr.count("\n") == 1 and "localflow serve" in p.stderr


@needs_kubectl
@pytest.mark.slow
def test_a_tfjob_applied_with_kubectl_runs_with_the_servers_config(tmp_path):
    from localflow.pytest_plugin import LocalflowServer

    server = LocalflowServer(tmp_path / "ws", args=["-c", ROOT / "scenarios" / "training" / "localflow.yaml"])
    try:
        kc = tmp_path / "kc"
        assert server.cli("kubeconfig", "--file", kc).returncode == 0
        api = {"kubeconfig": kc, "cache": tmp_path / "cache"}
        kubectl(api, "apply", "-f", ROOT / "scenarios" / "training" / "tfjob.yaml")
        kubectl(api, "wait", "tfjob/tf-config-check", "--for=condition=Succeeded", "--timeout=120s", timeout=150)
        out = kubectl(api, "logs", "tf-config-check-chief-0").stdout
        assert json.loads(out.splitlines()[0])["task"] == "chief:0"
    finally:
        server.stop()


def test_serve_with_a_bad_config_is_one_line_exit_2(tmp_path):
    from tests.cli_support import lf

    bad = tmp_path / "localflow.yaml"
    bad.write_text("images: [1, 2]\n")
    p = lf("serve", "-W", tmp_path / "ws", "-c", bad, check=2, timeout=60)
    assert p.stderr.strip().count("\n") == 0 and "images" in p.stderr


@pytest.mark.slow
def test_deleting_a_running_job_through_the_api_stops_its_pods_and_records_canceled(localflow_server, tmp_path):
    pytest.importorskip("kubernetes")
    from kubernetes import client, config

    kc = tmp_path / "kc"
    assert localflow_server.cli("kubeconfig", "--file", kc).returncode == 0
    config.load_kube_config(config_file=str(kc))
    custom, core = client.CustomObjectsApi(), client.CoreV1Api()
    job = {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": "sleeper"},
           "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "restartPolicy": "Never", "template": {"spec": {
               "containers": [{"name": "pytorch", "image": "python:3.11",
                               "command": ["python", "-c", "import time; print('up', flush=True); time.sleep(300)"]}]}}}}}}
    custom.create_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", job)
    wait_until(lambda: [p for p in core.list_namespaced_pod("default").items if p.status.phase == "Running"],
               timeout=60, what="the master Pod to run")
    custom.delete_namespaced_custom_object("kubeflow.org", "v1", "default", "pytorchjobs", "sleeper")

    def record():
        runs = json.loads(localflow_server.cli("get", "runs", "-o", "json").stdout)["items"]
        return next((r for r in runs if r["name"] == "sleeper" and r["state"] not in ("RUNNING", "PENDING")), None)

    rec = wait_until(record, timeout=60, what="the run to end")
    assert rec["state"] == "CANCELED" and "was deleted" in rec["error"]
    assert core.list_namespaced_pod("default").items == []


@needs_kubectl
def test_server_dry_run_admits_but_stores_nothing_and_namespaces_are_listed(api):
    spec = ROOT / "scenarios" / "jobs" / "job.yaml"
    assert "(server dry run)" in kubectl(api, "apply", "--dry-run=server", "-f", spec).stdout
    assert "(server dry run)" in kubectl(api, "apply", "--server-side", "--dry-run=server", "-f", spec).stdout
    assert kubectl(api, "get", "jobs", "-o", "name").stdout.strip() == ""
    bad = yaml.safe_load(spec.read_text())
    bad["spec"]["completions"] = -1
    p = kubectl(api, "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(bad), check=1)
    assert "spec.completions" in p.stderr
    kubectl(api, "apply", "-f", spec)
    kubectl(api, "delete", "job", "squares", "--dry-run=server")
    assert kubectl(api, "get", "jobs", "-o", "name").stdout.strip() == "job.batch/squares"
    assert "default" in kubectl(api, "get", "ns").stdout
