"""Core v1 Service (localflow.controllers.service, localflow.node.services): Endpoints follow Pod
readiness, a connection to the Service's local address reaches a Ready Pod and never an unready
one, the address survives Pod replacement, deleting the Service closes it; the bundled scenario
runs on the controllers `localflow serve` hosts. Real Pods (subprocesses), probe periods on a
FakeClock, bounded polls."""
from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from localflow.api import open_runtime
from localflow.clock import FakeClock
from localflow.controllers.manager import ControllerManager
from localflow.controllers.replicaset import ReplicaSetReconciler
from localflow.controllers.service import ADDRESS_ANNOTATION, ServiceReconciler, endpoint_subsets
from localflow.errors import NotFound
from localflow.scheduler import Capacity
from docker_support import docker_client, python_image  # noqa: F401  (fixtures)
from polling import wait_until

ROOT = Path(__file__).resolve().parents[1]

# says which Pod answered; /healthz is 200 once the file <READY_DIR>/<pod name> (or <READY_DIR>/all) exists
SERVER = r"""
import http.server, os
name, d = os.environ["POD_NAME"], os.environ["READY_DIR"]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = os.path.exists(os.path.join(d, name)) or os.path.exists(os.path.join(d, "all"))
        body = (b"ok" if ok else b"no") if self.path == "/healthz" else name.encode()
        self.send_response(200 if ok or self.path != "/healthz" else 503)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT") or 8080)), H).serve_forever()
"""


def replicaset(ready_dir, replicas=2):
    c = {"name": "web", "image": "python:3.11", "command": [sys.executable, "-c", SERVER],
         "ports": [{"name": "http", "containerPort": 8080}],
         "env": [{"name": "PORT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['localflow.dev/port-8080']"}}},
                 {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "READY_DIR", "value": str(ready_dir)}],
         "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 1},
         "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}}}}


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
           "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}


@pytest.fixture
def cluster(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", clock=clock, capacity=Capacity(cpu=4, memory=8 << 30)) as rt:
        mgr = ControllerManager(rt.store, clock)
        mgr.register(ReplicaSetReconciler(rt.store, rt.scheduler, clock))
        mgr.register(ServiceReconciler(rt.store, rt.scheduler, clock))
        mgr.start()
        try:
            yield rt, clock
        finally:
            mgr.stop()


def endpoints(rt):
    try:
        subsets = rt.store.get("Endpoints", "web").get("subsets") or []
    except NotFound:
        return None
    names = lambda key: sorted(a["targetRef"]["name"] for s in subsets for a in s.get(key) or [])  # noqa: E731
    return names("addresses"), names("notReadyAddresses")


def address(rt) -> str:
    return wait_until(lambda: (rt.store.get("Service", "web")["metadata"].get("annotations") or {}).get(
        ADDRESS_ANNOTATION + "http"), what="the Service's address")


def get(addr: str) -> str:
    with urllib.request.urlopen(f"http://{addr}/", timeout=10) as r:
        return r.read().decode()


def pods(rt) -> list[str]:
    return sorted(p["metadata"]["name"] for p in rt.store.list("Pod")
                  if (p.get("status") or {}).get("phase") == "Running" and "replicaset-deleted" not in str(p["metadata"]))


def refused(addr: str) -> bool:
    host, port = addr.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except OSError:  # reset by a listener closing meanwhile: look again
        return False
    return False


def test_endpoints_follow_readiness_and_traffic_reaches_only_ready_pods(cluster, tmp_path):
    rt, clock = cluster
    rt.store.create(SERVICE)
    rt.store.create(replicaset(tmp_path))
    wait_until(lambda: endpoints(rt) and len(endpoints(rt)[1]) == 2 or clock.advance(5), what="two unready endpoints")
    a, b = endpoints(rt)[1]
    assert endpoints(rt)[0] == []
    addr = address(rt)
    assert addr.startswith("127.0.0.1:")
    # no ready endpoint: the proxy closes the connection at once
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        try:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass  # closed before the request was read: a reset, as kube-proxy's REJECT
    (tmp_path / a).write_text("")
    wait_until(lambda: endpoints(rt) == ([a], [b]) or clock.advance(5), what=f"{a} ready, {b} not")
    assert {get(addr) for _ in range(6)} == {a}  # never the unready Pod
    ep = rt.store.get("Endpoints", "web")
    sub = next(s for s in ep["subsets"] if s.get("addresses"))
    assert sub["ports"][0]["name"] == "http" and sub["ports"][0]["port"] != 8080  # the Pod's own host port
    assert sub["addresses"][0]["ip"] == "127.0.0.1" and sub["addresses"][0]["targetRef"]["kind"] == "Pod"
    (tmp_path / b).write_text("")
    wait_until(lambda: endpoints(rt) == ([a, b], []) or clock.advance(5), what="both ready")
    assert {get(addr) for _ in range(6)} == {a, b}  # round-robin over the ready Pods
    (tmp_path / a).unlink()
    wait_until(lambda: endpoints(rt) == ([b], [a]) or clock.advance(5), what=f"{a} unready again")
    assert {get(addr) for _ in range(4)} == {b}


def test_the_address_is_stable_across_pod_replacement_and_deleting_the_service_closes_it(cluster, tmp_path):
    rt, clock = cluster
    (tmp_path / "all").write_text("")
    rt.store.create(SERVICE)
    rt.store.create(replicaset(tmp_path, replicas=1))
    wait_until(lambda: (endpoints(rt) or ([], []))[0] or clock.advance(5), what="a ready endpoint")
    addr = address(rt)
    first = get(addr)
    rt.store.delete("Pod", first)
    wait_until(lambda: (endpoints(rt) or ([], []))[0] not in ([], [first]) or clock.advance(5), what="the replacement ready")
    second = get(addr)
    assert second != first and second == endpoints(rt)[0][0]
    assert address(rt) == addr  # same address for the Service's life
    rt.store.delete("Service", "web")
    wait_until(lambda: refused(addr), what="the forwarder to stop")
    wait_until(lambda: endpoints(rt) is None, what="the Endpoints to go")


def pod(name, ready=True, phase="Running", ports=None, annotations=None):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "labels": {"app": "web"},
                         "annotations": annotations or {}},
            "spec": {"nodeName": "localflow", "containers": [{"name": "c", "ports": ports or []}]},
            "status": {"phase": phase, "podIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_endpoint_subsets_resolve_ports_and_group_addresses():
    svc = {"metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 80, "targetPort": "web"},
                                                         {"name": "metrics", "port": 9090}]}}
    named = [{"name": "web", "containerPort": 8080}]
    subsets = endpoint_subsets(svc, [
        pod("a", ports=named), pod("b", ready=False, ports=named),
        pod("c", ports=[]),  # no port named web: only the numeric port
        pod("d", phase="Failed", ports=named),  # ended: left out
        pod("e", ports=named, annotations={"localflow.dev/port-8080": "31000"})])  # its own host port
    got = [([(p["name"], p["port"]) for p in s["ports"]], [a["targetRef"]["name"] for a in s.get("addresses", [])],
            [a["targetRef"]["name"] for a in s.get("notReadyAddresses", [])]) for s in subsets]
    assert got == [([("http", 8080), ("metrics", 9090)], ["a"], ["b"]),
                   ([("http", 31000), ("metrics", 9090)], ["e"], []),
                   ([("metrics", 9090)], ["c"], [])]
    svc["spec"]["publishNotReadyAddresses"] = True
    assert [a["targetRef"]["name"] for a in endpoint_subsets(svc, [pod("b", ready=False, ports=named)])[0]["addresses"]] == ["b"]


