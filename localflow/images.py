"""Build the local base images the docker executor runs, without any image registry.

Three images, each built only when its tag is missing (``force=True`` rebuilds):

- ``localflow/debian:bookworm`` — a minimal Debian root filesystem made by
  ``debootstrap --variant=minbase`` from the machine's Debian mirror and turned into an image with
  ``docker import``.
- ``localflow/python:3.11`` — ``FROM localflow/debian:bookworm`` plus Debian's ``python3`` (3.11 on
  bookworm), ``pip`` and ``kfp`` (the host's kfp version, ``--no-deps``: under ``_KFP_RUNTIME=true``
  ``kfp.dsl.executor_main`` imports nothing outside the standard library). Every byte comes from
  the host: ``.deb`` files are downloaded by the host's apt against the base image's dpkg status,
  wheels by the host's pip; the Dockerfile builds with ``network_mode="none"``. With pip and the
  same kfp version present, the ``pip install kfp==<v> --no-deps`` prologue of compiled lightweight
  components succeeds offline.
- ``localflow/busybox:latest`` — Debian's ``busybox-static`` binary alone (~2 MB), for measuring
  container overhead.

Command line (``localflow images build-base`` wires :func:`main`; ``python -m localflow.images
build-base`` works without the CLI)::

    localflow images build-base [--tag localflow/python:3.11] [--no-python] [--no-busybox]
                                [--kfp-version 2.17.3] [--with REQUIREMENT ...]
                                [--with-host DISTRIBUTION ...] [--training] [--mirror URL] [--force]

``--training`` builds ``localflow/training-python:latest`` (the Python image plus this machine's
torch, scikit-learn and numpy versions; ~1.3 GB, ~2 minutes) for the training scenarios.

Needs root (debootstrap), ``debootstrap``, ``apt-get`` and ``dpkg-deb`` (a Debian-like host), a
Debian mirror and a PyPI index (or pip's configured wheel directories), and a Docker engine.
Follows the ``docker import`` route of the Debian docker images (debuerreotype) and kfp's
lightweight-component contract (kubeflow/pipelines ``sdk/python/kfp/dsl/component_factory.py``).
"""
from __future__ import annotations

import argparse
import glob
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from typing import Callable, Sequence

from localflow.errors import ExecutorError

__all__ = [
    "DEBIAN_TAG",
    "PYTHON_TAG",
    "BUSYBOX_TAG",
    "TRAINING_TAG",
    "TRAINING_PACKAGES",
    "host_pins",
    "BuildReport",
    "build_base",
    "debian_mirror",
    "main",
]

DEBIAN_TAG = "localflow/debian:bookworm"
PYTHON_TAG = "localflow/python:3.11"
TRAINING_TAG = "localflow/training-python:latest"
# What the training scenarios import (scenarios/training/localflow.yaml maps their images to TRAINING_TAG).
TRAINING_PACKAGES = ("torch", "scikit-learn", "numpy")
BUSYBOX_TAG = "localflow/busybox:latest"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Debian packages added to the base image for the python image (dependencies resolved by apt).
PYTHON_DEBS = ("python3", "ca-certificates")

# Multi-stage so that the wheels (hundreds of MB with --with torch) stay out of the final image.
PYTHON_DOCKERFILE = """\
FROM {base} AS python
COPY debs/ /tmp/localflow-debs/
RUN DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends /tmp/localflow-debs/*.deb \\
 && rm -rf /tmp/localflow-debs /var/cache/apt/*.bin /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \\
 && rm -f /usr/lib/python3*/EXTERNALLY-MANAGED \\
 && ln -sf /usr/bin/python3 /usr/local/bin/python

FROM python AS packages
LABEL dev.localflow.build-stage="packages"
COPY wheels/ /tmp/localflow-wheels/
RUN set -- /tmp/localflow-wheels/pip-*.whl && python3 "$1/pip" install --no-index --no-deps --no-cache-dir \\
      --root-user-action=ignore --disable-pip-version-check /tmp/localflow-wheels/*.whl

FROM python
COPY --from=packages /usr/local /usr/local
LABEL dev.localflow.kfp-version="{kfp_version}"
ENV PIP_ROOT_USER_ACTION=ignore
CMD ["python3"]
"""


