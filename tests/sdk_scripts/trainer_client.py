"""Run inside the kubeflow 0.5.0 venv (tests/sdk_envs.py) against a ``localflow serve`` named by
``$KUBECONFIG``: TrainerClient's Kubernetes backend lists the runtimes, trains a function on the
``torch-distributed`` ClusterTrainingRuntime (a TrainJob the server runs: torchrun on each node),
waits for Complete, reads the node's logs, lists and deletes. Prints one JSON line.

Usage: python trainer_client.py NUM_NODES
"""
import json
import sys

from kubeflow.trainer import CustomTrainer, TrainerClient


def train_fn(target: float):
    """Minimise (w - target)^2 with torch; torchrun sets RANK/WORLD_SIZE."""
    import os

    import torch

    w = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.1)
    for _ in range(60):
        opt.zero_grad()
        loss = ((w - target) ** 2).sum()
        loss.backward()
        opt.step()
    print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']}: w={w.item():.2f}")


def main() -> None:
    nodes = int(sys.argv[1])
    out = {}
    client = TrainerClient()  # Kubernetes backend, $KUBECONFIG
    runtimes = client.list_runtimes()
    out["runtimes"] = sorted(r.name for r in runtimes)
    torch_rt = client.get_runtime("torch-distributed")
    out["runtime_framework"] = torch_rt.trainer.framework
    name = client.train(runtime=torch_rt, trainer=CustomTrainer(func=train_fn, func_args={"target": 2.0}, num_nodes=nodes,
                                                               resources_per_node={"cpu": 1}))  # one torchrun process per node
    job = client.wait_for_job_status(name, status={"Complete"}, timeout=300, polling_interval=1)
    out["status"] = job.status
    out["num_nodes"] = job.num_nodes
    out["steps"] = sorted((s.name, s.status) for s in job.steps)
    out["logs"] = list(client.get_job_logs(name))
    out["logs_follow"] = list(client.get_job_logs(name, follow=True))
    out["listed"] = [j.name == name for j in client.list_jobs()]
    client.delete_job(name)
    out["listed_after_delete"] = [j.name for j in client.list_jobs()]
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
