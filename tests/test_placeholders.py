"""Placeholder resolution over real compiled container components (IR notes, section 7)."""
import json
from typing import List, Optional

import pytest

from localflow.errors import SpecError
from localflow.pipelines.placeholders import (
    PlaceholderContext,
    path_to_uri,
    resolve_command,
    resolve_container,
    resolve_json_placeholders,
    resolve_parameter_values,
    resolve_runtime_constant,
    resolve_string,
    uri_to_path,
)
from localflow.specs.pipeline import compile_pipeline_func, load_pipeline

EXEC = "deploymentSpec.executors['exec-shapes'].container"


@pytest.fixture(scope="module")
def ir():
    """One compiled pipeline holding every placeholder shape the SDK emits."""
    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Input, Output, OutputPath

    @dsl.container_component
    def shapes(text: str, n: int, ds: Input[Dataset], out: Output[Artifact], count: OutputPath(int),
               dss: Input[List[Dataset]], opt: Optional[str] = None, level: Optional[int] = None):
        return dsl.ContainerSpec(
            image="alpine:3.19",
            command=["prog", dsl.ConcatPlaceholder(["--text=", text, "-", n])],
            args=[
                dsl.IfPresentPlaceholder(input_name="opt", then=["--opt", opt], else_=["--no-opt", "x"]),
                dsl.IfPresentPlaceholder(input_name="level", then=dsl.ConcatPlaceholder(["--level=", level])),
                dsl.ConcatPlaceholder(["pre-", dsl.IfPresentPlaceholder(input_name="opt", then=opt, else_="none")]),
                ds.path, ds.uri, ds.metadata, out.path, out.uri, count, dss,
                dsl.PIPELINE_JOB_NAME_PLACEHOLDER, dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            ],
        )

    @dsl.component(base_image="python:3.11")
    def mk(ds: Output[Dataset]):
        pass

    @dsl.container_component
    def echo(msg: str):
        return dsl.ContainerSpec(image="alpine:3.19", command=["echo"], args=[msg])

    @dsl.container_component
    def print_all(job_name: str, job_resource_name: str, job_id: str, task_name: str, task_id: str,
                  created: str, scheduled: str, root: str):
        return dsl.ContainerSpec(image="alpine:3.19", command=["echo", job_name, job_resource_name, job_id,
                                                                 task_name, task_id, created, scheduled, root])

    @dsl.pipeline(name="placeholders")
    def pipe(text: str = "t"):
        m = mk()
        with dsl.ParallelFor([1, 2]):
            m2 = mk()
        shapes(text=text, n=3, ds=m.outputs["ds"], dss=dsl.Collected(m2.outputs["ds"]))
        echo(msg=f"made {text} at {dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER}!")
        print_all(
            job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            job_resource_name=dsl.PIPELINE_JOB_RESOURCE_NAME_PLACEHOLDER,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            task_name=dsl.PIPELINE_TASK_NAME_PLACEHOLDER,
            task_id=dsl.PIPELINE_TASK_ID_PLACEHOLDER,
            created=dsl.PIPELINE_JOB_CREATE_TIME_UTC_PLACEHOLDER,
            scheduled=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            root=dsl.PIPELINE_ROOT_PLACEHOLDER,
        )

    return load_pipeline(compile_pipeline_func(pipe))


JOB = dict(
    pipeline_job_name="placeholders-run",
    pipeline_job_resource_name="placeholders-abc12",
    pipeline_job_uuid="0b9e3c1e-0000-4000-8000-000000000001",
    pipeline_job_create_time_utc="2026-01-02T03:04:05Z",
    pipeline_task_name="shapes",
    pipeline_task_uuid="17",
    pipeline_root="/ws/artifacts",
)


def _artifact(name, uri, title="system.Dataset", **metadata):
    return {"name": name, "type": {"schemaTitle": title, "schemaVersion": "0.0.1"}, "uri": uri, "metadata": metadata}


def _shapes_input(**params):
    return {
        "inputs": {
            "parameterValues": {"text": "hello", "n": 3, **params},
            "artifacts": {
                "ds": {"artifacts": [_artifact("ds", "/ws/artifacts/mk/ds", rows=5)]},
                "dss": {"artifacts": [_artifact("ds", "/ws/a/1/ds"), _artifact("ds", "/ws/a/2/ds")]},
            },
        },
        "outputs": {
            "parameters": {"count": {"outputFile": "/ws/pods/p1/outputs/count"}},
            "artifacts": {"out": {"artifacts": [_artifact("out", "gs://bucket/run/shapes/out", "system.Artifact")]}},
            "outputFile": "/ws/pods/p1/output_metadata.json",
        },
    }


