"""Container probes: ``startupProbe``, ``readinessProbe``, ``livenessProbe`` (``exec``, ``httpGet``,
``tcpSocket``), as kubelet's prober runs them.

Follows kubernetes ``pkg/kubelet/prober/worker.go`` (``doProbe``: a probe counts only once it
returned the same result ``successThreshold``/``failureThreshold`` times in a row; nothing runs
before ``initialDelaySeconds`` after the container started; readiness and liveness wait until the
startup probe succeeded; a liveness or startup failure puts the worker on hold until the
container restarts), ``pkg/kubelet/prober/prober.go`` (``Unhealthy`` Warning Events ``Readiness
probe failed: <output>``; ``exec`` exits 0, ``httpGet`` answers 200..399, ``tcpSocket`` connects;
the probe outputs of ``pkg/probe/http``/``pkg/probe/tcp``) and ``pkg/apis/core/v1/defaults.go``
(``SetDefaults_Probe``: ``periodSeconds`` 10, ``timeoutSeconds`` 1, ``successThreshold`` 1,
``failureThreshold`` 3, ``initialDelaySeconds`` 0). The initial results are kubelet's: not ready
(readiness), alive (liveness), not started (startup).

Results drive the Pod: ``containerStatuses[].ready``/``started`` and the ``ContainersReady``/``Ready``
conditions (:func:`localflow.node.podstatus.probed`); a failed liveness or startup probe kills the
Pod's containers with a ``Killing`` Event ``Container x failed liveness probe, will be restarted``,
and the kubelet restarts them by ``restartPolicy`` with its crash-loop backoff (the whole Pod
instance restarts: the executors run a Pod's containers as one unit).

One thread per Pod instance (:class:`PodProber`), timed on the injected clock: on a
:class:`~localflow.clock.FakeClock` a probe runs only when a test advances time to it.

Where probes connect: ``httpGet``/``tcpSocket`` go to ``host`` (default the Pod's address:
``127.0.0.1``) at the container port (a number, or a ``ports[].name``). On the subprocess executor
a container port is used as it is, unless the Pod asked for a host port of its own
(:func:`host_ports`); under Docker the container port is published on ``127.0.0.1`` at a random
port (:meth:`localflow.executors.docker.DockerPod.port_map`) and the probe connects there. ``exec``
runs the command with the container's environment and working directory: on the host for the
subprocess executor (``python`` is the container's interpreter), inside the container
(``docker exec``) under Docker.
"""
from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from localflow.errors import NotFound
from localflow.executors.base import PodSpec, RunningPod

from . import podstatus

__all__ = ["Probe", "PodProber", "probes_of", "initial_gates", "run_probe", "host_ports", "PORT_ANNOTATION",
           "port_requests", "DEFAULTS"]

#: ``SetDefaults_Probe`` (kubernetes ``pkg/apis/core/v1/defaults.go``).
DEFAULTS = {"initialDelaySeconds": 0, "periodSeconds": 10, "timeoutSeconds": 1, "successThreshold": 1,
            "failureThreshold": 3}
#: Pod annotation ``localflow.dev/port-<containerPort>``: the host port the kubelet gave that
#: container port (subprocess executor only; see :func:`port_requests`).
PORT_ANNOTATION = "localflow.dev/port-"
_PORT_REF = re.compile(r"metadata\.annotations\['localflow\.dev/port-(\d+)'\]")
_KINDS = (("startupProbe", "startup"), ("readinessProbe", "readiness"), ("livenessProbe", "liveness"))


@dataclass
class Probe:
    """One probe of one container: ``type`` (``startup``/``readiness``/``liveness``), ``container``,
    the probe ``spec`` (``exec``/``httpGet``/``tcpSocket`` and the timings, defaulted), and the
    worker's state: ``last`` result, ``run`` (how many times in a row), ``due`` (next run, on the
    clock's monotonic time), ``hold`` (a liveness/startup failure acted on)."""

    type: str
    container: str
    spec: dict
    last: bool | None = None
    run: int = 0
    due: float = 0.0
    hold: bool = False

    def t(self, key: str) -> float:
        """A timing field (``periodSeconds``, ...) with its default."""
        v = self.spec.get(key)
        return float(DEFAULTS[key] if v is None else v)


