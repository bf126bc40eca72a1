"""Check the rendezvous environment a training operator injects, and that every replica reaches rank 0 over TCP.

Stands in for the training script of upstream examples (PyTorchJob, XGBoostJob, PaddleJob; JAXJob
has ``jax_coordinator.py``) when an image map points their images here. Needs nothing but Python.
It reads the variables the way the frameworks do and picks the first form present:

- ``torchrun`` child (``TORCHELASTIC_RUN_ID`` set): torchrun already did the rendezvous across the
  replicas from ``PET_*``; check that ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``GROUP_RANK`` agree
  with ``PET_NNODES``, ``PET_NPROC_PER_NODE`` and ``PET_NODE_RANK`` (no second rendezvous: the
  master port is torchrun's store);
- PyTorchJob / XGBoostJob (``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``): rank 0
  listens on ``MASTER_PORT``, every other rank connects and sends its rank, rank 0 answers with the
  ranks it gathered once all ``WORLD_SIZE - 1`` arrived (torch's TCPStore rendezvous, in miniature);
- PaddleJob (``PADDLE_MASTER=host:port``, ``PADDLE_NNODES``; the node that also has ``POD_IP_DUMMY``
  is the master): the same exchange, keyed by ``HOSTNAME``.

Prints one JSON line (``{"mode", "rank", "world_size", "master", "peers", ...}``) and exits 0, or
exits 1 naming what was wrong (missing or inconsistent variable, rendezvous timeout). Unknown
command-line arguments (``--epochs=1``, ``--backend gloo``, LightGBM options) are accepted and ignored.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time

TIMEOUT_S = float(os.environ.get("RENDEZVOUS_TIMEOUT", "60"))


def fail(message: str) -> int:
    print(f"rendezvous_check: {message}", file=sys.stderr, flush=True)
    return 1


def recv_line(conn: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


def gather(host: str, port: int, world: int, me: str, is_root: bool) -> list[str]:
    """Rank 0 collects ``world - 1`` names over TCP and returns every name; the others get that list back."""
    deadline = time.monotonic() + TIMEOUT_S
    if is_root:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0", port))
        srv.listen(world)
        conns, names = [], [me]
        while len(conns) < world - 1:
            srv.settimeout(max(0.1, deadline - time.monotonic()))
            conn, _ = srv.accept()
            conn.settimeout(10)
            names.append(recv_line(conn))
            conns.append(conn)
        reply = (json.dumps(sorted(names)) + "\n").encode()
        for c in conns:
            c.sendall(reply)
            c.close()
        srv.close()
        return sorted(names)
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as c:
                c.settimeout(max(1.0, deadline - time.monotonic()))
                c.sendall(f"{me}\n".encode())
                return json.loads(recv_line(c))
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank 0 at {host}:{port} did not answer within {TIMEOUT_S:.0f}s") from None
            time.sleep(0.1)


def check_torchrun(env) -> int:
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    local_rank, local_world = int(env["LOCAL_RANK"]), int(env["LOCAL_WORLD_SIZE"])
    nnodes = env.get("PET_NNODES", "")
    nproc = env.get("PET_NPROC_PER_NODE", "")
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        return fail(f"RANK {rank}/{world} or LOCAL_RANK {local_rank}/{local_world} out of range")
    if nproc.isdigit() and int(nproc) != local_world:
        return fail(f"LOCAL_WORLD_SIZE {local_world} != PET_NPROC_PER_NODE {nproc}")
    if nnodes.isdigit() and nproc.isdigit() and world != int(nnodes) * int(nproc):
        return fail(f"WORLD_SIZE {world} != PET_NNODES {nnodes} x PET_NPROC_PER_NODE {nproc}")
    if env.get("PET_NODE_RANK", env["GROUP_RANK"]) != env["GROUP_RANK"]:
        return fail(f"GROUP_RANK {env['GROUP_RANK']} != PET_NODE_RANK {env['PET_NODE_RANK']}")
    print(json.dumps({"mode": "torchrun", "rank": rank, "world_size": world, "local_rank": local_rank,
                      "group_rank": int(env["GROUP_RANK"]), "master": f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}",
                      "nnodes": nnodes, "nproc_per_node": nproc, "rdzv_endpoint": env.get("PET_RDZV_ENDPOINT")}),
          flush=True)
    return 0


def check_master(env) -> int:
    host, port = env["MASTER_ADDR"], int(env["MASTER_PORT"])
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    if not 0 <= rank < world:
        return fail(f"RANK {rank} is not in [0, WORLD_SIZE={world})")
    workers = [a for a in env.get("WORKER_ADDRS", "").split(",") if a]
    if "WORKER_ADDRS" in env and len(workers) != world - 1:
        return fail(f"WORKER_ADDRS names {len(workers)} workers, WORLD_SIZE {world} needs {world - 1}")
    peers = gather(host, port, world, str(rank), rank == 0) if world > 1 else ["0"]
    if sorted(map(int, peers)) != list(range(world)):
        return fail(f"ranks gathered {peers} are not 0..{world - 1}")
    print(json.dumps({"mode": "master", "rank": rank, "world_size": world, "master": f"{host}:{port}",
                      "peers": sorted(map(int, peers)), "worker_addrs": workers or None}), flush=True)
    return 0


def check_paddle(env) -> int:
    host, port = env["PADDLE_MASTER"].rsplit(":", 1)
    world = int(env["PADDLE_NNODES"])
    me = env.get("HOSTNAME") or socket.gethostname()
    is_root = "POD_IP_DUMMY" in env
    peers = gather(host, int(port), world, me, is_root) if world > 1 else [me]
    if len(set(peers)) != world:
        return fail(f"{len(set(peers))} distinct nodes met at {host}:{port}, PADDLE_NNODES is {world}")
    print(json.dumps({"mode": "paddle", "node": me, "root": is_root, "world_size": world, "master": f"{host}:{port}",
                      "job_id": env.get("PADDLE_JOB_ID"), "peers": sorted(peers)}), flush=True)
    return 0


def main() -> int:
    env = os.environ
    try:
        if "TORCHELASTIC_RUN_ID" in env:
            return check_torchrun(env)
        if "PADDLE_MASTER" in env:
            return check_paddle(env)
        if "MASTER_ADDR" in env:
            return check_master(env)
    except KeyError as exc:
        return fail(f"{exc.args[0]} is not set")
    except (TimeoutError, OSError) as exc:
        return fail(str(exc))
    return fail("none of TORCHELASTIC_RUN_ID, MASTER_ADDR, PADDLE_MASTER is set: not started by a training operator")


if __name__ == "__main__":
    raise SystemExit(main())
