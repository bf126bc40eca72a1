"""set_retry: a task that fails on its first attempt(s) and succeeds on a retry.

Parameters: ``marker_dir`` (default "": ``$RETRY_STATE``, the PVC ``retry-state`` mounted at
``/retry-state``: a retry is a new Pod with a fresh ``/tmp``, as in a cluster) is where the flaky task keeps its attempt
counter, in the file ``localflow-retry-<run uuid>`` (the run uuid comes from
``dsl.PIPELINE_JOB_ID_PLACEHOLDER``, so every run starts from zero); ``fail_times`` (default 1) is how
many attempts fail before one succeeds.

Tasks (names as compiled):

- ``flaky``: ``set_retry(num_retries=2, backoff_duration="1s")`` -> ``retryPolicy: {maxRetryCount: 2,
  backoffDuration: 1s, backoffFactor: 2.0, backoffMaxDuration: 3600s}``; caching off. Each attempt
  increments the counter; while it is <= ``fail_times`` the attempt exits with code 1 ("attempt N
  fails on purpose"), otherwise it returns the attempt number.
- ``report``: returns ``"succeeded on attempt <n>"``.

Pipeline output: ``Output`` = report.Output.

Expected, default (fail_times=1): run SUCCEEDED; flaky SUCCEEDED after 2 attempts (1 failed + 1
successful; the retry starts no earlier than 1 s after the first failure), flaky.Output == 2; report
SUCCEEDED; Output == "succeeded on attempt 2"; the counter file holds "2".
``fail_times=2``: 3 attempts (waits of 1 s then 2 s), flaky.Output == 3, Output == "succeeded on
attempt 3".
``fail_times=3``: 3 attempts, all failing; flaky FAILED, report never runs, run FAILED; the counter
file holds "3".
"""
from kfp import dsl, kubernetes


@dsl.component(base_image="python:3.11")
def flaky(marker_dir: str, run_id: str, fail_times: int) -> int:
    import os
    import sys
    import tempfile

    directory = marker_dir or os.environ.get("RETRY_STATE") or tempfile.gettempdir()
    os.makedirs(directory, exist_ok=True)
    marker = os.path.join(directory, f"localflow-retry-{run_id}")
    attempt = 1
    if os.path.exists(marker):
        with open(marker) as f:
            attempt = int(f.read()) + 1
    with open(marker, "w") as f:
        f.write(str(attempt))
    if attempt <= fail_times:
        print(f"attempt {attempt} fails on purpose")
        sys.exit(1)
    print(f"attempt {attempt} succeeds")
    return attempt


@dsl.component(base_image="python:3.11")
def report(attempt: int) -> str:
    return f"succeeded on attempt {attempt}"


@dsl.pipeline(name="retry")
def pipeline(marker_dir: str = "", fail_times: int = 1) -> str:
    f = flaky(marker_dir=marker_dir, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, fail_times=fail_times)
    f.set_retry(num_retries=2, backoff_duration="1s")
    kubernetes.mount_pvc(f, pvc_name="retry-state", mount_path="/retry-state")
    f.set_env_variable("RETRY_STATE", "/retry-state")
    f.set_caching_options(False)
    return report(attempt=f.output).output


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {"flaky": "SUCCEEDED", "report": "SUCCEEDED"},
        "attempts": {"flaky": 2},
        "task_outputs": {"flaky": {"Output": 2}},
        "outputs": {"Output": "succeeded on attempt 2"},
    },
    {
        "params": {"fail_times": 2},
        "state": "SUCCEEDED",
        "tasks": {"flaky": "SUCCEEDED", "report": "SUCCEEDED"},
        "attempts": {"flaky": 3},
        "outputs": {"Output": "succeeded on attempt 3"},
    },
    {
        "params": {"fail_times": 3},
        "state": "FAILED",
        "tasks": {"flaky": "FAILED"},
        "attempts": {"flaky": 3},
    },
]
