"""Which ASGI server to run the Kubernetes API on (localflow.apiserver): the same Starlette app
served by uvicorn (h11 and httptools parsers) and hypercorn, measured on what kubectl and the SDKs
do most — GET of one object, LIST of 50 objects as a Table, POST — sequentially over one
keep-alive connection, as a client-go or urllib3 client does.

    python tests/benchmarks/bench_apiserver.py [--requests 500]

Prints the median and p95 latency per request type and server. Needs uvicorn, httptools and
hypercorn (pip install hypercorn httptools); a server that is not installed is skipped.
"""
from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import socket
import statistics
import tempfile
import threading
import time


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_uvicorn(app, port, http_impl):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", access_log=False, lifespan="off", http=http_impl))
    threading.Thread(target=server.run, daemon=True).start()
    return lambda: setattr(server, "should_exit", True)


def _serve_hypercorn(app, port):
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(serve(app, cfg, shutdown_trigger=stop.wait))

    threading.Thread(target=run, daemon=True).start()
    return lambda: loop.call_soon_threadsafe(stop.set)


def _wait(port):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("server did not start")


def measure(name, start, n):
    from localflow.apiserver import make_app

    with tempfile.TemporaryDirectory() as d:
        app = make_app(os.path.join(d, "localflow.db"))
        store = app.state.store
        for i in range(50):
            store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}, "data": {"k": "v" * 100}})
        port = _port()
        stop = start(app, port)
        _wait(port)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        out = {}
        cases = {
            "GET": ("GET", "/api/v1/namespaces/default/configmaps/c7", None, "application/json"),
            "LIST Table": ("GET", "/api/v1/namespaces/default/configmaps", None, "application/json;as=Table;v=v1;g=meta.k8s.io"),
            "POST": ("POST", "/api/v1/namespaces/default/configmaps", "new", "application/json"),
        }
        for label, (method, path, body, accept) in cases.items():
            times = []
            for i in range(n):
                data = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"n{i}"}}) if body else None
                t0 = time.perf_counter()
                conn.request(method, path, body=data, headers={"Accept": accept, "Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                times.append(time.perf_counter() - t0)
                assert resp.status in (200, 201), resp.status
            times.sort()
            out[label] = (statistics.median(times) * 1000, times[int(len(times) * 0.95)] * 1000)
        conn.close()
        stop()
        store.close()
    print(f"{name:22s} " + "  ".join(f"{k}: {m:.2f} ms (p95 {p:.2f})" for k, (m, p) in out.items()), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=500)
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, {args.requests} requests each")
    servers = {"uvicorn (h11)": lambda app, port: _serve_uvicorn(app, port, "h11"),
               "uvicorn (httptools)": lambda app, port: _serve_uvicorn(app, port, "httptools"),
               "hypercorn": _serve_hypercorn}
    for name, start in servers.items():
        try:
            measure(name, start, args.requests)
        except ImportError as exc:
            print(f"{name}: skipped ({exc})")


if __name__ == "__main__":
    main()