def test_the_service_scenario_runs_on_the_controllers_serve_hosts(tmp_path):
    """scenarios/apps/service.yaml applied to the manager and node `localflow serve` hosts: both
    replicas become Ready through their readinessProbe and answer through the Service's address."""
    from localflow.server.hosted import HostedControllers
    from localflow.workspace import resolve_workspace

    hosted = HostedControllers(resolve_workspace(tmp_path / "ws")).start()
    try:
        assert "Service" in hosted.kinds
        store = hosted.manager.store
        for doc in yaml.safe_load_all((ROOT / "scenarios" / "apps" / "service.yaml").read_text()):
            store.create(doc)
        wait_until(lambda: endpoints_of(store) == 2, timeout=90, what="two ready endpoints")
        addr = store.get("Service", "web")["metadata"]["annotations"][ADDRESS_ANNOTATION + "http"]
        answers = {get(addr) for _ in range(4)}
        assert len(answers) == 2 and all(a.startswith("hello from web-") for a in answers), answers
    finally:
        hosted.stop()
    assert refused(addr)


def endpoints_of(store) -> int:
    try:
        return sum(len(s.get("addresses") or []) for s in store.get("Endpoints", "web").get("subsets") or [])
    except NotFound:
        return 0


@pytest.mark.docker
def test_under_docker_endpoints_are_container_addresses_and_the_proxy_reaches_them(tmp_path, python_image):
    """--executor docker: the Pods listen on containerPort 8080 at their own addresses; Endpoints
    list those (upstream's shape), the proxy reaches them through Docker's published ports, and the
    startupProbe's exec runs inside the container (docker exec) before readiness may pass."""
    from localflow.controllers.deployment import DeploymentReconciler

    docs = list(yaml.safe_load_all((ROOT / "scenarios" / "apps" / "service.yaml").read_text()))
    c = docs[1]["spec"]["template"]["spec"]["containers"][0]
    c["image"] = python_image
    c["startupProbe"] = {"exec": {"command": ["python", "-c", "import os, socket; assert socket.gethostname() == os.environ['POD_NAME']"]},
                         "periodSeconds": 1}
    with open_runtime(tmp_path / "ws", "docker") as rt:
        mgr = ControllerManager(rt.store, rt.clock)
        mgr.register(ReplicaSetReconciler(rt.store, rt.scheduler, rt.clock))
        mgr.register(DeploymentReconciler(rt.store, rt.clock))
        mgr.register(ServiceReconciler(rt.store, rt.scheduler, rt.clock))
        mgr.start()
        try:
            for d in docs:
                rt.store.create(d)
            wait_until(lambda: endpoints_of(rt.store) == 2, timeout=120, what="two ready endpoints")
            sub = rt.store.get("Endpoints", "web")["subsets"]
            assert [p["port"] for s in sub for p in s["ports"]] == [8080]
            assert all(a["ip"] != "127.0.0.1" for s in sub for a in s["addresses"])
            addr = rt.store.get("Service", "web")["metadata"]["annotations"][ADDRESS_ANNOTATION + "http"]
            assert len({get(addr) for _ in range(4)}) == 2
        finally:
            mgr.stop()


def test_run_of_a_service_and_deployment_says_to_apply_it_to_a_server(tmp_path):
    from cli_support import lf

    p = lf("run", ROOT / "scenarios" / "apps" / "service.yaml", "-W", tmp_path / "ws", check=2)
    assert p.stderr.count("\n") == 1 and "holds Service, Deployment, which run until deleted" in p.stderr
    assert "localflow serve" in p.stderr and "localflow apply -f" in p.stderr
