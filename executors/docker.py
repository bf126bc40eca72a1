"""The docker executor: each container of a Pod is a container on the local Docker engine.

The engine is the one the standard Docker environment names (``DOCKER_HOST``, else the default
socket), reached with the docker SDK. Images are local only: a container runs
``mapping.docker_image`` or its ``image`` if the engine has it, and localflow never pulls.

One Pod = init containers one after another, then the main containers together, each created with

- ``entrypoint = argv[:1]``, ``command = argv[1:]`` (the image's ENTRYPOINT and CMD are replaced,
  as a Kubernetes ``command`` does; an empty argv keeps the image's own);
- ``env`` (image mapping ``env`` under the container's), ``working_dir``, bind mounts at the paths
  the spec names (plus the mapping's ``paths`` read-only), ``nano_cpus`` from the cpu limit,
  ``cpu_shares`` from the cpu request (1024 per core, as kubelet does), ``mem_limit`` =
  ``memswap_limit`` from the memory limit;
- the Pod's labels plus ``localflow.dev/{pod-uid,pod,namespace,container,managed-by}``, so
  :func:`find_leftovers` finds whatever a crash leaves behind;
- hostname ``spec.hostname`` (else the Pod name); with ``PodSpec.network`` the first main container
  joins the user-defined bridge network ``localflow-<network>`` with the DNS aliases
  ``<hostname>``, ``<hostname>.<namespace>.svc`` and ``<hostname>.<namespace>.svc.cluster.local``
  (the names the training operator's per-replica Services give), so replicas resolve each other;
- every container port published on ``127.0.0.1`` at a random host port (:meth:`DockerPod.port_map`).

Outcome (kubelet's ``containerStatuses[].state.terminated``, kubernetes/kubernetes
``pkg/kubelet/kuberuntime/kuberuntime_container.go``): ``State.OOMKilled`` → ``OOMKilled`` (137);
killed by :meth:`DockerPod.kill` while running and non-zero → the kill reason; 0 → ``Completed``;
else ``Error``; start refused by the runtime (no such executable) → ``ContainerCannotRun`` (127);
a container whose state cannot be read (removed behind our back, engine gone) → ``Error`` with
exit code -1 (or wait's non-zero status), never ``Completed``. Containers are removed once their
result is read; logs (stdout and stderr interleaved) stream into ``ContainerSpec.log_path`` while
they run. Differences from a cluster: containers of one Pod do not share a network namespace
(only the first carries the Pod's DNS names); ``args`` without ``command`` cannot keep the image's
ENTRYPOINT because the executor receives argv already joined.

Contrast with kfp.local's ``DockerRunner`` (kubeflow/pipelines ``sdk/python/kfp/local/docker_task_handler.py``):
no pulls, no success reported for a vanished container, labels for garbage collection.
"""
from __future__ import annotations

import datetime as _dt
import fnmatch
import math
import os
import threading
import time
import uuid

from localflow.errors import ExecutorError

from .base import ContainerResult, ContainerSpec, DrivenPod, Executor, ImageMapping, PodSpec
from .sandbox import check_sources

__all__ = [
    "DockerExecutor",
    "DockerPod",
    "find_leftovers",
    "remove_leftovers",
    "POD_UID_LABEL",
    "POD_LABEL",
    "NAMESPACE_LABEL",
    "CONTAINER_LABEL",
    "MANAGED_LABEL",
    "NETWORK_LABEL",
    "RUN_ID_LABEL",
    "NETWORK_PREFIX",
]