@dataclass
class BuildReport:
    """What :func:`build_base` did: per tag, ``"built"`` or ``"present"``, and seconds spent."""

    actions: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0

    def lines(self) -> list[str]:
        """One human-readable line per image, e.g. ``localflow/python:3.11: built in 14.2s``."""
        return [
            f"{tag}: {action}" + (f" in {self.seconds[tag]:.1f}s" if action == "built" else "")
            for tag, action in self.actions.items()
        ]


def debian_mirror(sources_dir: str = "/etc/apt") -> str:
    """The Debian archive URL this machine's apt uses (not the security archive).

    Reads ``sources.list`` (one-line ``deb URL suite ...``) and ``sources.list.d/*.list|*.sources``
    (deb822 ``URIs:``); returns :data:`DEFAULT_MIRROR` when none names a Debian archive.
    Env ``LOCALFLOW_DEBIAN_MIRROR`` overrides.
    """
    if os.environ.get("LOCALFLOW_DEBIAN_MIRROR"):
        return os.environ["LOCALFLOW_DEBIAN_MIRROR"]
    files = [os.path.join(sources_dir, "sources.list")]
    files += sorted(glob.glob(os.path.join(sources_dir, "sources.list.d", "*.list")))
    files += sorted(glob.glob(os.path.join(sources_dir, "sources.list.d", "*.sources")))
    for path in files:
        try:
            text = open(path, encoding="utf-8").read()
        except OSError:
            continue
        urls = re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
        urls += [u for line in re.findall(r"^URIs:\s*(.+)$", text, re.M) for u in line.split()]
        for url in urls:
            if "security" not in url and re.search(r"/debian/?$", url):
                return url.rstrip("/")
    return DEFAULT_MIRROR


def _run(argv: Sequence[str], log: Callable[[str], None], **kw) -> subprocess.CompletedProcess:
    log("+ " + " ".join(argv))
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
        raise ExecutorError(
            f"`{' '.join(argv[:3])} ...` failed with exit code {proc.returncode}:\n" + "\n".join(tail),
            fix="see the output above; the host needs a reachable Debian mirror and PyPI index",
        )
    return proc


def _client():
    import docker  # the docker SDK; imported late so `--help` works without it

    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # DockerException, requests errors: engine absent or not answering
        raise ExecutorError(
            f"no Docker engine answers at {where} ({type(exc).__name__})",
            fix="start dockerd (or set DOCKER_HOST) before building images",
        ) from None
    return client


def _exists(client, tag: str) -> bool:
    import docker

    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise ExecutorError(
            f"`{tool}` is not installed", fix=f"apt-get install -y {tool if tool != 'apt-get' else 'apt'}"
        )


def _tar_and_import(client, rootfs: str, tag: str, changes: list[str], work: str, log) -> None:
    """``tar -C rootfs -c . | docker import`` through a temporary file (keeps owners and devices)."""
    tarball = os.path.join(work, tag.replace("/", "_").replace(":", "_") + ".tar")
    _run(["tar", "--numeric-owner", "-C", rootfs, "-cf", tarball, "."], log)
    repo, _, version = tag.rpartition(":")
    log(f"+ docker import {tarball} {tag}")
    client.api.import_image_from_file(tarball, repository=repo, tag=version, changes=changes)
    os.unlink(tarball)


def _build_debian(client, tag: str, suite: str, mirror: str, work: str, log) -> None:
    _need("debootstrap")
    if os.geteuid() != 0:
        raise ExecutorError(
            f"building {tag} runs debootstrap, which needs root",
            fix="run `sudo localflow images build-base`, or provide the image with `docker load -i`",
        )
    rootfs = os.path.join(work, "rootfs")
    _run(["debootstrap", "--variant=minbase", suite, rootfs, mirror], log)
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in glob.glob(os.path.join(rootfs, sub, "*")):
            if os.path.isfile(path) and not path.endswith("lock"):
                os.unlink(path)
    _tar_and_import(client, rootfs, tag, [f"ENV {PATH_ENV}", 'CMD ["bash"]'], work, log)
    shutil.rmtree(rootfs, ignore_errors=True)


def _dpkg_status(client, image: str, dest: str) -> None:
    """Copy ``/var/lib/dpkg/status`` out of ``image`` (what is installed there) to ``dest``."""
    container = client.containers.create(image, command=["true"])
    try:
        bits, _ = container.get_archive("/var/lib/dpkg/status")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile("status")
            with open(dest, "wb") as out:
                out.write(member.read())
    finally:
        container.remove(force=True)


