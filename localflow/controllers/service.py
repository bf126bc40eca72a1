"""The core ``v1 Service`` controller: Endpoints by selector, and a local address per Service port.

Endpoints follow kubernetes ``pkg/controller/endpoint/endpoints_controller.go`` (``syncService``,
``addEndpointSubset``) and ``pkg/api/v1/endpoints/util.go`` (``RepackSubsets``):

- a Service with a ``spec.selector`` keeps a ``v1 Endpoints`` object of the same name listing its
  Pods (same namespace, labels matching, with a ``podIP``, not being deleted, not ended): a Ready
  Pod under ``subsets[].addresses``, an unready one under ``notReadyAddresses`` (all under
  ``addresses`` with ``publishNotReadyAddresses``); each address names its Pod (``targetRef``);
- each Service port becomes an endpoint port (same ``name``, ``protocol``) whose ``port`` is the
  ``targetPort`` (default ``port``): a number as is, a name through the Pod's ``containerPorts``
  (a Pod without that named port is left out of that port); subsets group addresses with the
  same ports. On this machine every Pod is ``127.0.0.1``: a Pod that asked for a host port of its
  own (``localflow.dev/port-<containerPort>``, :func:`localflow.node.probes.port_requests`) is
  listed at that host port, the port it listens on;
- a Service without a selector leaves its Endpoints to whoever writes them (served all the same);
  deleting the Service deletes its Endpoints.

Addresses (what kube-proxy gives a ClusterIP): each TCP Service port is served on
``127.0.0.1:<port>`` by the node's proxy (:class:`localflow.node.services.ServiceProxy`),
forwarding each connection round-robin to the port's ready endpoints. The port is allocated once
(a free one) and recorded on the Service as the annotation ``localflow.dev/address-<port name,
or the port number when unnamed>: 127.0.0.1:<port>``, so the address stays the same while the
Service exists (across Pod replacements, and bound again by a restarted server); ``localflow get
svc`` shows it under ``EXTERNAL-IP`` and ``describe`` among the annotations. Deleting the Service
closes its listeners. Under Docker the endpoints are the containers' network addresses and the
proxy reaches them through the ports Docker publishes on 127.0.0.1; Pods on one Docker network
also reach each other by hostname and network alias (:mod:`localflow.executors.docker`).

Not done: ``type: NodePort/LoadBalancer`` specifics (served like ClusterIP), UDP/SCTP ports (listed
in Endpoints, not served), ``sessionAffinity``, EndpointSlices, ``spec.clusterIP`` allocation.
"""
from __future__ import annotations

import copy

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.errors import AlreadyExists, Conflict, LocalflowError, NotFound, SpecError
from localflow.fakes.selectors import matches
from localflow.node.probes import container_port, host_ports

__all__ = ["ServiceReconciler", "ADDRESS_ANNOTATION", "service_ports", "endpoint_subsets", "address_of", "describe_service"]

ADDRESS_ANNOTATION = "localflow.dev/address-"
COMPONENT = "endpoint-controller"


def service_ports(svc: dict) -> list[dict]:
    """The Service's ports with the API server's defaults (``protocol`` TCP, ``targetPort`` =
    ``port``) and ``key``: the port's name, or its number when unnamed. Raises :class:`SpecError`
    at ``Service.spec.ports[i]`` for a port that is not 1..65535."""
    out = []
    for i, p in enumerate((svc.get("spec") or {}).get("ports") or []):
        path = f"Service.spec.ports[{i}]"
        if not isinstance(p, dict):
            raise SpecError(path, "must be a mapping with port (and name, targetPort, protocol)")
        port = p.get("port")
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            raise SpecError(f"{path}.port", f"must be between 1 and 65535, inclusive (got {port!r})")
        target = p.get("targetPort", port)
        out.append({"name": p.get("name") or "", "port": port, "protocol": p.get("protocol") or "TCP",
                    "targetPort": target, "key": str(p.get("name") or port)})
    return out


