"""A JAX-shaped distributed step without JAX: the coordinator gathers and broadcasts a sum.

Runs as every worker of ``jaxjob.yaml``. The JAXJob operator injects COORDINATOR_ADDRESS,
COORDINATOR_PORT, NUM_PROCESSES and PROCESS_ID (as ``jax.distributed.initialize`` reads them).
Process 0 listens on the coordinator port; every process computes the sum of squares of its
shard of 0..N-1 (``x[process_id::num_processes]``) and sends it to the coordinator, which adds
the parts and sends the total back to everyone (an all-reduce). Each process checks the total
against the closed form and prints one JSON line; exit 1 on a wrong total or a timeout.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time

N = 1000


def expected() -> int:
    return (N - 1) * N * (2 * N - 1) // 6


def recv_line(conn: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(256)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()


def main() -> int:
    pid = int(os.environ["PROCESS_ID"])
    nproc = int(os.environ["NUM_PROCESSES"])
    host, port = os.environ["COORDINATOR_ADDRESS"], int(os.environ["COORDINATOR_PORT"])
    part = sum(i * i for i in range(pid, N, nproc))
    deadline = time.monotonic() + 60
    if pid == 0:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1" if host in ("127.0.0.1", "localhost") else "0.0.0.0", port))
        srv.listen(nproc)
        srv.settimeout(max(1.0, deadline - time.monotonic()))
        conns, total = [], part
        while len(conns) < nproc - 1:
            conn, _ = srv.accept()
            total += int(recv_line(conn).split()[1])
            conns.append(conn)
        for c in conns:
            c.sendall(f"{total}\n".encode())
            c.close()
        srv.close()
    else:
        while True:
            try:
                conn = socket.create_connection((host, port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    print(f"coordinator {host}:{port} unreachable", file=sys.stderr)
                    return 1
                time.sleep(0.1)
        conn.sendall(f"{pid} {part}\n".encode())
        conn.settimeout(60)
        total = int(recv_line(conn))
        conn.close()
    ok = total == expected()
    print(json.dumps({"process_id": pid, "num_processes": nproc, "part": part, "total": total, "ok": ok}), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