def _apt_download(packages: Sequence[str], status: str, dest: str, log) -> None:
    """Download ``packages`` plus whatever they need that ``status`` lacks into ``dest``."""
    _need("apt-get")
    os.makedirs(os.path.join(dest, "partial"), exist_ok=True)
    argv = [
        "apt-get", "install", "--download-only", "--no-install-recommends", "-y", "-q",
        "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache::archives={dest}",
        "-o", "Debug::NoLocking=1", *packages,
    ]
    try:
        _run(argv, log)
    except ExecutorError:
        log("apt-get could not resolve the packages; refreshing package lists")
        _run(["apt-get", "update", "-q"], log)
        _run(argv, log)
    shutil.rmtree(os.path.join(dest, "partial"), ignore_errors=True)
    for lock in glob.glob(os.path.join(dest, "lock")):
        os.unlink(lock)


def host_pins(names: Sequence[str]) -> list[str]:
    """``["torch==2.13.0+cpu", ...]``: each named distribution pinned to the version installed here.

    Raises :class:`ExecutorError` naming a distribution that is not installed.
    """
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise ExecutorError(f"{name} is not installed on this machine, so its version is unknown",
                                fix=f"pip install {name}, or pass --with {name}==<version>") from None
    return pins


def _kfp_version(requested: str | None) -> str:
    if requested:
        return requested
    try:
        return metadata.version("kfp")
    except metadata.PackageNotFoundError:
        raise ExecutorError(
            "kfp is not installed on this machine, so the kfp version for localflow/python is unknown",
            fix="pip install kfp (the image gets the same version) or pass --kfp-version",
        ) from None


def _build_python(client, tag: str, base: str, kfp_version: str, extra: Sequence[str], work: str, log) -> None:
    ctx = os.path.join(work, "python-context")
    debs, wheels = os.path.join(ctx, "debs"), os.path.join(ctx, "wheels")
    os.makedirs(wheels, exist_ok=True)
    status = os.path.join(work, "dpkg-status")
    _dpkg_status(client, base, status)
    _apt_download(PYTHON_DEBS, status, debs, log)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", wheels]
    _run(pip + ["--no-deps", f"kfp=={kfp_version}", "pip"], log)
    if extra:
        _run(pip + ["--only-binary=:all:", "--python-version", "3.11", *extra], log)
    with open(os.path.join(ctx, "Dockerfile"), "w", encoding="utf-8") as f:
        f.write(PYTHON_DOCKERFILE.format(base=base, kfp_version=kfp_version))
    log(f"+ docker build --network none -t {tag} {ctx}")
    try:
        client.images.build(path=ctx, tag=tag, rm=True, forcerm=True, network_mode="none", pull=False)
    except Exception as exc:  # docker.errors.BuildError carries the build log
        lines = [str(c.get("stream") or c.get("error") or "").rstrip() for c in getattr(exc, "build_log", [])]
        raise ExecutorError(
            f"docker build of {tag} failed: {exc}\n" + "\n".join(l for l in lines[-40:] if l),
            fix="see the build output above",
        ) from None
    finally:  # the untagged "packages" stage holds every wheel: drop it
        try:
            client.images.prune(filters={"dangling": True, "label": "dev.localflow.build-stage=packages"})
        except Exception:
            pass


def _build_busybox(client, tag: str, work: str, log) -> None:
    _need("apt-get")
    _need("dpkg-deb")
    dl = os.path.join(work, "busybox-deb")
    os.makedirs(dl, exist_ok=True)
    _run(["apt-get", "download", "-q", "busybox-static"], log, cwd=dl)
    rootfs = os.path.join(work, "busybox-rootfs")
    _run(["dpkg-deb", "-x", glob.glob(os.path.join(dl, "*.deb"))[0], os.path.join(work, "busybox-x")], log)
    for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "root"):
        os.makedirs(os.path.join(rootfs, d), exist_ok=True)
    os.chmod(os.path.join(rootfs, "tmp"), 0o1777)
    binary = os.path.join(rootfs, "bin", "busybox")
    shutil.copy2(os.path.join(work, "busybox-x", "bin", "busybox"), binary)
    applets = _run([binary, "--list"], log).stdout.split()
    for applet in applets:
        link = os.path.join(rootfs, "bin", applet)
        if not os.path.lexists(link):
            os.symlink("busybox", link)
    _tar_and_import(client, rootfs, tag, ["ENV PATH=/bin", 'CMD ["sh"]'], work, log)


