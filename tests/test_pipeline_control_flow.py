"""Control flow end to end: If/Elif/Else (nested) with SKIPPED tasks on false branches,
ParallelFor over raw lists, dict items, pipeline inputs, task outputs and artifact lists with
parallelismLimit, dsl.Collected, ExitHandler with PipelineTaskFinalStatus, nested pipelines, DAG
outputs incl. OneOf, and concurrency of independent tasks (measured from timestamps the tasks
write)."""
from typing import List, NamedTuple

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from pipeline_support import BASE, container_executions, executions, intervals, max_overlap


@dsl.component(base_image=BASE)
def echo(msg: str) -> str:
    return msg


@dsl.component(base_image=BASE)
def number(n: int) -> int:
    return n


@dsl.pipeline(name="branches")
def branches(n: int = 0) -> str:
    v = number(n=n)
    with dsl.If(v.output > 5, name="big"):
        big = echo(msg="big")
        with dsl.If(v.output > 50, name="huge"):
            echo(msg="huge")
    with dsl.Elif(v.output > 0, name="small"):
        small = echo(msg="small")
    with dsl.Else(name="none"):
        none = echo(msg="none")
    return dsl.OneOf(big.output, small.output, none.output)


@pytest.mark.parametrize("n, ran, out", [
    (100, {"big", "huge"}, "big"),
    (7, {"big"}, "big"),
    (3, {"small"}, "small"),
    (-1, {"none"}, "none"),
])
def test_if_elif_else_runs_one_branch_skips_the_others_and_oneof_picks_its_output(localflow, n, ran, out):
    run = localflow.run(branches, params={"n": n})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == out
    echo_tasks = {t.outputs["parameters"].get("Output"): t for t in run.tasks.values()
                  if t.task.startswith("echo") and t.state == "SUCCEEDED"}
    assert set(echo_tasks) == ran
    groups = {t.display_name: t.state for t in run.tasks.values() if t.kind == "dag" and t.task.startswith("condition")}
    expected_groups = {"big": "SUCCEEDED" if "big" in ran else "SKIPPED",
                       "small": "SUCCEEDED" if "small" in ran else "SKIPPED",
                       "none": "SUCCEEDED" if "none" in ran else "SKIPPED"}
    if "big" in ran:
        expected_groups["huge"] = "SUCCEEDED" if "huge" in ran else "SKIPPED"
    for name, state in expected_groups.items():
        assert groups[name] == state, (name, groups)
    assert groups.get("condition-branches-1", "SUCCEEDED") == "SUCCEEDED"
    # skipped groups never start their tasks: exactly the echo tasks that ran have executions
    names = sorted(e["name"].rsplit(".", 1)[-1] for e in container_executions(localflow, run)
                   if e["name"].rsplit(".", 1)[-1].startswith("echo"))
    assert len(names) == len(ran)
    assert all(e["state"] == "COMPLETE" for e in container_executions(localflow, run))


def test_tasks_inside_a_false_branch_are_recorded_skipped_without_executions(localflow):
    run = localflow.run(branches, params={"n": -1})
    skipped = {name: t for name, t in run.tasks.items() if t.state == "SKIPPED" and t.kind == "container"}
    # big (with huge nested inside) and small were false: their three echo tasks never started
    assert len(skipped) == 3
    for name, t in skipped.items():
        assert t.pod is None and t.execution_id is None and t.error.startswith("in skipped group ")
    nested = [t for t in skipped.values() if t.name.count(".") == 3]  # branches.big.huge.echo
    assert len(nested) == 1 and nested[0].error == f"in skipped group {nested[0].name.rsplit('.', 2)[0]}"
    details = {d["taskId"]: d["state"] for d in run.object["status"]["runDetails"]["taskDetails"]}
    assert all(details[name] == "SKIPPED" for name in skipped)


@dsl.component(base_image=BASE)
def stamp(name: str, out_dir: str, seconds: float) -> str:
    import json
    import os
    import time

    start = time.time()
    time.sleep(seconds)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        json.dump({"start": start, "end": time.time()}, f)
    return name


