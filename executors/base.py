"""The executor interface: one resolved Pod in, container results out.

Follows the split kubelet/container-runtime: everything Kubernetes-shaped (env ``$(VAR)``
expansion, volumes, image mapping, resources parsing) is resolved by ``localflow.scheduler``
before an executor sees a Pod; an executor only starts, waits for, and kills what it is given.
Modelled on kfp.local's one-method runner interface (kubeflow/pipelines
``sdk/python/kfp/local/task_dispatcher.py``), extended for long-running Pods with ports.
"""
from __future__ import annotations

import abc
import threading
import time
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Mount:
    """A directory or file of this machine made visible to a container.

    ``host_path``: absolute path here. ``container_path``: where the spec expects it. The docker
    executor and the sandboxed subprocess executor bind-mount (:mod:`~localflow.executors.sandbox`);
    without a sandbox the subprocess executor rewrites argv and env values that start with
    ``container_path`` to ``host_path``. ``kind``: ``"volume"`` (a workspace directory: emptyDir,
    PVC, ConfigMap/Secret, artifacts), ``"hostPath"`` (a host directory the config allows) or
    ``"image"`` (an image map path); executors refuse a ``volume`` whose ``host_path`` is outside
    the workspace.
    """

    host_path: str
    container_path: str
    read_only: bool = False
    kind: str = "volume"


@dataclass
class Resources:
    """cpu in cores (float, ``500m`` -> 0.5), memory in bytes; ``None`` limit means unlimited."""

    cpu_request: float = 0.0
    memory_request: int = 0
    cpu_limit: float | None = None
    memory_limit: int | None = None


@dataclass
class ImageMapping:
    """What an image reference means on this machine, from the ``images:`` section of ``localflow.yaml``.

    - ``python``: interpreter that ``python``/``python3`` resolve to for the subprocess executor
      (default: the interpreter running localflow).
    - ``workdir``: working directory when the container sets none.
    - ``paths``: container path -> host path (e.g. ``/opt/app: ./scenarios/training``).
    - ``env``: extra environment.
    - ``docker_image``: local image tag the docker executor runs instead of ``image``.
    - ``command`` / ``args``: the image's ENTRYPOINT / CMD, used when a container sets no
      ``command`` / ``args`` (as a container runtime falls back to the image's).
    - ``shell``: host program a bare ``sh`` means for this image (e.g. ``/bin/busybox``: a
      multi-call binary is reached through the shim directory's link named ``sh``), None: this
      machine's ``sh``.
    """

    image: str
    python: str | None = None
    workdir: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    docker_image: str | None = None
    command: list[str] | None = None
    args: list[str] | None = None
    shell: str | None = None


@dataclass
class ContainerSpec:
    """One container, fully resolved.

    ``argv`` is command + args after placeholder and ``$(VAR)`` expansion; ``log_path`` is the host
    file that receives the container's stdout and stderr interleaved; ``ports`` are container
    ports (``containerPort``) it listens on.
    """

    name: str
    image: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str | None = None
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    ports: list[int] = field(default_factory=list)
    log_path: str = ""
    mapping: ImageMapping | None = None


@dataclass
class PodSpec:
    """A Pod as an executor sees it.

    ``init_containers`` run one after another to completion before ``containers`` start
    together; the Pod is done when every container has exited. ``hostname`` and ``network``
    group Pods that must reach each other by name (a training job): the docker executor creates a
    user-defined network per ``network`` with ``hostname`` as the container's DNS name; the
    subprocess executor ignores both (every address is 127.0.0.1). ``subdomain`` (Pod
    ``spec.subdomain``) adds the DNS name ``<hostname>.<subdomain>`` as a headless Service would. ``labels`` are copied to
    containers so leftovers can be found (``localflow gc``). ``workspace_root``: the workspace
    directory (set by the scheduler); volume sources must lie inside it, and the subprocess
    sandbox keeps it writable (empty: only ``workdir``).
    """

    uid: str
    namespace: str
    name: str
    containers: list[ContainerSpec]
    init_containers: list[ContainerSpec] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str | None = None
    subdomain: str | None = None
    network: str | None = None
    workdir: str = ""  # a private host directory for this Pod (scratch, shims)
    workspace_root: str = ""


@dataclass
class ContainerResult:
    """How one container ended.

    ``reason`` is the Kubernetes ``containerStatuses[].state.terminated.reason``: ``Completed``
    (exit 0), ``Error`` (non-zero), ``OOMKilled`` (memory limit, exit 137), ``Killed`` (killed by
    localflow: cancel, deadline, eviction), ``ContainerCannotRun`` (never started, e.g. no such
    executable; exit 127). Times are epoch seconds.
    """

    name: str
    exit_code: int
    reason: str
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None


class RunningPod(abc.ABC):
    """Handle on a started Pod. Thread-safe: ``kill`` may be called while another thread waits."""

    spec: PodSpec

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> list[ContainerResult] | None:
        """Block until every container exited (results in ``spec`` order, init containers first
        when they failed) or ``timeout`` seconds passed (returns ``None``)."""

    @abc.abstractmethod
    def kill(self, reason: str = "Killed", grace_seconds: float = 5.0) -> None:
        """Stop every container: SIGTERM, then SIGKILL after ``grace_seconds``; no orphans remain.
        Containers killed this way end with ``reason`` (unless they had already exited)."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Host process ids of the Pod's main processes (for psutil sampling); may be empty."""

    def address(self) -> str:
        """The address at which other Pods and the local gateway reach this Pod's ports."""
        return "127.0.0.1"

    def container_ids(self) -> dict[str, str]:
        """``{container name: containerID}`` of the containers started so far, in the Kubernetes
        ``<runtime>://<id>`` form (``process://<pid>``, ``docker://<id>``)."""
        return {}

    def wait_container_ids(self, names, timeout: float) -> dict[str, str]:
        """:meth:`container_ids` once every container in ``names`` started, the Pod ended, or
        ``timeout`` seconds (real time) passed. This default polls every millisecond; executors
        that know when a container starts override it to wait without polling."""
        deadline = time.monotonic() + timeout
        want = set(names)
        while True:
            ids = self.container_ids()
            if want <= set(ids) or time.monotonic() >= deadline or self.wait(0) is not None:
                return ids
            time.sleep(0.001)


class DrivenPod(RunningPod):
    """A RunningPod driven by one thread of its executor, which stores the results in
    ``self._results`` and then sets ``self._done`` (a :class:`threading.Event`)."""

    _done: "threading.Event"
    _results: list[ContainerResult]

    def wait(self, timeout: float | None = None) -> list[ContainerResult] | None:
        if not self._done.wait(timeout):
            return None
        return list(self._results)


class Executor(abc.ABC):
    """Runs Pods. ``name`` is what ``--executor`` selects."""

    name: ClassVar[str] = ""

    def check(self) -> None:
        """Raise :class:`localflow.errors.ExecutorError` if this executor cannot run here now."""

    @abc.abstractmethod
    def start(self, pod: PodSpec) -> RunningPod:
        """Start ``pod`` and return at once. Raises ``ExecutorError`` when nothing could start
        (missing image); a container whose executable is missing ends with ``ContainerCannotRun``."""

    def close(self) -> None:
        """Release resources (networks, clients). Running Pods must have been waited for or killed."""
