"""What images mean on the subprocess executor (issue 12): built-in shell profiles (busybox and
alpine's ``sh`` is busybox ash, Debian's is dash), ``shell:`` and ``entrypoint:`` in
localflow.yaml, args-only containers and their error without an entrypoint, programs an image
carries, and ``storage:`` maps for remote URIs (importer, pipeline_root, string inputs).
Every pipeline is compiled by the real kfp compiler."""
import os

import pytest
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from localflow.config import parse_config
from localflow.errors import SpecError
from localflow.image_profiles import busybox_program
from pipeline_support import BASE, metadata_of

needs_busybox = pytest.mark.skipif(busybox_program() is None and os.environ.get("CI") != "true",
                                   reason="busybox is not installed (apt-get install busybox-static)")

# bash/ash syntax: dash says `[[: not found` and takes the else branch
_BASHISM = 'if [[ "$0" == "hello" ]]; then echo ash > "$1"; else echo dash > "$1"; fi'


def _shell_component(image: str):
    @dsl.container_component
    def which_shell(word: str, out: dsl.OutputPath(str)):
        return dsl.ContainerSpec(image=image, command=["sh", "-c", _BASHISM], args=[word, out])

    return which_shell


@pytest.mark.parametrize("image,expected", [
    ("busybox:1.36", "ash"),
    ("docker.io/library/alpine:3.19", "ash"),
    ("ghcr.io/containerd/busybox:1.36", "ash"),
    ("debian:bookworm", "dash"),
])
@needs_busybox
def test_an_images_sh_is_the_shell_that_image_has(localflow, image, expected):
    comp = _shell_component(image)

    @dsl.pipeline(name="image-shell")
    def pipe() -> str:
        return comp(word="hello").set_caching_options(False).output

    run = localflow.run(pipe)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"].strip() == expected


@needs_busybox
def test_shell_in_localflow_yaml_overrides_the_profile(localflow, tmp_path):
    comp = _shell_component("debian:bookworm")

    @dsl.pipeline(name="image-shell-override")
    def pipe() -> str:
        return comp(word="hello").set_caching_options(False).output

    cfg = tmp_path / "localflow.yaml"
    cfg.write_text('images:\n  "debian:*":\n    shell: busybox\n')
    run = localflow.run(pipe, config=str(cfg))
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"].strip() == "ash"


def test_a_shell_that_is_not_installed_is_a_config_error(tmp_path):
    with pytest.raises(SpecError) as err:
        parse_config({"images": {"x:*": {"shell": "no-such-shell-here"}}}, source="localflow.yaml", base_dir=tmp_path)
    assert "images['x:*'].shell" in str(err.value)


# ---------------------------------------------------------------- entrypoints
@dsl.container_component
def args_only(message: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="registry.example.com/team/app:1.0", args=["--message", message, "--out", out])


@dsl.pipeline(name="args-only")
def args_only_pipeline(message: str = "hi") -> str:
    return args_only(message=message).set_caching_options(False).output


def test_an_args_only_container_without_an_entrypoint_says_what_would_run(localflow):
    run = localflow.run(args_only_pipeline)
    assert run.state == "FAILED"
    error = run.task("args-only").error
    assert "sets no command, so the image's ENTRYPOINT would run" in error
    assert "localflow does not know it for image 'registry.example.com/team/app:1.0'" in error
    assert "entrypoint: [...]" in error