@dsl.pipeline(name="independent")
def independent(out_dir: str):
    for i in range(3):
        stamp(name=f"t{i}", out_dir=out_dir, seconds=0.6).set_caching_options(False)


def test_independent_tasks_run_concurrently(localflow, tmp_path):
    run = localflow.run(independent, params={"out_dir": str(tmp_path / "stamps")})
    assert run.state == "SUCCEEDED", run.error
    spans = intervals(tmp_path / "stamps")
    assert len(spans) == 3
    assert max_overlap(spans) == 3


@dsl.pipeline(name="limited-loop")
def limited_loop(out_dir: str, items: List[str] = ["a", "b", "c", "d", "e"]):
    with dsl.ParallelFor(items, parallelism=2) as item:
        stamp(name=item, out_dir=out_dir, seconds=0.4).set_caching_options(False)


def test_parallel_for_over_a_pipeline_input_never_exceeds_its_parallelism_limit(localflow, tmp_path):
    run = localflow.run(limited_loop, params={"out_dir": str(tmp_path / "stamps")})
    assert run.state == "SUCCEEDED", run.error
    assert sorted(t.outputs["parameters"]["Output"] for t in run.tasks.values() if t.task == "stamp") == list("abcde")
    spans = intervals(tmp_path / "stamps")
    assert len(spans) == 5
    assert max_overlap(spans) == 2  # limit reached, never exceeded
    loop = run.task("for-loop-1")
    assert loop.kind == "loop" and loop.state == "SUCCEEDED"
    assert [run.tasks[f"for-loop-1[{i}]"].inputs["parameters"] for i in range(5)] == \
        [{"pipelinechannel--items-loop-item": x} for x in "abcde"]


@dsl.pipeline(name="unlimited-loop")
def unlimited_loop(out_dir: str):
    with dsl.ParallelFor(["x", "y", "z"]) as item:
        stamp(name=item, out_dir=out_dir, seconds=0.6).set_caching_options(False)


def test_parallel_for_without_a_limit_runs_all_iterations_at_once(localflow, tmp_path):
    run = localflow.run(unlimited_loop, params={"out_dir": str(tmp_path / "stamps")})
    assert run.state == "SUCCEEDED", run.error
    assert max_overlap(intervals(tmp_path / "stamps")) == 3


@dsl.component(base_image=BASE)
def square(x: int) -> int:
    return x * x


@dsl.component(base_image=BASE)
def total(values: List[int]) -> int:
    return sum(values)


@dsl.component(base_image=BASE)
def make_list(n: int) -> List[int]:
    return list(range(1, n + 1))


@dsl.component(base_image=BASE)
def label(name: str, weight: str) -> str:
    return f"{name}:{weight}"


@dsl.component(base_image=BASE)
def join(parts: List[str]) -> str:
    return ",".join(parts)


@dsl.pipeline(name="loops")
def loops(n: int = 4) -> NamedTuple("Outs", [("raw", int), ("from_task", int), ("dicts", str)]):
    with dsl.ParallelFor([1, 2, 3]) as x:
        sq = square(x=x)
    raw_total = total(values=dsl.Collected(sq.output))
    gen = make_list(n=n)
    with dsl.ParallelFor(gen.output, parallelism=1) as y:
        sq2 = square(x=y)
    task_total = total(values=dsl.Collected(sq2.output))
    with dsl.ParallelFor([{"who": "a", "w": 1}, {"who": "b", "w": 2}]) as item:
        lb = label(name=item.who, weight=item.w)
    joined = join(parts=dsl.Collected(lb.output))
    outs = NamedTuple("Outs", [("raw", int), ("from_task", int), ("dicts", str)])
    return outs(raw=raw_total.output, from_task=task_total.output, dicts=joined.output)


