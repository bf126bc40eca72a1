"""The subprocess executor's filesystem sandbox (bubblewrap): Pods see their volumes at their
mount paths, writes land in the workspace, /tmp is private, the rest of the host is read-only;
volume sources outside the workspace are refused; without bwrap, one line says what is lost.

Real bwrap, real kfp-compiled pipelines and a real TFJob. Sandbox tests skip (with the reason)
where bwrap cannot run, except under CI=true, where they fail.
"""

import base64
import os
import subprocess
import sys
import uuid

import pytest
from kfp import dsl, kubernetes

import localflow as lf_api
from localflow.errors import ExecutorError
from localflow.executors import sandbox
from localflow.executors.base import ContainerSpec, Mount, PodSpec
from localflow.executors.subprocess import SubprocessExecutor
from pipeline_support import BASE


def _require_bwrap():
    why = sandbox.unavailable_reason()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must test the sandbox, but bwrap is unusable: {why}")
        pytest.skip(f"bwrap is unusable here: {why}")


@pytest.fixture(autouse=True)
def sandboxed(request, monkeypatch):
    monkeypatch.delenv(sandbox.ENV_VAR, raising=False)
    if "fallback" not in request.node.name:
        _require_bwrap()


# -- pipelines ---------------------------------------------------------------------------------
@dsl.component(base_image=BASE)
def write_data(text: str) -> str:
    import os

    with open("/data/out.txt", "w") as f:  # a literal path: no argv/env rewriting can help
        f.write(text)
    return os.environ["TMPDIR"]


@dsl.pipeline(name="sandbox-pvc")
def pvc_pipeline(text: str = "hello") -> str:
    t = write_data(text=text).set_caching_options(False)
    kubernetes.mount_pvc(t, pvc_name="sandbox-claim", mount_path="/data")
    return t.output


def test_a_lightweight_component_writing_to_its_pvc_mount_path_writes_the_workspace_claim(localflow):
    assert not os.path.exists("/data/out.txt")
    run = localflow.run(pvc_pipeline, params={"text": "in the claim"})
    assert run.state == "SUCCEEDED", run.error
    assert (localflow.workspace / "pvc" / "sandbox-claim" / "out.txt").read_text() == "in the claim"
    assert not os.path.exists("/data/out.txt")
    tmpdir = run.outputs["Output"]  # every container's TMPDIR is in its Pod directory
    assert tmpdir.startswith(str((localflow.workspace / "pods").resolve())) and tmpdir.endswith("/tmp")


@dsl.component(base_image=BASE)
def read_mounted() -> str:
    with open("/etc/app-config/color") as c, open("/etc/app-creds/token") as s:
        return c.read() + "/" + s.read()


@dsl.pipeline(name="sandbox-config")
def config_pipeline() -> str:
    t = read_mounted().set_caching_options(False)
    kubernetes.use_config_map_as_volume(t, config_map_name="settings", mount_path="/etc/app-config")
    kubernetes.use_secret_as_volume(t, secret_name="creds", mount_path="/etc/app-creds")
    return t.output


def test_configmap_and_secret_files_are_read_at_their_mount_paths(localflow):
    with localflow.runtime() as rt:
        rt.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"},
                         "data": {"color": "teal"}})
        rt.store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"},
                         "type": "Opaque", "data": {"token": base64.b64encode(b"tok-9").decode()}})
    run = localflow.run(config_pipeline)
    assert run.state == "SUCCEEDED", run.error
    assert run.outputs["Output"] == "teal/tok-9"
    assert not os.path.exists("/etc/app-config")


PROBE = f"/tmp/localflow-probe-{uuid.uuid4().hex[:8]}"


