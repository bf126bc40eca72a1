"""Pipelines written for a real cluster, run as they are (issue 12): every format kfp emits or
accepts (JSON, .zip and .tar.gz packages), the driver's handling of an optional Secret name left
unset, and a failing lightweight component whose traceback keeps its source lines. Image shells,
entrypoints, storage maps and package installation have their own files (test_pipelines_wild_*.py).
Every pipeline is compiled by the real kfp compiler."""
import io
import json
import tarfile
import warnings
import zipfile

import pytest
from click.testing import CliRunner
from kfp import compiler, dsl, kubernetes

from localflow.cli import cli
from localflow.errors import SpecError
from localflow.specs.loader import load_documents
from pipeline_support import BASE


@dsl.component(base_image=BASE)
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline(name="wild-formats")
def formats_pipeline(x: int = 4) -> int:
    return double(x=x).output


def _compile(tmp_path, suffix: str = ".yaml"):
    path = tmp_path / f"pipeline{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # kfp: "Compiling to JSON is deprecated"
        compiler.Compiler().compile(formats_pipeline, str(path))
    return path


def test_a_pipeline_compiled_to_json_runs_like_yaml(localflow, tmp_path):
    path = _compile(tmp_path, ".json")
    json.loads(path.read_text())  # the compiler really wrote JSON
    run = localflow.run(str(path), params={"x": 5})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == 10


@pytest.mark.parametrize("package", ["zip", "tar.gz"])
def test_the_packages_kfp_client_uploads_run_like_yaml(localflow, tmp_path, package):
    text = _compile(tmp_path).read_bytes()
    path = tmp_path / f"uploaded.{package}"
    if package == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("pipeline.yaml", text)
            zf.writestr("README.md", b"not a pipeline")
    else:
        with tarfile.open(path, "w:gz") as tf:
            info = tarfile.TarInfo("pipeline.yaml")
            info.size = len(text)
            tf.addfile(info, io.BytesIO(text))
    run = localflow.run(str(path), params={"x": 3})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == 6


def test_the_cli_runs_a_zip_package(tmp_path):
    path = tmp_path / "p.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("my-pipeline.yaml", _compile(tmp_path).read_bytes())  # the only .yaml: chosen
    result = CliRunner().invoke(cli, ["run", str(path), "-W", str(tmp_path / "ws"), "-p", "x=21"])
    assert result.exit_code == 0, result.output
    assert "42" in result.output


def test_a_package_without_a_pipeline_file_names_the_fix(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", "hello")
    with pytest.raises(SpecError) as err:
        load_documents(str(path))
    assert "no pipeline file" in str(err.value) and "pipeline.yaml" in str(err.value)
    result = CliRunner().invoke(cli, ["run", str(path), "-W", str(tmp_path / "ws")])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- optional Secret names
@dsl.component(base_image=BASE)
def read_token() -> str:
    import os

    return os.environ.get("TOKEN", "<unset>")


@dsl.pipeline(name="optional-secret")
def optional_secret(secret_name: str = None, settings: str = None) -> str:  # type: ignore[assignment]
    t = read_token().set_caching_options(False)
    kubernetes.use_secret_as_env(t, secret_name=secret_name, secret_key_to_env={"token": "TOKEN"})
    kubernetes.use_secret_as_volume(t, secret_name=secret_name, mount_path="/mnt/secret")
    kubernetes.use_config_map_as_env(t, config_map_name=settings, config_map_key_to_env={"k": "K"})
    return t.output


def test_an_unset_optional_secret_name_is_skipped_as_the_driver_does(localflow):
    import base64

    run = localflow.run(optional_secret)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "<unset>"
    pod = run.pods[0]
    assert not [v for v in pod["spec"]["volumes"] if "secret" in v]
    # given a value, the same pipeline uses the Secret
    with localflow.runtime() as rt:
        rt.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok", "namespace": "default"},
                         "data": {"token": base64.b64encode(b"abc").decode()}})
        rt.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "default"},
                         "data": {"k": "v"}})
    run = localflow.run(optional_secret, params={"secret_name": "tok", "settings": "cm"})
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "abc"


# ---------------------------------------------------------------- tracebacks
@dsl.component(base_image=BASE)
def explode(n: int):
    if n > 0:
        raise ValueError(f"n was {n}, the component refuses it")


@dsl.pipeline(name="explodes")
def explodes(n: int = 1):
    explode(n=n).set_caching_options(False)


@pytest.mark.parametrize("warm", ["1", "0"])
def test_a_failing_components_traceback_shows_its_raise_line(localflow, monkeypatch, warm):
    monkeypatch.setenv("LOCALFLOW_WARM", warm)
    run = localflow.run(explodes)
    assert run.state == "FAILED"
    log = run.logs("explode")
    assert "ephemeral_component.py" in log
    # the source line itself, which Python reads from the file when it prints the traceback
    assert 'raise ValueError(f"n was {n}, the component refuses it")' in log
    assert "ValueError: n was 1, the component refuses it" in log
