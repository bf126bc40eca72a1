"""Nothing a spec names can put a file outside the workspace (issue 7, section 1).

Attack specs are real: kfp-compiled pipelines whose IR is edited the way a crafted file would be,
and training YAML with hostile ``items[].path``, ``subPath``, ``hostPath`` and ``claimName``
values, run through the real ``localflow`` command. Each refused spec exits 2 with one line
naming the field, and each test checks the concrete target paths and that the workspace's parent
directory got no new entry. Odd but legal names (dots, unicode) still run, inside the run's
directory.
"""
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from kfp import dsl, kubernetes

from localflow.config import parse_config
from localflow.errors import SpecError
from localflow.pipelines import launcher
from localflow.safepath import check_relative, encode_component, safe_join, within
from localflow.specs.pipeline import compile_pipeline_func


# ------------------------------------------------------------------ helpers

from cli_support import lf


class Box:
    """A workspace alone in its parent directory, plus a hostile target path outside it."""

    def __init__(self, tmp_path: Path):
        self.parent = tmp_path / "parent"
        self.ws = self.parent / "ws"
        self.specs = tmp_path / "specs"
        self.specs.mkdir()
        self.parent.mkdir()
        self.token = f"lf-pwn-{uuid.uuid4().hex[:12]}"
        self.target = Path("/tmp") / self.token

    def refused(self, spec: Path, field: str, *extra) -> str:
        p = lf("run", spec, "-W", self.ws, *extra)
        assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1, p.stderr
        assert field in lines[0], lines[0]
        self.assert_nothing_outside()
        return lines[0]

    def assert_nothing_outside(self) -> None:
        assert not os.path.lexists(self.target)
        assert sorted(os.listdir(self.parent)) in ([], ["ws"])
        # no directory of that name anywhere in the test's tree outside the workspace either
        stray = [p for p in self.parent.parent.rglob(f"*{self.token}*") if not within(p, self.ws)]
        assert stray == [], stray

    def write(self, name: str, docs) -> Path:
        path = self.specs / name
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True))
        return path


@pytest.fixture
def box(tmp_path):
    b = Box(tmp_path)
    yield b
    if os.path.lexists(b.target):  # never leave an escaped file behind, even when a test failed
        subprocess.run(["rm", "-rf", str(b.target)], check=False)


# ------------------------------------------------------------------ the helper itself

@pytest.mark.parametrize("value, problem", [
    ("/etc/x", "relative"), ("../x", "'..'"), ("a/../../x", "'..'"), ("a\\..\\x", "'..'"), ("a\0b", "NUL"),
    ("", "non-empty"), ("x" * 256, "255 bytes"), (["a"], "non-empty string"),
])
def test_check_relative_refuses_what_leaves_a_volume(value, problem):
    with pytest.raises(SpecError) as e:
        check_relative(value, "Pod(p).spec.containers[0].volumeMounts[0].subPath")
    assert str(e.value).startswith("Pod(p).spec.containers[0].volumeMounts[0].subPath: ")
    assert problem in str(e.value)


def test_check_relative_keeps_ordinary_relative_paths():
    assert check_relative("a//b/./c.txt", "f") == ["a", "b", "c.txt"]
    assert check_relative("..data-not-a-backstep/x", "f") == ["..data-not-a-backstep", "x"]


def test_safe_join_refuses_a_symbolic_link_that_leads_out(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "inner").mkdir()
    (root / "out-link").symlink_to(outside)
    (root / "in-link").symlink_to(root / "inner")
    assert safe_join(root, "in-link/f", field="f") == root / "in-link" / "f"
    with pytest.raises(SpecError, match=r"^items\[0\]\.path: .*symbolic link"):
        safe_join(root, "out-link/f", field="items[0].path")
    with pytest.raises(SpecError, match="symbolic link"):
        safe_join(root, "out-link", field="f")


NAMES = ["", ".", "..", "...", "../x", "../../../tmp/x", "/abs", "a/b", "a%2Fb", "%2E.%2Fx", "a.b", "a", "A",
         "outputs", "%6Futputs", "ü", "u\u0308", "tab\there", "nul\0", "x" * 255, "x" * 300, "x" * 301,
         "é" * 200, "%" * 100]


def test_encode_component_is_injective_and_always_one_entry(tmp_path):
    encoded = [encode_component(n, reserved=("outputs",)) for n in NAMES]
    assert len(set(encoded)) == len(NAMES)
    for n, e in zip(NAMES, encoded):
        assert e not in (".", "..") and "/" not in e and "\0" not in e and not e.startswith("."), (n, e)
        assert len(e.encode()) <= 255, n
        (tmp_path / e).mkdir()
    assert len(os.listdir(tmp_path)) == len(NAMES)
    # ordinary names stay readable
    assert encode_component("train-model.v2_x") == "train-model.v2_x"
    assert encode_component("outputs", reserved=("outputs",)) != "outputs"


