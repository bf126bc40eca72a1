"""dsl.If / dsl.Elif / dsl.Else with dsl.OneOf outputs (a parameter and an artifact) used downstream.

Tasks (names as compiled):

- ``score``: returns ``points`` (int).
- ``condition-branches-1`` holds three branches, each evaluated on ``score.Output``:
  ``condition-2`` (``>= 90``) holds ``grade-a``; ``condition-3`` (``!(>= 90) && >= 50``) holds
  ``grade-b``; ``condition-4`` (``!(>= 90) && !(>= 50)``) holds ``grade-c``. Each ``grade-*`` returns its
  letter ("A", "B", "C") as ``Output`` and writes Output[Artifact] ``note`` containing
  ``"grade <letter> for <points> points"`` (metadata ``{"grade": letter}``).
- ``report``: consumes ``dsl.OneOf`` of the three ``Output`` parameters (``grade``) and of the three
  ``note`` artifacts (``note``); returns ``"<grade>: <note file content>"``.

Pipeline outputs: ``grade`` (the OneOf of the letters) and ``summary`` (``report.Output``).

Expected (default points=75): run SUCCEEDED; score, grade-b, report SUCCEEDED; grade-a and grade-c
SKIPPED; grade == "B"; summary == "B: grade B for 75 points".
``points=95``: grade-a runs, grade-b/grade-c SKIPPED, summary == "A: grade A for 95 points".
``points=10``: grade-c runs, grade-a/grade-b SKIPPED, summary == "C: grade C for 10 points".
``points=90`` / ``points=50`` are the boundaries: "A" and "B".

kfp.local (2.17.3) cannot run this pipeline: the artifact ``dsl.OneOf`` fails there with
``ValueError: Expected 1 artifact in ArtifactSelectorSpec. Got: 3``. The same pipeline with only the
parameter OneOf gives the results above under kfp.local.
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Input, Output


@dsl.component(base_image="python:3.11")
def score(points: int) -> int:
    return points


@dsl.component(base_image="python:3.11")
def grade_a(points: int, note: Output[Artifact]) -> str:
    with open(note.path, "w") as f:
        f.write(f"grade A for {points} points")
    note.metadata["grade"] = "A"
    return "A"


@dsl.component(base_image="python:3.11")
def grade_b(points: int, note: Output[Artifact]) -> str:
    with open(note.path, "w") as f:
        f.write(f"grade B for {points} points")
    note.metadata["grade"] = "B"
    return "B"


@dsl.component(base_image="python:3.11")
def grade_c(points: int, note: Output[Artifact]) -> str:
    with open(note.path, "w") as f:
        f.write(f"grade C for {points} points")
    note.metadata["grade"] = "C"
    return "C"


@dsl.component(base_image="python:3.11")
def report(grade: str, note: Input[Artifact]) -> str:
    with open(note.path) as f:
        text = f.read()
    return f"{grade}: {text}"


@dsl.pipeline(name="if-elif-else")
def pipeline(points: int = 75) -> NamedTuple("Outputs", [("grade", str), ("summary", str)]):
    s = score(points=points)
    with dsl.If(s.output >= 90):
        a = grade_a(points=points)
    with dsl.Elif(s.output >= 50):
        b = grade_b(points=points)
    with dsl.Else():
        c = grade_c(points=points)
    letter = dsl.OneOf(a.outputs["Output"], b.outputs["Output"], c.outputs["Output"])
    r = report(
        grade=letter,
        note=dsl.OneOf(a.outputs["note"], b.outputs["note"], c.outputs["note"]),
    )
    outputs = NamedTuple("Outputs", [("grade", str), ("summary", str)])
    return outputs(grade=letter, summary=r.output)


def _case(points: int, letter: str) -> dict:
    tasks = {"score": "SUCCEEDED", "grade-a": "SKIPPED", "grade-b": "SKIPPED", "grade-c": "SKIPPED"}
    tasks[f"grade-{letter.lower()}"] = "SUCCEEDED"
    tasks["report"] = "SUCCEEDED"
    return {
        "params": {"points": points},
        "state": "SUCCEEDED",
        "tasks": tasks,
        "task_outputs": {"report": {"Output": f"{letter}: grade {letter} for {points} points"}},
        "outputs": {"grade": letter, "summary": f"{letter}: grade {letter} for {points} points"},
    }


EXPECTED = [_case(75, "B"), _case(95, "A"), _case(10, "C"), _case(90, "A"), _case(50, "B")]
