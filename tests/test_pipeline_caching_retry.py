"""Caching across runs of one workspace (hit, cache=False i.e. --no-cache, changed input, caching
turned off per task, custom cache key) and retries with retryPolicy backoff (a flaky task that
keeps its attempt count in a file)."""
import json
from pathlib import Path

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipeline_support import BASE, container_executions, metadata_of


@dsl.component(base_image=BASE)
def produce(n: int, log_dir: str, data: Output[Dataset]) -> int:
    import os
    import uuid

    os.makedirs(log_dir, exist_ok=True)
    open(os.path.join(log_dir, f"produce-{uuid.uuid4().hex}"), "w").close()  # one file per real execution
    with open(data.path, "w") as f:
        f.write(str(n))
    data.metadata["n"] = n
    return n + 1


@dsl.component(base_image=BASE)
def consume(data: Input[Dataset], bump: int, log_dir: str) -> str:
    import os
    import uuid

    open(os.path.join(log_dir, f"consume-{uuid.uuid4().hex}"), "w").close()
    with open(data.path) as f:
        return f"{f.read()}+{bump}"


@dsl.pipeline(name="cached")
def cached(n: int, log_dir: str, bump: int = 0) -> str:
    p = produce(n=n, log_dir=log_dir)
    c = consume(data=p.outputs["data"], bump=bump, log_dir=log_dir)
    return c.output


def _count(log_dir: Path, prefix: str) -> int:
    return len(list(log_dir.glob(f"{prefix}-*")))


def test_second_run_in_a_workspace_is_served_from_the_cache(localflow, tmp_path):
    logs = tmp_path / "executions"
    params = {"n": 5, "log_dir": str(logs)}
    first = localflow.run(cached, params=params)
    assert first.state == "SUCCEEDED", first.error
    assert not first.task("produce").cached and _count(logs, "produce") == 1

    second = localflow.run(cached, params=params)
    assert second.state == "SUCCEEDED", second.error
    assert second.outputs == first.outputs == {"Output": "5+0"}
    for name in ("produce", "consume"):
        t = second.task(name)
        assert t.cached and t.state == "SUCCEEDED" and t.pod is None
        assert t.outputs["parameters"] == first.task(name).outputs["parameters"]
    assert _count(logs, "produce") == 1 and _count(logs, "consume") == 1  # nothing ran again
    art1 = first.task("produce").outputs["artifacts"]["data"][0]
    art2 = second.task("produce").outputs["artifacts"]["data"][0]
    assert art2["uri"] == art1["uri"] and art2["metadata"] == {"n": 5}
    details = {d["taskId"]: d for d in second.object["status"]["runDetails"]["taskDetails"]}
    assert details["produce"]["cached"] is True and details["produce"]["state"] == "SUCCEEDED"

    with metadata_of(localflow) as md:
        rows = md.list_executions(run_id=second.id, type="system.ContainerExecution")
        assert {r["name"]: r["state"] for r in rows} == {"produce": "CACHED", "consume": "CACHED"}
        origin = md.list_executions(run_id=first.id, name="produce")[0]
        prod2 = next(r for r in rows if r["name"] == "produce")
        assert prod2["properties"]["cached_from"] == origin["id"]
        assert prod2["fingerprint"] == origin["fingerprint"]
        # the cached execution is linked to the original artifact: lineage shows both producers' runs
        outs = md.artifacts_of(prod2["id"], "OUTPUT")
        assert [a["id"] for a in outs] == [art1["id"]]


def test_cache_false_reruns_everything_and_records_complete_executions(localflow, tmp_path):
    logs = tmp_path / "executions"
    params = {"n": 5, "log_dir": str(logs)}
    localflow.run(cached, params=params)
    again = localflow.run(cached, params=params, cache=False)
    assert again.state == "SUCCEEDED", again.error
    assert not again.task("produce").cached and not again.task("consume").cached
    assert _count(logs, "produce") == 2 and _count(logs, "consume") == 2
    assert {e["name"]: e["state"] for e in container_executions(localflow, again)} == \
        {"produce": "COMPLETE", "consume": "COMPLETE"}


def test_a_changed_input_misses_the_cache_only_where_it_changes(localflow, tmp_path):
    logs = tmp_path / "executions"
    localflow.run(cached, params={"n": 5, "log_dir": str(logs)})
    changed = localflow.run(cached, params={"n": 5, "log_dir": str(logs), "bump": 1})
    assert changed.task("produce").cached is True
    assert changed.task("consume").cached is False
    assert changed.outputs["Output"] == "5+1"
    upstream = localflow.run(cached, params={"n": 6, "log_dir": str(logs), "bump": 1})
    # a new upstream artifact (new URI) changes the downstream key too
    assert not upstream.task("produce").cached and not upstream.task("consume").cached
    assert upstream.outputs["Output"] == "6+1"
    assert _count(logs, "produce") == 2 and _count(logs, "consume") == 3