def probes_of(pod: dict) -> list[Probe]:
    """The probes of ``pod``'s (main) containers, startup probes first."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for key, kind in _KINDS:
            if isinstance(c.get(key), dict):
                out.append(Probe(kind, c["name"], c[key]))
    return out


def initial_gates(pod: dict) -> tuple[set[str], set[str]]:
    """``(unready, unstarted)``: the containers not ready when they start (a readiness or startup
    probe) and those not started (a startup probe), as kubelet's initial probe results."""
    probes = probes_of(pod)
    unstarted = {p.container for p in probes if p.type == "startup"}
    return {p.container for p in probes if p.type == "readiness"} | unstarted, unstarted


def port_requests(pod: dict) -> set[int]:
    """The container ports whose host port the Pod reads through the downward API,
    ``fieldRef: {fieldPath: "metadata.annotations['localflow.dev/port-8080']"}``: on this machine
    every Pod shares ``127.0.0.1``, so the replicas of one template cannot all listen on 8080; such
    a Pod gets a free host port per referenced container port (:func:`host_ports`) and listens there."""
    wanted = set()
    for c in (pod.get("spec") or {}).get("containers") or []:
        for item in c.get("env") or []:
            ref = ((item or {}).get("valueFrom") or {}).get("fieldRef") or {}
            m = _PORT_REF.fullmatch(str(ref.get("fieldPath") or ""))
            if m:
                wanted.add(int(m.group(1)))
    return wanted


def host_ports(pod: dict) -> dict[int, int]:
    """``{containerPort: host port}`` the kubelet recorded for ``pod`` (:data:`PORT_ANNOTATION`)."""
    out = {}
    for k, v in ((pod.get("metadata") or {}).get("annotations") or {}).items():
        if k.startswith(PORT_ANNOTATION) and k[len(PORT_ANNOTATION):].isdigit() and str(v).isdigit():
            out[int(k[len(PORT_ANNOTATION):])] = int(v)
    return out