@dsl.container_component
def poke(out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", f"""
        echo private > {PROBE} && cat {PROBE} > /tmp/r
        for p in /usr/local/localflow-probe /etc/localflow-probe /localflow-probe; do
            if (echo x > $p) 2>/dev/null; then echo "WROTE $p" >> /tmp/r; else echo "refused $p" >> /tmp/r; fi
        done
        mkdir -p "$(dirname "$0")" && cp /tmp/r "$0"
        """], args=[out])


@dsl.pipeline(name="sandbox-poke")
def poke_pipeline() -> str:
    return poke().set_caching_options(False).output


def test_writes_to_tmp_stay_private_and_other_host_paths_are_read_only(localflow):
    probes = (PROBE, "/usr/local/localflow-probe", "/etc/localflow-probe", "/localflow-probe")
    try:
        run = localflow.run(poke_pipeline)
        assert run.state == "SUCCEEDED", run.error
        assert run.outputs["Output"].split("\n") == ["private", "refused /usr/local/localflow-probe",
                                                     "refused /etc/localflow-probe", "refused /localflow-probe", ""]
        for p in probes:
            assert not os.path.exists(p), p
    finally:  # a broken sandbox must not leave the probes on this machine
        for p in probes:
            if os.path.isfile(p):
                os.remove(p)


TFJOB = """
apiVersion: kubeflow.org/v1
kind: TFJob
metadata: {name: sandbox-tf}
spec:
  tfReplicaSpecs:
    Worker:
      replicas: 1
      restartPolicy: Never
      template:
        spec:
          containers:
            - name: tensorflow
              image: busybox:1.36
              command: ["sh", "-c", "echo x > /mnt/vol/f && echo y > /mnt/scratch/g && cat /mnt/scratch/g"]
              volumeMounts:
                - {name: vol, mountPath: /mnt/vol}
                - {name: scratch, mountPath: /mnt/scratch}
          volumes:
            - {name: vol, persistentVolumeClaim: {claimName: tf-vol}}
            - {name: scratch, emptyDir: {}}
"""


def test_a_tfjob_shell_writing_to_its_volumes_writes_the_workspace(tmp_path):
    ws = tmp_path / "ws"
    run = lf_api.run(TFJOB, workspace=ws)
    assert run.state == "SUCCEEDED", run.error
    assert (ws / "pvc" / "tf-vol" / "f").read_text() == "x\n"
    assert [p.read_text() for p in (ws / "pods").glob("*/volumes/scratch/g")] == ["y\n"]
    assert not os.path.exists("/mnt/vol") and not os.path.exists("/mnt/scratch")


# -- the executor itself -------------------------------------------------------------------------
def _pod(tmp_path, name, argv, mounts, **kw):
    c = ContainerSpec(name="main", image="busybox:1.36", argv=argv, mounts=mounts, log_path=str(tmp_path / f"{name}.log"))
    return PodSpec(uid=name, namespace="default", name=name, containers=[c], workdir=str(tmp_path / "pods" / name),
                   workspace_root=str(tmp_path), **kw)


@pytest.mark.parametrize("target", ["/data", "/mnt/x/y", "/opt/app", "/usr/share/foo", "/usr/lib/x/y"])
def test_mount_points_missing_on_this_machine_are_created_inside(tmp_path, target):
    vol, ro = tmp_path / "vol", tmp_path / "ro"
    vol.mkdir()
    ro.mkdir()
    (ro / "in").write_text("ro content")
    assert not os.path.exists(target)
    script = (f"cat {target}-ro/in > {target}/out && (echo no > {target}-ro/x) 2>/dev/null || echo read-only; "
              f"echo tmp > /tmp/t && cat /tmp/t")
    pod = _pod(tmp_path, "deep", ["sh", "-c", script],
               [Mount(str(vol), target), Mount(str(ro), target + "-ro", read_only=True)])
    (result,) = SubprocessExecutor().start(pod).wait(60)
    log = (tmp_path / "deep.log").read_text()
    assert result.exit_code == 0, log
    assert (vol / "out").read_text() == "ro content"
    assert log == "read-only\ntmp\n" and not (ro / "x").exists()
    assert not os.path.exists(target)


def test_image_paths_are_read_only_at_their_container_paths(tmp_path):
    from localflow.executors.base import ImageMapping

    app = tmp_path / "app"
    app.mkdir()
    (app / "run.sh").write_text("echo from-image; (echo x > /opt/app/y) 2>/dev/null || echo ro\n")
    pod = _pod(tmp_path, "img", ["sh", "/opt/app/run.sh"], [])
    pod.containers[0].mapping = ImageMapping(image="busybox:1.36", paths={"/opt/app": str(app)})
    (result,) = SubprocessExecutor().start(pod).wait(60)
    assert result.exit_code == 0 and (tmp_path / "img.log").read_text() == "from-image\nro\n"


@pytest.mark.parametrize("sandboxed_run", [True, False], ids=["sandbox", "fallback"])
def test_a_volume_from_outside_the_workspace_is_refused(tmp_path, sandboxed_run):
    pod = _pod(tmp_path, "escape", ["true"], [Mount("/etc", "/host-etc")])
    with pytest.raises(ExecutorError, match="inside the workspace"):
        SubprocessExecutor(sandbox=sandboxed_run).start(pod)
    allowed = _pod(tmp_path, "allowed", ["sh", "-c", "test -f /host-etc/hostname"],
                   [Mount("/etc", "/host-etc", read_only=True, kind="hostPath")])
    (result,) = SubprocessExecutor(sandbox=sandboxed_run).start(allowed).wait(60)
    assert result.exit_code == 0 or not sandboxed_run  # without a sandbox /host-etc exists only in argv


def test_the_fallback_without_bwrap_says_once_what_is_lost(tmp_path):
    code = ("from localflow.executors import sandbox\n"
            "print(sandbox.enabled(), sandbox.enabled())\n")
    bare = tmp_path / "bin"
    bare.mkdir()  # a PATH with no bwrap on it
    env = {**os.environ, "PATH": str(bare)}
    env.pop(sandbox.ENV_VAR, None)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert p.stdout == "False False\n"
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and "no bwrap on PATH" in lines[0] and "WITHOUT a filesystem sandbox" in lines[0]
    p = subprocess.run([sys.executable, "-c", code], env={**env, sandbox.ENV_VAR: "0"}, capture_output=True,
                       text=True, timeout=60)
    assert (p.stdout, p.stderr) == ("False False\n", "")


@dsl.container_component
def append_to(directory: str, out: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19", command=["sh", "-c", 'echo hi >> "$0/f" && cp "$0/f" "$1"'],
                             args=[directory, out])


@dsl.pipeline(name="fallback-pvc")
def fallback_pipeline() -> str:
    t = append_to(directory="/data").set_caching_options(False)
    kubernetes.mount_pvc(t, pvc_name="fb", mount_path="/data")
    return t.output


def test_fallback_with_localflow_sandbox_0_rewrites_mount_paths_in_argv(localflow, monkeypatch):
    monkeypatch.setenv(sandbox.ENV_VAR, "0")
    run = localflow.run(fallback_pipeline)
    assert run.state == "SUCCEEDED", run.error
    assert (localflow.workspace / "pvc" / "fb" / "f").read_text() == "hi\n"


@pytest.mark.parametrize("sandboxed_run", [True, False], ids=["sandbox", "fallback"])
def test_the_image_shell_is_what_a_bare_sh_runs(tmp_path, sandboxed_run):
    from localflow.executors.base import ImageMapping

    busybox = "/bin/busybox"
    if not os.path.exists(busybox):
        pytest.skip("no /bin/busybox on this machine")
    pod = _pod(tmp_path, "bb", ["sh", "-c", "readlink /proc/$$/exe; echo done"], [])
    pod.containers[0].mapping = ImageMapping(image="busybox:1.36", shell=busybox)
    (result,) = SubprocessExecutor(sandbox=sandboxed_run).start(pod).wait(60)
    log = (tmp_path / "bb.log").read_text()
    assert result.exit_code == 0, log
    assert log == f"{os.path.realpath(busybox)}\ndone\n"


def test_a_run_started_in_tmp_with_its_workspace_under_tmp_succeeds(tmp_path):
    """A new user's `cd /tmp && localflow run … -W /tmp/ws`: localflow's working directory (/tmp) stays
    private in the sandbox, and the workspace under /tmp stays writable (regression: the cwd was bound
    read-only over the private /tmp and the workspace, so Python found no temporary directory)."""
    ws = f"/tmp/localflow-cwd-tmp-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in (sandbox.WRITABLE_VAR, sandbox.ENV_VAR)}
    spec = os.path.join(os.path.dirname(__file__), os.pardir, "scenarios", "pipelines", "caching.yaml")
    try:
        p = subprocess.run([sys.executable, "-m", "localflow", "run", os.path.abspath(spec), "-W", ws],
                           cwd="/tmp", env=env, capture_output=True, text=True, timeout=240)
        assert p.returncode == 0, p.stderr[-2000:]
        assert "SUCCEEDED" in p.stdout
    finally:
        import shutil

        shutil.rmtree(ws, ignore_errors=True)