@dsl.component(base_image=BASE)
def stamp_once(log_dir: str, tag: str) -> str:
    import os
    import uuid

    os.makedirs(log_dir, exist_ok=True)
    open(os.path.join(log_dir, f"{tag}-{uuid.uuid4().hex}"), "w").close()
    return tag


@dsl.pipeline(name="cache-options")
def cache_options(log_dir: str, salt: str = "a"):
    stamp_once(log_dir=log_dir, tag="off").set_caching_options(False)
    stamp_once(log_dir=log_dir, tag=salt).set_caching_options(True, cache_key="fixed-key")


def test_caching_off_per_task_and_custom_cache_keys(localflow, tmp_path):
    logs = tmp_path / "executions"
    localflow.run(cache_options, params={"log_dir": str(logs)})
    second = localflow.run(cache_options, params={"log_dir": str(logs), "salt": "b"})
    assert second.task("stamp-once").cached is False  # caching turned off: always runs
    keyed = second.task("stamp-once-2")
    # a custom cacheKey ignores the inputs: salt changed, the key did not
    assert keyed.cached is True and keyed.outputs["parameters"]["Output"] == "a"
    assert _count(logs, "off") == 2 and _count(logs, "b") == 0


@dsl.component(base_image=BASE)
def flaky(marker: str, fail_times: int) -> int:
    import json
    import os
    import sys
    import time

    log = json.load(open(marker)) if os.path.exists(marker) else []
    log.append(time.time())
    with open(marker, "w") as f:
        json.dump(log, f)
    if len(log) <= fail_times:
        print(f"attempt {len(log)} fails on purpose")
        sys.exit(1)
    return len(log)


@dsl.pipeline(name="retrying")
def retrying(marker: str, fail_times: int = 2) -> int:
    f = flaky(marker=marker, fail_times=fail_times)
    f.set_retry(num_retries=2, backoff_duration="1s", backoff_factor=1.5)
    f.set_caching_options(False)
    return f.output


@dsl.pipeline(name="retrying-fast")
def retrying_fast(marker: str, fail_times: int = 5) -> int:
    f = flaky(marker=marker, fail_times=fail_times)
    f.set_retry(num_retries=2)  # backoffDuration 0s: immediate retries
    f.set_caching_options(False)
    return f.output


def test_a_flaky_task_succeeds_on_a_retry_after_the_backoff(localflow, tmp_path):
    marker = tmp_path / "attempts.json"
    run = localflow.run(retrying, params={"marker": str(marker)})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == 3
    t = run.task("flaky")
    assert t.attempts == 3 and t.state == "SUCCEEDED"
    starts = json.loads(marker.read_text())
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[0] >= 1.0 and gaps[1] >= 1.5  # backoffDuration * backoffFactor ** n
    rows = container_executions(localflow, run, "flaky")
    assert [(r["attempt"], r["state"]) for r in rows] == [(0, "FAILED"), (1, "FAILED"), (2, "COMPLETE")]
    assert "attempt 1 fails on purpose" in rows[0]["error"]
    assert len({r["pod_name"] for r in rows}) == 3  # one Pod per attempt


def test_a_task_that_fails_every_retry_fails_the_run(localflow, tmp_path):
    marker = tmp_path / "attempts.json"
    run = localflow.run(retrying_fast, params={"marker": str(marker)})
    assert run.state == "FAILED"
    t = run.task("flaky")
    assert t.state == "FAILED" and t.attempts == 3
    assert len(json.loads(marker.read_text())) == 3
    assert "attempt 3 fails on purpose" in t.error
    rows = container_executions(localflow, run, "flaky")
    assert [r["state"] for r in rows] == ["FAILED"] * 3


@dsl.component(base_image=BASE)
def write_once(out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write("x")


@dsl.pipeline(name="lineage-cache")
def lineage_cache():
    write_once()


def test_lineage_names_the_execution_that_wrote_an_artifact_not_a_later_cache_hit(localflow):
    first = localflow.run(lineage_cache)
    second = localflow.run(lineage_cache)
    assert second.task("write-once").cached
    uri = first.task("write-once").outputs["artifacts"]["out"][0]["uri"]
    with localflow.runtime() as rt:
        (art,) = [a for a in rt.metadata.list_artifacts() if a["uri"] == uri]
        lineage = rt.metadata.lineage(art["id"])
    assert lineage["producer"]["id"] == first.task("write-once").execution_id
    assert [x["id"] for x in lineage["cached_by"]] == [second.task("write-once").execution_id]


def test_logs_of_a_cached_task_are_those_of_the_run_that_computed_it(localflow):
    first = localflow.run(lineage_cache)
    second = localflow.run(lineage_cache)
    assert second.task("write-once").cached and second.task("write-once").pod is None
    assert second.logs("write-once") == first.logs("write-once")