def test_task_directories_stay_in_the_run_whatever_the_task_is_called(tmp_path):
    run_root = tmp_path / "artifacts" / "p" / "run"
    run_root.mkdir(parents=True)
    for name in ["../../../../../../../../tmp/lf-pwn-x", "..", ".", "/abs", "a/b", "nul\0"]:
        root = launcher.prepare_task_root(str(run_root), ("for-loop-2", 0, name), 1)
        assert within(root, run_root) and Path(root).parent.parent.parent == run_root / "for-loop-2", name
        assert (Path(root) / "outputs" / "parameters").is_dir()
    # no splitting on '.': a task "a.b" is not task "b" inside DAG "a"
    assert launcher.prepare_task_root(str(run_root), ("a.b",), 1) != launcher.prepare_task_root(str(run_root), ("a", "b"), 1)
    assert not Path("/tmp/lf-pwn-x").exists()


def test_output_files_and_artifact_uris_stay_in_the_task_root(tmp_path):
    comp = {"outputDefinitions": {"parameters": {"../p": {"parameterType": "STRING"}, "/abs": {"parameterType": "STRING"}},
                                  "artifacts": {"../x": {"artifactType": {"schemaTitle": "system.Artifact"}},
                                                "outputs": {"artifactType": {"schemaTitle": "system.Artifact"}},
                                                "executor_output.json": {}}}}
    root = tmp_path / "task"
    ei = launcher.executor_input({}, {}, comp, str(root))
    files = [v["outputFile"] for v in ei["outputs"]["parameters"].values()]
    uris = [v["artifacts"][0]["uri"] for v in ei["outputs"]["artifacts"].values()]
    for f in files:
        assert Path(f).parent == root / "outputs" / "parameters"
    for u in uris:
        assert Path(u).parent == root
    assert str(root / "outputs") not in uris and str(root / "executor_output.json") not in uris
    assert len(set(uris)) == 3


def test_custom_path_content_is_never_copied_outside_the_run(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("x")
    with pytest.raises(Exception, match="outside the run"):
        launcher.copy_content(str(src), str(tmp_path / "elsewhere" / "y"), "task t", root=str(tmp_path / "run"))
    assert not (tmp_path / "elsewhere").exists()


def test_host_paths_config_is_resolved_and_refuses_the_root(tmp_path):
    (tmp_path / "data").mkdir()
    cfg = parse_config({"hostPaths": {"allow": ["data", "/srv/x"]}}, base_dir=tmp_path)
    assert cfg.host_paths == (str((tmp_path / "data").resolve()), "/srv/x")
    with pytest.raises(SpecError, match=r"hostPaths\.allow\[0\]: allows the whole filesystem"):
        parse_config({"hostPaths": {"allow": ["/"]}})
    with pytest.raises(SpecError, match="hostPaths"):
        parse_config({"hostPaths": ["/data"]})


# ------------------------------------------------------------------ training YAML

def tfjob(name: str, *, volumes, mounts, command=None, args=None, env=None) -> dict:
    container = {"name": "tensorflow", "image": "python:3.11",
                 "command": command or ["sh", "-c", "echo ok"], "volumeMounts": mounts}
    if args:
        container["args"] = args
    if env:
        container["env"] = env
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
            "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1, "restartPolicy": "Never",
                                                   "template": {"spec": {"containers": [container],
                                                                         "volumes": volumes}}}}}}


