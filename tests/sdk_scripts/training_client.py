"""Run inside the kubeflow-training 1.9.4 venv (tests/sdk_envs.py) against a ``localflow serve``
named by ``$KUBECONFIG``: TrainingClient create_job (a PyTorchJob from YAML, and one generated from
``train_func``), get_job, list_jobs, wait_for_job_conditions, get_job_logs (plain and follow),
update_job (merge patch), delete_job. Prints one JSON line of what it saw; any SDK error exits non-zero.

Usage: python training_client.py JOB_YAML
"""
import json
import sys

import yaml
from kubeflow.training import TrainingClient, constants, models
from kubeflow.training.utils import utils


def train(parameters):
    """The training function the SDK ships as a bash heredoc."""
    import torch

    w = torch.tensor([parameters["start"]], requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(50):
        opt.zero_grad()
        loss = ((w - 3.0) ** 2).sum()
        loss.backward()
        opt.step()
    print(f"final w={w.item():.3f}")


def train_ddp():
    """Run by torchrun on each replica: a gloo all_reduce of the ranks across the job."""
    import os

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    t = torch.tensor([float(dist.get_rank())])
    dist.all_reduce(t)
    print(f"rank {dist.get_rank()} of {dist.get_world_size()} node {os.environ['PET_NODE_RANK']}: sum {t.item():.0f}")
    dist.destroy_process_group()


def main() -> None:
    out = {}
    client = TrainingClient(job_kind="PyTorchJob")  # reads $KUBECONFIG
    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f)
    # the SDK takes model objects; the client deserializes API JSON into them the same way
    job = client.api_client.deserialize(utils.FakeResponse(doc), models.KubeflowOrgV1PyTorchJob)
    client.create_job(job=job)
    yaml_name = doc["metadata"]["name"]
    got = client.get_job(yaml_name)
    out["yaml_job"] = {"name": got.metadata.name, "kind": got.kind, "uid": bool(got.metadata.uid)}

    client.create_job(name="sdk-train-func", train_func=train, parameters={"start": 0.0}, num_workers=1)
    # num_workers > 1: the SDK's entrypoint is torchrun (Master 1 + Worker 1), one process each
    client.create_job(name="sdk-torchrun", train_func=train_ddp, num_workers=2, num_procs_per_worker=1)
    out["listed"] = sorted(j.metadata.name for j in client.list_jobs())

    done = client.wait_for_job_conditions(yaml_name, timeout=240, polling_interval=1)
    out["yaml_conditions"] = [c.type for c in done.status.conditions if c.status == "True"]
    out["yaml_logs"], _ = client.get_job_logs(yaml_name)
    out["yaml_logs_follow"], _ = client.get_job_logs(yaml_name, follow=True)

    done = client.wait_for_job_conditions("sdk-train-func", timeout=240, polling_interval=1)
    out["func_conditions"] = [c.type for c in done.status.conditions if c.status == "True"]
    out["func_succeeded"] = client.is_job_succeeded("sdk-train-func")
    out["func_logs"], _ = client.get_job_logs("sdk-train-func", follow=True)
    out["func_image"] = done.spec.pytorch_replica_specs["Master"].template.spec.containers[0].image

    done = client.wait_for_job_conditions("sdk-torchrun", timeout=240, polling_interval=1)
    out["torchrun_conditions"] = [c.type for c in done.status.conditions if c.status == "True"]
    out["torchrun_command"] = done.spec.pytorch_replica_specs["Worker"].template.spec.containers[0].args[0].split()[-2:]
    out["torchrun_logs"], _ = client.get_job_logs("sdk-torchrun", is_master=False)

    patch = {"metadata": {"labels": {"team": "sdk"}}}
    client.update_job(patch, yaml_name)
    out["labels_after_update"] = client.get_job(yaml_name).metadata.labels

    client.delete_job(yaml_name)
    client.delete_job("sdk-train-func")
    client.delete_job("sdk-torchrun")
    out["listed_after_delete"] = sorted(j.metadata.name for j in client.list_jobs())
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