def _phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase") or "Pending"


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def endpoint_subsets(svc: dict, pods: list[dict]) -> list[dict]:
    """``Endpoints.subsets`` of ``svc`` over ``pods`` (already selected): see the module docstring."""
    ports = service_ports(svc)
    publish_all = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    groups: dict[tuple, dict] = {}
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        meta, st = pod["metadata"], pod.get("status") or {}
        if not st.get("podIP") or meta.get("deletionTimestamp") or _phase(pod) in ("Succeeded", "Failed"):
            continue
        mapped = host_ports(pod)
        eports = []
        for sp in ports:
            num = container_port(pod, None, sp["targetPort"])
            if num is None:
                continue  # podutil.FindPort: no such named port on this Pod
            eports.append({**({"name": sp["name"]} if sp["name"] else {}), "port": mapped.get(num, num),
                           "protocol": sp["protocol"]})
        if not eports:
            continue
        addr = {"ip": st["podIP"], "nodeName": (pod.get("spec") or {}).get("nodeName") or "",
                "targetRef": {"kind": "Pod", "namespace": meta.get("namespace") or "default", "name": meta["name"],
                              "uid": meta.get("uid", "")}}
        if not addr["nodeName"]:
            addr.pop("nodeName")
        group = groups.setdefault(tuple((p.get("name", ""), p["port"], p["protocol"]) for p in eports),
                                  {"ports": eports})
        group.setdefault("addresses" if publish_all or _ready(pod) else "notReadyAddresses", []).append(addr)
    return [groups[k] for k in sorted(groups)]


def address_of(svc: dict, port_key: str) -> str | None:
    """The local address recorded for a Service port (``127.0.0.1:<port>``), or None."""
    return ((svc.get("metadata") or {}).get("annotations") or {}).get(ADDRESS_ANNOTATION + port_key)


