"""Loading spec files and validating compiled KFP pipelines."""
import copy
from typing import List

import pytest
import yaml

from localflow.errors import SpecError
from localflow.specs.loader import detect_kind, load_documents
from localflow.specs.pipeline import PipelineDocument, compile_pipeline_func, load_pipeline


# --- load_documents ------------------------------------------------------------------------------
def test_multi_document_yaml_skips_empty_documents(tmp_path):
    f = tmp_path / "two.yaml"
    f.write_text("---\n# only a comment\n---\na: 1\n---\n---\nb: [1, 2]\n")
    assert load_documents(f) == [{"a": 1}, {"b": [1, 2]}]


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(SpecError) as err:
        load_documents(f)
    assert err.value.path == f"{f}:3:2"
    assert "expected ',' or ']'" in str(err.value)
    assert err.value.fix == "fix the YAML syntax at that line and column"


def test_text_argument_parses_without_reading_the_file():
    assert load_documents("inline.yaml", text="x: 1\n") == [{"x": 1}]
    with pytest.raises(SpecError) as err:
        load_documents("inline.yaml", text="x: : y\n")
    assert err.value.path.startswith("inline.yaml:1:")


def test_non_mapping_document_is_rejected():
    with pytest.raises(SpecError) as err:
        load_documents("list.yaml", text="a: 1\n---\n- 1\n- 2\n")
    assert err.value.path == "list.yaml: document 2"
    assert "expected a mapping (a spec with keys), got list" in str(err.value)


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_documents(tmp_path / "absent.yaml")


# --- detect_kind ---------------------------------------------------------------------------------
def test_detect_kind_recognises_pipelines_jobs_and_kubernetes_objects():
    assert detect_kind({"pipelineInfo": {"name": "p"}, "root": {}}) == "PipelineSpec"
    assert detect_kind({"displayName": "run", "pipelineSpec": {"pipelineInfo": {"name": "p"}, "root": {}}}) == "PipelineSpec"
    assert detect_kind({"apiVersion": "kubeflow.org/v1", "kind": "TFJob"}) == "TFJob"
    assert detect_kind({"apiVersion": "example.com/v1", "kind": "Widget"}) == "Widget"


@pytest.mark.parametrize(
    "doc, path, message",
    [
        ({"apiVersion": "kubeflow.org/v2", "kind": "PyTorchJob"}, "PyTorchJob.apiVersion",
         "expected kubeflow.org/v1 (got kubeflow.org/v2)"),
        ({"kind": "TFJob"}, "TFJob.apiVersion", "is missing"),
        # the MPI Operator's MPIJob: loading it used to succeed and running it failed; refused at load, with the fix
        ({"apiVersion": "kubeflow.org/v2beta1", "kind": "MPIJob"}, "MPIJob.apiVersion",
         "kubeflow.org/v2beta1 is the MPI Operator's MPIJob, which localflow does not run"),
        ({"spec": {}}, "document", "is neither a compiled KFP pipeline (pipelineInfo + root) nor a Kubernetes object"),
        ({"pipelineInfo": {"name": "p"}}, "document", "is neither"),
    ],
)
def test_detect_kind_errors(doc, path, message):
    with pytest.raises(SpecError) as err:
        detect_kind(doc)
    assert err.value.path == path
    assert message in str(err.value)


