"""Distributed data-parallel training with torch.distributed on the gloo backend (CPU).

Runs as every replica of ``pytorchjob.yaml`` (Master + Worker, env from the PyTorchJob operator:
MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK) or under ``torchrun`` in ``trainjob.yaml`` (which
sets the same variables from PET_*). Each rank trains a logistic-regression model on its shard of
scikit-learn's bundled breast-cancer data, gradients are averaged by DistributedDataParallel, and
rank 0 writes ``model.pt`` and ``metrics.json`` to ``--model-dir`` (a PVC path).

Exits non-zero if the replicas' parameters differ after training (DDP did not synchronise).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
from sklearn.datasets import load_breast_cancer
from sklearn.preprocessing import StandardScaler


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--model-dir", default=os.environ.get("MODEL_DIR", "/tmp/pytorch-ddp"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    t0 = time.time()
    dist.init_process_group(backend="gloo", timeout=__import__("datetime").timedelta(seconds=120))
    rank, world = dist.get_rank(), dist.get_world_size()
    print(f"rank {rank}/{world} master {os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}", flush=True)

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    x = torch.tensor(x, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    shard_x, shard_y = x[rank::world], y[rank::world]

    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(x.shape[1], 1))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in range(args.epochs):
        opt.zero_grad()
        loss = loss_fn(model(shard_x), shard_y)
        loss.backward()
        opt.step()
        total = loss.detach().clone()
        dist.all_reduce(total)
        if rank == 0 and (epoch % 5 == 0 or epoch == args.epochs - 1):
            print(f"epoch {epoch} loss {total.item() / world:.4f}", flush=True)

    # every replica must hold the same parameters: DDP averaged the gradients
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    in_sync = all(torch.allclose(gathered[0], g) for g in gathered)
    with torch.no_grad():
        acc = ((model(x) > 0).float() == y).float().mean().item()
    print(f"rank {rank} accuracy {acc:.4f} in_sync {in_sync}", flush=True)
    if rank == 0:
        os.makedirs(args.model_dir, exist_ok=True)
        torch.save(model.module.state_dict(), os.path.join(args.model_dir, "model.pt"))
        with open(os.path.join(args.model_dir, "metrics.json"), "w") as f:
            json.dump({"accuracy": acc, "world_size": world, "epochs": args.epochs, "in_sync": in_sync,
                       "seconds": round(time.time() - t0, 3)}, f)
        print(f"saved model to {args.model_dir}", flush=True)
    dist.barrier()
    dist.destroy_process_group()
    return 0 if in_sync else 1


if __name__ == "__main__":
    raise SystemExit(main())