def test_parallel_for_over_raw_lists_task_outputs_and_dict_items_with_collected(localflow):
    run = localflow.run(loops)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs == {"raw": 14, "from_task": 30, "dicts": "a:1,b:2"}
    loop_tasks = [t for t in run.tasks.values() if t.kind == "loop"]
    assert len(loop_tasks) == 3 and all(t.state == "SUCCEEDED" for t in loop_tasks)
    assert len([t for t in run.tasks.values() if t.kind == "iteration"]) == 3 + 4 + 2


@dsl.pipeline(name="empty-loop")
def empty_loop(items: List[int] = []) -> int:
    with dsl.ParallelFor(items) as x:
        sq = square(x=x)
    return total(values=dsl.Collected(sq.output)).output


def test_parallel_for_over_an_empty_list_succeeds_with_an_empty_collection(localflow):
    run = localflow.run(empty_loop)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == 0


@dsl.component(base_image=BASE)
def shard(i: int, out_dir: str, part: Output[Dataset]):
    with open(part.path, "w") as f:
        f.write(str(i))


@dsl.component(base_image=BASE)
def read_shard(d: Input[Dataset], out_dir: str) -> int:
    import json
    import os
    import time

    start = time.time()
    time.sleep(0.3)
    with open(d.path) as f:
        value = int(f.read())
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"{value}.json"), "w") as f:
        json.dump({"start": start, "end": time.time()}, f)
    return value


@dsl.pipeline(name="inner-artifact-loop")
def inner_artifact_loop(dss: Input[List[Dataset]], out_dir: str) -> List[int]:
    with dsl.ParallelFor(dss, parallelism=1) as ds:
        r = read_shard(d=ds, out_dir=out_dir).set_caching_options(False)
    return dsl.Collected(r.output)


@dsl.pipeline(name="artifact-loop")
def artifact_loop(out_dir: str) -> List[int]:
    with dsl.ParallelFor([3, 1, 2]) as i:
        s = shard(i=i, out_dir=out_dir)
    return inner_artifact_loop(dss=dsl.Collected(s.outputs["part"]), out_dir=out_dir).output


def test_parallel_for_over_an_artifact_list_honours_parallelism_one(localflow, tmp_path):
    run = localflow.run(artifact_loop, params={"out_dir": str(tmp_path / "stamps")})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == [3, 1, 2]
    spans = intervals(tmp_path / "stamps")
    assert len(spans) == 3 and max_overlap(spans) == 1
    assert run.task("inner-artifact-loop").kind == "dag"
    it0 = run.tasks["inner-artifact-loop.for-loop-1[0]"]
    assert list(it0.inputs["artifacts"]) == ["pipelinechannel--dss-loop-item"]


@dsl.component(base_image=BASE)
def work(fail: bool) -> str:
    import sys

    if fail:
        print("failing on purpose")
        sys.exit(3)
    return "worked"


@dsl.component(base_image=BASE)
def final_status(status: dsl.PipelineTaskFinalStatus) -> str:
    return f"{status.state}|{status.pipeline_task_name}|{status.pipeline_job_resource_name}|{status.error_code}"


@dsl.pipeline(name="exit-handling")
def exit_handling(fail: bool = False):
    exit_task = final_status()
    with dsl.ExitHandler(exit_task):
        w = work(fail=fail)
        echo(msg=w.output)


def test_exit_handler_runs_after_success_with_the_final_status(localflow):
    run = localflow.run(exit_handling)
    assert run.state == "SUCCEEDED", run.error
    state, task, job, _ = run.task("final-status").outputs["parameters"]["Output"].split("|")
    assert (state, task, job) == ("COMPLETE", "exit-handler-1", run.name)
    assert run.task("exit-handler-1").state == "SUCCEEDED"