def config_map(name: str, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def _attacks(token: str) -> dict:
    m = [{"name": "v", "mountPath": "/v"}]
    return {
        "configmap-items-path": ([config_map("cm", {"k": "x"}),
                                  tfjob("a", volumes=[{"name": "v", "configMap": {"name": "cm", "items": [
                                      {"key": "k", "path": f"../../../../../../../../tmp/{token}"}]}}], mounts=m)],
                                 "volumes[0].configMap.items[0].path"),
        "secret-items-absolute": ([tfjob("a", volumes=[{"name": "v", "secret": {"secretName": "s", "items": [
                                      {"key": "k", "path": f"/tmp/{token}"}]}}], mounts=m)],
                                  "volumes[0].secret.items[0].path"),
        "projected-items-path": ([tfjob("a", volumes=[{"name": "v", "projected": {"sources": [{"configMap": {
                                     "name": "cm", "items": [{"key": "k", "path": "../../etc/x"}]}}]}}], mounts=m)],
                                 "volumes[0].projected.sources[0].configMap.items[0].path"),
        "subpath-backsteps": ([tfjob("a", volumes=[{"name": "v", "emptyDir": {}}],
                                     mounts=[{"name": "v", "mountPath": "/v",
                                              "subPath": f"../../../../../../../../tmp/{token}"}])],
                              "containers[0].volumeMounts[0].subPath"),
        "subpath-absolute": ([tfjob("a", volumes=[{"name": "v", "emptyDir": {}}],
                                    mounts=[{"name": "v", "mountPath": "/v", "subPath": f"/tmp/{token}"}])],
                             "containers[0].volumeMounts[0].subPath"),
        "subpath-nul": ([tfjob("a", volumes=[{"name": "v", "emptyDir": {}}],
                               mounts=[{"name": "v", "mountPath": "/v", "subPath": f"{token}\0x"}])],
                        "containers[0].volumeMounts[0].subPath"),
        "subpathexpr-backsteps": ([tfjob("a", volumes=[{"name": "v", "emptyDir": {}}],
                                         mounts=[{"name": "v", "mountPath": "/v",
                                                  "subPathExpr": f"$(POD)/../../../../../../tmp/{token}"}],
                                         env=[{"name": "POD", "value": "p"}])],
                                  "containers[0].volumeMounts[0].subPathExpr"),
        "claim-name": ([tfjob("a", volumes=[{"name": "v", "persistentVolumeClaim": {
                            "claimName": f"../../../../../../tmp/{token}"}}], mounts=m)],
                       "volumes[0].persistentVolumeClaim.claimName"),
        "host-path": ([tfjob("a", volumes=[{"name": "v", "hostPath": {"path": f"/tmp/{token}"}}], mounts=m)],
                      "volumes[0].hostPath.path"),
    }


@pytest.mark.parametrize("case", sorted(_attacks("t")))
def test_training_specs_that_would_write_outside_are_refused_before_anything_runs(box, case):
    docs, field = _attacks(box.token)[case]
    line = box.refused(box.write(f"{case}.yaml", docs), f"TFJob.spec.tfReplicaSpecs.Worker.template.spec.{field}")
    assert line.startswith("error: TFJob.spec.")
    # refused before anything was stored: no job, no ConfigMap, no Pod
    for kind in ("tfjobs", "configmaps", "pods"):
        out = lf("get", kind, "-W", box.ws)
        assert "No resources found" in out.stdout + out.stderr, (kind, out.stdout)


def test_a_host_path_volume_is_refused_by_default_and_names_the_fix(box):
    docs, field = _attacks(box.token)["host-path"]
    line = box.refused(box.write("hp.yaml", docs), field)
    assert "hostPaths" in line and "localflow.yaml" in line


def test_an_allowed_host_path_is_mounted_and_only_under_the_allowed_directory(box, tmp_path):
    allowed = tmp_path / "shared"
    (allowed / "link-out").parent.mkdir()
    (allowed / "link-out").symlink_to(Path("/tmp"))
    cfg = tmp_path / "localflow.yaml"
    cfg.write_text(yaml.safe_dump({"hostPaths": {"allow": [str(allowed)]}}))
    write = ["sh", "-c", 'echo from-pod > "$0/out.txt"']
    ok = box.write("ok.yaml", [tfjob("hp-ok", volumes=[{"name": "v", "hostPath": {"path": str(allowed / "sub")}}],
                                     mounts=[{"name": "v", "mountPath": "/data"}], command=write, args=["/data"])])
    p = lf("run", ok, "-W", box.ws, "--config", cfg)
    assert p.returncode == 0, p.stderr
    assert (allowed / "sub" / "out.txt").read_text() == "from-pod\n"
    # outside the allowed directory, directly or through a link inside it
    for i, path in enumerate([f"/tmp/{box.token}", str(allowed / "link-out" / box.token), str(allowed / ".." / box.token)]):
        bad = box.write(f"bad{i}.yaml", [tfjob(f"hp-bad{i}", volumes=[{"name": "v", "hostPath": {"path": path}}],
                                               mounts=[{"name": "v", "mountPath": "/data"}])])
        box.refused(bad, "volumes[0].hostPath.path", "--config", cfg)
    assert not (tmp_path / box.token).exists()


def test_a_link_planted_in_a_claim_cannot_carry_a_sub_path_out(box, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    claim = box.ws / "pvc" / "data"
    claim.mkdir(parents=True)
    (claim / "escape").symlink_to(outside)
    spec = box.write("link.yaml", [tfjob("link", volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "data"}}],
                                         mounts=[{"name": "v", "mountPath": "/data", "subPath": "escape"}],
                                         command=["sh", "-c", 'echo x > "$0/f"'], args=["/data"])])
    p = lf("run", spec, "-W", box.ws)
    assert p.returncode == 1, p.stderr
    assert "subPath" in p.stderr and "symbolic link" in p.stderr, p.stderr
    assert os.listdir(outside) == []


