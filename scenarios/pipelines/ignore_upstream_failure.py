"""ignore_upstream_failure(): a downstream task that runs even though its upstream failed.

Tasks (names as compiled):

- ``may-fail``: prints and, when ``fail`` is true (the default), exits with code 1; otherwise returns
  ``"upstream ok"``.
- ``cleanup``: ``cleanup(message=may-fail.Output).ignore_upstream_failure()`` -> ``triggerPolicy.strategy:
  ALL_UPSTREAM_TASKS_COMPLETED``; returns ``message``, whose default is "upstream failed": when the
  upstream failed its output does not exist and the component default is used.
- ``report-status``: takes ``dsl.PipelineTaskFinalStatus``, ``.after(may-fail).ignore_upstream_failure()``;
  its ``taskFinalStatus.producerTask`` is ``may-fail``; returns ``"<state> <pipelineTaskName>"``.
- ``echo``: ``echo(message=may-fail.Output)`` without ignore_upstream_failure (no trigger strategy,
  i.e. ALL_UPSTREAM_TASKS_SUCCEEDED); returns ``message``.

Expected, default (fail=True): run FAILED; may-fail FAILED; cleanup SUCCEEDED with Output
"upstream failed"; report-status SUCCEEDED with Output "FAILED may-fail"; echo does not run (its
upstream failed; never SUCCEEDED).
``fail=False``: run SUCCEEDED; every task SUCCEEDED; cleanup.Output == "upstream ok"; echo.Output ==
"upstream ok"; report-status.Output == "COMPLETE may-fail" (MLMD state name, as the open-source
backend writes it; kfp.local says "SUCCEEDED may-fail").

The default-value fallback is what the SDK requires: ``ignore_upstream_failure()`` refuses an input fed
by an upstream task unless the input has a default. kfp.local (2.17.3) gives the ``fail=False`` results
above (with "SUCCEEDED" for "COMPLETE"), but with ``fail=True`` it stops after may-fail with
``ValueError: Tried to get output 'Output' from task 'may-fail', but task 'may-fail' not found.`` (no
fallback to the default).
"""
from kfp import dsl


@dsl.component(base_image="python:3.11")
def may_fail(fail: bool) -> str:
    import sys

    if fail:
        print("may-fail: failing on purpose")
        sys.exit(1)
    return "upstream ok"


@dsl.component(base_image="python:3.11")
def cleanup(message: str = "upstream failed") -> str:
    print(message)
    return message


@dsl.component(base_image="python:3.11")
def echo(message: str) -> str:
    return message


@dsl.component(base_image="python:3.11")
def report_status(status: dsl.PipelineTaskFinalStatus) -> str:
    return f"{status.state} {status.pipeline_task_name}"


@dsl.pipeline(name="ignore-upstream-failure")
def pipeline(fail: bool = True):
    upstream = may_fail(fail=fail)
    cleanup(message=upstream.output).ignore_upstream_failure()
    report_status().after(upstream).ignore_upstream_failure()
    echo(message=upstream.output)


EXPECTED = [
    {
        "params": {},
        "state": "FAILED",
        "tasks": {"may-fail": "FAILED", "cleanup": "SUCCEEDED", "report-status": "SUCCEEDED"},
        "not_run": ["echo"],
        "task_outputs": {
            "cleanup": {"Output": "upstream failed"},
            "report-status": {"Output": "FAILED may-fail"},
        },
    },
    {
        "params": {"fail": False},
        "state": "SUCCEEDED",
        "tasks": {
            "may-fail": "SUCCEEDED",
            "cleanup": "SUCCEEDED",
            "report-status": "SUCCEEDED",
            "echo": "SUCCEEDED",
        },
        "task_outputs": {
            "cleanup": {"Output": "upstream ok"},
            "echo": {"Output": "upstream ok"},
            "report-status": {"Output": "COMPLETE may-fail"},
        },
    },
]