def test_exit_handler_runs_after_failure_and_the_run_fails(localflow):
    run = localflow.run(exit_handling, params={"fail": True})
    assert run.state == "FAILED"
    assert run.task("work").state == "FAILED"
    assert run.task("echo").state == "SKIPPED"
    assert run.task("exit-handler-1").state == "FAILED"
    fs = run.task("final-status")
    assert fs.state == "SUCCEEDED"
    state, task, job, _ = fs.outputs["parameters"]["Output"].split("|")
    assert (state, task, job) == ("FAILED", "exit-handler-1", run.name)
    assert "exit code 3" in run.task("work").error and "failing on purpose" in run.task("work").error
    by_name = {e["name"]: e["state"] for e in executions(localflow, run)}
    assert by_name["exit-handler-1.work"] == "FAILED" and by_name["final-status"] == "COMPLETE"


@dsl.component(base_image=BASE)
def cleanup(note: str) -> str:
    return "cleaned " + note


@dsl.component(base_image=BASE)
def fallback(message: str = "upstream failed") -> str:
    return message


@dsl.pipeline(name="ignore-failure")
def ignore_failure(fail: bool = True):
    w = work(fail=fail)
    cleanup(note="x").after(w).ignore_upstream_failure()
    fallback(message=w.output).ignore_upstream_failure()
    echo(msg="after").after(w)


def test_ignore_upstream_failure_runs_the_task_while_plain_dependents_are_skipped(localflow):
    run = localflow.run(ignore_failure)
    assert run.state == "FAILED"
    assert run.task("work").state == "FAILED"
    assert run.task("cleanup").state == "SUCCEEDED"
    assert run.task("cleanup").outputs["parameters"]["Output"] == "cleaned x"
    assert run.task("echo").state == "SKIPPED"
    assert "upstream" in run.task("echo").error
    # the failed upstream produced no output: the input's default applies
    assert run.task("fallback").outputs["parameters"]["Output"] == "upstream failed"
    ok = localflow.run(ignore_failure, params={"fail": False})
    assert ok.state == "SUCCEEDED" and ok.task("cleanup").state == "SUCCEEDED" and ok.task("echo").state == "SUCCEEDED"
    assert ok.task("fallback").outputs["parameters"]["Output"] == "worked"


@dsl.component(base_image=BASE)
def make_dataset(n: int, data: Output[Dataset]) -> int:
    with open(data.path, "w") as f:
        f.write("row\n" * n)
    data.metadata["n"] = n
    return n * 10


@dsl.pipeline(name="child")
def child(n: int) -> NamedTuple("ChildOuts", [("score", int), ("data", Dataset)]):
    d = make_dataset(n=n)
    outs = NamedTuple("ChildOuts", [("score", int), ("data", Dataset)])
    return outs(score=d.outputs["Output"], data=d.outputs["data"])