POD_UID_LABEL = "localflow.dev/pod-uid"
POD_LABEL = "localflow.dev/pod"
NAMESPACE_LABEL = "localflow.dev/namespace"
CONTAINER_LABEL = "localflow.dev/container"
MANAGED_LABEL = "localflow.dev/managed-by"
NETWORK_LABEL = "localflow.dev/network"
RUN_ID_LABEL = "localflow.dev/run-id"
WORKSPACE_LABEL = "localflow.dev/workspace"
#: Images a spec names that localflow's own base images stand in for when the engine lacks them and
#: ``localflow.yaml`` maps them nowhere (``python:3.11`` is kfp's default ``base_image``; busybox's
#: shell and tools stand in for alpine's in the small shell commands container components run).
FALLBACK_IMAGES = (("python:3*", "localflow/python:3.11"), ("docker.io/library/python:3*", "localflow/python:3.11"),
                   ("alpine:*", "localflow/busybox:latest"), ("busybox:*", "localflow/busybox:latest"),
                   ("docker.io/library/alpine:*", "localflow/busybox:latest"),
                   ("docker.io/library/busybox:*", "localflow/busybox:latest"))
NETWORK_PREFIX = "localflow-"
_LOG_JOIN_S = 10.0
_START_WAIT_S = 60.0


def _engine_address() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _docker():
    try:
        import docker  # noqa: F401  (the SDK; a declared dependency of localflow)
    except ImportError:  # pragma: no cover - environment problem
        raise ExecutorError("the docker Python SDK is not installed", fix="pip install docker, or use --executor subprocess") from None
    return docker


def _parse_time(value: str | None) -> float | None:
    """Docker's RFC 3339 nanosecond timestamp -> epoch seconds (``None`` for the zero time)."""
    if not value or value.startswith("0001-"):
        return None
    head, _, frac = value.rstrip("Z").partition(".")
    tz = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, _, tz = frac.partition(sign)
            tz = sign + tz
    try:
        stamp = _dt.datetime.fromisoformat(head + (f".{frac[:6]}" if frac else "") + (tz or "+00:00"))
    except ValueError:
        return None
    return stamp.timestamp()


def missing_image_error(image: str, requested: str) -> ExecutorError:
    """The error for an image the engine does not have: names it and every way to provide it."""
    mapped = f" (mapped from {requested!r})" if requested != image else ""
    return ExecutorError(
        f"image {image!r}{mapped} is not in the local Docker engine, and localflow never pulls",
        fix=f"provide it with `docker load -i <file>.tar` or `docker build -t {image} <dir>`, build the base "
        f"images with `localflow images build-base`, or map it in localflow.yaml "
        f"(images: {{{requested!r}: {{docker: localflow/python:3.11}}}}), or use --executor subprocess",
    )