class ServiceReconciler:
    """Reconciles ``v1`` Services (see the module docstring); register it on a
    :class:`~localflow.controllers.manager.ControllerManager`. ``scheduler``: the node, whose
    ``services`` proxy serves the addresses. Pods are watched by selector (``watches``) and
    Endpoints by name, so readiness changes reach the Endpoints and the proxy at once."""

    kind = "Service"
    owns = ()

    def __init__(self, store, scheduler, clock: Clock = SYSTEM_CLOCK):
        self.store, self.scheduler, self.clock = store, scheduler, clock
        self.proxy = scheduler.services
        self.watches = {"Pod": self._services_of_pod, "Endpoints": self._service_of_endpoints}

    # ------------------------------------------------------------------ event mapping

    def _services_of_pod(self, pod: dict) -> list[tuple]:
        ns = pod["metadata"].get("namespace") or "default"
        labels = pod["metadata"].get("labels") or {}
        return [("Service", ns, s["metadata"]["name"]) for s in self.store.list("Service", ns)
                if (s.get("spec") or {}).get("selector") and matches(labels, {"matchLabels": s["spec"]["selector"]})]

    @staticmethod
    def _service_of_endpoints(ep: dict) -> list[tuple]:
        return [("Service", ep["metadata"].get("namespace") or "default", ep["metadata"]["name"])]

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, key) -> float | None:
        """One pass over ``("Service", namespace, name)``: addresses, Endpoints, the proxy's backends."""
        _, ns, name = key
        ns = ns or "default"
        try:
            svc = self.store.get("Service", name, ns)
        except NotFound:
            self.proxy.remove(ns, name)
            self._delete_endpoints(ns, name)
            return None
        try:
            ports = service_ports(svc)
        except SpecError as err:
            self.store.record_event(svc, "FailedToUpdateEndpoint", err.message, type="Warning", component=COMPONENT)
            return None
        if (svc.get("spec") or {}).get("type") == "ExternalName":
            self.proxy.remove(ns, name)
            return None
        retry = self._serve(svc, ports)
        selector = (svc.get("spec") or {}).get("selector")
        if selector:
            pods = [p for p in self.store.list("Pod", ns)
                    if matches(p["metadata"].get("labels") or {}, {"matchLabels": selector})]
            ep = self._write_endpoints(svc, endpoint_subsets(svc, pods))
        else:
            try:
                ep = self.store.get("Endpoints", name, ns)
            except NotFound:
                ep = None
        self._backends(ns, name, ports, (ep or {}).get("subsets") or [])
        return retry

    def _serve(self, svc: dict, ports: list[dict]) -> float | None:
        """Listen on every TCP port's recorded address (allocating and recording a free one the
        first time); returns seconds until a retry when a recorded port is taken."""
        meta = svc["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        ann = meta.get("annotations") or {}
        record, retry = {}, None
        keys = set()
        for sp in ports:
            if sp["protocol"] != "TCP":
                continue
            keys.add(sp["key"])
            have = ann.get(ADDRESS_ANNOTATION + sp["key"])
            want = int(have.rsplit(":", 1)[1]) if have and have.rsplit(":", 1)[-1].isdigit() else 0
            try:
                got = self.proxy.listen(ns, name, sp["key"], want)
            except OSError as exc:
                self.store.record_event(svc, "FailedToServe", f"cannot listen on 127.0.0.1:{want} for port {sp['key']}: "
                                        f"{exc.strerror or exc}", type="Warning", component="localflow-proxy")
                retry = 5.0
                continue
            if have != f"127.0.0.1:{got}":
                record[ADDRESS_ANNOTATION + sp["key"]] = f"127.0.0.1:{got}"
        self.proxy.remove(ns, name, keep=keys)
        if record:
            try:
                self.store.patch("Service", name, {"metadata": {"annotations": record}}, ns)
            except NotFound:
                self.proxy.remove(ns, name)
        return retry

    def _write_endpoints(self, svc: dict, subsets: list[dict]) -> dict | None:
        meta = svc["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        labels = dict(meta.get("labels") or {})
        if (svc.get("spec") or {}).get("clusterIP") == "None":
            labels["service.kubernetes.io/headless"] = ""
        for _ in range(5):
            try:
                cur = self.store.get("Endpoints", name, ns)
            except NotFound:
                cur = None
            if cur is None:
                obj = {"apiVersion": "v1", "kind": "Endpoints",
                       "metadata": {"name": name, "namespace": ns, **({"labels": labels} if labels else {}),
                                    "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": self.clock.rfc3339()}},
                       "subsets": subsets}
                try:
                    return self.store.create(obj)
                except AlreadyExists:
                    continue
            if (cur.get("subsets") or []) == subsets and (cur["metadata"].get("labels") or {}) == labels:
                return cur
            obj = copy.deepcopy(cur)
            obj["subsets"] = subsets
            if labels:
                obj["metadata"]["labels"] = labels
            else:
                obj["metadata"].pop("labels", None)
            obj["metadata"].setdefault("annotations", {})["endpoints.kubernetes.io/last-change-trigger-time"] = \
                self.clock.rfc3339()
            try:
                return self.store.update(obj)
            except (Conflict, NotFound):
                continue
        raise LocalflowError(f"could not write endpoints {ns}/{name}: the object kept changing")

    def _delete_endpoints(self, ns: str, name: str) -> None:
        try:
            self.store.delete("Endpoints", name, ns)
        except NotFound:
            pass

    def _backends(self, ns: str, name: str, ports: list[dict], subsets: list[dict]) -> None:
        """Hand the proxy each port's ready endpoints: ``(ip, endpoint port, namespace/pod)``."""
        for sp in ports:
            backends = []
            for sub in subsets:
                eport = next((p for p in sub.get("ports") or [] if (p.get("name") or "") == sp["name"]), None)
                if eport is None and len(ports) == 1 and len(sub.get("ports") or []) == 1:
                    eport = sub["ports"][0]
                if eport is None:
                    continue
                for a in sub.get("addresses") or []:
                    ref = a.get("targetRef") or {}
                    pod = f"{ref.get('namespace') or ns}/{ref['name']}" if ref.get("name") else None
                    backends.append((a["ip"], int(eport["port"]), pod))
            self.proxy.set_backends(ns, name, sp["key"], backends)


def describe_service(svc: dict, events: list[dict]) -> str:
    """``localflow describe svc``: kubectl's ``ServiceDescriber`` lines (selector, type, IP, each
    port with its targetPort) plus, per port, ``Address:`` where this machine serves it."""
    from localflow import render

    spec = svc.get("spec") or {}
    lines = render._header(svc)
    lines.append("Selector:     " + (",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"))
    lines.append(f"Type:         {spec.get('type') or 'ClusterIP'}")
    lines.append(f"IP:           {spec.get('clusterIP') or '<none>'}")
    try:
        ports = service_ports(svc)
    except SpecError:
        ports = []
    for p in ports:
        lines.append(f"Port:         {p['name'] or '<unset>'}  {p['port']}/{p['protocol']}")
        lines.append(f"TargetPort:   {p['targetPort']}/{p['protocol']}")
        lines.append(f"Address:      {address_of(svc, p['key']) or '<none>'}")
    lines.append(f"Session Affinity:  {spec.get('sessionAffinity') or 'None'}")
    return "\n".join(lines + render._events(events))
