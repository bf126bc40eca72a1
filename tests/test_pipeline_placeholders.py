"""Placeholders end to end (IR notes section 7): job/task runtime values, f-strings over pipeline
channels, Concat and IfPresent (string and list branches), ``{{$}}``, ``{{$.outputs.output_file}}``,
artifact ``.metadata`` and ``json_escape`` forms, resolved in commands that really run."""
import json
import re
from typing import Optional

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Output

from localflow.specs.pipeline import compile_pipeline_func
from pipeline_support import BASE


@dsl.component(base_image=BASE)
def show_job(job_name: str, resource_name: str, job_id: str, task_name: str, task_id: str, created: str,
             scheduled: str) -> str:
    import json

    return json.dumps(dict(job_name=job_name, resource_name=resource_name, job_id=job_id, task_name=task_name,
                           task_id=task_id, created=created, scheduled=scheduled))


def _show(name_suffix=""):
    return show_job(job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                    resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
                    job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
                    task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
                    created=dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
                    scheduled=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER)


@dsl.pipeline(name="pipeline-with-placeholders")
def job_placeholders(flag: bool = True):
    _show().set_caching_options(False)
    with dsl.If(flag == True, name="inner"):  # noqa: E712 (kfp conditions need ==)
        _show().set_caching_options(False)


def test_job_and_task_placeholders_resolve_to_the_run_and_the_dag_key(localflow):
    run = localflow.run(job_placeholders)
    assert run.state == "SUCCEEDED", run.error
    top = json.loads(run.task("show-job").outputs["parameters"]["Output"])
    assert top["job_name"] == run.name
    assert top["resource_name"] == run.name and top["resource_name"].startswith("pipeline-with-placeholders-")
    assert top["job_id"] == run.id
    assert top["task_name"] == "show-job"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", top["created"])
    assert top["scheduled"] == top["created"]  # ad-hoc runs: schedule time falls back to creation time
    assert top["task_id"].isdigit()
    inner = json.loads(run.tasks["condition-1.show-job-2"].outputs["parameters"]["Output"])
    assert inner["task_name"] == "show-job-2"  # the DAG key inside the group, not the path
    assert inner["job_id"] == run.id


@dsl.component(base_image=BASE)
def number() -> int:
    return 42


@dsl.component(base_image=BASE)
def say(msg: str) -> str:
    return msg


@dsl.pipeline(name="fstrings")
def fstrings(who: str = "you", ratio: float = 0.5) -> str:
    n = number()
    return say(msg=f"{who}: n={n.output} ratio={ratio}").output


def test_fstrings_over_pipeline_channels_format_numbers_without_trailing_zero(localflow):
    run = localflow.run(fstrings)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "you: n=42 ratio=0.5"


@dsl.container_component
def concat_ifpresent(name: str, out: dsl.OutputPath(str), punct: Optional[str] = None, extra: Optional[int] = None):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'out="$1"; shift; mkdir -p "$(dirname "$out")"; printf "%s|" "$@" > "$out"', "prog"],
        args=[out,
              dsl.ConcatPlaceholder(["Hello, ", name, dsl.IfPresentPlaceholder(input_name="punct", then=punct,
                                                                               else_="!")]),
              dsl.IfPresentPlaceholder(input_name="extra", then=["--extra", extra]),
              "end"],
    )


@dsl.pipeline(name="structural-placeholders")
def structural(punct: Optional[str] = None, extra: Optional[int] = None) -> str:
    return concat_ifpresent(name="world", punct=punct, extra=extra).outputs["out"]


@pytest.mark.parametrize("params, expected", [
    ({}, "Hello, world!|end|"),
    ({"punct": "?"}, "Hello, world?|end|"),
    ({"extra": 3}, "Hello, world!|--extra|3|end|"),
    ({"punct": ".", "extra": "0"}, "Hello, world.|--extra|0|end|"),
])
def test_concat_and_ifpresent_build_argv_from_what_was_supplied(localflow, params, expected):
    run = localflow.run(structural, params=params)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == expected


@dsl.component(base_image=BASE)
def tagged(data: Output[Dataset]):
    with open(data.path, "w") as f:
        f.write("x")
    data.metadata["tag"] = "v1"
    data.metadata["n"] = 3


@dsl.container_component
def raw_forms(data: dsl.Input[Dataset], label: str, out: dsl.OutputPath(str)):
    # '{{$}}', '{{$.outputs.output_file}}', '.metadata' and 'json_escape' are patched in below:
    # the SDK emits them for other component kinds (GCPC), not for container components.
    return dsl.ContainerSpec(image="python:3.11", command=["python3", "-c", "PROGRAM"],
                             args=[data.uri, label, out])


PROGRAM = """
import json, os, sys
executor_input, output_file, meta, tag, escaped, out = sys.argv[1:7]
ei = json.loads(executor_input)
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    f.write(json.dumps({
        "label": ei["inputs"]["parameterValues"]["label"],
        "uri": ei["inputs"]["artifacts"]["data"]["artifacts"][0]["uri"],
        "output_file_in_ei": output_file == ei["outputs"]["outputFile"],
        "meta": json.loads(meta), "tag": tag, "escaped": escaped,
    }))
"""


@dsl.pipeline(name="raw-placeholders")
def raw_placeholders(label: str = 'say "hi"') -> str:
    t = tagged()
    return raw_forms(data=t.outputs["data"], label=label).outputs["out"]


def test_executor_input_output_file_metadata_and_json_escape_placeholders(localflow):
    spec = compile_pipeline_func(raw_placeholders)[0]
    c = spec["deploymentSpec"]["executors"]["exec-raw-forms"]["container"]
    c["command"] = ["python3", "-c", PROGRAM]
    c["args"] = ["{{$}}", "{{$.outputs.output_file}}", "{{$.inputs.artifacts['data'].metadata}}",
                 "{{$.inputs.artifacts['data'].metadata['tag']}}",
                 "{{$.inputs.parameters['label'].json_escape[1]}}",
                 "{{$.outputs.parameters['out'].output_file}}"]
    run = localflow.run(spec)
    assert run.state == "SUCCEEDED", run.error
    got = json.loads(run.outputs["Output"])
    assert got["label"] == 'say "hi"'
    assert got["uri"] == run.task("tagged").outputs["artifacts"]["data"][0]["uri"]
    assert got["output_file_in_ei"] is True
    assert got["meta"] == {"tag": "v1", "n": 3}
    assert got["tag"] == "v1"
    assert got["escaped"] == 'say \\"hi\\"'
