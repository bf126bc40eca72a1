"""Every upstream training example in ../shared/corpus runs through localflow or is refused with a precise reason.

The examples (kubeflow/training-operator ``examples/`` and kubeflow/trainer ``examples/``) are read
where they are, never copied. Their images are mapped by a ``localflow.yaml`` written here to the
scripts in ``scenarios/training`` (``command:``/``args:`` stand in for an image's ENTRYPOINT/CMD,
``paths:``/``workdir:`` for the files it ships, a ``PYTHONPATH`` stub for Paddle's launcher); the
jobs run as written, replicas and all, on a node declared as this 2-core machine so the gang
refusals do not depend on the host. :data:`EXPECTED` lists every file with its outcome, and
``test_every_corpus_file_has_an_expected_outcome`` fails when a file is added without one.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

import localflow
from localflow.api import open_runtime, read_logs
from localflow.errors import SpecError, Unschedulable
from localflow.metadata import MetadataStore
from localflow.scheduler import Capacity
from localflow.training.gpus import detect_gpus

ROOT = Path(__file__).resolve().parents[1]
SCEN = ROOT / "scenarios" / "training"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
DIRS = ("training-v1", "trainer-v2")

if not all((CORPUS / d).is_dir() for d in DIRS):
    pytest.skip(f"the upstream corpus is not at {CORPUS}", allow_module_level=True)

NODE = Capacity(cpu=2.0, memory=16 * 2**30)  # this machine: 2 cores


# ---------------------------------------------------------------- what each file should do


@dataclass
class Runs:
    """Runs to SUCCEEDED; ``check(run, logs)`` asserts what the scripts saw (``logs(pod) -> lines``)."""

    check: Callable
    needs_torch: bool = False  # its command is torchrun (or imports torch)


@dataclass
class Refused:
    """Refused before any replica starts: ``error`` raised, ``path`` its field path (prefix), ``says`` in the message."""

    error: type
    path: str
    says: str
    needs_no_gpu: bool = False


def reports(lines: list[str]) -> list[dict]:
    """The JSON objects the scripts printed, in order. Processes that share one stdout (torchrun's
    workers) interleave their writes, and print() writes a line's text and its newline separately,
    so two objects can share a line: decode every object wherever it starts."""
    out = []
    decoder = json.JSONDecoder()
    for line in lines:
        i = 0
        while line.startswith("{", i):  # a report starts the line or follows another one directly
            try:
                obj, i = decoder.raw_decode(line, i)
            except ValueError:
                break
            out.append(obj)
    return out


def jax_allreduce(n: int):
    def check(run, logs):
        outs = [reports(logs(p))[-1] for p in sorted(run.tasks)]
        assert [o["process_id"] for o in outs] == list(range(n))
        assert all(o["num_processes"] == n and o["ok"] for o in outs)
    return check


def master_rendezvous(world: int, workers_listed: bool = False):
    """PyTorchJob/XGBoostJob env: RANK 0..world-1 met at MASTER_ADDR:MASTER_PORT (127.0.0.1)."""
    def check(run, logs):
        outs = [reports(logs(p))[-1] for p in sorted(run.tasks)]
        assert sorted(o["rank"] for o in outs) == list(range(world))
        assert {o["master"] for o in outs} == {outs[0]["master"]} and outs[0]["master"].startswith("127.0.0.1:")
        assert all(o["world_size"] == world and o["peers"] == list(range(world)) for o in outs)
        if workers_listed:  # XGBoost: WORKER_ADDRS names the other replicas
            assert all(len(o["worker_addrs"]) == world - 1 for o in outs)
    return check


def per_node(nproc: str) -> int:
    """Processes torchrun starts per node for ``--nproc-per-node`` (``auto`` on CPU: one per core)."""
    return int(nproc) if nproc.isdigit() else os.cpu_count()


def torchrun_ranks(nodes: int, nnodes: str, nproc: str, elastic: bool = False):
    """torchrun in every replica turned PET_* into one world of ``nodes`` x nproc-per-node ranks."""
    def check(run, logs):
        world = nodes * per_node(nproc)
        outs = [o for p in sorted(run.tasks) for o in reports(logs(p))]
        assert sorted(o["rank"] for o in outs) == list(range(world))
        assert all(o["world_size"] == world and o["nnodes"] == nnodes and o["nproc_per_node"] == nproc for o in outs)
        if elastic:  # c10d rendezvous at worker 0's address
            assert {o["rdzv_endpoint"] for o in outs} == {outs[0]["rdzv_endpoint"]}
            assert outs[0]["rdzv_endpoint"].startswith("127.0.0.1:")
    return check


def paddle_collective(run, logs):
    outs = [reports(logs(p))[-1] for p in sorted(run.tasks)]
    assert [o["root"] for o in outs] == [True, False]  # worker 0 holds POD_IP_DUMMY / PADDLE_MASTER
    assert all(o["job_id"] == "paddle-simple-cpu" and o["world_size"] == 2 for o in outs)
    assert all(o["peers"] == sorted(run.tasks) for o in outs)


def tf_every_task_reaches_every_other(tasks: list[str]):
    def check(run, logs):
        outs = {o["task"]: o for p in run.tasks for o in reports(logs(p))}
        assert sorted(outs) == sorted(tasks)
        for t, o in outs.items():
            assert o["reached"] == sorted(x for x in tasks if x != t)
    return check


def tf_single_worker_writes_to_its_pvc(run, logs):
    assert logs("mnist-worker-0")[0] == "TF_CONFIG is not set (a single-replica TFJob gets none)"
    with MetadataStore(run.workspace.db_path) as md:
        arts = md.list_artifacts(run_id=run.id)
    assert [(a["name"], a["metadata"]["claim"], a["metadata"]["mountPath"]) for a in arts] == \
        [("logs/tf_config_check.json", "tfevent-volume", "/train/logs/tf_config_check.json")]


def torch_multi_node(run, logs):
    """3 nodes; no resourcesPerNode, so PET_NPROC_PER_NODE is auto and torchrun starts one process per core."""
    env = {e["name"]: e.get("value") for p in run.pods for e in p["spec"]["containers"][0].get("env") or []}
    assert (env["PET_NNODES"], env["PET_NPROC_PER_NODE"]) == ("3", "auto")
    world = 3 * per_node("auto")
    # torchrun's worker processes share one stdout: their lines may interleave in the log
    text = "\n".join(line for p in run.tasks for line in logs(p))
    ranks = sorted(int(r) for r in re.findall(r"(?<![A-Z_])RANK: (\d+)", text))
    sizes = set(re.findall(r"WORLD_SIZE: (\d+)", text))
    assert ranks == list(range(world)) and sizes == {str(world)}


GPU = "but this machine has no GPU"
GANG = "0/1 nodes are available: Insufficient cpu"
V1 = "training-v1/"
V2 = "trainer-v2/"

EXPECTED: dict[str, Runs | Refused] = {
    V1 + "jax__cpu-demo__demo.yaml": Runs(jax_allreduce(2)),
    V1 + "jax__jax-dist-spmd-mnist__jaxjob_dist_spmd_mnist_gloo.yaml": Runs(jax_allreduce(2)),
    V1 + "mpi__tensorflow-mnist-elastic.yaml": Refused(
        Unschedulable, "Pod(tensorflow-mnist-elastic-launcher)", "3 Pods requests cpu 5, memory 10Gi but this machine has cpu 2"),
    V1 + "mpi__tensorflow-mnist.yaml": Refused(
        Unschedulable, "Pod(tensorflow-mnist-launcher)", "3 Pods requests cpu 5, memory 10Gi but this machine has cpu 2"),
    V1 + "paddlepaddle__simple-cpu.yaml": Runs(paddle_collective),
    V1 + "paddlepaddle__simple-gpu.yaml": Refused(
        SpecError, "PaddleJob.spec.paddleReplicaSpecs.Worker.template.spec.containers[0].resources.limits['nvidia.com/gpu']",
        "requests 2 GPU(s) " + GPU, needs_no_gpu=True),
    V1 + "pytorch__cpu-demo__demo.yaml": Runs(torchrun_ranks(2, nnodes="2", nproc="2"), needs_torch=True),
    V1 + "pytorch__deepspeed-demo__pytorch_deepspeed_demo.yaml": Refused(
        SpecError, "PyTorchJob.spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limits",
        "requests 1 GPU(s) " + GPU, needs_no_gpu=True),
    # nprocPerNode auto on CPU: torchrun starts one process per core on each of the 2 nodes
    V1 + "pytorch__elastic__echo__echo.yaml": Runs(torchrun_ranks(2, nnodes="1:2", nproc="auto", elastic=True), needs_torch=True),
    V1 + "pytorch__elastic__etcd.yaml": Refused(
        SpecError, "pytorch__elastic__etcd.yaml: Pod", "deploys an etcd server (a Pod and Services)"),
    V1 + "pytorch__elastic__imagenet__imagenet.yaml": Refused(
        Unschedulable, "Pod(elastic-example-imagenet-worker-0)", "2 Pods requests cpu 8, memory 0 but this machine has cpu 2"),
    V1 + "pytorch__mnist__v1__pytorch_job_mnist_gloo.yaml": Refused(
        SpecError, "PyTorchJob.spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limits",
        "requests 1 GPU(s) " + GPU, needs_no_gpu=True),
    V1 + "pytorch__mnist__v1__pytorch_job_mnist_mpi.yaml": Refused(
        SpecError, "PyTorchJob.spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limits",
        "requests 1 GPU(s) " + GPU, needs_no_gpu=True),
    V1 + "pytorch__mnist__v1__pytorch_job_mnist_nccl.yaml": Refused(
        SpecError, "PyTorchJob.spec.pytorchReplicaSpecs.Master.template.spec.containers[0].resources.limits",
        "requests 1 GPU(s) " + GPU, needs_no_gpu=True),
    V1 + "pytorch__simple.yaml": Runs(master_rendezvous(2)),
    V1 + "pytorch__smoke-dist__pytorch_job_sendrecv.yaml": Runs(master_rendezvous(4)),
    V1 + "tensorflow__dist-mnist__tf_job_mnist.yaml": Runs(
        tf_every_task_reaches_every_other(["chief:0", "ps:0", "worker:0", "worker:1"])),
    V1 + "tensorflow__distribution_strategy__multi_worker_tfjob.yaml": Refused(
        SpecError, "TFJob.spec.tfReplicaSpecs.Worker.template.spec.containers[0].resources.limits",
        "requests 1 GPU(s) " + GPU, needs_no_gpu=True),
    V1 + "tensorflow__distribution_strategy__pvc.yaml": Refused(
        SpecError, "tensorflow__distribution_strategy__pvc.yaml: PersistentVolumeClaim",
        "needs no apply: localflow backs claim strategy-volume with the workspace directory pvc/<claim>"),
    V1 + "tensorflow__mnist_with_summaries__tf_job_mnist.yaml": Runs(tf_single_worker_writes_to_its_pvc),
    V1 + "tensorflow__mnist_with_summaries__tfevent-volume__tfevent-pv.yaml": Refused(
        SpecError, "tensorflow__mnist_with_summaries__tfevent-volume__tfevent-pv.yaml: PersistentVolume",
        "is cluster storage: localflow binds every claim to a workspace directory"),
    V1 + "tensorflow__mnist_with_summaries__tfevent-volume__tfevent-pvc.yaml": Refused(
        SpecError, "tensorflow__mnist_with_summaries__tfevent-volume__tfevent-pvc.yaml: PersistentVolumeClaim",
        "needs no apply: localflow backs claim tfevent-volume"),
    V1 + "tensorflow__simple.yaml": Runs(tf_every_task_reaches_every_other(["worker:0", "worker:1"])),
    V1 + "xgboost__lightgbm-dist__xgboostjob_v1_lightgbm_dist_training.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__smoke-dist__xgboostjob_v1_rabit_test.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__smoke-dist__xgboostjob_v1alpha1_rabit_test.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__xgboost-dist__xgboostjob_v1_iris_predict.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__xgboost-dist__xgboostjob_v1_iris_predict_local.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__xgboost-dist__xgboostjob_v1_iris_train.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__xgboost-dist__xgboostjob_v1_iris_train_local.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V1 + "xgboost__xgboostjob.yaml": Runs(master_rendezvous(3, workers_listed=True)),
    V2 + "01-multi-node.yaml": Runs(torch_multi_node, needs_torch=True),
    V2 + "02-runtime-patches.yaml": Refused(
        Unschedulable, "Pod(runtime-patches-example-node-0-0)",
        "replicated job 'node' of 2 Pods requests cpu 4, memory 8Gi but this machine has cpu 2"),
    V2 + "03-kueue-integration.yaml": Refused(
        SpecError, "TrainJob.spec.suspend", "kueue.x-k8s.io/queue-name label (training-queue) leaves admission to Kueue"),
    V2 + "04-volcano-integration.yaml": Refused(
        Unschedulable, "Pod(volcano-example-node-0-0)",
        "replicated job 'node' of 4 Pods requests cpu 4, memory 8Gi but this machine has cpu 2"),
    # the dataset initializer would run first; the node gang (2 x cpu 2) could never follow it
    V2 + "05-multi-step.yaml": Refused(
        Unschedulable, "Pod(multi-step-example-node-0-0)",
        "replicated job 'node' of 2 Pods requests cpu 4, memory 8Gi but this machine has cpu 2"),
}


# ---------------------------------------------------------------- the image map

STANDINS = {  # file names the examples' commands expect -> the scenario script behind them
    "train.py": "jax_coordinator.py", "demo.py": "rendezvous_check.py", "echo.py": "rendezvous_check.py",
    "mnist.py": "rendezvous_check.py", "mnist_with_summaries.py": "tf_config_check.py",
}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("image-map")
    app = d / "app"
    app.mkdir()
    for name, script in STANDINS.items():
        (app / name).symlink_to(SCEN / script)
    scen = {"/opt/scenario": str(SCEN)}
    rendezvous = {"command": ["python", "/opt/scenario/rendezvous_check.py"], "paths": scen}
    v1 = "ghcr.io/kubeflow/training-v1/"
    images = {
        v1 + "jaxjob-simple:latest": {"workdir": "/app", "paths": {"/app": str(app)}},
        v1 + "jaxjob-dist-spmd-mnist:latest": {"command": ["python", "/opt/scenario/jax_coordinator.py"], "paths": scen},
        "registry.baidubce.com/paddlepaddle/paddle:2.4.0rc0-cpu": {"env": {"PYTHONPATH": str(SCEN / "stubs")}},
        "pytorch-cpu:py3.8": {"workdir": "/workspace", "paths": {"/workspace": str(app)}},
        v1 + "pytorch-elastic-example-echo:latest": {"workdir": "/workspace", "paths": {"/workspace": str(app)}},
        "docker.io/kubeflowkatib/pytorch-mnist:v1beta1-45c5727": {"paths": {"/opt/pytorch-mnist": str(app)}},
        v1 + "pytorch-dist-sendrecv-test:latest": rendezvous,
        v1 + "tf-dist-mnist-test:latest": {"command": ["python", "/opt/scenario/tf_config_check.py"], "paths": scen},
        v1 + "tf-mnist-with-summaries:latest": {"paths": {"/var/tf_mnist": str(app)}},
        v1 + "lightgbm-dist-py-test:latest": rendezvous,
        v1 + "xgboost-dist-rabit-test:latest": rendezvous,
        v1 + "xgboost-dist-iris:latest": rendezvous,
        "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime": {},  # the default torch-distributed image: host torch
    }
    path = d / "localflow.yaml"
    path.write_text(yaml.safe_dump({"images": images}))
    return path


def corpus_files() -> list[str]:
    return sorted(f"{d}/{p.name}" for d in DIRS for p in (CORPUS / d).glob("*.y*ml"))


def test_every_corpus_file_has_an_expected_outcome():
    assert corpus_files() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_upstream_example(name, config, tmp_path):
    expected = EXPECTED[name]
    if isinstance(expected, Runs) and expected.needs_torch:
        pytest.importorskip("torch", reason="the example's command is torchrun")
    with open_runtime(tmp_path / "ws", config=config, capacity=NODE) as rt:
        if isinstance(expected, Refused):
            if expected.needs_no_gpu and detect_gpus() > 0:
                pytest.skip("this machine has a GPU: the example is not refused here")
            with pytest.raises(expected.error) as err:
                localflow.run(str(CORPUS / name), runtime=rt, timeout=60)
            assert type(err.value) is expected.error
            assert err.value.path.startswith(expected.path) or err.value.path.endswith(expected.path), err.value.path
            assert expected.says in str(err.value)
            assert rt.store.list("Pod", None) == []  # nothing started
            if expected.error is Unschedulable:  # the job exists, Failed, and its run is recorded so
                (run,) = rt.metadata.list_runs()
                assert run["state"] == "FAILED" and "cannot be scheduled" in run["error"] and GANG in run["error"]
            return
        run = localflow.run(str(CORPUS / name), runtime=rt, timeout=60)
        assert run.state == "SUCCEEDED", (run.error, {k: (t.state, t.error) for k, t in run.tasks.items()})
        ns = run.object["metadata"]["namespace"]

        def logs(pod: str) -> list[str]:
            return read_logs(rt.workspace, pod, None, ns).splitlines()

        expected.check(run, logs)
        assert rt.metadata.get_run(run.id)["state"] == "SUCCEEDED"
        # A replica still running REPLICA_GRACE_S after the job succeeded is stopped and recorded CANCELED
        # (a loaded machine can get there); the replicas that decided success are COMPLETE.
        states = {e["state"] for e in rt.metadata.list_executions(run_id=run.id)}
        assert "COMPLETE" in states and states <= {"COMPLETE", "CANCELED"}, states
