"""Artifacts end to end: local URIs under the workspace, ``.path``/``.uri``/``.metadata``, typed
artifacts (Dataset, Model, Metrics), artifact lists, container components' output artifacts and
output parameter files, the executor output file, and the importer."""
import json
from pathlib import Path
from typing import List

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output, OutputPath

from pipeline_support import BASE, container_executions, metadata_of


@dsl.component(base_image=BASE)
def make_data(rows: int, data: Output[Dataset]) -> str:
    import os

    with open(data.path, "w") as f:
        f.write("".join(f"{i}\n" for i in range(rows)))
    data.metadata["rows"] = rows
    data.metadata["note"] = "made"
    return f"{data.uri}|{data.path}|{os.path.isfile(data.path)}"


@dsl.component(base_image=BASE)
def train(data: Input[Dataset], model: Output[Model], metrics: Output[Metrics]) -> str:
    import os

    with open(data.path) as f:
        n = len(f.read().splitlines())
    os.makedirs(model.path, exist_ok=True)  # a model may be a directory
    with open(os.path.join(model.path, "weights.txt"), "w") as f:
        f.write(str(n * 10))
    model.framework = "plain-text"
    metrics.log_metric("accuracy", 0.75)
    metrics.log_metric("rows", n)
    return f"{n}|{data.metadata['rows']}|{data.metadata['note']}|{data.uri == data.path}"


@dsl.pipeline(name="artifact-flow")
def artifact_flow(rows: int = 4):
    d = make_data(rows=rows)
    train(data=d.outputs["data"])


def test_output_artifacts_get_local_uris_under_the_workspace_and_flow_with_metadata(localflow):
    run = localflow.run(artifact_flow)
    assert run.state == "SUCCEEDED", run.error
    made = run.task("make-data")
    data = made.outputs["artifacts"]["data"][0]
    uri, path, isfile = made.outputs["parameters"]["Output"].split("|")
    # .uri is a local path (section 3.3: no scheme -> the path is the URI itself), pre-assigned per task
    assert uri == path == data["uri"] and isfile == "True"
    artifacts_dir = Path(localflow.workspace).resolve() / "artifacts"
    assert Path(data["uri"]).is_relative_to(artifacts_dir) and Path(data["uri"]).name == "data"
    assert Path(data["uri"]).read_text() == "0\n1\n2\n3\n"
    assert data["type"]["schemaTitle"] == "system.Dataset"
    assert data["metadata"] == {"rows": 4, "note": "made"}

    trained = run.task("train")
    assert trained.outputs["parameters"]["Output"] == "4|4|made|True"
    model = trained.outputs["artifacts"]["model"][0]
    assert (Path(model["uri"]) / "weights.txt").read_text() == "40"
    assert model["metadata"] == {"framework": "plain-text"} and model["type"]["schemaTitle"] == "system.Model"
    metrics = trained.outputs["artifacts"]["metrics"][0]
    assert metrics["metadata"] == {"accuracy": 0.75, "rows": 4}
    assert metrics["type"]["schemaTitle"] == "system.Metrics"

    with metadata_of(localflow) as md:
        rows = {a["name"]: a for a in md.list_artifacts(run_id=run.id)}
    assert set(rows) == {"data", "model", "metrics"}
    assert rows["data"]["uri"] == data["uri"] and rows["data"]["schema_title"] == "system.Dataset"
    assert rows["data"]["metadata"] == {"rows": 4, "note": "made"}
    assert rows["model"]["metadata"] == {"framework": "plain-text"}
    assert rows["metrics"]["metadata"]["accuracy"] == 0.75


def test_lightweight_components_write_the_executor_output_file_in_their_task_root(localflow):
    run = localflow.run(artifact_flow)
    data_uri = run.task("make-data").outputs["artifacts"]["data"][0]["uri"]
    out = Path(data_uri).parent / "executor_output.json"
    written = json.loads(out.read_text())
    assert written["parameterValues"]["Output"].startswith(data_uri + "|")
    assert written["artifacts"]["data"]["artifacts"][0]["metadata"] == {"rows": 4, "note": "made"}


