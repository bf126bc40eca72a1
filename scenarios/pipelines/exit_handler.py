"""dsl.ExitHandler with an exit task that reads dsl.PipelineTaskFinalStatus.

Tasks (names as compiled):

- ``exit-handler-1`` (the body group) holds ``work`` (prints and returns ``"worked"``; with
  ``fail=True`` it exits with code 3 via ``sys.exit(3)``) and ``after-work`` (depends on ``work``,
  returns ``"after " + work.Output``).
- ``final-status`` (the exit task, next to ``exit-handler-1`` with ``dependentTasks: [exit-handler-1]``
  and ``triggerPolicy.strategy: ALL_UPSTREAM_TASKS_COMPLETED``) receives the body's final status
  and returns ``"<state> <pipelineTaskName>"``; it also prints the whole status.

Expected, default (``fail=False``): run SUCCEEDED; work, after-work, final-status SUCCEEDED;
after-work.Output == "after worked"; final-status sees state "COMPLETE" for task "exit-handler-1",
so final-status.Output == "COMPLETE exit-handler-1". The state is the MLMD execution state name, as the
open-source backend fills it (pipelines-ir.md 8.3); kfp.local and Vertex report "SUCCEEDED" instead.

``fail=True``: run FAILED; work FAILED (exit code 3); after-work never runs (its upstream failed);
final-status still runs and SUCCEEDED, with final-status.Output == "FAILED exit-handler-1".

kfp.local (2.17.3) runs both cases; it gives "SUCCEEDED exit-handler-1" for the default case.
"""
from kfp import dsl


@dsl.component(base_image="python:3.11")
def work(fail: bool) -> str:
    import sys

    if fail:
        print("work: failing on purpose (fail=True)")
        sys.exit(3)
    print("work: done")
    return "worked"


@dsl.component(base_image="python:3.11")
def after_work(previous: str) -> str:
    return "after " + previous


@dsl.component(base_image="python:3.11")
def final_status(status: dsl.PipelineTaskFinalStatus) -> str:
    print(
        "state:", status.state,
        "task:", status.pipeline_task_name,
        "job:", status.pipeline_job_resource_name,
        "error:", status.error_code, status.error_message,
    )
    return f"{status.state} {status.pipeline_task_name}"


@dsl.pipeline(name="exit-handler")
def pipeline(fail: bool = False):
    exit_task = final_status()
    with dsl.ExitHandler(exit_task):
        w = work(fail=fail)
        after_work(previous=w.output)


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {"work": "SUCCEEDED", "after-work": "SUCCEEDED", "final-status": "SUCCEEDED"},
        "task_outputs": {
            "after-work": {"Output": "after worked"},
            "final-status": {"Output": "COMPLETE exit-handler-1"},
        },
    },
    {
        "params": {"fail": True},
        "state": "FAILED",
        "tasks": {"work": "FAILED", "final-status": "SUCCEEDED"},
        "task_outputs": {"final-status": {"Output": "FAILED exit-handler-1"}},
    },
]