def container_port(pod: dict, container: str, port) -> int | None:
    """A probe's or Service's ``port``: a number, or the name of a ``ports[]`` entry of ``container``
    (any container when None); None when the name is not declared."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for c in (pod.get("spec") or {}).get("containers") or []:
        if container is not None and c.get("name") != container:
            continue
        for p in c.get("ports") or []:
            if p.get("name") == port and p.get("containerPort"):
                return int(p["containerPort"])
    return None


class Target:
    """Where a Pod instance's probes connect: ``reach(port) -> (host, port)`` on this machine and
    ``exec(container, argv, timeout) -> (exit code, output)``."""

    def __init__(self, pod: dict, running: RunningPod, spec: PodSpec, executor):
        self.pod, self.running, self.spec, self.executor = pod, running, spec, executor
        self._mapped = host_ports(pod)

    def reach(self, port: int) -> tuple[str, int]:
        """The 127.0.0.1 address of container port ``port``."""
        mapper = getattr(self.running, "port_map", None)
        if mapper is not None:  # docker: published on 127.0.0.1 at a random host port
            published = mapper(timeout=1.0).get(port)
            if published:
                return "127.0.0.1", int(published)
        return "127.0.0.1", self._mapped.get(port, port)

    def exec(self, container: str, argv: list[str], timeout: float) -> tuple[int, str]:
        """Run ``argv`` in ``container``; ``(-1, "command timed out")`` after ``timeout`` s."""
        cid = self.running.container_ids().get(container, "")
        if cid.startswith("docker://"):
            return _docker_exec(self.executor, cid[len("docker://"):], argv, timeout)
        c = next((c for c in self.spec.containers if c.name == container), None)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(c.env if c else {})}
        argv = list(argv)
        if argv and argv[0] in ("python", "python3"):
            argv[0] = (c.mapping.python if c and c.mapping and c.mapping.python else None) or sys.executable
        try:
            p = subprocess.run(argv, env=env, cwd=(c.working_dir if c and c.working_dir and os.path.isdir(c.working_dir)
                                                   else self.spec.workdir or None),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return -1, f"command {argv!r} timed out"
        except OSError as exc:
            return -1, f"exec {argv[0]!r}: {exc.strerror or exc}"
        return p.returncode, p.stdout.decode(errors="replace").strip()


def _docker_exec(executor, cid: str, argv: list[str], timeout: float) -> tuple[int, str]:
    box: list = []

    def call():
        try:
            r = executor.client.containers.get(cid).exec_run(argv)
            box.append((r.exit_code, (r.output or b"").decode(errors="replace").strip()))
        except Exception as exc:  # noqa: BLE001 - the container is gone, the engine hiccuped
            box.append((-1, f"exec failed: {exc}"))

    t = threading.Thread(target=call, daemon=True, name="probe-exec")
    t.start()
    t.join(timeout)
    return box[0] if box else (-1, f"command {argv!r} timed out")


def run_probe(probe: Probe, target: Target) -> tuple[bool, str]:
    """Run ``probe`` once against ``target``: ``(success, output)``, outputs as kubelet words them."""
    spec, timeout = probe.spec, max(1.0, probe.t("timeoutSeconds"))
    if isinstance(spec.get("exec"), dict):
        code, out = target.exec(probe.container, [str(a) for a in spec["exec"].get("command") or []], timeout)
        return code == 0, out
    action = spec.get("httpGet") if isinstance(spec.get("httpGet"), dict) else spec.get("tcpSocket")
    if not isinstance(action, dict):
        return False, "probe has no exec, httpGet or tcpSocket handler"
    port = container_port(target.pod, probe.container, action.get("port"))
    if port is None:
        return False, f"unable to find port {action.get('port')!r} in container {probe.container}"
    host, hport = target.reach(port)
    host = action.get("host") or host
    if "httpGet" in spec:
        scheme = str(action.get("scheme") or "HTTP").lower()
        path = str(action.get("path") or "/")
        url = f"{scheme}://{host}:{hport}{path if path.startswith('/') else '/' + path}"
        headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*"}
        headers.update({h["name"]: h.get("value", "") for h in action.get("httpHeaders") or [] if h.get("name")})
        ctx = ssl._create_unverified_context() if scheme == "https" else None  # kubelet skips TLS verification
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout, context=ctx) as r:
                code = r.status
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (socket.timeout, TimeoutError):
            return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                return False, f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
            return False, f'Get "{url}": dial tcp {host}:{hport}: connect: {_why(reason)}'
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    try:
        with socket.create_connection((host, hport), timeout=timeout):
            return True, ""
    except (socket.timeout, TimeoutError):
        return False, f"dial tcp {host}:{hport}: i/o timeout"
    except OSError as exc:
        return False, f"dial tcp {host}:{hport}: connect: {_why(exc)}"


def _why(exc) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return str(getattr(exc, "strerror", None) or exc).lower()


class PodProber:
    """The probe workers of one running Pod instance (``kubelet``: the
    :class:`~localflow.node.kubelet.Kubelet`, ``e`` its :class:`~localflow.node.kubelet.PodEntry`).
    :meth:`start` runs them on a thread; :meth:`stop` (the instance ended) joins it. A liveness or
    startup failure kills ``running``; the kubelet's loop then restarts the Pod by restartPolicy."""

    def __init__(self, kubelet, e, running: RunningPod, spec: PodSpec):
        self.kubelet, self.e, self.running, self.spec = kubelet, e, running, spec
        self.clock = kubelet.clock
        self.probes = probes_of(e.manifest)
        unready, unstarted = initial_gates(e.manifest)
        self.ready = {c.name: c.name not in unready for c in spec.containers}
        self.started = {c.name: c.name not in unstarted for c in spec.containers}
        self.target = Target(e.manifest, running, spec, kubelet.executor)
        self.killed_for: str | None = None  # "liveness"/"startup" once it killed the containers
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "PodProber":
        """Start probing (the containers started now)."""
        t0 = self.clock.monotonic()
        for p in self.probes:
            p.due = t0 + p.t("initialDelaySeconds")
        self._unsubscribe = self.clock.on_advance(self._wake.set)
        self._thread = threading.Thread(target=self._loop, name=f"probe-{self.e.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop probing and wait for the worker (a probe in flight finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)
        unsubscribe = getattr(self, "_unsubscribe", None)
        if unsubscribe:
            unsubscribe()

    def _active(self, p: Probe) -> bool:
        if p.hold:
            return False
        if p.type == "startup":
            return not self.started[p.container]
        return self.started[p.container]

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                now = self.clock.monotonic()
                for p in [p for p in self.probes if self._active(p) and p.due <= now]:
                    if self._stop.is_set() or self.killed_for:
                        return
                    p.due = now + max(1.0, p.t("periodSeconds"))
                    self._probe(p, now)
                if self.killed_for:
                    return
                due = [p.due for p in self.probes if self._active(p)]
                timeout = self.clock.timeout_until(min(due)) if due else None
                self._wake.wait(timeout)
                self._wake.clear()
        except Exception as exc:  # noqa: BLE001 - a probe bug must not take the Pod down silently
            try:
                self.kubelet.event(self.e, "Unhealthy", f"probe worker failed: {exc}", type="Warning")
            except Exception:  # noqa: BLE001
                pass

    def _probe(self, p: Probe, now: float) -> None:
        ok, output = run_probe(p, self.target)
        if self._stop.is_set():
            return
        if not ok:
            self.kubelet.event(self.e, "Unhealthy", f"{p.type.capitalize()} probe failed: {output}".rstrip(), type="Warning")
        if p.last is ok:
            p.run += 1
        else:
            p.last, p.run = ok, 1
        if (not ok and p.run < p.t("failureThreshold")) or (ok and p.run < p.t("successThreshold")):
            return  # not yet: the result must repeat (worker.go)
        if p.type == "readiness":
            if self.ready[p.container] != ok:
                self.ready[p.container] = ok
                self._write()
        elif p.type == "startup":
            if ok:
                self.started[p.container] = True
                for q in self.probes:  # readiness/liveness start now (their initial delay counts from the start)
                    if q.container == p.container and q.type != "startup":
                        q.due = max(q.due, now)
                self._write()
            else:
                self._kill(p)
        elif not ok:  # liveness
            self._kill(p)

    def _write(self) -> None:
        e = self.e
        try:
            cur = self.kubelet.store.get("Pod", e.name, e.namespace)
        except NotFound:
            return
        if cur["metadata"].get("uid") != e.uid:
            return
        self.kubelet.patch_status(e, podstatus.probed(cur.get("status") or {}, self.ready, self.started, self.clock))

    def _kill(self, p: Probe) -> None:
        p.hold, p.run = True, 0
        self.killed_for = p.type
        policy = (self.e.manifest.get("spec") or {}).get("restartPolicy") or "Always"
        msg = f"Container {p.container} failed {p.type} probe"
        self.kubelet.event(self.e, "Killing", msg + (", will be restarted" if policy != "Never" else ""))
        grace = (self.e.manifest.get("spec") or {}).get("terminationGracePeriodSeconds")
        try:
            self.running.kill("Error", float(grace) if grace is not None else 5.0)
        except Exception:  # noqa: BLE001 - already gone
            pass