def test_an_entrypoint_in_localflow_yaml_runs_an_args_only_container(localflow, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(
        "import argparse, pathlib\n"
        "p = argparse.ArgumentParser(); p.add_argument('--message'); p.add_argument('--out')\n"
        "a = p.parse_args()\n"
        "pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)\n"
        "pathlib.Path(a.out).write_text(a.message.upper())\n")
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text('images:\n  "registry.example.com/team/app:*":\n'
                   '    entrypoint: [python, /app/main.py]\n    paths: {/app: ./app}\n')
    run = localflow.run(args_only_pipeline, params={"message": "from the entrypoint"}, config=str(cfg))
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "FROM THE ENTRYPOINT"


@dsl.container_component
def python_args_only(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image=BASE, args=["python3", "-c", "import sys; open(sys.argv[1], 'w').write('ran')", out])


def test_an_image_with_no_entrypoint_runs_its_args_as_the_program(localflow):
    @dsl.pipeline(name="python-args-only")
    def pipe() -> str:
        return python_args_only().set_caching_options(False).output

    run = localflow.run(pipe)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "ran"


# ---------------------------------------------------------------- programs the image carries
@dsl.container_component
def carried(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="registry.example.com/team/tool:2", command=["my_program"], args=["--out", out])


def test_a_program_the_image_carries_names_the_image_and_the_three_fixes(localflow):
    @dsl.pipeline(name="carried-program")
    def pipe():
        carried().set_caching_options(False)

    run = localflow.run(pipe)
    assert run.state == "FAILED"
    error = run.task("carried").error
    assert "'my_program'" in error and "registry.example.com/team/tool:2" in error
    assert "localflow.yaml" in error and "--executor docker" in error and "kfp component build" in error


# ---------------------------------------------------------------- storage maps
@dsl.component(base_image=BASE)
def read_dataset(data: Input[Dataset], copy: Output[Dataset]) -> str:
    import shutil

    shutil.copy(data.path, copy.path)
    with open(data.path) as f:
        return f.read()


@dsl.pipeline(name="remote-data", pipeline_root="gs://my-bucket/pipeline-root")
def remote_data(uri: str = "gs://my-bucket/data/train.csv") -> str:
    imp = dsl.importer(artifact_uri=uri, artifact_class=Dataset, reimport=False)
    return read_dataset(data=imp.output).set_caching_options(False).outputs["Output"]


def _bucket(tmp_path):
    (tmp_path / "bucket" / "data").mkdir(parents=True)
    (tmp_path / "bucket" / "data" / "train.csv").write_text("a,b\n1,2\n")
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text("storage:\n  gs://my-bucket: ./bucket\n")
    return cfg


def test_an_importer_and_pipeline_root_on_a_mapped_gs_prefix(localflow, tmp_path):
    cfg = _bucket(tmp_path)
    run = localflow.run(remote_data, config=str(cfg))
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "a,b\n1,2\n"
    imported = run.task("importer").outputs["artifacts"]["artifact"][0]
    assert imported["uri"] == "gs://my-bucket/data/train.csv"  # metadata keeps the remote URI
    copy_uri = run.task("read-dataset").outputs["artifacts"]["copy"][0]["uri"]
    root = tmp_path / "bucket" / "pipeline-root"
    assert copy_uri.startswith(str(root) + os.sep)  # the outputs live under the mapped pipeline_root
    assert open(copy_uri).read() == "a,b\n1,2\n"
    with metadata_of(localflow) as md:
        assert any(a["uri"] == "gs://my-bucket/data/train.csv" for a in md.list_artifacts())


def test_an_unmapped_remote_uri_fails_the_task_that_needs_it_with_the_key_to_add(localflow, tmp_path):
    run = localflow.run(remote_data, params={"uri": "s3://other-bucket/train.csv"}, config=str(_bucket(tmp_path)))
    assert run.state == "FAILED"
    assert run.task("importer").state == "SUCCEEDED"  # the importer only records the URI, as on a cluster
    error = run.task("read-dataset").error
    assert "s3://other-bucket/train.csv" in error and "storage: {s3://other-bucket:" in error
    assert "FileNotFoundError" not in error


@dsl.container_component
def cat_uri(uri: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="busybox:1.36", command=["sh", "-c", 'cat "$0" > "$1"'], args=[uri, out])


def test_a_string_input_under_a_mapped_prefix_reaches_the_task_as_a_local_path(localflow, tmp_path):
    @dsl.pipeline(name="remote-string")
    def pipe(uri: str) -> str:
        return cat_uri(uri=uri).set_caching_options(False).output

    run = localflow.run(pipe, params={"uri": "gs://my-bucket/data/train.csv"}, config=str(_bucket(tmp_path)))
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "a,b\n1,2\n"


def test_storage_keys_must_be_uri_prefixes(tmp_path):
    with pytest.raises(SpecError) as err:
        parse_config({"storage": {"my-bucket": "./data"}}, source="localflow.yaml", base_dir=tmp_path)
    assert "storage['my-bucket']" in str(err.value) and "gs://" in str(err.value)


def test_profiles_cover_every_spelling_of_an_image_and_no_lookalike():
    from localflow.image_profiles import profile_for

    for ref in ("busybox", "busybox:1.36", "docker.io/library/busybox:latest", "library/busybox@sha256:abc"):
        assert profile_for(ref).name == "busybox", ref
    assert profile_for("docker.io/library/python:3.11-slim").name == "debian"
    assert profile_for("python:3.11").entrypoint == ()  # no ENTRYPOINT: args are the program
    assert profile_for("bash:5").entrypoint is None  # docker-entrypoint.sh: not known here
    assert profile_for("quay.io/org/busybox") is None and profile_for("myalpine:1") is None
