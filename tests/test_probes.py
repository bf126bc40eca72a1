"""Container probes (localflow.node.probes): real Pods on the subprocess executor, probe periods on a
FakeClock (a probe runs when the test advances time to it), state read with bounded polls; and a
kwok-style golden table of the Pod status transitions probes cause (localflow.node.podstatus)."""
from __future__ import annotations

import sys

import pytest

from localflow.api import open_runtime
from localflow.clock import FakeClock
from localflow.executors.base import ContainerSpec
from localflow.node import podstatus
from localflow.node.probes import DEFAULTS, host_ports, initial_gates, port_requests
from localflow.scheduler import Capacity
from polling import wait_until

T0 = "2026-01-01T00:00:00Z"
T5 = "2026-01-01T00:00:05Z"
T9 = "2026-01-01T00:00:09Z"

# answers GET /healthz with 200 once the file named by $READY exists, 503 before; listens on $PORT
SERVER = r"""
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if os.path.exists(os.environ["READY"]) else 503
        self.send_response(code); self.end_headers(); self.wfile.write(b"ok" if code == 200 else b"no")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(os.environ.get("PORT") or 8080)), H).serve_forever()
"""
PORT_ENV = {"name": "PORT", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['localflow.dev/port-8080']"}}}
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def exists(path) -> list[str]:
    return ["python", "-c", f"import os, sys; sys.exit(0 if os.path.exists({str(path)!r}) else 1)"]


@pytest.fixture
def node(tmp_path):
    clock = FakeClock()
    with open_runtime(tmp_path / "ws", clock=clock, capacity=Capacity(cpu=4, memory=8 << 30)) as rt:
        yield rt, clock


def pod(rt, name="p"):
    return rt.store.get("Pod", name)


def cstatus(rt, name="p"):
    return ((pod(rt, name).get("status") or {}).get("containerStatuses") or [{}])[0]


def cond(rt, type_, name="p"):
    return next((c["status"] for c in (pod(rt, name).get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def events(rt, reason, name="p"):
    return [e["message"] for e in rt.store.events_for(pod(rt, name)) if e["reason"] == reason]


def event_count(rt, reason, name="p"):
    """How many times ``reason`` was recorded (a repeated Event is one object with a count, as kubelet's)."""
    return sum(e.get("count") or 1 for e in rt.store.events_for(pod(rt, name)) if e["reason"] == reason)


def test_readiness_http_probe_flips_ready_and_the_pod_gets_its_own_host_port(node, tmp_path):
    rt, clock = node
    ready = tmp_path / "ready"
    rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "web", "image": "python:3.11", "command": [sys.executable, "-c", SERVER],
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [PORT_ENV, {"name": "READY", "value": str(ready)}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 1}}]}})
    wait_until(lambda: (pod(rt).get("status") or {}).get("phase") == "Running", what="Running")
    # not ready until the probe succeeds (kubelet's initial readiness result is Failure)
    assert cond(rt, "Ready") == "False" and cstatus(rt)["ready"] is False and cstatus(rt)["started"] is True
    port = host_ports(pod(rt))[8080]
    assert port != 8080
    # the server answers 503 until $READY exists: each failed probe is an Unhealthy event
    wait_until(lambda: [m for m in events(rt, "Unhealthy") if "statuscode: 503" in m] or clock.advance(5),
               what="a failed readiness probe")
    assert "Readiness probe failed: HTTP probe failed with statuscode: 503" in events(rt, "Unhealthy")
    assert cond(rt, "Ready") == "False"
    ready.write_text("")
    wait_until(lambda: cond(rt, "Ready") == "True" or clock.advance(5), what="Ready")
    assert cond(rt, "ContainersReady") == "True" and cstatus(rt)["ready"] is True
    ready.unlink()
    wait_until(lambda: cond(rt, "Ready") == "False" or clock.advance(5), what="unready again")
    c = next(c for c in pod(rt)["status"]["conditions"] if c["type"] == "Ready")
    assert c["reason"] == "ContainersNotReady" and c["message"] == "containers with unready status: [web]"
    assert cstatus(rt)["restartCount"] == 0  # readiness never restarts


def test_liveness_tcp_failure_restarts_the_container_with_restart_count(node):
    rt, clock = node
    from localflow.node.services import free_port

    dead = free_port()  # nothing listens there
    rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "main", "image": "python:3.11", "command": SLEEP,
        "livenessProbe": {"tcpSocket": {"port": dead}, "periodSeconds": 10, "failureThreshold": 2}}]}})
    wait_until(lambda: (pod(rt).get("status") or {}).get("phase") == "Running", what="Running")
    # a container without a readiness probe is ready at once; liveness does not gate readiness
    assert cond(rt, "Ready") == "True"
    wait_until(lambda: events(rt, "Unhealthy") or clock.advance(1) and False, what="first liveness failure")
    assert events(rt, "Unhealthy")[0] == f"Liveness probe failed: dial tcp 127.0.0.1:{dead}: connect: connection refused"
    assert cstatus(rt)["restartCount"] == 0 and not events(rt, "Killing")  # failureThreshold 2: one is not enough
    wait_until(lambda: cstatus(rt).get("restartCount", 0) >= 1 or clock.advance(10), what="a restart")
    assert events(rt, "Killing")[0] == "Container main failed liveness probe, will be restarted"
    assert any(m.startswith("Back-off 10s restarting failed container") for m in events(rt, "BackOff"))
    wait_until(lambda: "running" in (cstatus(rt).get("state") or {}), what="running again")
    last = cstatus(rt)["lastState"]["terminated"]
    assert last["exitCode"] != 0 and cstatus(rt)["restartCount"] >= 1


