"""A pipeline used as a component inside another pipeline, with parameter and artifact outputs.

``add_and_describe`` (an inner ``@dsl.pipeline``; the compiler emits one DAG component per use,
``comp-add-and-describe`` and ``comp-add-and-describe-2``) takes ``a`` and ``b``, runs ``add`` (returns
a+b) and ``describe`` (writes ``"<a>+<b>=<sum>"`` into Output[Artifact] ``text``), and outputs
``total`` (int, from add) and ``report`` (Artifact, from describe) through its ``dag.outputs``.

Outer tasks (names as compiled): ``add-and-describe`` (a=x, b=y), ``add-and-describe-2``
(a=add-and-describe.total, b=10), then ``read-report`` which reads ``add-and-describe-2.report`` and
returns ``"<file content> (total <total>)"`` with total = add-and-describe-2.total. The tasks inside the
nested DAGs are named ``add`` and ``describe`` in both instances (task names are per DAG; kfp.local
logs the second pair as ``add-2``/``describe-2``, after their component names).

Pipeline outputs: ``total`` (int) and ``summary`` (str).

Expected (defaults x=2, y=3): run SUCCEEDED; every task SUCCEEDED (add and describe run twice, once
per nested instance); add-and-describe.total == 5; add-and-describe-2.total == 15; the second report
file holds "5+10=15"; total == 15; summary == "5+10=15 (total 15)".
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output


@dsl.component(base_image="python:3.11")
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image="python:3.11")
def describe(a: int, b: int, total: int, text: Output[Artifact]):
    with open(text.path, "w") as f:
        f.write(f"{a}+{b}={total}")
    text.metadata["total"] = total


@dsl.component(base_image="python:3.11")
def read_report(report: Input[Artifact], total: int) -> str:
    with open(report.path) as f:
        return f"{f.read()} (total {total})"


@dsl.pipeline(name="add-and-describe")
def add_and_describe(a: int, b: int) -> NamedTuple("Outputs", [("total", int), ("report", Artifact)]):
    s = add(a=a, b=b)
    d = describe(a=a, b=b, total=s.output)
    outputs = NamedTuple("Outputs", [("total", int), ("report", Artifact)])
    return outputs(total=s.output, report=d.outputs["text"])


@dsl.pipeline(name="nested")
def pipeline(x: int = 2, y: int = 3) -> NamedTuple("Outputs", [("total", int), ("summary", str)]):
    first = add_and_describe(a=x, b=y)
    second = add_and_describe(a=first.outputs["total"], b=10)
    r = read_report(report=second.outputs["report"], total=second.outputs["total"])
    outputs = NamedTuple("Outputs", [("total", int), ("summary", str)])
    return outputs(total=second.outputs["total"], summary=r.output)


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "add-and-describe": "SUCCEEDED",
            "add-and-describe-2": "SUCCEEDED",
            "add": "SUCCEEDED",
            "describe": "SUCCEEDED",
            "read-report": "SUCCEEDED",
        },
        "task_outputs": {
            "add-and-describe": {"total": 5},
            "add-and-describe-2": {"total": 15},
            "read-report": {"Output": "5+10=15 (total 15)"},
        },
        "outputs": {"total": 15, "summary": "5+10=15 (total 15)"},
    }
]