def _ctx(ir, component, executor_input, **job):
    return PlaceholderContext.for_component(ir.component(component), executor_input, **{**JOB, **job})


def test_container_component_resolves_every_placeholder_shape_with_optionals_absent(ir):
    ei = _shapes_input()
    argv = resolve_container(ir.executors["exec-shapes"]["container"], _ctx(ir, "comp-shapes", ei), EXEC)
    assert argv == [
        "prog", "--text=hello-3",
        "--no-opt", "x",
        "pre-none",
        "/ws/artifacts/mk/ds", "/ws/artifacts/mk/ds", '{"rows":5}',
        "/gcs/bucket/run/shapes/out", "gs://bucket/run/shapes/out",
        "/ws/pods/p1/outputs/count",
        json.dumps(ei["inputs"]["artifacts"]["dss"]["artifacts"], separators=(",", ":")),
        "placeholders-run", "shapes",
    ]


def test_if_present_then_branches_expand_and_nest_when_inputs_are_given(ir):
    ei = _shapes_input(opt="fast", level=2.0)
    argv = resolve_container(ir.executors["exec-shapes"]["container"], _ctx(ir, "comp-shapes", ei), EXEC)
    assert argv[2:7] == ["--opt", "fast", "--level=2", "pre-fast", "/ws/artifacts/mk/ds"]


def test_null_value_counts_as_absent_for_if_present(ir):
    ei = _shapes_input(opt=None)
    argv = resolve_container(ir.executors["exec-shapes"]["container"], _ctx(ir, "comp-shapes", ei), EXEC)
    assert argv[2:5] == ["--no-opt", "x", "pre-none"]


def test_integer_input_compiled_as_double_constant_formats_without_point(ir):
    task = ir.spec["root"]["dag"]["tasks"]["shapes"]
    assert task["inputs"]["parameters"]["n"] == {"runtimeValue": {"constant": 3.0}}
    ei = _shapes_input(n=3.0)
    argv = resolve_command(ir.executors["exec-shapes"]["container"]["command"], _ctx(ir, "comp-shapes", ei),
                           f"{EXEC}.command")
    assert argv == ["prog", "--text=hello-3"]


def test_whole_executor_input_placeholder_is_json_of_the_executor_input():
    ei = {"inputs": {"parameterValues": {"x": 1.5, "s": "é"}}, "outputs": {"outputFile": "/o"}}
    [resolved] = resolve_command(["{{$}}"], PlaceholderContext(executor_input=ei), "args")
    assert json.loads(resolved) == ei


def test_output_file_aliases_and_json_escape():
    ei = {"inputs": {"parameterValues": {"s": 'say "hi"'}}, "outputs": {"outputFile": "/t/out.json"}}
    ctx = PlaceholderContext(executor_input=ei, parameter_types={"s": "STRING"})
    argv = resolve_command(
        ["{{$.outputs.output_file}}", "{{$.outputMetadataUri}}",
         "{\"payload\": \"{{$.inputs.parameters['s'].json_escape[1]}}\"}",
         "--executor_input={{$.json_escape[1]}}",
         "{{$.inputs.parameters['s'].json_escape[0]}}"],
        ctx, "args",
    )
    assert argv[:2] == ["/t/out.json", "/t/out.json"]
    assert json.loads(argv[2]) == {"payload": 'say "hi"'}
    assert json.loads(json.loads('"' + argv[3][len("--executor_input="):] + '"')) == ei
    assert argv[4] == 'say "hi"'


def test_metadata_key_placeholder_and_quote_styles():
    ei = {"inputs": {"parameterValues": {"k": 5.0}, "artifacts": {
        "m": {"artifacts": [_artifact("m", "/x/m", "system.Model", framework="sklearn", acc=0.5)]}}}}
    ctx = PlaceholderContext(executor_input=ei)
    argv = resolve_command(
        ["{{$.inputs.artifacts['m'].metadata['framework']}}", '{{$.inputs.artifacts["m"].metadata["acc"]}}',
         'k={{$.inputs.parameters["k"]}}'],
        ctx, "args",
    )
    assert argv == ["sklearn", "0.5", "k=5"]


