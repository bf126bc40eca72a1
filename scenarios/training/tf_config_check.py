"""Check that TF_CONFIG lets every task of a TFJob reach every other over TCP (no TensorFlow needed).

Each task reads ``TF_CONFIG`` as the TFJob operator injects it, listens on its own address
(``cluster[task.type][task.index]``), connects to every other task's address, exchanges a hello
naming both tasks, and waits until every other task has greeted it too. It prints one JSON line
``{"task": "worker:1", "reached": [...], "greeted_by": [...]}`` and exits 0, or exits 1 after
``--timeout`` seconds naming the tasks it could not reach. The chief (or master, else worker 0)
exits last: every other task reports "done" to it first, so a chief-decides TFJob finishes only
after every task has checked its peers. ``--log_dir DIR`` (the upstream mnist example's option)
also writes the report to ``DIR/tf_config_check[-<task>].json``; other options are ignored.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time


def addresses(cfg: dict) -> dict[str, tuple[str, int]]:
    out = {}
    for ttype, addrs in cfg["cluster"].items():
        for i, addr in enumerate(addrs if isinstance(addrs, list) else [addrs[k] for k in sorted(addrs, key=int)]):
            host, port = addr.rsplit(":", 1)
            out[f"{ttype}:{i}"] = (host, int(port))
    return out


def write_report(log_dir: str | None, report: dict) -> None:
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        name = f"tf_config_check-{report['task'].replace(':', '-')}.json" if report.get("task") else "tf_config_check.json"
        with open(os.path.join(log_dir, name), "w") as f:
            json.dump(report, f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--log_dir", default=None, help="also write the report to LOG_DIR/tf_config_check.json")
    args, _ = ap.parse_known_args()  # an upstream example's own options (--learning_rate=...) are ignored
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        print("TF_CONFIG is not set (a single-replica TFJob gets none)", flush=True)
        write_report(args.log_dir, {"task": None, "tf_config": None})
        return 0
    cfg = json.loads(raw)
    me = f"{cfg['task']['type']}:{cfg['task']['index']}"
    peers = addresses(cfg)
    my_host, my_port = peers.pop(me)
    greeted_by: set[str] = set()
    done: set[str] = set()
    head = next((f"{t}:0" for t in ("chief", "master") if t in cfg["cluster"]), "worker:0")
    lock = threading.Lock()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1" if my_host in ("127.0.0.1", "localhost") else "0.0.0.0", my_port))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except socket.timeout:
                continue
            with conn:
                conn.settimeout(5)
                msg = conn.recv(256).decode().strip()
                if msg.startswith("done "):
                    with lock:
                        done.add(msg[5:])
                    conn.sendall(b"ok\n")
                    continue
                conn.sendall(f"hello {msg} from {me}\n".encode())
                with lock:
                    greeted_by.add(msg)

    threading.Thread(target=serve, daemon=True).start()
    deadline = time.monotonic() + args.timeout
    reached: set[str] = set()
    while time.monotonic() < deadline and (len(reached) < len(peers) or len(greeted_by) < len(peers)):
        for name, (host, port) in peers.items():
            if name in reached:
                continue
            try:
                with socket.create_connection((host, port), timeout=1) as c:
                    c.sendall(f"{me}\n".encode())
                    if c.recv(256).decode().startswith(f"hello {me} from {name}"):
                        reached.add(name)
            except OSError:
                pass
        time.sleep(0.1)
    report = {"task": me, "listen": f"{my_host}:{my_port}", "reached": sorted(reached), "greeted_by": sorted(greeted_by)}
    print(json.dumps(report), flush=True)
    write_report(args.log_dir, report)
    if me == head:  # wait for every other task to finish its checks
        while time.monotonic() < deadline and len(done) < len(peers):
            time.sleep(0.05)
        # and for each to have exited (its listener refuses): with cleanPodPolicy Running the operator
        # deletes Pods still running when the chief succeeds, so a peer that said "done" but had not
        # exited yet would be cleaned up (CANCELED) instead of Succeeded
        for host, port in peers.values():
            while time.monotonic() < deadline:
                try:
                    socket.create_connection((host, port), timeout=1).close()
                except OSError:
                    break
                time.sleep(0.05)
        time.sleep(0.3)  # the node's status write for a peer's exit lands just after the exit itself
    elif head in peers:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(peers[head], timeout=1) as c:
                    c.sendall(f"done {me}\n".encode())
                    if c.recv(16):
                        break
            except OSError:
                time.sleep(0.1)
    stop.set()
    missing = sorted(set(peers) - reached)
    if missing:
        print(f"could not reach: {', '.join(missing)}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