# --- compiled pipelines --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big_docs():
    """A pipeline using every control-flow shape: exit handler, loops, Collected, nested
    pipeline, importer, If/Else with OneOf."""
    from kfp import dsl
    from kfp.dsl import Dataset, Input, Output, PipelineTaskFinalStatus

    @dsl.component(base_image="python:3.11")
    def gen() -> List[int]:
        return [1, 2]

    @dsl.component(base_image="python:3.11")
    def double(x: int) -> int:
        return 2 * x

    @dsl.component(base_image="python:3.11")
    def total(xs: List[int]) -> int:
        return sum(xs)

    @dsl.component(base_image="python:3.11")
    def mk(ds: Output[Dataset]):
        pass

    @dsl.component(base_image="python:3.11")
    def use(dss: Input[List[Dataset]]) -> str:
        return ""

    @dsl.component(base_image="python:3.11")
    def final(status: PipelineTaskFinalStatus):
        print(status)

    @dsl.component(base_image="python:3.11")
    def flip() -> str:
        return "heads"

    @dsl.component(base_image="python:3.11")
    def ret(s: str) -> str:
        return s

    @dsl.pipeline
    def inner(x: int = 1) -> int:
        return double(x=x).output

    @dsl.pipeline(name="big")
    def big(n: int = 2) -> str:
        f = final()
        with dsl.ExitHandler(f):
            g = gen()
            with dsl.ParallelFor(g.output, parallelism=2) as item:
                d = double(x=item)
                m = mk()
            total(xs=dsl.Collected(d.output))
            use(dss=dsl.Collected(m.outputs["ds"]))
            inner(x=n)
            dsl.importer(artifact_uri="gs://b/k", artifact_class=Dataset, metadata={"src": f"{n}"})
        fl = flip()
        with dsl.If(fl.output == "heads"):
            a = ret(s="h")
        with dsl.Else():
            b = ret(s="t")
        o = dsl.OneOf(a.output, b.output)
        ret(s=o)
        return o

    return compile_pipeline_func(big)


def test_compiled_pipeline_loads_with_proto_and_name(big_docs):
    from kfp.pipeline_spec import pipeline_spec_pb2

    doc = load_pipeline(big_docs)
    assert isinstance(doc, PipelineDocument)
    assert isinstance(doc.proto, pipeline_spec_pb2.PipelineSpec)
    assert doc.name == "big" == doc.proto.pipeline_info.name
    assert doc.platform is None and doc.runtime_config is None
    assert "exec-importer" in doc.executors
    assert doc.proto.root.dag.tasks["exit-handler-1"].component_ref.name == "comp-exit-handler-1"


def test_compiled_file_on_disk_loads(tmp_path, big_docs):
    f = tmp_path / "big.yaml"
    f.write_text("# PIPELINE DEFINITION\n# Name: big\n" + yaml.safe_dump(big_docs[0]))
    assert load_pipeline(load_documents(f), source=str(f)).name == "big"


def test_pipeline_job_wrapper_is_unwrapped_with_its_runtime_config(big_docs):
    job = {"displayName": "r", "pipelineSpec": big_docs[0], "runtimeConfig": {"parameterValues": {"n": 3}}}
    doc = load_pipeline([job])
    assert doc.name == "big" and doc.runtime_config == {"parameterValues": {"n": 3}}


def test_platform_document_is_kept_per_executor(big_docs):
    platform = {"platforms": {"kubernetes": {"deploymentSpec": {"executors": {
        "exec-gen": {"nodeSelector": {"labels": {"disk": "ssd"}},
                     "secretAsEnv": [{"secretName": "s", "keyToEnv": [{"secretKey": "k", "envVar": "K"}]}]}}}}}}
    doc = load_pipeline([big_docs[0], platform])
    assert doc.platform_executor("exec-gen")["nodeSelector"] == {"labels": {"disk": "ssd"}}
    assert doc.platform_executor("exec-double") == {}


def _broken(docs, mutate):
    spec = copy.deepcopy(docs[0])
    mutate(spec)
    return spec


ROOT = "root.dag.tasks"
EH = "components['comp-exit-handler-1'].dag.tasks"


