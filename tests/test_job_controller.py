"""The batch/v1 Job controller on the controller manager, with real Pods (subprocesses) and a
FakeClock for deadlines, the Pod failure backoff and the TTL: completions/parallelism, Indexed,
backoffLimit counted from Pods across a manager restart, activeDeadlineSeconds, podFailurePolicy,
successPolicy, suspend/resume, ttlSecondsAfterFinished, spec errors, and `localflow run`.
Waits are bounded polls of the store while the manager is driven with run_until_idle()."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from localflow.api import open_runtime, run
from localflow.clock import FakeClock
from localflow.controllers.job import COMPLETION_INDEX, TERMINATED_ANNOTATION, JobReconciler, job_finished
from localflow.controllers.manager import ControllerManager
from localflow.errors import SpecError
from localflow.scheduler import Capacity
from localflow.specs.job import format_indexes, load_job, parse_indexes

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
SLEEP = "import time; time.sleep(600)"


def job(name="j", code="pass", *, restart="Never", **spec):
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {"spec": {"restartPolicy": restart, "containers": [
                {"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
                 "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]}}}}


@pytest.fixture
def rt(tmp_path):
    with open_runtime(tmp_path / "ws", clock=FakeClock(), capacity=Capacity(cpu=4, memory=8 << 30)) as runtime:
        yield runtime


def manager(rt):
    mgr = ControllerManager(rt.store, rt.clock)
    mgr.register(JobReconciler(rt.store, rt.scheduler, rt.clock))
    return mgr


def drive(mgr, cond, timeout=60.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while True:
        mgr.run_until_idle()
        if cond():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def pods(rt, name="j"):
    return rt.store.list("Pod", label_selector={"batch.kubernetes.io/job-name": name})


def phases(rt, name="j"):
    return sorted(p["status"].get("phase") for p in pods(rt, name))


def conds(obj):
    return [(c["type"], c["status"], c["reason"]) for c in obj["status"].get("conditions") or []]


def get(rt, name="j"):
    return rt.store.get("Job", name)


def test_completions_and_parallelism(rt):
    mgr = manager(rt)
    rt.store.create(job(completions=3, parallelism=2))
    most = 0

    def done():
        nonlocal most
        most = max(most, sum(1 for p in pods(rt) if p["status"].get("phase") in ("Pending", "Running")))
        return job_finished(get(rt)) is not None

    drive(mgr, done, what="the Job to complete")
    j = get(rt)
    assert conds(j) == [("SuccessCriteriaMet", "True", "CompletionsReached"), ("Complete", "True", "CompletionsReached")]
    st = j["status"]
    assert st["succeeded"] == 3 and st["failed"] == 0 and st["active"] == 0 and st["startTime"] and st["completionTime"]
    assert phases(rt) == ["Succeeded"] * 3 and most <= 2
    p = pods(rt)[0]
    ref = p["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] is True and ref["uid"] == j["metadata"]["uid"]
    reasons = [e["reason"] for e in rt.store.events_for(j)]
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons
    mgr.stop()


def test_indexed_job_gets_its_index_and_completed_indexes(rt):
    mgr = manager(rt)
    code = "import os, sys; sys.exit(0 if os.environ.get('JOB_COMPLETION_INDEX') in ('0', '1', '2') else 3)"
    rt.store.create(job(code=code, completions=3, parallelism=3, completionMode="Indexed"))
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the Indexed Job")
    j = get(rt)
    assert job_finished(j)[0] == "Complete" and j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3
    by_index = {p["metadata"]["annotations"][COMPLETION_INDEX]: p for p in pods(rt)}
    assert sorted(by_index) == ["0", "1", "2"]
    for i, p in by_index.items():
        assert p["metadata"]["labels"][COMPLETION_INDEX] == i
        assert p["metadata"]["name"].startswith(f"j-{i}-") and p["spec"]["hostname"] == f"j-{i}"
        assert {"name": "JOB_COMPLETION_INDEX", "value": i} in p["spec"]["containers"][0]["env"]
    mgr.stop()


def test_the_backoff_wait_is_reported_once_per_wait(rt):
    """The wait between a failed Pod and its replacement is not silent: ``on_backoff`` on each pass
    that holds the Pod back; ``localflow run`` prints it as one RETRYING line per wait."""
    import io

    from rich.console import Console

    from localflow.controllers.job import backoff_record
    from localflow.progress import Progress

    seen = []
    mgr = ControllerManager(rt.store, rt.clock)
    mgr.register(JobReconciler(rt.store, rt.scheduler, rt.clock, on_backoff=lambda j, d, n: seen.append((j["metadata"]["name"], d, n))))
    rt.store.create(job(code="import sys; sys.exit(1)", backoffLimit=2))
    drive(mgr, lambda: seen, what="the backoff to be reported")
    assert set(seen) == {("j", 10.0, 1)}
    rt.clock.advance(10)
    drive(mgr, lambda: ("j", 20.0, 2) in seen, what="the second, doubled backoff")
    mgr.stop()
    out = io.StringIO()
    progress = Progress(enabled=True, console=Console(file=out, width=200))
    for name, delay, n in seen:  # every pass of one wait: one line
        progress(backoff_record(get(rt), delay, n))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all("RETRYING" in ln and "job/j" in ln for ln in lines), lines
    assert "backoff of 10s (1 failure in a row)" in lines[0] and "backoff of 20s (2 failures in a row)" in lines[1]


def test_backoff_limit_counts_failed_pods_across_a_manager_restart(rt):
    mgr = manager(rt)
    rt.store.create(job(code="import sys; sys.exit(1)", backoffLimit=1))
    drive(mgr, lambda: phases(rt) == ["Failed"], what="the first Pod to fail")
    drive(mgr, lambda: get(rt)["status"].get("failed") == 1, what="the failure to be counted")
    assert mgr.queue.next_ready_in() == pytest.approx(10, abs=1), "the replacement waits for the Pod failure backoff"
    mgr.run_until_idle()
    assert len(pods(rt)) == 1
    mgr.stop()
    mgr = manager(rt)  # a new manager: the count comes from the Pods and status, not memory
    rt.clock.advance(10)
    drive(mgr, lambda: phases(rt) == ["Failed", "Failed"], what="the replacement to fail")
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the Job to fail")
    j = get(rt)
    assert conds(j) == [("FailureTarget", "True", "BackoffLimitExceeded"), ("Failed", "True", "BackoffLimitExceeded")]
    assert j["status"]["failed"] == 2 and j["status"]["active"] == 0
    assert job_finished(j) == ("Failed", "Job has reached the specified backoff limit")
    warned = [e for e in rt.store.events_for(j) if e["reason"] == "BackoffLimitExceeded"]
    # one Warning, with the terminal Failed condition (job_controller.go recordJobFinished), not also at FailureTarget
    assert [(e["type"], e.get("count", 1)) for e in warned] == [("Warning", 1)], warned
    mgr.stop()


def test_active_deadline_stops_the_pods_then_fails(rt):
    mgr = manager(rt)
    rt.store.create(job(code=SLEEP, activeDeadlineSeconds=5, parallelism=2, completions=2))
    drive(mgr, lambda: phases(rt) == ["Running", "Running"], what="both Pods to run")
    assert get(rt)["status"]["active"] == 2
    rt.clock.advance(4)
    mgr.run_until_idle()
    assert job_finished(get(rt)) is None
    rt.clock.advance(1)
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the deadline")
    j = get(rt)
    assert conds(j) == [("FailureTarget", "True", "DeadlineExceeded"), ("Failed", "True", "DeadlineExceeded")]
    assert phases(rt) == ["Failed", "Failed"]
    assert {p["metadata"]["annotations"][TERMINATED_ANNOTATION] for p in pods(rt)} == {"DeadlineExceeded"}
    mgr.stop()


def test_pod_failure_policy_fail_job_and_ignore(rt):
    mgr = manager(rt)
    policy = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}},
                        {"action": "Ignore", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}}]}
    rt.store.create(job("fatal", code="import sys; sys.exit(42)", podFailurePolicy=policy))
    rt.store.create(job("ignored", code="import sys; sys.exit(3)", backoffLimit=0, podFailurePolicy=policy))
    drive(mgr, lambda: job_finished(get(rt, "fatal")) is not None, what="the FailJob rule")
    j = get(rt, "fatal")
    assert conds(j)[-1] == ("Failed", "True", "PodFailurePolicy")
    assert "failed with exit code 42 matching FailJob rule at index 0" in job_finished(j)[1]
    drive(mgr, lambda: phases(rt, "ignored") == ["Failed"], what="the ignored failure")
    mgr.run_until_idle()
    ig = get(rt, "ignored")
    assert job_finished(ig) is None and ig["status"]["failed"] == 0, "an Ignore rule keeps the failure out of backoffLimit"
    rt.clock.advance(10)
    drive(mgr, lambda: len(pods(rt, "ignored")) == 2, what="the replacement of the ignored failure")
    mgr.stop()


def test_success_policy_ends_an_indexed_job_early(rt):
    mgr = manager(rt)
    code = "import os, sys, time; os.environ['JOB_COMPLETION_INDEX'] == '0' or time.sleep(600)"
    rt.store.create(job(code=code, completions=3, parallelism=3, completionMode="Indexed",
                        successPolicy={"rules": [{"succeededIndexes": "0"}]}))
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the success policy")
    j = get(rt)
    assert conds(j) == [("SuccessCriteriaMet", "True", "SuccessPolicy"), ("Complete", "True", "SuccessPolicy")]
    assert j["status"]["completedIndexes"] == "0" and j["status"]["failed"] == 0
    assert phases(rt) == ["Failed", "Failed", "Succeeded"]
    mgr.stop()


def test_suspend_and_resume(rt):
    mgr = manager(rt)
    rt.store.create(job(suspend=True))
    mgr.run_until_idle()
    j = get(rt)
    assert pods(rt) == [] and ("Suspended", "True", "JobSuspended") in conds(j) and "startTime" not in j["status"]
    rt.store.patch("Job", "j", {"spec": {"suspend": False}})
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the resumed Job")
    j = get(rt)
    assert ("Suspended", "False", "JobResumed") in conds(j) and job_finished(j)[0] == "Complete" and j["status"]["startTime"]
    mgr.stop()


def test_ttl_after_finished_deletes_the_job_and_its_pods(rt):
    mgr = manager(rt)
    rt.store.create(job(ttlSecondsAfterFinished=30))
    drive(mgr, lambda: job_finished(get(rt)) is not None, what="the Job")
    assert mgr.queue.next_ready_in() == pytest.approx(30, abs=1)
    rt.clock.advance(30)
    mgr.run_until_idle()
    assert rt.store.list("Job") == [] and pods(rt) == []
    mgr.stop()


@pytest.mark.parametrize("change, path", [
    ({"template": {"spec": {"restartPolicy": "Always", "containers": [{"name": "c", "image": "x"}]}}},
     "Job.spec.template.spec.restartPolicy"),
    ({"completionMode": "Indexed", "parallelism": 2}, "Job.spec.completions"),
    ({"completionMode": "Sometimes"}, "Job.spec.completionMode"),
    ({"backoffLimit": -1}, "Job.spec.backoffLimit"),
    ({"activeDeadlineSeconds": 0}, "Job.spec.activeDeadlineSeconds"),
    ({"successPolicy": {"rules": [{"succeededCount": 1}]}}, "Job.spec.successPolicy"),
])
def test_spec_errors_name_the_field(change, path):
    doc = job()
    doc["spec"].update(change)
    with pytest.raises(SpecError) as err:
        load_job(doc)
    assert err.value.path == path and err.value.fix


def test_pod_failure_policy_needs_restart_policy_never():
    doc = job(restart="OnFailure", podFailurePolicy={"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}}]})
    with pytest.raises(SpecError, match='only "Never" is supported when podFailurePolicy'):
        load_job(doc)


def test_defaults_and_index_intervals():
    spec = load_job(job())["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"], spec["completionMode"], spec["suspend"]) == \
        (1, 1, 6, "NonIndexed", False)
    assert load_job(job(parallelism=3))["spec"].get("completions") is None
    assert format_indexes({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8" and parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8}


def test_api_run_of_a_job_records_the_run(tmp_path):
    r = run(job("api-job", completions=2, parallelism=2), workspace=tmp_path / "ws")
    assert r.state == "SUCCEEDED" and r.kind == "Job" and len(r.pods) == 2
    assert job_finished(r.object)[0] == "Complete"
    bad = run(job("bad-job", code="import sys; sys.exit(2)", backoffLimit=0), workspace=tmp_path / "ws")
    assert bad.state == "FAILED" and "backoff limit" in bad.error


@pytest.mark.slow
def test_localflow_run_the_job_scenario(tmp_path):
    p = subprocess.run([sys.executable, "-m", "localflow", "run", str(ROOT / "scenarios/jobs/job.yaml"), "--workspace",
                        str(tmp_path / "ws")], capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr
    assert "Job" in p.stdout and "SUCCEEDED" in p.stdout
    bad = subprocess.run([sys.executable, "-m", "localflow", "run", str(ROOT / "scenarios/jobs/job.yaml"), "--workspace",
                          str(tmp_path / "ws")], capture_output=True, text=True, timeout=240)
    assert bad.returncode == 1 and "already exists" in bad.stderr
