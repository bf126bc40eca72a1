"""The node's Service proxy: kube-proxy for this machine, a TCP forwarder per Service port.

kube-proxy (kubernetes ``pkg/proxy``) programs the node so that a connection to a Service's
ClusterIP:port reaches one of its ready endpoints. On this machine there is no virtual IP: each
Service port gets a listening socket on ``127.0.0.1:<port>`` (a free port picked once by the
Service controller and recorded on the Service, :mod:`localflow.controllers.service`, so the
address is stable for the Service's life), and every accepted connection is spliced to the next
ready endpoint, round-robin (kube-proxy's ``userspace`` mode did exactly this; its other modes
pick at random). An endpoint that refuses the connection is skipped for the next one; with no
ready endpoint the connection is closed at once (kube-proxy rejects it). Removing a Service
closes its listeners; connections in flight finish.

Endpoints name ``(ip, port)`` as the Endpoints object lists them. Under Docker the endpoint is
the container's IP on its network and the container port; from this machine the proxy reaches it
through the port Docker published on 127.0.0.1 (``backend`` maps it: the node passes the running
Pod's :meth:`~localflow.executors.docker.DockerPod.port_map`). Pods on the Docker network reach
each other by hostname/network alias (the training operator's headless-Service names) rather
than through this proxy.

Threads only (one accept loop per listener, two pumps per connection); stdlib only.
"""
from __future__ import annotations

import itertools
import socket
import threading
from typing import Callable

__all__ = ["ServiceProxy", "free_port", "Backend"]

Backend = tuple  # (ip, port, pod name or None)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Listener:
    """One Service port: a listening socket and its accept thread."""

    def __init__(self, proxy: "ServiceProxy", key: tuple, port: int):
        self.proxy, self.key = proxy, key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", port))
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.port = self.sock.getsockname()[1]
        self.backends: list[Backend] = []
        self._rr = itertools.count()
        self.closed = False
        self.thread = threading.Thread(target=self._accept_loop, name=f"svc-{key[1]}-{key[2]}", daemon=True)
        self.thread.start()

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), name=f"svc-conn-{self.key[1]}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        backends = list(self.backends)
        start = next(self._rr)
        upstream = None
        for i in range(len(backends)):
            ip, port, pod = backends[(start + i) % len(backends)]
            host, hport = self.proxy.backend(ip, port, pod)
            try:
                upstream = socket.create_connection((host, hport), timeout=5)
                upstream.settimeout(None)
                break
            except OSError:
                continue
        if upstream is None:
            conn.close()
            return
        t = threading.Thread(target=_pump, args=(upstream, conn), daemon=True, name="svc-pump")
        t.start()
        _pump(conn, upstream)
        t.join()
        for s in (conn, upstream):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` closes; then half-close ``dst``."""
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class ServiceProxy:
    """The listeners of this node's Services, by ``(namespace, service, port key)``. Thread-safe.

    ``backend(ip, port, pod) -> (host, port)``: how this machine reaches an endpoint (identity by
    default). :meth:`listen` binds a Service port (a given port, or a free one), :meth:`set_backends`
    replaces its ready endpoints, :meth:`remove` closes a Service's listeners, :meth:`close` all."""

    def __init__(self, backend: Callable[[str, int, str | None], tuple[str, int]] | None = None):
        self.backend = backend or (lambda ip, port, pod: (ip, port))
        self._lock = threading.Lock()
        self._listeners: dict[tuple, _Listener] = {}

    def listen(self, namespace: str, service: str, port_key: str, port: int = 0) -> int:
        """Serve ``namespace/service``'s port ``port_key`` on ``127.0.0.1:port`` (0: a free port);
        returns the port. Already listening: the same port. Raises ``OSError`` when it is taken."""
        key = (namespace, service, port_key)
        with self._lock:
            cur = self._listeners.get(key)
            if cur is not None and (not port or cur.port == port):
                return cur.port
            if cur is not None:
                cur.close()
            lst = _Listener(self, key, int(port or 0))
            self._listeners[key] = lst
            return lst.port

    def set_backends(self, namespace: str, service: str, port_key: str, backends: list[Backend]) -> None:
        """The ready endpoints of one Service port (connections already open keep theirs)."""
        with self._lock:
            lst = self._listeners.get((namespace, service, port_key))
            if lst is not None:
                lst.backends = list(backends)

    def ports(self, namespace: str, service: str) -> dict[str, int]:
        """``{port key: local port}`` a Service is served at (empty when it is not)."""
        with self._lock:
            return {k[2]: v.port for k, v in self._listeners.items() if k[:2] == (namespace, service)}

    def remove(self, namespace: str, service: str, keep: set[str] | None = None) -> None:
        """Close the Service's listeners (those not in ``keep``)."""
        with self._lock:
            gone = [k for k in self._listeners if k[:2] == (namespace, service) and (keep is None or k[2] not in keep)]
            listeners = [self._listeners.pop(k) for k in gone]
        for lst in listeners:
            lst.close()

    def close(self) -> None:
        """Close every listener."""
        with self._lock:
            listeners, self._listeners = list(self._listeners.values()), {}
        for lst in listeners:
            lst.close()