class DockerExecutor(Executor):
    """Runs Pods as containers on the local Docker engine.

    ``client``: a docker SDK ``DockerClient`` (default ``docker.from_env()``, which honours
    ``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``, ``DOCKER_CERT_PATH``). ``user``: ``None`` runs as the
    image's user, ``"host"`` as this process's uid:gid (files written to bind mounts stay yours),
    anything else is passed to Docker (``"1000:1000"``). ``publish_ports``: publish container
    ports on 127.0.0.1. Raises :class:`ExecutorError` when no engine answers.
    """

    name = "docker"
    addressing = "dns"

    def __init__(self, client=None, *, user: str | None = None, publish_ports: bool = True):
        self._client = client
        self.user = f"{os.getuid()}:{os.getgid()}" if user == "host" else user
        self.publish_ports = publish_ports
        self._lock = threading.Lock()
        self._fallbacks: dict[str, str] = {}
        self._known_images: set[str] = set()
        self._networks_created: set[str] = set()
        self._pods: list[DockerPod] = []
        self.check()

    @property
    def client(self):
        """The docker SDK client (created on first use)."""
        if self._client is None:
            docker = _docker()
            try:
                self._client = docker.from_env(timeout=120, max_pool_size=64)
            except Exception as exc:  # DockerException: no socket, bad DOCKER_HOST, version probe failed
                raise self._no_engine(exc) from None
        return self._client

    @staticmethod
    def _no_engine(exc: BaseException) -> ExecutorError:
        return ExecutorError(
            f"no Docker engine answers at {_engine_address()} ({type(exc).__name__}: {str(exc)[:200]})",
            fix="start dockerd or use --executor subprocess",
        )

    def check(self) -> None:
        """Ping the engine; raise :class:`ExecutorError` naming its address when it does not answer."""
        try:
            self.client.ping()
        except ExecutorError:
            raise
        except Exception as exc:  # requests ConnectionError, APIError
            raise self._no_engine(exc) from None

    def image_for(self, c: ContainerSpec) -> str:
        """The local tag ``c`` runs: ``c.mapping.docker_image`` if mapped, else ``c.image`` if the
        engine has it, else a built-in fallback (:data:`FALLBACK_IMAGES`) chosen by ``_ensure_image``."""
        if c.mapping and c.mapping.docker_image:
            return c.mapping.docker_image
        return self._fallbacks.get(c.image, c.image)

    def image_entrypoint(self, image: str, mapping: ImageMapping | None = None) -> tuple[list[str], list[str]] | None:
        """``(ENTRYPOINT, CMD)`` of the local image that ``image`` runs as (``[]`` for unset), or
        None when the engine does not have it; the scheduler uses it for containers that set no
        ``command``, as the container runtime would."""
        c = ContainerSpec(name="", image=image, argv=[], mapping=mapping)
        tag = self.image_for(c)
        try:
            cfg = self.client.images.get(tag).attrs.get("Config") or {}
        except Exception:  # ImageNotFound, an engine that went away: the start reports it properly
            return None
        return list(cfg.get("Entrypoint") or []), list(cfg.get("Cmd") or [])

    def _has_image(self, image: str) -> bool:
        if image in self._known_images:  # one inspect per tag; a tag removed later fails at create
            return True
        docker = _docker()
        try:
            self.client.images.get(image)
            self._known_images.add(image)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 404 or "No such image" in str(exc):
                return False
            raise ExecutorError(f"the Docker engine could not inspect image {image!r}: {exc}") from None
        except Exception as exc:
            raise self._no_engine(exc) from None

    def _ensure_image(self, c: ContainerSpec) -> None:
        image = self.image_for(c)
        if not image:
            raise ExecutorError(f"container {c.name!r} names no image", fix="set spec.containers[].image")
        if self._has_image(image):
            return
        if not (c.mapping and c.mapping.docker_image):
            for pattern, fallback in FALLBACK_IMAGES:
                if fnmatch.fnmatchcase(c.image, pattern) and self._has_image(fallback):
                    with self._lock:
                        self._fallbacks[c.image] = fallback
                    return
        raise missing_image_error(image, c.image)

    def _ensure_network(self, group: str, labels: dict[str, str]) -> str:
        """Create (or reuse) the user-defined bridge network of ``group``; returns its name."""
        name = NETWORK_PREFIX + group
        with self._lock:
            if self.client.networks.list(names=[name]):
                return name
            net_labels = {NETWORK_LABEL: group, MANAGED_LABEL: "localflow"}
            for key in (RUN_ID_LABEL, WORKSPACE_LABEL):
                if labels.get(key):
                    net_labels[key] = labels[key]
            try:
                self.client.networks.create(name, driver="bridge", labels=net_labels, check_duplicate=True)
            except _docker().errors.APIError as exc:
                if exc.status_code != 409:  # 409: created meanwhile by another localflow
                    raise ExecutorError(f"could not create Docker network {name!r}: {exc}") from None
            self._networks_created.add(name)
            return name

    def start(self, pod: PodSpec) -> "DockerPod":
        """Check every image is present, create the Pod's network, then start it in a thread.

        Raises :class:`ExecutorError` (before anything runs) for a missing image or no engine, and
        for a volume whose directory is not in the workspace (a spec must not bind-mount an
        arbitrary host directory: :func:`~localflow.executors.sandbox.check_sources`).
        """
        for c in [*pod.init_containers, *pod.containers]:
            check_sources(pod, c.mounts, f" container {c.name!r}")
        for c in [*pod.init_containers, *pod.containers]:
            self._ensure_image(c)
        network = self._ensure_network(pod.network, pod.labels) if pod.network else None
        running = DockerPod(self, pod, network)
        with self._lock:
            self._pods = [p for p in self._pods if p._thread.is_alive()] + [running]
        running._thread.start()
        return running

    def close(self) -> None:
        """Kill Pods still running, then remove the networks this executor created that are empty."""
        with self._lock:
            pods = list(self._pods)
        for p in pods:
            if not p._done.is_set():
                p.kill("Killed", grace_seconds=1.0)
                p.wait(30)
        for p in pods:  # finished Pods may still be removing their containers
            p._thread.join(60)
        if self._client is None:
            return
        for name in sorted(self._networks_created):
            try:
                for net in self.client.networks.list(names=[name]):
                    net.reload()
                    if not net.attrs.get("Containers"):
                        net.remove()
            except Exception:  # already gone, or the engine went away: gc will find it
                pass
        self._networks_created.clear()


