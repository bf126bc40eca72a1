"""The KFP v2beta1 REST API of ``localflow serve``, driven by the real ``kfp.Client`` (kfp 2.x and
its ``kfp_server_api``) over real HTTP: runs from a pipeline function compiled by the real kfp
compiler, task details, paging, uploaded pipelines and versions, terminate, retry, bad input."""
# no `from __future__ import annotations`: kfp reads the components' annotations as types

import json
import urllib.error
import urllib.request

import psutil
import pytest

kfp = pytest.importorskip("kfp")
from kfp import compiler, dsl  # noqa: E402
from kfp_server_api.exceptions import ApiException  # noqa: E402

from localflow.fakes import ObjectStore  # noqa: E402
from localflow.pytest_plugin import LocalflowServer  # noqa: E402
from localflow.workspace import Workspace  # noqa: E402
from tests.polling import wait_until  # noqa: E402


@dsl.component(base_image="python:3.11")
def add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline(name="adder")
def adder(x: int = 1, y: int = 2) -> int:
    first = add(a=x, b=y)
    return add(a=first.output, b=y).output


@dsl.component(base_image="python:3.11")
def nap(seconds: int) -> str:
    import time

    time.sleep(seconds)  # the workload: a long task to terminate
    return "woke"


@dsl.pipeline(name="long-nap")
def long_nap(seconds: int = 600):
    nap(seconds=seconds)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One ``localflow serve`` (the ``localflow_server`` fixture's class) for the module's tests."""
    s = LocalflowServer(tmp_path_factory.mktemp("kfp") / "ws")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def client(server):
    return kfp.Client(host=server.kubernetes_url)


def finished(client, run_id, timeout=180):
    return wait_until(lambda: (r := client.get_run(run_id)).state in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED") and r,
                      timeout=timeout, interval=0.2, what=f"run {run_id} to finish")


def http(server, path, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(server.kubernetes_url + path, method=method, data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_server_records_the_kfp_url(server):
    urls = server.status()["urls"]
    assert urls["kfp"] == urls["kubernetes"]
    code, body = http(server, "/apis/v2beta1/healthz")
    assert code == 200 and body["multi_user"] is False


def test_run_from_pipeline_func_is_a_localflow_run(server, client):
    result = client.create_run_from_pipeline_func(adder, arguments={"x": 5}, run_name="Add Five")
    run = client.wait_for_run_completion(result.run_id, timeout=180)
    assert run.state == "SUCCEEDED", run.error
    assert run.display_name == "Add Five"
    assert run.runtime_config.parameters == {"x": 5, "y": 2}
    assert run.experiment_id == client.get_experiment(experiment_name="Default").experiment_id
    tasks = {t.display_name: t for t in run.run_details.task_details}
    assert {"add", "add-2"} <= set(tasks), tasks
    root = tasks["adder"]
    for name in ("add", "add-2"):
        t = tasks[name]
        assert t.state == "SUCCEEDED" and t.pod_name and t.parent_task_id == root.task_id
        assert t.start_time is not None and t.end_time is not None
    assert {c.task_id for c in root.child_tasks} >= {tasks["add"].task_id, tasks["add-2"].task_id}
    # the same Run object and metadata `localflow run` makes: the CLI shows it, with its outputs
    out = server.cli("get", "runs")
    assert out.returncode == 0 and "add-five-" in out.stdout and "SUCCEEDED" in out.stdout, out.stdout
    with ObjectStore(Workspace(server.workspace).db_path) as store:
        objs = [o for o in store.list("Run", None)
                if (o["metadata"].get("annotations") or {}).get("localflow.dev/kfp-run-id") == result.run_id]
    assert len(objs) == 1 and objs[0]["apiVersion"] == "pipelines.kubeflow.org/v2beta1"
    shown = server.cli("get", "run", objs[0]["metadata"]["name"], "-o", "json")
    assert shown.returncode == 0, shown.stderr


def test_list_runs_pages_sorts_and_filters(server, client):
    exp = client.create_experiment("paging")
    ids = [client.create_run_from_pipeline_func(adder, arguments={"x": i}, run_name=f"page {i}",
                                                experiment_name="paging").run_id for i in range(3)]
    for rid in ids:
        assert finished(client, rid).state == "SUCCEEDED"
    first = client.list_runs(experiment_id=exp.experiment_id, page_size=2, sort_by="name")
    assert [r.display_name for r in first.runs] == ["page 0", "page 1"] and first.total_size == 3
    assert first.next_page_token
    second = client.list_runs(experiment_id=exp.experiment_id, page_size=2, sort_by="name",
                              page_token=first.next_page_token)
    assert [r.display_name for r in second.runs] == ["page 2"] and not second.next_page_token
    newest = client.list_runs(experiment_id=exp.experiment_id, page_size=1, sort_by="created_at desc")
    assert len(newest.runs) == 1
    flt = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "string_value": "page 1"}]})
    only = client.list_runs(filter=flt)
    assert [r.run_id for r in only.runs] == [ids[1]]
    client.archive_run(ids[0])
    assert client.get_run(ids[0]).storage_state == "ARCHIVED"
    client.unarchive_run(ids[0])
    assert client.get_run(ids[0]).storage_state == "AVAILABLE"
    assert [e.display_name for e in client.list_experiments(filter=json.dumps(
        {"predicates": [{"operation": 1, "key": "display_name", "stringValue": "paging"}]})).experiments] == ["paging"]


def test_upload_pipeline_and_run_a_version(server, client, tmp_path):
    pkg = tmp_path / "adder.yaml"
    compiler.Compiler().compile(adder, str(pkg))
    p = client.upload_pipeline(str(pkg), pipeline_name="uploaded-adder")
    assert client.get_pipeline_id("uploaded-adder") == p.pipeline_id
    v2 = client.upload_pipeline_version(str(pkg), "v2", pipeline_id=p.pipeline_id)
    versions = client.list_pipeline_versions(p.pipeline_id).pipeline_versions
    assert [v.display_name for v in versions] == ["uploaded-adder", "v2"]
    assert client.get_pipeline_version(p.pipeline_id, v2.pipeline_version_id).pipeline_spec["pipelineInfo"]["name"] == "adder"
    exp = client.create_experiment("uploads")
    run = client.run_pipeline(exp.experiment_id, "from version", pipeline_id=p.pipeline_id,
                              version_id=v2.pipeline_version_id, params={"x": 10, "y": 1})
    done = finished(client, run.run_id)
    assert done.state == "SUCCEEDED"
    assert done.pipeline_version_reference.pipeline_version_id == v2.pipeline_version_id
    with pytest.raises(ApiException) as err:
        client.upload_pipeline(str(pkg), pipeline_name="uploaded-adder")
    assert err.value.status == 409 and "exists" in err.value.body
    client.delete_pipeline_version(p.pipeline_id, v2.pipeline_version_id)
    client.delete_pipeline(p.pipeline_id)
    with pytest.raises(ApiException) as err:
        client.get_pipeline(p.pipeline_id)
    assert err.value.status == 404


def test_terminate_stops_the_pods_and_records_canceled(server, client):
    rid = client.create_run_from_pipeline_func(long_nap, arguments={"seconds": 600}).run_id
    running = wait_until(lambda: [t for t in client.get_run(rid).run_details.task_details or []
                                  if t.display_name == "nap" and t.state == "RUNNING"],
                         timeout=120, interval=0.2, what="the nap task to run")
    ws = Workspace(server.workspace)
    with ObjectStore(ws.db_path) as store:
        pod = store.get("Pod", running[0].pod_name, "default")
    pid = int(pod["status"]["containerStatuses"][0]["containerID"].split("://")[1])
    assert psutil.pid_exists(pid)
    client.terminate_run(rid)
    run = finished(client, rid, timeout=60)
    assert run.state == "CANCELED"
    assert {t.state for t in run.run_details.task_details if t.display_name == "nap"} == {"CANCELED"}
    with ObjectStore(ws.db_path) as store:
        pod = store.get("Pod", running[0].pod_name, "default")
    assert pod["status"]["phase"] == "Failed"
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               timeout=30, what="the task's process to be gone")
    # retry: the same run id runs again
    client._run_api.run_service_retry_run(run_id=rid)
    wait_until(lambda: client.get_run(rid).state in ("PENDING", "RUNNING"), timeout=30, what="the retried run")
    client.terminate_run(rid)
    assert finished(client, rid, timeout=60).state == "CANCELED"
    client.delete_run(rid)
    with pytest.raises(ApiException) as err:
        client.get_run(rid)
    assert err.value.status == 404


def test_bad_input_is_a_400_naming_the_field(server, client):
    with pytest.raises(ApiException) as err:
        client.create_run_from_pipeline_func(adder, arguments={"nope": 1})
    assert err.value.status == 400 and "nope" in err.value.body, err.value.body
    code, body = http(server, "/apis/v2beta1/runs", "POST", {"display_name": "x"})
    assert code == 400 and body["message"].startswith("run.pipeline_spec: required"), body
    code, body = http(server, "/apis/v2beta1/runs", "POST", {"pipeline_spec": {"x": 1}})
    assert code == 400 and "\n" not in body["message"], body
    code, body = http(server, "/apis/v2beta1/runs?filter=%7Bnot-json")
    assert code == 400 and body["message"].startswith("filter: not JSON"), body
    code, body = http(server, "/apis/v2beta1/runs?page_token=garbage")
    assert code == 400 and body["message"].startswith("page_token:"), body
    code, body = http(server, "/apis/v2beta1/runs?sort_by=colour")
    assert code == 400 and "colour" in body["message"], body
    code, body = http(server, "/apis/v2beta1/experiments", "POST", {"description": "no name"})
    assert code == 400 and body["message"].startswith("experiment.display_name: required"), body
    code, body = http(server, "/apis/v2beta1/runs/no-such-run")
    assert code == 404 and "no-such-run" in body["message"], body
    code, body = http(server, "/apis/v2beta1/pipelines/upload", "POST", {})
    assert code == 400 and body["message"].startswith("uploadfile: required"), body
    code, _ = http(server, "/apis/v2beta1/healthz")
    assert code == 200  # the server is still healthy


def test_recurring_run_fires_on_its_interval_one_at_a_time(server, client, tmp_path):
    pkg = tmp_path / "nap.yaml"
    compiler.Compiler().compile(long_nap, str(pkg))
    exp = client.create_experiment("recurring")
    rr = client.create_recurring_run(exp.experiment_id, "nap every second", pipeline_package_path=str(pkg),
                                     params={"seconds": 2}, interval_second=1, max_concurrency=1, no_catchup=True)
    assert rr.status == "ENABLED" and rr.trigger.periodic_schedule.interval_second == "1"

    def runs():
        got = client.list_runs(experiment_id=exp.experiment_id, sort_by="created_at", page_size=100).runs or []
        return [r for r in got if r.recurring_run_id == rr.recurring_run_id]

    two = wait_until(lambda: (r := runs()) and len(r) >= 2 and r, timeout=180, interval=0.2,
                     what="the recurring run to start two runs")
    first = finished(client, two[0].run_id)
    assert first.state == "SUCCEEDED"
    assert first.finished_at <= two[1].created_at  # max_concurrency 1: the second waited for the first
    client.disable_recurring_run(rr.recurring_run_id)
    assert client.get_recurring_run(rr.recurring_run_id).status == "DISABLED"
    listed = client.list_recurring_runs(experiment_id=exp.experiment_id).recurring_runs
    assert [r.recurring_run_id for r in listed] == [rr.recurring_run_id]
    for r in runs():
        if r.state in ("PENDING", "RUNNING"):
            client.terminate_run(r.run_id)
    client.delete_recurring_run(rr.recurring_run_id)
    with pytest.raises(ApiException) as err:
        client.get_recurring_run(rr.recurring_run_id)
    assert err.value.status == 404


def test_recurring_run_bad_triggers_are_400(server, client, tmp_path):
    pkg = tmp_path / "adder.yaml"
    compiler.Compiler().compile(adder, str(pkg))
    exp = client.create_experiment("bad-recurring")
    for kwargs, field in [({"cron_expression": "61 * * * * *"}, "cron_schedule.cron"),
                          ({"interval_second": 0}, "interval_second"),
                          ({"interval_second": 5, "max_concurrency": 11}, "max_concurrency")]:
        if kwargs.get("interval_second") == 0:  # kfp refuses 0 itself; send it as the server would get it
            code, body = http(server, "/apis/v2beta1/recurringruns", "POST", {
                "display_name": "x", "pipeline_spec": {"pipelineInfo": {"name": "x"}},
                "trigger": {"periodic_schedule": {"interval_second": "0"}}})
            assert code == 400 and field in body["message"], body
            continue
        with pytest.raises(ApiException) as err:
            client.create_recurring_run(exp.experiment_id, "bad", pipeline_package_path=str(pkg), **kwargs)
        assert err.value.status == 400 and field in err.value.body, err.value.body
    with pytest.raises(ApiException) as err:
        client.create_recurring_run(exp.experiment_id, "bad params", pipeline_package_path=str(pkg),
                                    params={"nope": 1}, interval_second=60)
    assert err.value.status == 400 and "nope" in err.value.body
    assert not client.list_recurring_runs(experiment_id=exp.experiment_id).recurring_runs


def test_schedule_times_follow_kfp():
    from localflow.apiserver.kfpschedule import next_cron, next_due, parse_cron

    t0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    assert next_cron(parse_cron("*/5 * * * * *"), t0 + 7) == t0 + 10
    assert next_cron(parse_cron("0 0 9 * * MON-FRI"), t0) == t0 + 3600  # a Friday: 09:00 the same day
    assert next_cron(parse_cron("0 0 0 29 2 *"), t0) == 1_835_395_200.0  # 2028-02-29
    row = {"created_ts": t0, "last_ts": None,
           "body": {"trigger": {"periodic_schedule": {"interval_second": "10"}}, "no_catchup": False}}
    assert next_due(row, t0 + 1) == t0 + 10
    assert next_due({**row, "last_ts": t0 + 10}, t0 + 100) == t0 + 20  # catch-up: every missed run in turn
    no_catchup = {**row, "last_ts": t0 + 10, "body": {**row["body"], "no_catchup": True}}
    assert next_due(no_catchup, t0 + 105) == t0 + 100  # only the latest missed one
    ended = {**row, "body": {"trigger": {"periodic_schedule": {"interval_second": "10",
                                                               "end_time": "2027-01-15T08:00:05Z"}}}}
    assert next_due(ended, t0 + 1) is None