def test_workspace_artifact_path_is_rebased_and_custom_path_wins():
    ei = {"inputs": {"artifacts": {
        "w": {"artifacts": [{**_artifact("w", "/ws/a/w", _kfp_workspace=True)}]},
        "c": {"artifacts": [{**_artifact("c", "/ws/a/c"), "customPath": "/mnt/data/c"}]},
    }}}
    argv = resolve_command(["{{$.inputs.artifacts['w'].path}}", "{{$.inputs.artifacts['c'].path}}"],
                           PlaceholderContext(executor_input=ei), "args")
    assert argv == ["/kfp-workspace/.artifacts/ws/a/w", "/mnt/data/c"]
    host = PlaceholderContext(executor_input=ei, workspace_path="/home/u/.localflow/workspace")
    assert resolve_command(["{{$.inputs.artifacts['w'].path}}"], host, "args") == \
        ["/home/u/.localflow/workspace/.artifacts/ws/a/w"]


def test_runtime_constants_resolve_only_whole_placeholders_like_the_driver(ir):
    task = ir.spec["root"]["dag"]["tasks"]["print-all"]
    constants = {k: v["runtimeValue"]["constant"] for k, v in task["inputs"]["parameters"].items()}
    ctx = PlaceholderContext(**{**JOB, "pipeline_task_name": "print-all"})
    resolved = resolve_parameter_values(constants, ctx, "root.dag.tasks['print-all'].inputs.parameters")
    assert resolved == {
        "job_name": "placeholders-run",
        "job_resource_name": "placeholders-abc12",
        "job_id": "0b9e3c1e-0000-4000-8000-000000000001",
        "task_name": "print-all",
        "task_id": "17",
        "created": "2026-01-02T03:04:05Z",
        "scheduled": "2026-01-02T03:04:05Z",  # ad-hoc run: falls back to the creation time
        "root": "/ws/artifacts",
    }


def test_fstring_constant_resolves_pipeline_channels_and_keeps_embedded_job_placeholders(ir):
    task = ir.spec["root"]["dag"]["tasks"]["echo"]
    params = task["inputs"]["parameters"]
    assert params["pipelinechannel--text"] == {"componentInputParameter": "text"}
    values = {"msg": params["msg"]["runtimeValue"]["constant"], "pipelinechannel--text": "hello"}
    resolved = resolve_parameter_values(values, PlaceholderContext(**JOB), "root.dag.tasks['echo'].inputs.parameters",
                                        constants={"msg"})
    assert resolved["msg"] == "made hello at {{$.pipeline_job_create_time_utc}}!"
    ctx = PlaceholderContext.for_component(ir.component("comp-echo"), {"inputs": {"parameterValues": resolved}})
    argv = resolve_container(ir.executors["exec-echo"]["container"], ctx, "deploymentSpec.executors['exec-echo'].container")
    assert argv == ["echo", "made hello at {{$.pipeline_job_create_time_utc}}!"]


def test_runtime_constant_numbers_format_like_the_backend():
    ctx = PlaceholderContext()
    assert resolve_runtime_constant("n={{$.inputs.parameters['pipelinechannel--n']}}", ctx, "p",
                                    parameter_values={"pipelinechannel--n": 5.0}) == "n=5"
    assert resolve_runtime_constant(3.0, ctx, "p") == 3.0
    assert resolve_runtime_constant("{{$.workspace_path}}/data", PlaceholderContext(workspace_path="/ws/wk"), "p") \
        == "/ws/wk/data"


def test_runtime_constant_referring_to_a_missing_channel_is_an_error():
    with pytest.raises(SpecError) as err:
        resolve_parameter_values({"msg": "x {{$.inputs.parameters['pipelinechannel--a-Output']}}"}, PlaceholderContext(),
                                 "root.dag.tasks['echo'].inputs.parameters")
    assert err.value.path == "root.dag.tasks['echo'].inputs.parameters['msg']"
    assert "refers to parameter 'pipelinechannel--a-Output', which the task does not receive (has: msg)" in str(err.value)


def test_unknown_input_parameter_names_the_path_and_what_exists(ir):
    ctx = _ctx(ir, "comp-shapes", _shapes_input())
    with pytest.raises(SpecError) as err:
        resolve_command(["x", "{{$.inputs.parameters['txt']}}"], ctx, f"{EXEC}.args")
    assert err.value.path == f"{EXEC}.args[1]"
    msg = str(err.value)
    assert "placeholder {{$.inputs.parameters['txt']}} refers to input parameter 'txt'" in msg
    assert "input parameters: level, n, opt, text; input artifacts: ds, dss; output parameters: count; " \
           "output artifacts: out" in msg