class DockerPod(DrivenPod):
    """A Pod whose containers run on the Docker engine; one thread drives it.

    Beyond :class:`RunningPod`: :meth:`port_map` (container port -> published 127.0.0.1 port) and
    :meth:`container_ids`.
    """

    def __init__(self, executor: DockerExecutor, spec: PodSpec, network: str | None):
        self.spec = spec
        self._ex = executor
        self._client = executor.client
        self._network = network
        self._lock = threading.Lock()
        self._live: dict[str, object] = {}  # container name -> docker Container not yet removed
        self._log_threads: dict[str, threading.Thread] = {}
        self._killed: str | None = None
        self._killed_names: set[str] = set()
        self._started = threading.Event()  # main containers started (or the Pod ended)
        self._done = threading.Event()
        self._results: list[ContainerResult] = []
        self._ports: dict[int, int] = {}
        self._ip: str | None = None
        self._primary = None  # the first main container (carries the Pod's DNS names)
        self._token = uuid.uuid4().hex[:6]
        self._thread = threading.Thread(target=self._drive, name=f"docker-pod-{spec.name}", daemon=True)

    # -- RunningPod ------------------------------------------------------------------------
    def kill(self, reason: str = "Killed", grace_seconds: float = 5.0) -> None:
        """``docker stop`` every container (SIGTERM, SIGKILL after ``grace_seconds``, rounded up to
        whole seconds as Docker takes them), in parallel; returns when they have stopped."""
        with self._lock:
            if self._killed is None:
                self._killed = reason
            live = list(self._live.items())
            for name, container in live:
                try:
                    container.reload()
                    if container.attrs["State"].get("Running"):
                        self._killed_names.add(name)
                except Exception:
                    pass
        stoppers = [threading.Thread(target=self._stop, args=(c, grace_seconds), daemon=True) for _, c in live]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()

    def _stop(self, container, grace_seconds: float) -> None:
        try:
            container.stop(timeout=max(0, int(math.ceil(grace_seconds))))
        except Exception:  # gone already, or not running
            pass
        try:
            container.reload()
            if container.attrs["State"].get("Running"):
                container.kill()
        except Exception:
            pass

    def pids(self) -> list[int]:
        with self._lock:
            live = list(self._live.values())
        out = []
        for container in live:
            try:
                container.reload()
                state = container.attrs["State"]
                if state.get("Running") and state.get("Pid"):
                    out.append(int(state["Pid"]))
            except Exception:
                pass
        return out

    def address(self, timeout: float = _START_WAIT_S) -> str:
        """The first main container's IP on its network (once started), else ``127.0.0.1``.

        Pods on the same network reach it there or by hostname; from this machine the published
        ports (:meth:`port_map`) on 127.0.0.1 work everywhere, the IP on Linux engines only.
        """
        self._started.wait(timeout)
        if self._ip is None and self._primary is not None:
            self._read_network(self._primary, primary=True)
        return self._ip or "127.0.0.1"

    def port_map(self, timeout: float = _START_WAIT_S) -> dict[int, int]:
        """``{containerPort: hostPort}`` of every published TCP port, host side on 127.0.0.1.

        Blocks until the main containers have started (at most ``timeout`` seconds); empty when
        no port is declared, publishing is off, or the Pod ended before starting them.
        """
        self._started.wait(timeout)
        return dict(self._ports)

    def container_ids(self) -> dict[str, str]:
        """``{container name: "docker://<id>"}`` of the containers not yet removed."""
        with self._lock:
            return {name: f"docker://{c.id}" for name, c in self._live.items()}

    # -- driving ---------------------------------------------------------------------------
    def _drive(self) -> None:
        try:
            for c in self.spec.init_containers:
                result = self._collect(c, self._launch(c, primary=False))
                if result.exit_code != 0:
                    self._results = [result]
                    return
            if self._killed:
                self._results = [ContainerResult(c.name, 137, self._killed, "killed before start")
                                 for c in self.spec.containers]
                return
            launched = [(c, self._launch(c, primary=(i == 0))) for i, c in enumerate(self.spec.containers)]
            self._started.set()
            self._results = [self._collect(c, h) for c, h in launched]
        except BaseException as exc:  # never leave a waiter hanging, never report success
            self._results = [ContainerResult(c.name, -1, "Error", f"docker executor failure: {exc!r}")
                             for c in self.spec.containers]
            raise
        finally:
            self._started.set()
            self._done.set()  # results are final: report them first, then remove the containers
            self._remove_all()

    def _create_kwargs(self, c: ContainerSpec, primary: bool) -> dict:
        docker = _docker()
        pod = self.spec
        env = dict(c.mapping.env) if c.mapping else {}
        env.update(c.env)
        mounts = []
        for m in c.mounts:
            if not os.path.exists(m.host_path):
                os.makedirs(m.host_path, exist_ok=True)  # what `docker run -v` does for a missing source
            mounts.append(docker.types.Mount(m.container_path, os.path.abspath(m.host_path), type="bind",
                                             read_only=m.read_only))
        if c.mapping:
            taken = {m.container_path for m in c.mounts}
            for container_path, host_path in c.mapping.paths.items():
                if container_path not in taken and os.path.exists(host_path):
                    mounts.append(docker.types.Mount(container_path, os.path.abspath(host_path), type="bind",
                                                     read_only=True))
        labels = {k: str(v) for k, v in pod.labels.items()}
        labels.update({POD_UID_LABEL: pod.uid, POD_LABEL: pod.name, NAMESPACE_LABEL: pod.namespace,
                       CONTAINER_LABEL: c.name, MANAGED_LABEL: "localflow"})
        hostname = (pod.hostname or pod.name)[:63]
        kw: dict = dict(
            image=self._ex.image_for(c),
            name=f"lf-{pod.namespace}-{pod.name}-{c.name}-{self._token}"[:200],
            entrypoint=c.argv[:1] or None,
            command=c.argv[1:] if c.argv else None,
            environment=env,
            working_dir=c.working_dir or None,
            mounts=mounts,
            labels=labels,
            hostname=hostname,
            detach=True,
        )
        if self._ex.user:
            kw["user"] = self._ex.user
        r = c.resources
        if r.cpu_limit:
            kw["nano_cpus"] = int(r.cpu_limit * 1e9)
        if r.cpu_request:
            kw["cpu_shares"] = max(2, int(r.cpu_request * 1024))
        if r.memory_limit:
            kw["mem_limit"] = int(r.memory_limit)
            kw["memswap_limit"] = int(r.memory_limit)
        if c.ports and self._ex.publish_ports:
            kw["ports"] = {f"{p}/tcp": ("127.0.0.1", None) for p in c.ports}
        if self._network:
            kw["network"] = self._network
            if primary:
                aliases = [hostname, f"{hostname}.{pod.namespace}.svc", f"{hostname}.{pod.namespace}.svc.cluster.local"]
                subdomain = getattr(pod, "subdomain", None)
                if subdomain:
                    aliases += [f"{hostname}.{subdomain}", f"{hostname}.{subdomain}.{pod.namespace}.svc"]
                if pod.name != hostname:
                    aliases.append(pod.name)
                kw["networking_config"] = {self._network: {"Aliases": aliases}}
        return kw

    def _launch(self, c: ContainerSpec, primary: bool):
        """Create and start ``c``; returns the container, or a ContainerResult if it never ran."""
        docker = _docker()
        started_at = _now()
        with self._lock:
            if self._killed:
                return ContainerResult(c.name, 137, self._killed, "killed before start", started_at, _now())
            try:
                container = self._client.containers.create(**self._create_kwargs(c, primary))
            except docker.errors.ImageNotFound:
                return ContainerResult(c.name, 127, "ContainerCannotRun",
                                       missing_image_error(self._ex.image_for(c), c.image).args[0], started_at, _now())
            except docker.errors.APIError as exc:
                return ContainerResult(c.name, 127, "ContainerCannotRun", _explain(exc), started_at, _now())
            self._live[c.name] = container
            try:
                container.start()
            except docker.errors.APIError as exc:
                code = 127
                try:
                    container.reload()
                    code = int(container.attrs["State"].get("ExitCode") or 127)
                except Exception:
                    pass
                return ContainerResult(c.name, code, "ContainerCannotRun", _explain(exc), started_at, _now())
        if c.log_path:
            t = threading.Thread(target=_stream_logs, args=(container, c.log_path),
                                 name=f"docker-logs-{self.spec.name}-{c.name}", daemon=True)
            self._log_threads[c.name] = t
            t.start()
        if primary:
            self._primary = container
        if c.ports:  # an inspect costs ~10-70 ms while a container starts: only when ports need reading
            self._read_network(container, primary)
        return container

    def _read_network(self, container, primary: bool) -> None:
        try:
            container.reload()
        except Exception:
            return
        settings = container.attrs.get("NetworkSettings") or {}
        for key, bindings in (settings.get("Ports") or {}).items():
            port, _, proto = key.partition("/")
            if proto == "tcp" and bindings:
                self._ports[int(port)] = int(bindings[0]["HostPort"])
        if primary:
            nets = settings.get("Networks") or {}
            net = nets.get(self._network) if self._network else (nets.get("bridge") or next(iter(nets.values()), None))
            if net and net.get("IPAddress"):
                self._ip = net["IPAddress"]

    def _collect(self, c: ContainerSpec, handle) -> ContainerResult:
        """Wait for ``handle`` to exit and turn its state into a ContainerResult; remove it."""
        if isinstance(handle, ContainerResult):
            self._remove(c.name)
            return handle
        container = handle
        status = None
        state = None
        problem = ""
        try:
            status = container.wait()
            if status.get("Error"):
                problem = f"wait failed: {status['Error']}"
                status = None
        except Exception as exc:  # NotFound (removed), connection errors (engine gone)
            problem = f"waiting failed: {type(exc).__name__}: {str(exc)[:200]}"
        if status is not None:
            try:
                container.reload()
                state = container.attrs["State"]
            except Exception as exc:
                problem = f"its state could not be read: {type(exc).__name__}"
        t = self._log_threads.pop(c.name, None)
        if t is not None:
            t.join(_LOG_JOIN_S)
        if state is None or state.get("Running"):
            code = status.get("StatusCode") if status else None
            return ContainerResult(
                c.name, code if isinstance(code, int) and code not in (0, -1) else -1, "Error",
                f"container {container.name} vanished before its exit code could be read ({problem})",
                None, _now())
        code = int(state.get("ExitCode", -1))
        started, finished = _parse_time(state.get("StartedAt")), _parse_time(state.get("FinishedAt"))
        if started is not None and finished is not None and finished < started:
            finished = started  # runc and containerd stamp with different clocks (sub-millisecond skew)
        if state.get("OOMKilled"):
            return ContainerResult(c.name, code or 137, "OOMKilled",
                                   f"memory limit of {c.resources.memory_limit} bytes reached", started, finished)
        with self._lock:
            killed = self._killed if c.name in self._killed_names else None
        if killed and code != 0:
            return ContainerResult(c.name, code, killed, "", started, finished)
        if code == 0:
            return ContainerResult(c.name, 0, "Completed", "", started, finished)
        return ContainerResult(c.name, code, "Error", state.get("Error") or "", started, finished)

    def _remove(self, name: str) -> None:
        with self._lock:
            container = self._live.pop(name, None)
        if container is not None:
            try:
                container.remove(force=True)
            except Exception:  # already gone
                pass

    def _remove_all(self) -> None:
        for name in list(self._live):
            self._remove(name)
        for t in list(self._log_threads.values()):
            t.join(_LOG_JOIN_S)
        self._log_threads.clear()