def test_a_config_map_key_that_is_a_path_writes_nothing_outside(box):
    docs = [config_map("cm", {f"../../../../../../../../tmp/{box.token}": "x"}),
            tfjob("cmkey", volumes=[{"name": "v", "configMap": {"name": "cm"}}], mounts=[{"name": "v", "mountPath": "/v"}])]
    p = lf("run", box.write("cmkey.yaml", docs), "-W", box.ws)
    assert p.returncode in (1, 2), p.stderr
    assert "ConfigMap" in p.stderr and "'..'" in p.stderr, p.stderr
    box.assert_nothing_outside()


# ------------------------------------------------------------------ pipelines

@dsl.container_component
def make_artifact(out: dsl.Output[dsl.Artifact], note: dsl.OutputPath(str)):
    return dsl.ContainerSpec(image="alpine:3.19",
                             command=["sh", "-c", 'mkdir -p "$(dirname "$0")" "$(dirname "$1")"; echo made > "$0"; '
                                                  'printf ok > "$1"'],
                             args=[out.path, note])


@dsl.pipeline(name="paths-pipe")
def paths_pipe():
    make_artifact().set_caching_options(False).set_display_name("Schritt ü → 1")


def _ir(func) -> list[dict]:
    return compile_pipeline_func(func)


def _dump(box: Box, name: str, docs: list[dict]) -> Path:
    path = box.specs / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True))
    return path


def _rename_task(ir: dict, old: str, new: str) -> None:
    tasks = ir["root"]["dag"]["tasks"]
    tasks[new] = tasks.pop(old)


def _rename_artifact(docs: list[dict], old: str, new: str) -> list[dict]:
    text = json.dumps(docs, ensure_ascii=False).replace(f"['{old}']", f"['{new}']")
    out = json.loads(text)
    arts = out[0]["components"]["comp-make-artifact"]["outputDefinitions"]["artifacts"]
    arts[new] = arts.pop(old)
    return out


def test_a_task_named_to_leave_the_workspace_is_refused(box):
    docs = _ir(paths_pipe)
    evil = f"../../../../../../../../tmp/{box.token}"
    _rename_task(docs[0], "make-artifact", evil)
    box.refused(_dump(box, "evil-task.yaml", docs), f"root.dag.tasks['{evil}']")


def test_an_output_artifact_named_dotdot_is_refused(box):
    docs = _rename_artifact(_ir(paths_pipe), "out", "../x")
    box.refused(_dump(box, "evil-artifact.yaml", docs),
                "components['comp-make-artifact'].outputDefinitions.artifacts['../x']")


def test_a_constant_claim_name_that_is_a_path_is_refused(box):
    @dsl.pipeline(name="pvc-pipe")
    def pvc_pipe():
        t = make_artifact().set_caching_options(False)
        kubernetes.mount_pvc(t, pvc_name=f"../../../../../../tmp/{box.token}", mount_path="/data")

    box.refused(_dump(box, "evil-pvc.yaml", _ir(pvc_pipe)), "pvcMount[0]")


def test_a_created_claim_whose_name_is_a_path_fails_the_run_and_writes_nothing(box):
    @dsl.pipeline(name="create-pvc-pipe")
    def create_pvc_pipe(name: str = "ok"):
        kubernetes.CreatePVC(pvc_name=name, access_modes=["ReadWriteOnce"], size="1Mi",
                             storage_class_name="standard")

    from localflow import api

    run = api.run(_dump(box, "create-pvc.yaml", _ir(create_pvc_pipe)),
                  {"name": f"../../../../../../tmp/{box.token}"}, workspace=box.ws)
    assert run.state == "FAILED"
    assert "pvc_name" in run.error, run.error
    box.assert_nothing_outside()


def test_odd_but_legal_names_run_and_their_outputs_land_in_the_run_dir(box):
    docs = _rename_artifact(_ir(paths_pipe), "out", "model file.ü%v2")
    _rename_task(docs[0], "make-artifact", "make.v2")
    from localflow import api

    run = api.run(_dump(box, "odd.yaml", docs), workspace=box.ws)
    assert run.state == "SUCCEEDED", run.error
    task = run.task("make.v2")
    assert task.display_name == "Schritt ü → 1"
    art = task.outputs["artifacts"]["model file.ü%v2"][0]
    uri = Path(art["uri"])
    assert uri.read_text() == "made\n"
    assert within(uri, box.ws / "artifacts") and uri.name == encode_component("model file.ü%v2")
    assert uri.parent.name == "attempt-1" and uri.parent.parent.name == "make.v2"
    assert task.outputs["parameters"]["note"] == "ok"
    box.assert_nothing_outside()