@dsl.component(base_image=BASE)
def shard(i: int, part: Output[Dataset]):
    with open(part.path, "w") as f:
        f.write(f"shard {i}")
    part.metadata["i"] = i


@dsl.component(base_image=BASE)
def merge(parts: Input[List[Dataset]], merged: Output[Dataset]) -> str:
    texts = []
    for p in parts:
        with open(p.path) as f:
            texts.append(f"{f.read()}@{p.metadata['i']}")
    with open(merged.path, "w") as f:
        f.write(";".join(texts))
    return ";".join(texts)


@dsl.pipeline(name="artifact-list")
def artifact_list():
    with dsl.ParallelFor([0, 1, 2]) as i:
        s = shard(i=i)
    merge(parts=dsl.Collected(s.outputs["part"]))


def test_collected_artifacts_arrive_as_a_list_in_iteration_order_with_lineage(localflow):
    run = localflow.run(artifact_list)
    assert run.state == "SUCCEEDED", run.error
    m = run.task("merge")
    assert m.outputs["parameters"]["Output"] == "shard 0@0;shard 1@1;shard 2@2"
    assert Path(m.outputs["artifacts"]["merged"][0]["uri"]).read_text() == "shard 0@0;shard 1@1;shard 2@2"
    with metadata_of(localflow) as md:
        inputs = md.artifacts_of(m.execution_id, "INPUT")
        assert [(a["event"]["key"], a["event"]["index"]) for a in inputs] == [("parts", 0), ("parts", 1), ("parts", 2)]
        assert [a["metadata"]["i"] for a in inputs] == [0, 1, 2]
        for a in inputs:
            lin = md.lineage(a["id"])
            assert lin["producer"]["name"].endswith(".shard")
            assert [c["id"] for c in lin["consumers"]] == [m.execution_id]


@dsl.container_component
def write_files(text: str, n: int, report: Output[Artifact], count: OutputPath(int), label: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c",
                 'mkdir -p "$(dirname "$2")" "$(dirname "$3")" "$(dirname "$4")" && '
                 'printf "%s" "$0" > "$2" && printf "%s" "$1" > "$3" && printf "tag-%s" "$1" > "$4" && '
                 'test ! -e "$(dirname "$2")/executor_output.json"'],
        args=[text, n, report.path, count, label],
    )


@dsl.container_component
def read_file(report: Input[Artifact], echoed: OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'mkdir -p "$(dirname "$2")" && printf "%s from %s" "$(cat "$0")" "$1" > "$2"'],
        args=[report.path, report.uri, echoed],
    )


@dsl.pipeline(name="container-artifacts")
def container_artifacts(text: str = "hello") -> int:
    w = write_files(text=text, n=7)
    read_file(report=w.outputs["report"])
    return w.outputs["count"]


def test_container_components_output_artifacts_and_parameter_files(localflow):
    run = localflow.run(container_artifacts)
    assert run.state == "SUCCEEDED", run.error
    w = run.task("write-files")
    assert w.outputs["parameters"] == {"count": 7, "label": "tag-7"}
    assert type(w.outputs["parameters"]["count"]) is int
    report = w.outputs["artifacts"]["report"][0]
    assert Path(report["uri"]).read_text() == "hello"
    assert run.outputs["Output"] == 7
    assert run.task("read-file").outputs["parameters"]["echoed"] == f"hello from {report['uri']}"
    with metadata_of(localflow) as md:
        lin = md.lineage(report["id"])
    assert lin["producer"]["id"] == w.execution_id
    assert [c["id"] for c in lin["consumers"]] == [run.task("read-file").execution_id]