@pytest.mark.parametrize(
    "mutate, path, message",
    [
        (lambda s: s["components"]["comp-exit-handler-1"]["dag"]["tasks"]["gen"]["componentRef"].update(nmae="x"),
         f"{EH}['gen'].componentRef", 'unknown field "nmae"'),
        (lambda s: s["root"]["inputDefinitions"]["parameters"]["n"].update(parameterType="NUMBER_INTEGR"),
         "root.inputDefinitions.parameters['n'].parameterType", 'unknown value "NUMBER_INTEGR" (known: '),
        (lambda s: s["components"]["comp-exit-handler-1"]["dag"]["tasks"]["for-loop-2"]["iteratorPolicy"].update(
            parallelismLimit="two"),
         f"{EH}['for-loop-2'].iteratorPolicy.parallelismLimit", "expected an integer (got str 'two')"),
        (lambda s: s["deploymentSpec"]["executors"]["exec-gen"]["container"].update(imag="x"),
         "deploymentSpec.executors['exec-gen'].container", 'unknown field "imag"'),
        (lambda s: s["deploymentSpec"]["executors"]["exec-gen"]["container"].update(command="python"),
         "deploymentSpec.executors['exec-gen'].container.command", "expected a list (got str)"),
        (lambda s: s["root"]["dag"]["tasks"]["flip"].update(cachingOptions={"enableCache": "yes"}),
         f"{ROOT}['flip'].cachingOptions.enableCache", "expected true or false (without quotes)"),
        (lambda s: s["root"]["dag"]["tasks"]["flip"].update(retryPolicy={"backoffDuration": "10"}),
         f"{ROOT}['flip'].retryPolicy.backoffDuration", "Duration must end with letter"),
        (lambda s: s["components"]["comp-gen"].update(dag={"tasks": {}}),
         "components['comp-gen']", "sets dag and executorLabel, but only one of dag, executorLabel is allowed"),
        (lambda s: s["pipelineInfo"].pop("name"), "pipelineInfo.name", "is missing"),
        (lambda s: s["components"]["comp-exit-handler-1"]["dag"]["tasks"]["gen"]["componentRef"].update(name="comp-y"),
         f"{EH}['gen'].componentRef.name", "no component 'comp-y' (known: comp-condition-4,"),
        (lambda s: s["components"]["comp-gen"].update(executorLabel="exec-nope"),
         "components['comp-gen'].executorLabel", "no executor 'exec-nope' (known: exec-double,"),
        (lambda s: s["root"]["dag"]["tasks"]["flip"].update(dependentTasks=["flop"]),
         f"{ROOT}['flip'].dependentTasks[0]", "no task 'flop' in this DAG"),
        (lambda s: s["root"]["dag"]["tasks"]["flip"].update(dependentTasks=["ret-3"]),
         ROOT, "dependency cycle: "),
        (lambda s: s["root"]["dag"]["tasks"]["ret-3"]["inputs"]["parameters"]["s"]["taskOutputParameter"].update(
            producerTask="nope"),
         f"{ROOT}['ret-3'].inputs.parameters['s'].taskOutputParameter.producerTask", "no task 'nope' in this DAG"),
        (lambda s: s["root"]["dag"]["tasks"]["ret-3"]["inputs"]["parameters"]["s"]["taskOutputParameter"].update(
            outputParameterKey="Outptu"),
         f"{ROOT}['ret-3'].inputs.parameters['s'].taskOutputParameter.outputParameterKey",
         "task 'condition-branches-3' has no output parameter 'Outptu'"),
        (lambda s: s["root"]["dag"]["tasks"]["final"]["inputs"]["parameters"]["status"]["taskFinalStatus"].update(
            producerTask="exit-handler-9"),
         f"{ROOT}['final'].inputs.parameters['status'].taskFinalStatus.producerTask", "no task 'exit-handler-9'"),
        (lambda s: s["root"]["dag"]["tasks"]["exit-handler-1"]["inputs"]["parameters"]["pipelinechannel--n"].update(
            componentInputParameter="m"),
         f"{ROOT}['exit-handler-1'].inputs.parameters['pipelinechannel--n'].componentInputParameter",
         "root has no input parameter 'm' (known: n)"),
        (lambda s: s["components"]["comp-exit-handler-1"]["dag"]["tasks"]["use"]["inputs"]["artifacts"]["dss"][
            "taskOutputArtifact"].update(outputArtifactKey="pipelinechannel--mk-dz"),
         f"{EH}['use'].inputs.artifacts['dss'].taskOutputArtifact.outputArtifactKey",
         "task 'for-loop-2' has no output artifact 'pipelinechannel--mk-dz' (known: pipelinechannel--mk-ds)"),
        (lambda s: s["components"]["comp-exit-handler-1"]["dag"]["tasks"]["for-loop-2"]["parameterIterator"][
            "items"].update(inputParameter="pipelinechannel--gen-Outptu"),
         f"{EH}['for-loop-2'].parameterIterator.items.inputParameter", "the task has no input 'pipelinechannel--gen-Outptu'"),
        (lambda s: s["components"]["comp-inner"]["dag"]["tasks"]["double"]["inputs"]["parameters"].pop("x"),
         "components['comp-inner'].dag.tasks['double'].inputs.parameters",
         "required input parameter 'x' of component 'comp-double' is not wired"),
        (lambda s: s["root"]["dag"]["outputs"]["parameters"]["Output"]["valueFromParameter"].update(
            producerSubtask="nope"),
         "root.dag.outputs.parameters['Output'].valueFromParameter.producerSubtask", "no task 'nope' in this DAG"),
        (lambda s: s["components"]["comp-condition-branches-3"]["dag"]["outputs"]["parameters"][
            "pipelinechannel--condition-branches-3-oneof-1"]["valueFromOneof"]["parameterSelectors"][1].update(
            outputParameterKey="x"),
         "components['comp-condition-branches-3'].dag.outputs.parameters['pipelinechannel--condition-branches-3-oneof-1']"
         ".valueFromOneof.parameterSelectors[1].outputParameterKey", "task 'condition-5' has no output parameter 'x'"),
        (lambda s: s["components"]["comp-inner"]["dag"]["tasks"]["double"]["componentRef"].update(name="comp-inner"),
         "components", "components contain themselves: "),
        (lambda s: s["components"]["comp-gen"].pop("executorLabel"),
         "components['comp-gen']", "has neither dag nor executorLabel"),
    ],
)
def test_broken_pipelines_name_the_field_path(big_docs, mutate, path, message):
    with pytest.raises(SpecError) as err:
        load_pipeline([_broken(big_docs, mutate)])
    assert err.value.path == path
    assert message in str(err.value)


