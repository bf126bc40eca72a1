"""Benchmark: 10 independent tasks that each sleep 1 s (does the runner run them concurrently?).

``nap(index: int, seconds: float) -> int`` sleeps ``seconds`` and returns ``index``. The tasks ``nap``,
``nap-2``, ..., ``nap-10`` have no dependencies between them (index 0..9). Default lightweight
components (pip bootstrap included); caching is off on every task so each run really sleeps. Each
task requests only 100m cpu and 64M memory (``set_cpu_request``/``set_memory_request``), so a
resource-aware scheduler can admit all ten at once on a 2-core machine.

Expected (default seconds=1.0): run SUCCEEDED; all 10 tasks SUCCEEDED; nap.Output == 0, nap-N.Output ==
N - 1. Each task runs for at least ``seconds``; a runner that runs them all at once finishes in about
``seconds`` plus start-up, a sequential one in ten times that: kfp.local took 23.3 s here (default
components, 2 cores shared with other work; 15.1 s on an idle machine per pipelines-ir.md section 16).
kfp.local warns that the cpu/memory requests have no effect there.
"""
from kfp import dsl

N_TASKS = 10


@dsl.component(base_image="python:3.11")
def nap(index: int, seconds: float) -> int:
    import time

    time.sleep(seconds)
    return index


@dsl.pipeline(name="sleep-fanout")
def pipeline(seconds: float = 1.0):
    for index in range(N_TASKS):
        task = nap(index=index, seconds=seconds)
        task.set_caching_options(False)
        task.set_cpu_request("100m").set_memory_request("64M")


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {("nap" if n == 1 else f"nap-{n}"): "SUCCEEDED" for n in range(1, N_TASKS + 1)},
        "task_outputs": {
            ("nap" if n == 1 else f"nap-{n}"): {"Output": n - 1} for n in range(1, N_TASKS + 1)
        },
    }
]