def build_base(
    tag: str = PYTHON_TAG,
    python: bool = True,
    *,
    busybox: bool = True,
    debian_tag: str = DEBIAN_TAG,
    busybox_tag: str = BUSYBOX_TAG,
    kfp_version: str | None = None,
    extra_requirements: Sequence[str] = (),
    host_packages: Sequence[str] = (),
    suite: str = "bookworm",
    mirror: str | None = None,
    force: bool = False,
    client=None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> BuildReport:
    """Build the base images that are missing (all of them with ``force``) and return what was done.

    ``tag``: the Python image (built when ``python``), ``FROM debian_tag``; ``busybox``: also build
    ``busybox_tag``. ``kfp_version`` defaults to the kfp installed here; ``extra_requirements``
    (pip requirement strings) are downloaded as binary wheels with their dependencies and installed
    into the Python image, and ``host_packages`` (distribution names) likewise at the versions
    installed here (:func:`host_pins`). ``mirror`` defaults to :func:`debian_mirror`. ``client``: a docker SDK
    client (default ``docker.from_env()``, so ``DOCKER_HOST`` is honoured). Takes ~1-2 minutes on a
    2-core machine with a nearby mirror.

    Raises :class:`ExecutorError` when no engine answers, a tool is missing, debootstrap would need
    root, or a download or build step fails (the message carries the step's last output lines).
    """
    started = time.monotonic()
    extra_requirements = [*extra_requirements, *host_pins(host_packages)]
    client = client or _client()
    report = BuildReport()
    plan = [(debian_tag, "debian")]
    if python:
        plan.append((tag, "python"))
    if busybox:
        plan.append((busybox_tag, "busybox"))
    with tempfile.TemporaryDirectory(prefix="localflow-images-") as work:
        for image, kind in plan:
            if not force and _exists(client, image):
                report.actions[image] = "present"
                log(f"{image}: present, not rebuilt")
                continue
            t0 = time.monotonic()
            sub = os.path.join(work, kind)
            os.makedirs(sub)
            if kind == "debian":
                _build_debian(client, image, suite, mirror or debian_mirror(), sub, log)
            elif kind == "python":
                _build_python(client, image, debian_tag, _kfp_version(kfp_version), extra_requirements, sub, log)
            else:
                _build_busybox(client, image, sub, log)
            shutil.rmtree(sub, ignore_errors=True)
            report.actions[image] = "built"
            report.seconds[image] = time.monotonic() - t0
            log(f"{image}: built in {report.seconds[image]:.1f}s")
    report.total_seconds = time.monotonic() - started
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m localflow.images build-base [options]``: the same as ``localflow images build-base``.

    Returns the exit status (0 built or present, 1 on :class:`ExecutorError`, printed on stderr).
    """
    parser = argparse.ArgumentParser(prog="localflow images", description="Build local base images without a registry.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build-base", help="build localflow/debian, localflow/python and localflow/busybox if missing")
    b.add_argument("--tag", default=PYTHON_TAG, help=f"Python image tag (default {PYTHON_TAG})")
    b.add_argument("--no-python", action="store_true", help="build only the Debian base (and busybox)")
    b.add_argument("--no-busybox", action="store_true", help="skip the busybox image")
    b.add_argument("--kfp-version", help="kfp version in the Python image (default: the one installed here)")
    b.add_argument("--with", dest="extra", action="append", default=[], metavar="REQUIREMENT",
                   help="extra pip requirement installed into the Python image (repeatable)")
    b.add_argument("--with-host", dest="host", action="append", default=[], metavar="DISTRIBUTION",
                   help="like --with, pinned to the version installed on this machine (repeatable)")
    b.add_argument("--training", action="store_true",
                   help=f"build {TRAINING_TAG} instead: --with-host {' '.join(TRAINING_PACKAGES)}, no busybox")
    b.add_argument("--mirror", help="Debian mirror URL (default: from /etc/apt sources)")
    b.add_argument("--force", action="store_true", help="rebuild images that exist")
    args = parser.parse_args(argv)
    if args.training:
        args.tag = TRAINING_TAG if args.tag == PYTHON_TAG else args.tag
        args.host = [*args.host, *TRAINING_PACKAGES]
        args.no_busybox = True
    try:
        report = build_base(
            tag=args.tag, python=not args.no_python, busybox=not args.no_busybox, kfp_version=args.kfp_version,
            extra_requirements=args.extra, host_packages=args.host, mirror=args.mirror, force=args.force,
        )
    except ExecutorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    print(f"total {report.total_seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