@pytest.mark.parametrize(
    "element, message",
    [
        ("{{$.inputs.artifacts['nope'].path}}", "refers to input artifact 'nope'"),
        ("{{$.outputs.parameters['nope'].output_file}}", "refers to output parameter 'nope'"),
        ("{{$.outputs.artifacts['nope'].uri}}", "refers to output artifact 'nope'"),
        ("{{$.inputs.artifacts['ds'].metadata['nokey']}}", "artifact 'ds' has no metadata key 'nokey' (keys: rows)"),
        ("{{$.inputs.parameters['text'].path}}", "unknown placeholder {{$.inputs.parameters['text'].path}}"),
        ("{{$.pipeline_job_nme}}", "unknown placeholder {{$.pipeline_job_nme}}"),
        ("a {{$.inputs.parameters['text'] b", "malformed placeholder"),
        ("{{$.workspace_path}}", "placeholder {{$.workspace_path}} has no value in this run"),
    ],
)
def test_unresolvable_placeholders_raise_spec_errors(ir, element, message):
    ctx = _ctx(ir, "comp-shapes", _shapes_input())
    with pytest.raises(SpecError) as err:
        resolve_command([element], ctx, f"{EXEC}.args")
    assert err.value.path == f"{EXEC}.args[0]"
    assert message in str(err.value)


def test_declared_optional_input_without_value_substitutes_empty(ir):
    ctx = _ctx(ir, "comp-shapes", _shapes_input())
    assert resolve_command(["[{{$.inputs.parameters['opt']}}]"], ctx, "args") == ["[]"]


@pytest.mark.parametrize(
    "element, message",
    [
        ('{"Concat": "abc"}', "Concat takes a list"),
        ('{"IfPresent": {"Then": ["a"]}}', "IfPresent needs InputName and Then"),
        ('{"Concat": ["a", {"IfPresent": {"InputName": "text", "Then": ["x", "y"]}}]}',
         "a list inside Concat is not allowed"),
        ('{"Concat": ["a", {"Join": ["b"]}]}', "unknown structural placeholder 'Join'"),
    ],
)
def test_malformed_structures_raise_spec_errors(ir, element, message):
    ctx = _ctx(ir, "comp-shapes", _shapes_input())
    with pytest.raises(SpecError) as err:
        resolve_command(["prog", element], ctx, f"{EXEC}.command")
    assert err.value.path == f"{EXEC}.command[1]"
    assert message in str(err.value)


def test_plain_json_arguments_are_not_structures():
    ctx = PlaceholderContext()
    assert resolve_command(['{"a": 1}', '{"Concat": 1, "b": 2}'], ctx, "args") == ['{"a": 1}', '{"Concat": 1, "b": 2}']


def test_substituted_values_are_not_rescanned():
    ei = {"inputs": {"parameterValues": {"s": "{{$.inputs.parameters['t']}}", "t": "no"}}}
    assert resolve_string("{{$.inputs.parameters['s']}}", PlaceholderContext(executor_input=ei), "p") == \
        "{{$.inputs.parameters['t']}}"


def test_json_placeholders_resolve_inside_importer_metadata():
    ctx = PlaceholderContext(executor_input={"inputs": {"parameterValues": {"metadata": 4.0}}},
                             parameter_types={"metadata": "NUMBER_INTEGER"})
    meta = {"src": "{{$.inputs.parameters['metadata']}}", "tags": ["n={{$.inputs.parameters['metadata']}}", 1]}
    assert resolve_json_placeholders(meta, ctx, "deploymentSpec.executors['exec-importer'].importer.metadata") == \
        {"src": "4", "tags": ["n=4", 1]}


@pytest.mark.parametrize(
    "uri, path",
    [
        ("gs://bucket/key/x", "/gcs/bucket/key/x"),
        ("minio://b/k", "/minio/b/k"),
        ("s3://b/k", "/s3/b/k"),
        ("oci://registry/repo:tag", "/oci/registry_repo:tag"),
        ("/local/path", "/local/path"),
        ("file:///x", "file:///x"),
    ],
)
def test_uri_to_path_table(uri, path):
    assert uri_to_path(uri) == path
    if not uri.startswith(("oci://", "file://")):
        assert path_to_uri(path) == uri


def test_oci_path_round_trip_drops_models_suffix():
    assert path_to_uri("/oci/registry_repo:tag/models") == "oci://registry/repo:tag"