def test_liveness_failure_with_restart_policy_never_fails_the_pod(node, tmp_path):
    rt, clock = node
    rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"restartPolicy": "Never", "containers": [{
        "name": "main", "image": "python:3.11", "command": SLEEP,
        "livenessProbe": {"exec": {"command": exists(tmp_path / "never")}, "failureThreshold": 1}}]}})
    wait_until(lambda: (pod(rt).get("status") or {}).get("phase") == "Failed" or clock.advance(10), what="Failed")
    assert events(rt, "Killing") == ["Container main failed liveness probe"]
    assert cstatus(rt)["restartCount"] == 0


def test_startup_probe_gates_readiness_and_liveness(node, tmp_path):
    rt, clock = node
    started, alive = tmp_path / "started", tmp_path / "alive"
    rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "main", "image": "python:3.11", "command": SLEEP,
        "startupProbe": {"exec": {"command": exists(started)}, "periodSeconds": 1, "failureThreshold": 100},
        "readinessProbe": {"exec": {"command": ["python", "-c", "pass"]}, "periodSeconds": 1},
        # would kill at its first run: it must not run before the startup probe succeeded
        "livenessProbe": {"exec": {"command": exists(alive)}, "periodSeconds": 1, "failureThreshold": 1}}]}})
    wait_until(lambda: (pod(rt).get("status") or {}).get("phase") == "Running", what="Running")
    assert cstatus(rt)["started"] is False and cstatus(rt)["ready"] is False and cond(rt, "Ready") == "False"
    wait_until(lambda: event_count(rt, "Unhealthy") >= 3 or clock.advance(1), what="three startup failures")
    assert all(m.startswith("Startup probe failed") for m in events(rt, "Unhealthy"))
    assert not events(rt, "Killing") and cstatus(rt)["started"] is False
    alive.write_text("")
    started.write_text("")
    wait_until(lambda: cond(rt, "Ready") == "True" or clock.advance(1), what="started and ready")
    assert cstatus(rt)["started"] is True and cstatus(rt)["ready"] is True
    assert not events(rt, "Killing") and cstatus(rt)["restartCount"] == 0


def test_a_startup_probe_that_never_succeeds_restarts_the_container(node, tmp_path):
    rt, clock = node
    rt.scheduler.submit({"metadata": {"name": "p"}, "spec": {"containers": [{
        "name": "main", "image": "python:3.11", "command": SLEEP,
        "startupProbe": {"exec": {"command": exists(tmp_path / "never")}, "periodSeconds": 2, "failureThreshold": 2}}]}})
    wait_until(lambda: cstatus(rt).get("restartCount", 0) >= 1 or clock.advance(2), what="a restart")
    assert events(rt, "Killing")[0] == "Container main failed startup probe, will be restarted"


def test_probe_defaults_and_port_requests():
    assert DEFAULTS == {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
                        "failureThreshold": 3}
    p = {"spec": {"containers": [{"name": "a", "env": [PORT_ENV], "readinessProbe": {"tcpSocket": {"port": 1}}},
                                 {"name": "b", "startupProbe": {"exec": {"command": ["true"]}}}, {"name": "c"}]}}
    assert initial_gates(p) == ({"a", "b"}, {"b"})
    assert port_requests(p) == {8080}


# ---------------------------------------------------------------- golden table (kwok-style)

WEB = ContainerSpec(name="web", image="python:3.11", argv=["python"])


def c(type_, status, at, reason=None, message=None):
    out = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": at}
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


NOT_READY = "containers with unready status: [web]"


@pytest.mark.parametrize("unready,unstarted,after,ready_flags,want_conditions,want_container", [
    # no probe: Ready at start, stays so
    ((), (), None, None, [c("ContainersReady", "True", T0), c("Ready", "True", T0)], (True, True)),
    # readinessProbe: not ready at start...
    (("web",), (), None, None,
     [c("ContainersReady", "False", T0, "ContainersNotReady", NOT_READY), c("Ready", "False", T0, "ContainersNotReady", NOT_READY)],
     (False, True)),
    # ... Ready once it succeeded (transition at the probe's time)
    (("web",), (), 5, ({"web": True}, {"web": True}), [c("ContainersReady", "True", T5), c("Ready", "True", T5)], (True, True)),
    # startupProbe: neither started nor ready; a readiness success before the start does not count
    (("web",), ("web",), 5, ({"web": True}, {"web": False}),
     [c("ContainersReady", "False", T0, "ContainersNotReady", NOT_READY), c("Ready", "False", T0, "ContainersNotReady", NOT_READY)],
     (False, False)),
    # started, no readiness probe: ready as it starts
    ((), ("web",), 9, ({"web": True}, {"web": True}), [c("ContainersReady", "True", T9), c("Ready", "True", T9)], (True, True)),
])
def test_golden_status_transitions_with_probes(unready, unstarted, after, ready_flags, want_conditions, want_container):
    clock = FakeClock()
    st = podstatus.merge({"phase": "Pending"}, podstatus.running([WEB], 0, clock, {}, [], {}, unready, unstarted))
    if after is not None:
        clock.advance(after)
        st = podstatus.merge(st, podstatus.probed(st, ready_flags[0], ready_flags[1], clock))
    assert st["conditions"] == [c("Initialized", "True", T0), *want_conditions]
    cs = st["containerStatuses"][0]
    assert (cs["ready"], cs["started"]) == want_container
    assert cs["state"] == {"running": {"startedAt": T0}} and cs["restartCount"] == 0
