"""Runtime placeholders passed as task arguments: job name/resource name/uuid/create time, task name/uuid.

Each ``echo-placeholders*`` task receives the six ``dsl.PIPELINE_*_PLACEHOLDER`` constants (compiled as
``runtimeValue.constant: '{{$.pipeline_job_name}}'`` etc.) and returns them as a JSON object string with
sorted keys ``create_time``, ``job_id``, ``job_name``, ``job_resource_name``, ``task_id``, ``task_name``.

Tasks (names as compiled): ``echo-placeholders`` and ``echo-placeholders-2`` (same component, run
independently).

Expected: run SUCCEEDED; both tasks SUCCEEDED; in each task's JSON output:

- ``task_name`` is the task's own name: "echo-placeholders" and "echo-placeholders-2";
- ``job_resource_name`` starts with "placeholders-" (``<pipeline name>-<suffix>``);
- ``job_name`` is the run's display name (non-empty);
- ``job_id`` is the run UUID (``uuid.UUID(job_id)`` parses);
- ``create_time`` is the run creation time, RFC 3339 UTC with seconds, e.g. "2026-01-02T03:04:05Z";
- ``task_id`` is a non-empty execution id (the backend passes the MLMD id of the enclosing DAG
  execution, pipelines-ir.md 7.4, so both tasks here may get the same value; kfp.local draws a random
  id per task);
- ``job_name``, ``job_resource_name``, ``job_id`` and ``create_time`` are equal in the two tasks;
  ``task_name`` differs.
No placeholder text (``{{$.``) survives in any value.

kfp.local (2.17.3) cannot run this pipeline: it has no substitution for
``{{$.pipeline_job_resource_name}}`` and ``{{$.pipeline_job_create_time_utc}}`` and fails with
``IndexError`` in ``placeholder_utils.convert_placeholder_parts_to_path``. With those two arguments
replaced by plain strings it runs, giving task_name "echo-placeholders"/"echo-placeholders-2", job_name
"placeholders-<timestamp>" and 8-digit random job_id/task_id (not UUIDs).
"""
from kfp import dsl


@dsl.component(base_image="python:3.11")
def echo_placeholders(
    job_name: str,
    job_resource_name: str,
    job_id: str,
    task_name: str,
    task_id: str,
    create_time: str,
) -> str:
    import json

    values = {
        "job_name": job_name,
        "job_resource_name": job_resource_name,
        "job_id": job_id,
        "task_name": task_name,
        "task_id": task_id,
        "create_time": create_time,
    }
    print(values)
    return json.dumps(values, sort_keys=True)


@dsl.pipeline(name="placeholders")
def pipeline():
    for _ in range(2):
        echo_placeholders(
            job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            job_resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
            create_time=dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
        )


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {"echo-placeholders": "SUCCEEDED", "echo-placeholders-2": "SUCCEEDED"},
    }
]
