"""Spec-level validation of names, paths, numbers and shapes (issue 7 §1 names/paths, §3).

Validators follow the Kubernetes API server (apimachinery ``pkg/util/validation``, core
``ValidateLocalDescendingPath``); every bad spec is one SpecError line at its field path, exit 2.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import pytest
import yaml

from localflow.controllers.sideobjects import check_side_object
from localflow.errors import SpecError, escape
from localflow.specs.loader import MAX_DEPTH, load_documents
from localflow.specs.podspec import pod_spec_errors
from localflow.specs.training import load_job, trainjob_errors, runtime_errors
from localflow.training.runtimes import BUILTIN_RUNTIMES, resolve_runtime
from localflow.validation import (
    check_int32, check_tree, dns1123_label_errors, dns1123_subdomain_errors, local_path_errors, port_name_errors,
)

ROOT = Path(__file__).resolve().parents[1]
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
             "and must start and end with an alphanumeric character")
W = "TFJob.spec.tfReplicaSpecs.Worker.template.spec"


def tfjob(**pod) -> dict:
    spec = {"containers": [{"name": "tensorflow", "image": "python:3.11", "command": ["python", "-c", "pass"]}]}
    spec.update(pod)
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "t"},
            "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "template": {"spec": spec}}}}}


def container(**fields) -> dict:
    return {"name": "tensorflow", "image": "python:3.11", **fields}


def error_of(job) -> str:
    with pytest.raises(SpecError) as e:
        load_job(job, gpus=0)
    return str(e.value)


# ------------------------------------------------------------------ the validators themselves

@pytest.mark.parametrize("name,ok", [("a", True), ("my-name", True), ("123-abc", True), ("a" * 63, True),
                                     ("a" * 64, False), ("My-Name", False), ("-a", False), ("a-", False),
                                     ("a.b", False), ("a_b", False), ("", False), ("../x", False)])
def test_dns1123_label_matches_the_api_server(name, ok):
    assert (dns1123_label_errors(name) == []) is ok


@pytest.mark.parametrize("name,ok", [("example.com", True), ("a" * 253, True), ("a" * 254, False), ("a..b", False), (".a", False),
                                     ("a/b", False), ("..", False), ("a.b-c.d", True)])
def test_dns1123_subdomain_matches_the_api_server(name, ok):
    assert (dns1123_subdomain_errors(name) == []) is ok


@pytest.mark.parametrize("name,msg", [("tfjob-port", None), ("http", None), ("1234", "at least one letter"),
                                      ("a--b", "consecutive hyphens"), ("-ab", "begin or end with a hyphen"),
                                      ("abcdefghijklmnop", "no more than 15"), ("Web", "only alpha-numeric")])
def test_port_names_are_iana_svc_names(name, msg):
    errs = port_name_errors(name)
    assert (errs == []) if msg is None else any(msg in e for e in errs)


@pytest.mark.parametrize("path,msg", [("conf/app.yaml", None), ("a..b", None), ("/etc/passwd", "must be a relative path"),
                                      ("../x", "must not contain '..'"), ("a/../../b", "must not contain '..'"),
                                      ("..a", "must not start with '..'"), ("a\x00b", "NUL")])
def test_item_paths_are_local_descending_paths(path, msg):
    errs = local_path_errors(path, non_reserved=True)
    assert (errs == []) if msg is None else any(msg in e for e in errs), errs


@pytest.mark.parametrize("value,ok", [(0, True), (2**31 - 1, True), (2**31, False), (-1, False), (True, False),
                                      (1.5, False), ("3", False), (None, True)])
def test_int32_range_is_the_kubernetes_one(value, ok):
    if ok:
        assert check_int32("x", value) == value
    else:
        with pytest.raises(SpecError):
            check_int32("x", value)


def test_control_characters_are_escaped_in_messages():
    err = SpecError("spec.containers[0].name", "bad \x1b[2J\x1b]0;pwned\x07 name\nsecond line\u202e")
    assert "\x1b" not in str(err) and "\n" not in str(err) and "\u202e" not in str(err)
    assert "\\x1b[2J" in str(err) and "\\n" in str(err) and "\\u202e" in str(err)
    assert escape(escape("a\tb")) == "a\\tb"


def test_check_tree_names_nan_by_path_and_refuses_deep_nesting():
    with pytest.raises(SpecError, match=r"^TFJob\.spec\.x\[1\]\.y: nan is not a number"):
        check_tree({"spec": {"x": [1, {"y": float("nan")}]}}, "TFJob")
    deep: dict = {}
    cur = deep
    for _ in range(MAX_DEPTH + 5):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH}"):
        check_tree(deep)
    assert check_tree({1: "x", None: "y"}) == {"1": "x", "null": "y"}


# ------------------------------------------------------------------ names and paths in training jobs

def test_container_name_must_be_a_dns_label():
    job = tfjob(containers=[container(), {"name": "Side_Car", "image": "busybox"}])
    msg = error_of(job)
    assert msg.startswith(f"{W}.containers[1].name: Invalid value 'Side_Car': {LABEL_MSG}"), msg
    assert "e.g. 'side-car'" in msg


def test_init_container_and_volume_names_must_be_dns_labels():
    assert error_of(tfjob(initContainers=[{"name": "../init", "image": "busybox"}])).startswith(
        f"{W}.initContainers[0].name: Invalid value '../init': {LABEL_MSG}")
    assert error_of(tfjob(volumes=[{"name": "../../etc", "emptyDir": {}}])).startswith(
        f"{W}.volumes[0].name: Invalid value '../../etc': {LABEL_MSG}")


def test_duplicate_container_names_are_refused():
    msg = error_of(tfjob(initContainers=[{"name": "tensorflow", "image": "busybox"}]))
    assert msg.startswith(f"{W}.containers[0].name: Duplicate value: 'tensorflow'"), msg


@pytest.mark.parametrize("source", ["configMap", "secret"])
def test_volume_item_paths_cannot_leave_the_volume(source):
    ref = {"name": "cfg"} if source == "configMap" else {"secretName": "cfg"}
    for bad, why in (("../../../../tmp/owned", "must not contain '..'"), ("/etc/cron.d/x", "must be a relative path"),
                     ("..hidden", "must not start with '..'")):
        job = tfjob(volumes=[{"name": "cfg", source: {**ref, "items": [{"key": "k", "path": bad}]}}],
                    containers=[container(volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}])])
        assert error_of(job).startswith(f"{W}.volumes[0].{source}.items[0].path: Invalid value {bad!r}: {why}")


def test_downward_api_and_projected_item_paths_are_checked():
    job = tfjob(volumes=[{"name": "info", "downwardAPI": {"items": [{"path": "../x", "fieldRef": {"fieldPath": "metadata.name"}}]}}])
    assert error_of(job).startswith(f"{W}.volumes[0].downwardAPI.items[0].path: Invalid value '../x'")
    job = tfjob(volumes=[{"name": "all", "projected": {"sources": [{"configMap": {"name": "c", "items": [{"key": "k", "path": "/abs"}]}}]}}])
    assert error_of(job).startswith(f"{W}.volumes[0].projected.sources[0].configMap.items[0].path: Invalid value '/abs'")


@pytest.mark.parametrize("field", ["subPath", "subPathExpr"])
def test_sub_paths_are_relative_without_dotdot(field):
    for bad in ("../../x", "/abs"):
        job = tfjob(volumes=[{"name": "data", "emptyDir": {}}],
                    containers=[container(volumeMounts=[{"name": "data", "mountPath": "/d", field: bad}])])
        assert error_of(job).startswith(f"{W}.containers[0].volumeMounts[0].{field}: Invalid value {bad!r}")


def test_port_name_and_numbers_are_validated():
    assert error_of(tfjob(containers=[container(ports=[{"name": "Web_UI", "containerPort": 80}])])).startswith(
        f"{W}.containers[0].ports[0].name: Invalid value 'Web_UI': must contain only alpha-numeric")
    assert error_of(tfjob(containers=[container(ports=[{"containerPort": 70000}])])).startswith(
        f"{W}.containers[0].ports[0].containerPort: Invalid value 70000: must be between 1 and 65535, inclusive")
    assert error_of(tfjob(containers=[container(ports=["2222"])])).startswith(
        f"{W}.containers[0].ports[0]: must be a port (a mapping with containerPort) (got a string '2222')")


def test_replicas_outside_int32_are_refused():
    job = tfjob()
    job["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = 2**31
    assert error_of(job).startswith("TFJob.spec.tfReplicaSpecs.Worker.replicas: Invalid value 2147483648: "
                                    "must be between 0 and 2147483647")


def test_namespace_must_be_a_dns_label():
    job = tfjob()
    job["metadata"]["namespace"] = "../../root"
    assert error_of(job).startswith("TFJob.metadata.namespace: Invalid value '../../root'")


# ------------------------------------------------------------------ shapes

@pytest.mark.parametrize("mutate,expected", [
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"].__setitem__("template", "oops"),
     "TFJob.spec.tfReplicaSpecs.Worker.template: must be a Pod template"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"].__setitem__("spec", 5),
     "TFJob.spec.tfReplicaSpecs.Worker.template.spec: must be a Pod spec"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].__setitem__(
        "resources", {"requests": "1"}), f"{W}.containers[0].resources.requests: must be a mapping"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].__setitem__(
        "volumes", [{"name": "d", "persistentVolumeClaim": {}}]),
     f"{W}.volumes[0].persistentVolumeClaim.claimName: Required value"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].__setitem__(
        "volumes", [{"name": "d", "persistentVolumeClaim": {"claimName": 7}}]),
     f"{W}.volumes[0].persistentVolumeClaim.claimName: must be a string (got an integer 7)"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].__setitem__(
        "volumes", [{"emptyDir": {}}]), f"{W}.volumes[0].name: Required value"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].update(
        volumes=[{"name": "d", "emptyDir": {}}], containers=[container(volumeMounts=[{"name": "d"}])]),
     f"{W}.containers[0].volumeMounts[0].mountPath: Required value"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].update(
        containers=[container(volumeMounts=[{"name": "nope", "mountPath": "/x"}])]),
     f"{W}.containers[0].volumeMounts[0].name: Not found: 'nope'"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].update(
        containers=[container(env=[{"name": "N", "value": 3}])]),
     f"{W}.containers[0].env[0].value: must be a string (got an integer 3) (quote the value in the YAML)"),
    (lambda j: j["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"].update(
        containers=[container(command="python train.py")]), f"{W}.containers[0].command: must be a list"),
])
def test_malformed_pod_shapes_name_the_field(mutate, expected):
    job = tfjob()
    mutate(job)
    msg = error_of(job)
    assert msg.startswith(expected), msg


def test_side_objects_need_a_name_and_valid_keys():
    with pytest.raises(SpecError, match=r"^ConfigMap\.metadata\.name: Required value"):
        check_side_object({"kind": "ConfigMap", "metadata": {}, "data": {"a": "b"}})
    with pytest.raises(SpecError, match=r"^ConfigMap\.data\['\.\./x'\]: Invalid value '\.\./x'"):
        check_side_object({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"../x": "b"}})
    with pytest.raises(SpecError, match=r"^Secret\.stringData\['n'\]: must be a string"):
        check_side_object({"kind": "Secret", "metadata": {"name": "s"}, "stringData": {"n": 1}})


def trainjob(**spec) -> dict:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj"},
            "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"image": "python:3.11"}, **spec}}


def test_trainjob_wrong_types_are_spec_errors_before_resolving_the_runtime():
    with pytest.raises(SpecError, match=r"^TrainJob\.spec\.runtimeRef\.name: must be a string \(got a list"):
        resolve_runtime(trainjob(runtimeRef={"name": ["torch-distributed"]}))
    with pytest.raises(SpecError, match=r"^TrainJob\.spec\.trainer: must be a mapping"):
        resolve_runtime(trainjob(trainer="python"))
    errs = trainjob_errors(trainjob(runtimePatches=[{"manager": "x", "trainingRuntimeSpec": {"template": "t"}}]),
                           BUILTIN_RUNTIMES["torch-distributed"], gpus=0)
    assert str(errs[0]).startswith("TrainJob.spec.runtimePatches[0].trainingRuntimeSpec.template: must be a mapping")


def test_runtime_shapes_are_checked():
    rt = copy.deepcopy(BUILTIN_RUNTIMES["torch-distributed"])
    rt["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"] = "x"
    errs = runtime_errors(rt, gpus=0)
    assert str(errs[0]).startswith("ClusterTrainingRuntime.spec.template.spec.replicatedJobs[0].template.spec: must be a mapping")


def test_valid_pod_spec_has_no_errors():
    spec = {"volumes": [{"name": "cfg", "configMap": {"name": "c", "items": [{"key": "k", "path": "conf/k.yaml"}]}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}, {"name": "scratch", "emptyDir": {}}],
            "containers": [container(ports=[{"name": "tfjob-port", "containerPort": 2222}],
                                     resources={"limits": {"cpu": "500m", "memory": "1Gi"}},
                                     volumeMounts=[{"name": "cfg", "mountPath": "/cfg"},
                                                   {"name": "data", "mountPath": "/data", "subPath": "run/1"}],
                                     env=[{"name": "A", "value": "1"}])]}
    assert pod_spec_errors("spec", spec) == []


# ------------------------------------------------------------------ the YAML loader's caps

def billion_laughs() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(lines) + "\n"
    return text + "#" * (11 * 1024 - len(text)) + "\n"  # pad to 11 KB, the size of the reported file


def test_alias_bomb_is_refused_fast_without_expanding():
    text = billion_laughs()
    assert len(text) >= 11 * 1024
    t0 = time.monotonic()
    with pytest.raises(SpecError, match="excessive aliasing"):
        load_documents("bomb.yaml", text=text)
    assert time.monotonic() - t0 < 0.5


def test_modest_aliases_still_load():
    docs = load_documents("ok.yaml", text="base: &b {image: x}\nuse: *b\n")
    assert docs == [{"base": {"image": "x"}, "use": {"image": "x"}}]


def test_deep_nesting_is_a_spec_error_not_a_crash():
    for text in ("[" * 100_000 + "]" * 100_000, "- " * 50_000 + "x\n"):
        with pytest.raises(SpecError, match=f"nested deeper than {MAX_DEPTH}"):
            load_documents("deep.yaml", text=text)


def test_nan_in_yaml_is_named_by_path():
    with pytest.raises(SpecError, match=r"^TFJob\.spec\.runPolicy\.backoffLimit: nan is not a number"):
        load_documents("x.yaml", text="kind: TFJob\nspec:\n  runPolicy:\n    backoffLimit: .nan\n")


def test_timestamps_and_binary_stay_strings():
    assert load_documents("x.yaml", text="a: 2024-01-01\nb: !!binary aGk=\n") == [{"a": "2024-01-01", "b": "aGk="}]


def test_oversized_file_is_refused(tmp_path):
    from localflow.specs import loader

    f = tmp_path / "big.yaml"
    f.write_text("a: " + "x" * 100 + "\n")
    old = loader.MAX_DOCUMENT_BYTES
    loader.MAX_DOCUMENT_BYTES = 50
    try:
        with pytest.raises(SpecError, match="is larger than"):
            load_documents(f)
    finally:
        loader.MAX_DOCUMENT_BYTES = old


# ------------------------------------------------------------------ through the CLI: exit 2, one line

from cli_support import lf


def test_cli_refuses_a_bad_job_with_one_escaped_line_and_writes_nothing_outside(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    job = tfjob(volumes=[{"name": "cfg", "configMap": {"name": "c", "items": [{"key": "k", "path": "../../../../evil"}]}}],
                containers=[container(name="tensorflow", volumeMounts=[{"name": "cfg", "mountPath": "/cfg"}])])
    job["metadata"]["name"] = "t"
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    spec = work / "job.yaml"
    spec.write_text(yaml.safe_dump_all([cm, job]))
    before = set(tmp_path.iterdir())
    p = lf("run", spec, "-W", work / "ws", cwd=work)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {W}.volumes[0].configMap.items[0].path: "), p.stderr
    assert "'../../../../evil'" in lines[0] and "must not contain '..'" in lines[0], p.stderr
    assert set(tmp_path.iterdir()) == before

    spec.write_text("kind: TFJob\napiVersion: kubeflow.org/v1\nmetadata:\n  name: \"bad\\e[31mred\\n\"\nspec: {}\n")
    p = lf("run", spec, "-W", work / "ws", cwd=work)
    assert p.returncode == 2 and "\x1b" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "\\x1b[31m" in p.stderr


def test_cli_refuses_an_alias_bomb_quickly(tmp_path):
    spec = tmp_path / "bomb.yaml"
    spec.write_text(billion_laughs())
    t0 = time.monotonic()
    p = lf("run", spec, "-W", tmp_path / "ws", cwd=tmp_path)
    assert p.returncode == 2 and "excessive aliasing" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 30  # interpreter start-up dominates; the refusal itself is milliseconds


# ------------------------------------------------------------------ names in compiled pipelines

def pipeline_docs() -> list:
    return load_documents(ROOT / "scenarios" / "pipelines" / "params.yaml")


def test_a_300_character_task_name_is_refused():
    from localflow.specs.pipeline import load_pipeline

    docs = pipeline_docs()
    tasks = docs[0]["root"]["dag"]["tasks"]
    first = next(iter(tasks))
    tasks["t" * 300] = tasks.pop(first)
    with pytest.raises(SpecError, match=r"^root\.dag\.tasks\['t{300}'\]: must be no more than 128 characters"):
        load_pipeline(docs)


def test_an_empty_output_parameter_name_is_refused():
    from localflow.specs.pipeline import load_pipeline

    docs = pipeline_docs()
    comp_name, comp = next((n, c) for n, c in docs[0]["components"].items() if c.get("outputDefinitions"))
    params = comp["outputDefinitions"].setdefault("parameters", {})
    params[""] = {"parameterType": "STRING"}
    with pytest.raises(SpecError, match=r"outputDefinitions\.parameters\[''\]: Required value"):
        load_pipeline(docs)


def test_control_characters_in_a_task_name_are_refused():
    from localflow.specs.pipeline import load_pipeline

    docs = pipeline_docs()
    tasks = docs[0]["root"]["dag"]["tasks"]
    tasks["x\x1b[2J"] = tasks.pop(next(iter(tasks)))
    with pytest.raises(SpecError, match="must not contain control characters") as e:
        load_pipeline(docs)
    assert "\x1b" not in str(e.value)


@pytest.mark.parametrize("where, typo, path, fix", [
    (("spec",), "backofLimit", "Job.spec", "backoffLimit"),
    (("spec", "template", "spec"), "restartPolicyy", "Job.spec.template.spec", "restartPolicy"),
    (("spec", "template", "spec", "containers", 0), "argz", "Job.spec.template.spec.containers[0]", "args"),
    (("spec", "template"), "metdata", "Job.spec.template", "metadata"),
])
def test_a_misspelled_field_of_a_job_or_its_pod_template_is_refused_at_its_path(where, typo, path, fix):
    """Strict field validation (kubectl's default): a typo is not silently dropped, it is named."""
    from localflow.specs.job import load_job as load_batch_job

    job = yaml.safe_load((ROOT / "scenarios" / "jobs" / "job.yaml").read_text())
    node = job
    for key in where:
        node = node[key]
    node[typo] = node.pop(fix) if fix in node else 1
    with pytest.raises(SpecError) as err:
        load_batch_job(job)
    assert (err.value.path, err.value.fix) == (f"{path}.{typo}", f"did you mean {fix!r}?")
