"""dsl.ParallelFor over a raw int list, a raw list of dicts and a task output list, with dsl.Collected fan-in.

Tasks (names as compiled):

- ``for-loop-1`` iterates the raw list ``[1, 2, 3, 4]`` with ``parallelism=2`` (``parallelismLimit: 2``);
  each iteration runs ``square`` (returns x*x). ``sum-ints`` takes ``dsl.Collected(square.Output)``
  (a LIST in iteration order: [1, 4, 9, 16]) and returns the sum, 30.
- ``for-loop-2`` iterates ``[{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]``; each iteration
  runs ``greet(name=item.who, times=item.times)`` and returns ``"<who>x<times>"``. Item fields reach the
  task through ``parseJson(string_value)["who"]`` selectors; the SDK types every item field as STRING,
  so the integral number 1 arrives as the string "1" (not "1.0"). ``join-strings`` takes the collected
  list and returns ``",".join(...)`` == "adax1,bobx2" (iteration order).
- ``make-list`` returns ``[10, 20, 30]``; ``for-loop-3`` iterates that task output; each iteration runs
  ``write-number`` which writes the number as text into Output[Dataset] ``out`` (metadata
  ``{"value": n}``). ``sum-artifacts`` takes ``dsl.Collected(write-number.out)`` (Input[List[Dataset]],
  3 artifacts) and returns the sum of the file contents, 60.

Pipeline outputs: ``squares_total`` == 30, ``greetings`` == "adax1,bobx2", ``artifacts_total`` == 60.

Expected: run SUCCEEDED; every task SUCCEEDED (square and greet and write-number once per iteration:
4, 2 and 3 executions); square outputs 1, 4, 9, 16. The square loop never has more than 2 iterations
running at once.

Int-as-double trap: collected values and ``make-list``'s output must reach user code as Python ints
(``sum-ints`` declares ``-> int`` and returns ``sum(nums)``, so a list of floats makes it fail with
"returned value of type <class 'float'>"). kfp.local (2.17.3) falls into this trap: it runs every task
but ``sum-ints`` FAILS (it receives [1.0, 4.0, 9.0, 16.0]) and ``join-strings`` returns
"adax1.0,bobx2.0"; ``sum-artifacts`` == 60 and the square outputs agree with the above. The real
backend should give the results above (Go protojson renders integral doubles without ".0"; as read,
unverified end to end).
"""
from typing import List, NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Output


@dsl.component(base_image="python:3.11")
def square(x: int) -> int:
    return x * x


@dsl.component(base_image="python:3.11")
def sum_ints(nums: List[int]) -> int:
    print(nums)
    return sum(nums)


@dsl.component(base_image="python:3.11")
def greet(name: str, times: str) -> str:
    return f"{name}x{times}"


@dsl.component(base_image="python:3.11")
def join_strings(items: List[str]) -> str:
    return ",".join(items)


@dsl.component(base_image="python:3.11")
def make_list() -> List[int]:
    return [10, 20, 30]


@dsl.component(base_image="python:3.11")
def write_number(n: int, out: Output[Dataset]):
    with open(out.path, "w") as f:
        f.write(str(n))
    out.metadata["value"] = n


@dsl.component(base_image="python:3.11")
def sum_artifacts(datasets: Input[List[Dataset]]) -> int:
    total = 0
    for ds in datasets:
        with open(ds.path) as f:
            total += int(f.read())
    return total


@dsl.pipeline(name="parallel-for")
def pipeline() -> NamedTuple(
    "Outputs", [("squares_total", int), ("greetings", str), ("artifacts_total", int)]
):
    with dsl.ParallelFor([1, 2, 3, 4], parallelism=2) as x:
        sq = square(x=x)
    total = sum_ints(nums=dsl.Collected(sq.output))

    with dsl.ParallelFor([{"who": "ada", "times": 1}, {"who": "bob", "times": 2}]) as item:
        g = greet(name=item.who, times=item.times)
    joined = join_strings(items=dsl.Collected(g.output))

    numbers = make_list()
    with dsl.ParallelFor(numbers.output) as number:
        w = write_number(n=number)
    art_total = sum_artifacts(datasets=dsl.Collected(w.outputs["out"]))

    outputs = NamedTuple(
        "Outputs", [("squares_total", int), ("greetings", str), ("artifacts_total", int)]
    )
    return outputs(
        squares_total=total.output, greetings=joined.output, artifacts_total=art_total.output
    )


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "square": "SUCCEEDED",
            "sum-ints": "SUCCEEDED",
            "greet": "SUCCEEDED",
            "join-strings": "SUCCEEDED",
            "make-list": "SUCCEEDED",
            "write-number": "SUCCEEDED",
            "sum-artifacts": "SUCCEEDED",
        },
        "task_outputs": {
            "sum-ints": {"Output": 30},
            "join-strings": {"Output": "adax1,bobx2"},
            "make-list": {"Output": [10, 20, 30]},
            "sum-artifacts": {"Output": 60},
        },
        "outputs": {"squares_total": 30, "greetings": "adax1,bobx2", "artifacts_total": 60},
    }
]