@dsl.container_component
def forget_output(out: OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19", command=["true"], args=[out])


@dsl.pipeline(name="missing-output-file")
def missing_output_file():
    forget_output()


def test_a_declared_output_parameter_file_that_was_never_written_fails_the_task(localflow):
    run = localflow.run(missing_output_file)
    assert run.state == "FAILED"
    t = run.task("forget-output")
    assert t.state == "FAILED"
    assert "output parameter 'out'" in t.error and "was not written" in t.error
    [ex] = container_executions(localflow, run)
    assert ex["state"] == "FAILED"


@dsl.component(base_image=BASE)
def summarize(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f"{len(f.read().splitlines())} {data.metadata['source']} {data.uri}"


@dsl.pipeline(name="importer-flow")
def importer_flow(uri: str, source: str = "lab"):
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False,
                       metadata={"source": source})
    summarize(data=imp.output)


def test_importer_produces_an_artifact_for_an_existing_file_without_running_a_container(localflow, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("a\nb\nc\n")
    run = localflow.run(importer_flow, params={"uri": str(src)})
    assert run.state == "SUCCEEDED", run.error
    imp = run.task("importer")
    assert imp.kind == "importer" and imp.pod is None
    art = imp.outputs["artifacts"]["artifact"][0]
    assert art["uri"] == str(src) and art["metadata"] == {"source": "lab"}
    assert art["type"]["schemaTitle"] == "system.Dataset"
    assert run.task("summarize").outputs["parameters"]["Output"] == f"3 lab {src}"
    assert src.read_text() == "a\nb\nc\n"
    with metadata_of(localflow) as md:
        ex = md.get_execution(imp.execution_id)
        assert ex["type"] == "system.ImporterExecution" and ex["state"] == "COMPLETE"
        lin = md.lineage(art["id"])
        assert lin["producer"]["id"] == imp.execution_id
        assert [c["id"] for c in lin["consumers"]] == [run.task("summarize").execution_id]

    # reimport=False: a second run with the same URI and metadata reuses the artifact record
    run2 = localflow.run(importer_flow, params={"uri": str(src)}, cache=False)
    assert run2.task("importer").outputs["artifacts"]["artifact"][0]["id"] == art["id"]
    with metadata_of(localflow) as md:
        assert len([a for a in md.list_artifacts() if a["uri"] == str(src)]) == 1


@dsl.container_component
def list_uris(parts: Input[List[Dataset]], out: OutputPath(str)):
    # '{{$.inputs.artifacts['parts']}}': the whole artifact list as JSON
    return dsl.ContainerSpec(image="python:3.11", command=["python3", "-c", (
        "import json, os, sys\n"
        "arts = json.loads(sys.argv[1])\n"
        "os.makedirs(os.path.dirname(sys.argv[2]), exist_ok=True)\n"
        "open(sys.argv[2], 'w').write(','.join(open(a['uri']).read() for a in arts))\n")],
        args=[parts, out])


@dsl.pipeline(name="container-artifact-list")
def container_artifact_list() -> str:
    with dsl.ParallelFor([0, 1, 2]) as i:
        s = shard(i=i)
    return list_uris(parts=dsl.Collected(s.outputs["part"])).outputs["out"]


def test_a_container_component_receives_a_collected_artifact_list_as_json(localflow):
    run = localflow.run(container_artifact_list)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "shard 0,shard 1,shard 2"


@dsl.component(base_image=BASE)
def write_custom(where: str, out: Output[Dataset]):
    out.set_path(where)  # kfp custom path: the engine uploads from here to the artifact's URI
    with open(out.path, "w") as f:
        f.write("custom content")


@dsl.component(base_image=BASE)
def read_back(data: Input[Dataset]) -> str:
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name="custom-path")
def custom_path(where: str) -> str:
    w = write_custom(where=where)
    return read_back(data=w.outputs["out"]).output


def test_an_artifact_written_to_a_custom_path_reaches_consumers_through_its_uri(localflow, tmp_path):
    where = tmp_path / "elsewhere.txt"
    run = localflow.run(custom_path, params={"where": str(where)})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "custom content"
    uri = run.task("write-custom").outputs["artifacts"]["out"][0]["uri"]
    assert uri != str(where) and Path(uri).read_text() == "custom content"