def test_a_trainjob_runtime_patch_with_a_host_path_is_refused(box):
    tj = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "metadata": {"name": "tj"},
          "spec": {"runtimeRef": {"apiGroup": "trainer.kubeflow.org", "kind": "ClusterTrainingRuntime",
                                  "name": "torch-distributed"},
                   "trainer": {"numNodes": 1, "image": "python:3.11", "command": ["sh", "-c", "echo ok"]},
                   "runtimePatches": [{"manager": "test", "trainingRuntimeSpec": {"template": {"spec": {
                       "replicatedJobs": [{"name": "node", "template": {"spec": {"template": {"spec": {
                           "volumes": [{"name": "h", "hostPath": {"path": f"/tmp/{box.token}"}}],
                           "containers": [{"name": "node", "volumeMounts": [{"name": "h", "mountPath": "/h"}]}]}}}}}]}}}}]}}
    box.refused(box.write("tj.yaml", [tj]), "TrainJob.spec.runtimePatches[0].trainingRuntimeSpec.template.spec"
                                            ".replicatedJobs[0].template.spec.template.spec.volumes[0].hostPath.path")


def test_every_bind_source_must_be_in_the_workspace_or_an_allowed_directory(tmp_path):
    from localflow.executors.base import Mount
    from localflow.volumes import check_mount_sources
    from localflow.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    allowed = tmp_path / "shared"
    allowed.mkdir()
    check_mount_sources([Mount(str(ws.root / "pvc" / "x"), "/x"), Mount(str(allowed / "a"), "/a")], ws,
                        (str(allowed),), "Pod(p).spec.containers[0].volumeMounts")
    with pytest.raises(SpecError, match=r"^Pod\(p\)\.spec\.containers\[0\]\.volumeMounts: .*outside the workspace"):
        check_mount_sources([Mount("/etc", "/etc")], ws, (str(allowed),), "Pod(p).spec.containers[0].volumeMounts")


def test_mounts_of_allowed_host_paths_are_marked_for_the_executors(tmp_path):
    from localflow.executors.base import Mount
    from localflow.scheduler import expand_vars
    from localflow.volumes import container_mounts, resolve_volumes
    from localflow.workspace import Workspace

    if "kind" not in Mount.__dataclass_fields__:
        pytest.skip("executors.base.Mount has no kind yet")
    ws = Workspace(tmp_path / "ws").ensure()
    allowed = tmp_path / "shared"
    allowed.mkdir()
    spec = {"volumes": [{"name": "h", "hostPath": {"path": str(allowed)}}, {"name": "e", "emptyDir": {}}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "h", "mountPath": "/h"},
                                                          {"name": "e", "mountPath": "/e", "subPath": "s"}]}]}
    vols = resolve_volumes(spec, str(ws.pod_dir("u1")), "default", store=None, workspace=ws,
                           host_paths=(str(allowed),))
    mounts = container_mounts(spec["containers"][0], vols, {}, "Pod(p).spec.containers[0]", expand_vars)
    assert [(m.kind, m.host_path) for m in mounts] == [
        ("hostPath", str(allowed)), ("volume", str(ws.pod_dir("u1") / "volumes" / "e" / "s"))]


@pytest.mark.parametrize("vname", ["/tmp/{token}", "../../../../../../../../tmp/{token}", ".."])
def test_a_volume_named_like_a_path_writes_nothing_outside(box, vname):
    vname = vname.format(token=box.token)
    cm = config_map("cm", {"k": "v"})
    job = tfjob("vn", volumes=[{"name": vname, "emptyDir": {}}, {"name": "c" + vname, "configMap": {"name": "cm"}}],
                mounts=[{"name": vname, "mountPath": "/e"}, {"name": "c" + vname, "mountPath": "/c"}],
                command=["sh", "-c", 'echo x > "$0/f"'], args=["/e"])
    p = lf("run", box.write("vn.yaml", [cm, job]), "-W", box.ws)
    assert p.returncode in (0, 2), p.stderr  # refused as no DNS label, or run with the name encoded
    if p.returncode == 0:
        pods = list((box.ws / "pods").iterdir())
        assert [f.read_text() for f in pods[0].glob("volumes/*/f")] == ["x\n"]
    box.assert_nothing_outside()
