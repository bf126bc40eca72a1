"""Docker fixtures and helpers for tests marked ``pytest.mark.docker``.

Import the fixtures into a test module (``from docker_support import docker_client, docker_executor``).
``docker_client`` pings the engine once per session: when none answers the test is skipped with the
reason, unless ``CI=true``, where it fails (CI must prove the docker executor on a real engine).
Images come from ``bash .ci/docker-setup.sh`` / ``localflow images build-base``; a missing one is
treated the same way (skip locally, fail in CI).
"""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest

from localflow.executors.base import ContainerSpec, PodSpec
from polling import wait_until  # noqa: F401  (the docker tests import it from here)

PYTHON_IMAGE = "localflow/python:3.11"
BUSYBOX_IMAGE = "localflow/busybox:latest"


def in_ci() -> bool:
    """True when ``CI=true`` (docker tests must run, not skip)."""
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` locally; fail with it in CI."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client():
    """A docker SDK client to an engine that answers (DOCKER_HOST or the default socket)."""
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        skip_or_fail(f"no Docker engine answers at {where} ({type(exc).__name__}); run `bash .ci/docker-setup.sh`")
    yield client
    client.close()


def require_image(client, tag: str) -> str:
    """Return ``tag`` if the engine has it, else skip (fail in CI) naming how to build it."""
    import docker

    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        skip_or_fail(f"image {tag} is missing; build it with `localflow images build-base` (or .ci/docker-setup.sh)")
    return tag


@pytest.fixture(scope="session")
def python_image(docker_client) -> str:
    """``localflow/python:3.11`` (Debian python3 + pip + kfp), present in the engine."""
    return require_image(docker_client, PYTHON_IMAGE)


@pytest.fixture(scope="session")
def busybox_image(docker_client) -> str:
    """``localflow/busybox:latest``, present in the engine."""
    return require_image(docker_client, BUSYBOX_IMAGE)


@pytest.fixture
def docker_executor(docker_client):
    """A fresh DockerExecutor on the session's engine; closed (networks removed) after the test."""
    from localflow.executors.docker import DockerExecutor

    ex = DockerExecutor(client=docker_client)
    yield ex
    ex.close()


def pod(name: str, *containers: ContainerSpec, init: tuple[ContainerSpec, ...] = (), **kw) -> PodSpec:
    """A PodSpec with a unique uid and a unique ``localflow.dev/run-id`` label (``kw`` overrides)."""
    token = uuid.uuid4().hex[:8]
    labels = {"localflow.dev/run-id": f"test-{token}", **kw.pop("labels", {})}
    # the tests' volumes live in pytest's tmp_path, under the system temp dir: their workspace
    kw.setdefault("workspace_root", tempfile.gettempdir())
    return PodSpec(uid=f"uid-{token}", namespace=kw.pop("namespace", "default"), name=name,
                   containers=list(containers), init_containers=list(init), labels=labels, **kw)


def containers_of(client, pod_spec: PodSpec) -> list:
    """Every container (running or not) labelled with ``pod_spec``'s uid."""
    return client.containers.list(all=True, filters={"label": f"localflow.dev/pod-uid={pod_spec.uid}"}, ignore_removed=True)
