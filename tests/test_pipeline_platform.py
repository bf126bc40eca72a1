"""The kfp-kubernetes platform document (second YAML document) and task-level settings, run on
the subprocess executor: Secrets and ConfigMaps as env and files, PVC mounts that persist across
runs, CreatePVC/DeletePVC, pod labels/annotations with field-path env, timeouts, set_env_variable;
and lightweight components running offline without their pip bootstrap."""
import base64
import json

import pytest
from kfp import dsl, kubernetes

from localflow.specs.pipeline import compile_pipeline_func
from pipeline_support import BASE, metadata_of, pod_argv


def _secret(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def _config_map(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": data}


@dsl.component(base_image=BASE)
def read_env(names: list) -> str:
    import json
    import os

    return json.dumps({n: os.environ.get(n) for n in names})


@dsl.pipeline(name="secret-env")
def secret_env(secret_name: str = "db-creds"):
    t = read_env(names=["DB_USER", "DB_PASS", "COLOR", "FOO", "POD_NAME"]).set_caching_options(False)
    kubernetes.use_secret_as_env(t, secret_name=secret_name, secret_key_to_env={"user": "DB_USER", "pass": "DB_PASS"})
    kubernetes.use_config_map_as_env(t, config_map_name="settings", config_map_key_to_env={"color": "COLOR"})
    kubernetes.use_field_path_as_env(t, "POD_NAME", "metadata.name")
    t.set_env_variable("FOO", "bar")


def test_compiled_spec_has_the_platform_document():
    docs = compile_pipeline_func(secret_env)
    assert len(docs) == 2
    entry = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-read-env"]
    assert entry["secretAsEnv"][0]["secretNameParameter"] == {"componentInputParameter": "secret_name"}


def test_secrets_and_config_maps_in_the_workspace_become_env_of_the_task(localflow):
    with localflow.runtime() as rt:
        rt.store.create(_secret("db-creds", {"user": "alice", "pass": "s3cret"}))
        rt.store.create(_secret("other-creds", {"user": "bob", "pass": "x"}))
        rt.store.create(_config_map("settings", {"color": "blue"}))
    run = localflow.run(secret_env)
    assert run.state == "SUCCEEDED", run.error
    env = json.loads(run.task("read-env").outputs["parameters"]["Output"])
    assert env == {"DB_USER": "alice", "DB_PASS": "s3cret", "COLOR": "blue", "FOO": "bar",
                   "POD_NAME": run.task("read-env").pod}
    # the Secret name comes from a pipeline parameter
    run2 = localflow.run(secret_env, params={"secret_name": "other-creds"})
    assert json.loads(run2.task("read-env").outputs["parameters"]["Output"])["DB_USER"] == "bob"


def test_a_missing_secret_fails_the_task_naming_it(localflow):
    with localflow.runtime() as rt:
        rt.store.create(_config_map("settings", {"color": "blue"}))
    run = localflow.run(secret_env, params={"secret_name": "nope"})
    assert run.state == "FAILED"
    err = run.task("read-env").error
    assert "Secret 'nope' does not exist" in err and "secretKeyRef" in err


@dsl.container_component
def cat_file(directory: str, key: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19",
                             command=["sh", "-c", 'mkdir -p "$(dirname "$2")" && cat "$0/$1" > "$2"'],
                             args=[directory, key, out])


@dsl.pipeline(name="secret-volume")
def secret_volume() -> str:
    t = cat_file(directory="/etc/creds", key="token").set_caching_options(False)
    kubernetes.use_secret_as_volume(t, secret_name="api", mount_path="/etc/creds")
    return t.outputs["out"]


def test_a_secret_mounted_as_a_volume_shows_its_keys_as_files(localflow):
    with localflow.runtime() as rt:
        rt.store.create(_secret("api", {"token": "tok-123"}))
    run = localflow.run(secret_volume)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "tok-123"


@dsl.container_component
def append_line(directory: str, line: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(
        image="alpine:3.19",
        command=["sh", "-c", 'echo "$1" >> "$0/log.txt" && mkdir -p "$(dirname "$2")" && cat "$0/log.txt" > "$2"'],
        args=[directory, line, out])


@dsl.pipeline(name="pvc-mount")
def pvc_mount(line: str) -> str:
    t = append_line(directory="/data", line=line).set_caching_options(False)
    kubernetes.mount_pvc(t, pvc_name="shared-data", mount_path="/data")
    return t.outputs["out"]


def test_a_mounted_pvc_is_a_workspace_directory_that_persists_across_runs(localflow):
    first = localflow.run(pvc_mount, params={"line": "one"})
    assert first.state == "SUCCEEDED", first.error
    second = localflow.run(pvc_mount, params={"line": "two"})
    assert second.outputs["Output"] == "one\ntwo\n"
    assert (localflow.workspace / "pvc" / "shared-data" / "log.txt").read_text() == "one\ntwo\n"


@dsl.pipeline(name="pvc-lifecycle")
def pvc_lifecycle() -> str:
    pvc = kubernetes.CreatePVC(pvc_name_suffix="-scratch", access_modes=["ReadWriteOnce"], size="5Mi",
                               storage_class_name="standard")
    w = append_line(directory="/scratch", line="written").set_caching_options(False)
    kubernetes.mount_pvc(w, pvc_name=pvc.outputs["name"], mount_path="/scratch")
    r = append_line(directory="/scratch", line="read").after(w).set_caching_options(False)
    kubernetes.mount_pvc(r, pvc_name=pvc.outputs["name"], mount_path="/scratch")
    kubernetes.DeletePVC(pvc_name=pvc.outputs["name"]).after(r)
    return r.outputs["out"]


def test_create_pvc_mount_it_in_two_tasks_then_delete_it(localflow):
    run = localflow.run(pvc_lifecycle)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "written\nread\n"
    name = run.task("createpvc").outputs["parameters"]["name"]
    assert name.endswith("-scratch") and run.task("createpvc").kind == "pvc"
    assert run.task("deletepvc").state == "SUCCEEDED"
    assert not (localflow.workspace / "pvc" / name).exists()
    with localflow.runtime() as rt:
        assert rt.store.list("PersistentVolumeClaim", "default") == []
    with metadata_of(localflow) as md:
        rows = {e["name"]: e for e in md.list_executions(run_id=run.id)}
    assert rows["createpvc"]["state"] == "COMPLETE" and rows["createpvc"]["outputs"]["parameters"] == {"name": name}


@dsl.pipeline(name="pod-metadata")
def pod_metadata():
    t = read_env(names=["TEAM", "NOTE"]).set_caching_options(False)
    kubernetes.add_pod_label(t, "team", "ml")
    kubernetes.add_pod_annotation(t, "note", "hello")
    kubernetes.use_field_path_as_env(t, "TEAM", "metadata.labels['team']")
    kubernetes.use_field_path_as_env(t, "NOTE", "metadata.annotations['note']")


def test_pod_labels_and_annotations_are_set_and_readable_through_field_paths(localflow):
    run = localflow.run(pod_metadata)
    assert run.state == "SUCCEEDED", run.error
    assert json.loads(run.task("read-env").outputs["parameters"]["Output"]) == {"TEAM": "ml", "NOTE": "hello"}
    pod = next(p for p in run.pods if p["metadata"]["name"] == run.task("read-env").pod)
    assert pod["metadata"]["labels"]["team"] == "ml" and pod["metadata"]["annotations"]["note"] == "hello"


@dsl.component(base_image=BASE)
def sleepy(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "woke"


@dsl.pipeline(name="timeout")
def timeout_pipeline():
    t = sleepy(seconds=60.0).set_caching_options(False)
    kubernetes.set_timeout(t, 1)


def test_set_timeout_kills_the_task_at_its_active_deadline(localflow):
    run = localflow.run(timeout_pipeline)
    assert run.state == "FAILED"
    t = run.task("sleepy")
    assert "DeadlineExceeded" in t.error
    pod = next(p for p in run.pods if p["metadata"]["name"] == t.pod)
    assert pod["spec"]["activeDeadlineSeconds"] == 1 and pod["status"]["reason"] == "DeadlineExceeded"


@dsl.component(base_image=BASE)
def offline() -> str:
    import sys

    return sys.executable


@dsl.component(base_image=BASE, packages_to_install=["pyyaml"])
def with_installed_package() -> str:
    import yaml

    return yaml.safe_dump({"ok": True}).strip()


@dsl.pipeline(name="offline")
def offline_pipeline():
    offline()
    with_installed_package()


def test_lightweight_components_run_without_pip_when_requirements_are_installed(localflow):
    spec = compile_pipeline_func(offline_pipeline)[0]
    compiled = spec["deploymentSpec"]["executors"]["exec-with-installed-package"]["container"]["command"]
    assert "pip install" in compiled[2] and "'pyyaml'" in compiled[2]  # the IR really asks for pip
    run = localflow.run(offline_pipeline)
    assert run.state == "SUCCEEDED", run.error
    assert run.task("with-installed-package").outputs["parameters"]["Output"] == "ok: true"
    for name in ("offline", "with-installed-package"):
        argv = pod_argv(localflow, run.task(name).pod)
        assert argv[1] == "-c" and not any("pip" in a.split() or "pip install" in a for a in argv), argv[:2]
        assert "sh" not in argv[:1]
    assert run.task("offline").outputs["parameters"]["Output"] == pod_argv(localflow, run.task("offline").pod)[0]


@dsl.component(base_image=BASE, packages_to_install=["definitely-not-installed-pkg-xyz==1.2.3", "pyyaml"])
def needs_missing() -> str:
    return "unreachable"


@dsl.pipeline(name="missing-package")
def missing_package():
    needs_missing()


def test_a_requirement_that_is_not_installed_fails_the_task_listing_it(localflow):
    run = localflow.run(missing_package)
    assert run.state == "FAILED"
    t = run.task("needs-missing")
    assert t.state == "FAILED" and t.pod is None  # refused before any process started
    assert "definitely-not-installed-pkg-xyz==1.2.3 (not installed)" in t.error
    assert "pyyaml" not in t.error.split("(run")[0]  # only what is missing is listed
    assert "pip install" in t.error and "localflow.yaml" in t.error


@dsl.component(base_image=BASE)
def on_gpu() -> str:
    return "ran"


@dsl.pipeline(name="gpu")
def gpu_pipeline(count: str = "1"):
    on_gpu().set_accelerator_type("NVIDIA_TESLA_T4").set_accelerator_limit(count).set_caching_options(False)


@pytest.mark.parametrize("gpus, count, state", [("0", "1", "FAILED"), ("1", "1", "SUCCEEDED"), ("0", "0", "SUCCEEDED")])
def test_accelerator_requests_run_only_when_the_machine_has_the_gpus(localflow, monkeypatch, gpus, count, state):
    monkeypatch.setenv("LOCALFLOW_GPUS", gpus)
    run = localflow.run(gpu_pipeline, params={"count": count})
    assert run.state == state, run.error
    if state == "FAILED":
        assert "asks for 1 NVIDIA_TESLA_T4 and this machine has 0 GPUs" in run.task("on-gpu").error
