"""Benchmark: 20 sequential no-op lightweight components (per-task overhead).

``step(x: int) -> int`` returns x + 1; the tasks ``step``, ``step-2``, ..., ``step-20`` form one chain,
each consuming the previous output (``step`` gets the pipeline input ``start``). They are default
lightweight components (``base_image="python:3.11"``, the SDK's pip bootstrap of ``kfp==<version>``
included), so the measured overhead is that of a normal user component. Caching is off on every
task so repeated benchmark runs always execute all 20.

Expected (default start=0): run SUCCEEDED; all 20 tasks SUCCEEDED, step-N.Output == start + N
(``step`` counts as N=1); pipeline output ``Output`` == 20.

kfp.local runs it: 25.0 s here (``SubprocessRunner(use_venv=False)``, 2 cores shared with other work;
pipelines-ir.md section 16 measured 0.57 s per task on an idle machine).
"""
from kfp import dsl

N_STEPS = 20


@dsl.component(base_image="python:3.11")
def step(x: int) -> int:
    return x + 1


@dsl.pipeline(name="noop-chain")
def pipeline(start: int = 0) -> int:
    task = step(x=start).set_caching_options(False)
    for _ in range(N_STEPS - 1):
        task = step(x=task.output).set_caching_options(False)
    return task.output


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {("step" if n == 1 else f"step-{n}"): "SUCCEEDED" for n in range(1, N_STEPS + 1)},
        "task_outputs": {
            ("step" if n == 1 else f"step-{n}"): {"Output": n} for n in range(1, N_STEPS + 1)
        },
        "outputs": {"Output": N_STEPS},
    }
]