def _now() -> float:
    return time.time()


def _explain(exc) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _stream_logs(container, path: str) -> None:
    """Append the container's stdout and stderr to ``path`` as they come, until it exits."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        with open(path, "ab", buffering=0) as f:
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                f.write(chunk)
    except Exception:  # container removed or engine gone: the result says so, logs stay as far as read
        pass


def _selected(labels: dict, run_ids_alive: set | None, run_label: str) -> bool:
    if run_ids_alive is None:
        return True
    run = labels.get(run_label)
    return bool(run) and run not in run_ids_alive


def find_leftovers(client, run_ids_alive: set | None = None, *, run_label: str = RUN_ID_LABEL,
                   within: dict[str, str] | None = None):
    """Containers and networks localflow made that no live run owns: ``(containers, networks)``.

    Containers carry ``localflow.dev/pod-uid``; networks ``localflow.dev/network``. ``within``
    restricts both to objects that also carry these labels (``localflow gc`` passes its workspace's
    ``localflow.dev/workspace`` so it never touches another workspace's runs). With
    ``run_ids_alive=None`` every selected object is a leftover; with a set, those whose
    ``run_label`` names a run not in it, plus networks no container is attached to. Objects without
    a run label are kept when a set is given (they may belong to a live job). ``client``: docker SDK
    client. Follows ``docker ps -a --filter label=...`` selection.
    """
    extra = [f"{k}={v}" for k, v in (within or {}).items()]
    containers = [c for c in client.containers.list(all=True, filters={"label": [POD_UID_LABEL, *extra]},
                                                       ignore_removed=True)
                  if _selected(c.labels, run_ids_alive, run_label)]
    networks = []
    for net in client.networks.list(filters={"label": [NETWORK_LABEL, *extra]}):
        labels = net.attrs.get("Labels") or {}
        if _selected(labels, run_ids_alive, run_label):
            networks.append(net)
            continue
        try:
            net.reload()
            if not net.attrs.get("Containers"):
                networks.append(net)
        except Exception:
            pass
    return containers, networks


def remove_leftovers(client, run_ids_alive: set | None = None, *, run_label: str = RUN_ID_LABEL,
                     within: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Force-remove what :func:`find_leftovers` selects, containers first; returns the removed
    ``(container names, network names)``. Networks that still have containers attached (a live
    run's) are skipped. For ``localflow gc``."""
    containers, networks = find_leftovers(client, run_ids_alive, run_label=run_label, within=within)
    gone_c, gone_n = [], []
    for c in containers:
        try:
            c.remove(force=True)
            gone_c.append(c.name)
        except Exception:
            pass
    for net in networks:
        try:
            net.remove()
            gone_n.append(net.name)
        except Exception:
            pass
    return gone_c, gone_n