@dsl.component(base_image=BASE)
def use_child(score: int, data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f"{score}:{len(f.read().splitlines())}:{data.metadata['n']}"


@dsl.pipeline(name="parent")
def parent(n: int = 2) -> NamedTuple("ParentOuts", [("summary", str), ("data", Dataset)]):
    c = child(n=n)
    u = use_child(score=c.outputs["score"], data=c.outputs["data"])
    outs = NamedTuple("ParentOuts", [("summary", str), ("data", Dataset)])
    return outs(summary=u.output, data=c.outputs["data"])


def test_nested_pipelines_pass_parameter_and_artifact_outputs_out_of_their_dag(localflow):
    run = localflow.run(parent, params={"n": 3})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["summary"] == "30:3:3"
    assert run.task("child").kind == "dag"
    assert run.tasks["child.make-dataset"].state == "SUCCEEDED"
    art = run.outputs["data"]
    assert art["metadata"] == {"n": 3} and open(art["uri"]).read() == "row\n" * 3
    dag_rows = [e for e in executions(localflow, run) if e["type"] == "system.DAGExecution"]
    child_row = next(e for e in dag_rows if e["name"] == "child")
    assert child_row["state"] == "COMPLETE" and child_row["outputs"]["parameters"]["score"] == 30


@dsl.pipeline(name="oneof-artifacts")
def oneof_artifacts(n: int = 1) -> Dataset:
    with dsl.If(n > 1):
        a = make_dataset(n=n)
    with dsl.Else():
        b = make_dataset(n=1)
    return dsl.OneOf(a.outputs["data"], b.outputs["data"])


@pytest.mark.parametrize("n, rows", [(3, 3), (0, 1)])
def test_oneof_selects_the_artifact_of_the_branch_that_ran(localflow, n, rows):
    run = localflow.run(oneof_artifacts, params={"n": n})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"]["metadata"] == {"n": rows}
    assert open(run.outputs["Output"]["uri"]).read() == "row\n" * rows


@dsl.component(base_image=BASE)
def double(num: int) -> int:
    return 2 * num


@dsl.pipeline(name="conditional-collect")
def conditional_collect(threshold: int = 2) -> int:
    with dsl.ParallelFor([1, 2, 3]) as x:
        with dsl.If(x >= threshold):
            d = double(num=x)
    return total(values=dsl.Collected(d.output)).output


@pytest.mark.parametrize("threshold, expected", [(2, 10), (1, 12), (9, 0)])
def test_collected_skips_iterations_whose_producer_did_not_run(localflow, threshold, expected):
    run = localflow.run(conditional_collect, params={"threshold": threshold})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == expected
    skipped = [t for t in run.tasks.values() if t.task.startswith("condition") and t.state == "SKIPPED"]
    assert len(skipped) == sum(1 for x in (1, 2, 3) if x < threshold)


@pytest.mark.parametrize("fail", [True, False])
def test_tasks_downstream_of_a_skipped_task_are_skipped_too(localflow, fail):
    @dsl.pipeline(name="skip-chain")
    def skip_chain(fail: bool):
        w = work(fail=fail)
        a = echo(msg="a").after(w)
        echo(msg="b").after(a)

    run = localflow.run(skip_chain, params={"fail": fail})
    if fail:
        assert run.state == "FAILED"
        assert run.task("echo").state == "SKIPPED" and run.task("echo-2").state == "SKIPPED"
        assert run.task("echo-2").error == "upstream task echo skipped"
    else:
        assert run.state == "SUCCEEDED" and run.task("echo-2").state == "SUCCEEDED"


def test_a_final_status_input_without_a_producer_gets_an_empty_status(localflow):
    # a component compiled on its own (kubeflow/pipelines GH-12033): no exit handler feeds it
    run = localflow.run(final_status)
    assert run.state == "SUCCEEDED", run.error
    assert run.task("final-status").outputs["parameters"]["Output"] == "None|None|None|None"


@dsl.pipeline(name="implicit-deps")
def implicit_deps() -> str:
    slow = stamp(name="slow", out_dir="/tmp", seconds=0.5).set_caching_options(False)
    return echo(msg=slow.output).output


def test_a_task_waits_for_producers_it_reads_even_when_dependent_tasks_omits_them(localflow):
    from localflow.specs.pipeline import compile_pipeline_func

    spec = compile_pipeline_func(implicit_deps)[0]
    del spec["root"]["dag"]["tasks"]["echo"]["dependentTasks"]  # as some compiled pipelines ship
    run = localflow.run(spec)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "slow"


@dsl.component(base_image=BASE)
def maybe_fail(x: int) -> int:
    import sys

    if x == 2:
        sys.exit(5)
    return x


@dsl.pipeline(name="failing-iteration")
def failing_iteration():
    with dsl.ParallelFor([1, 2, 3], parallelism=1) as x:
        m = maybe_fail(x=x)
    total(values=dsl.Collected(m.output))


def test_a_failing_iteration_fails_the_loop_but_the_other_iterations_still_run(localflow):
    run = localflow.run(failing_iteration)
    assert run.state == "FAILED"
    states = {i: run.tasks[f"for-loop-2[{i}].maybe-fail"].state for i in range(3)}
    assert states == {0: "SUCCEEDED", 1: "FAILED", 2: "SUCCEEDED"}
    loop = run.task("for-loop-2")
    assert loop.state == "FAILED" and "for-loop-2[1]" in loop.error and "exit code 5" in loop.error
    assert run.task("total").state == "SKIPPED"