@pytest.mark.parametrize(
    "platform, path, message",
    [
        ({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-nope": {}}}}}},
         "platforms.kubernetes.deploymentSpec.executors['exec-nope']", "no executor 'exec-nope' in deploymentSpec.executors"),
        ({"platforms": {"kubernetes": {"deploymentSpec": {"executors": {"exec-gen": {"nodeSelectr": {}}}}}}},
         "platforms.kubernetes.deploymentSpec.executors['exec-gen']", 'unknown field "nodeSelectr"'),
        ({"platforms": {"kubernetes": {"deploymentSpecs": {}}}}, "platforms.kubernetes", 'unknown field "deploymentSpecs"'),
        ({"kind": "x"}, "pipeline.yaml: document 2", "expected a platform document"),
    ],
)
def test_platform_document_errors(big_docs, platform, path, message):
    with pytest.raises(SpecError) as err:
        load_pipeline([big_docs[0], platform])
    assert err.value.path == path
    assert message in str(err.value)


def test_non_pipeline_documents_are_refused_by_load_pipeline():
    with pytest.raises(SpecError) as err:
        load_pipeline([{"apiVersion": "kubeflow.org/v1", "kind": "TFJob"}], source="job.yaml")
    assert err.value.path == "job.yaml: document 1"
    assert "is a TFJob, not a compiled KFP pipeline" in str(err.value)
    with pytest.raises(SpecError, match="holds no YAML document"):
        load_pipeline([], source="empty.yaml")


def test_compile_errors_become_spec_errors():
    def not_a_pipeline():
        pass

    with pytest.raises(SpecError) as err:
        compile_pipeline_func(not_a_pipeline)
    assert err.value.path == "pipeline 'not_a_pipeline'"
    assert "kfp compiler rejected it: Unsupported pipeline_func type" in str(err.value)
    assert err.value.fix == "decorate the function with @dsl.pipeline (or pass a component)"
