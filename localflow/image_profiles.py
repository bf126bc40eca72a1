"""Built-in profiles of well-known images: what ``sh`` and the ENTRYPOINT mean for them.

On the subprocess executor a container's programs are this machine's. For most commands that is
right, but an image's shell is part of its behaviour: busybox and alpine images run busybox ash as
``sh`` (it accepts ``[[ ... ]]`` and ``==``, which Debian's dash rejects with ``[[: not found``),
Debian, Ubuntu and the ``python`` images run dash, ``library/bash`` runs bash. The profiles below
say which host program stands in (Debian's ``busybox``/``busybox-static`` package provides busybox;
``apt-get install busybox-static``), and that these images set no ENTRYPOINT (their CMD is a
shell or ``python3``), so a container giving only ``args`` runs them as the program, as Docker
would. ``localflow.yaml`` overrides each field (``shell:``, ``entrypoint:``).

:func:`profile_for` is consulted by :class:`localflow.config.ImageMap` for every image, mapped or
not; a profile never sets ``python``, ``paths`` or ``docker``.
"""
from __future__ import annotations

import fnmatch
import functools
import shutil
from dataclasses import dataclass

__all__ = ["ImageProfile", "PROFILES", "profile_for", "normalize_image", "busybox_program"]


@dataclass(frozen=True)
class ImageProfile:
    """``shell``: host program that a bare ``sh`` means (None: the host's ``/bin/sh``);
    ``entrypoint``: the image's ENTRYPOINT (``()`` = none, so args are the program; None: unknown)."""

    name: str
    shell: str | None
    entrypoint: tuple[str, ...] | None


@functools.lru_cache(maxsize=None)
def busybox_program() -> str | None:
    """Path of this machine's busybox (Debian ``busybox`` or ``busybox-static``), or None."""
    for candidate in ("busybox", "/usr/bin/busybox", "/bin/busybox"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@functools.lru_cache(maxsize=None)
def _program(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


#: (name patterns after :func:`normalize_image`, profile name, shell kind, entrypoint).
PROFILES: tuple[tuple[tuple[str, ...], str, str, tuple[str, ...] | None], ...] = (
    (("busybox", "busybox:*", "busybox@*", "ghcr.io/containerd/busybox", "ghcr.io/containerd/busybox:*",
      "ghcr.io/containerd/busybox@*"), "busybox", "busybox", ()),
    (("alpine", "alpine:*", "alpine@*"), "alpine", "busybox", ()),
    (("debian", "debian:*", "ubuntu", "ubuntu:*", "python", "python:*"), "debian", "dash", ()),
    (("bash", "bash:*"), "bash", "bash", None),
)


def normalize_image(image: str) -> str:
    """``docker.io/library/busybox:1.36`` -> ``busybox:1.36``: Docker Hub's implicit registry and
    ``library/`` namespace removed, so one pattern covers every spelling."""
    ref = image.strip()
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix):]
            break
    if ref.startswith("library/"):
        ref = ref[len("library/"):]
    return ref


def _shell(kind: str) -> str | None:
    if kind == "busybox":
        return busybox_program()
    if kind == "dash":
        return _program("dash", "/bin/sh")
    return _program(kind)


def profile_for(image: str) -> ImageProfile | None:
    """The built-in :class:`ImageProfile` of ``image`` (any registry spelling of the names in
    :data:`PROFILES`), or None. Its ``shell`` is None when the host lacks that program (busybox not
    installed): the host's ``sh`` then runs, as for any image without a profile."""
    ref = normalize_image(image)
    for patterns, name, kind, entrypoint in PROFILES:
        if any(fnmatch.fnmatchcase(ref, p) for p in patterns):
            return ImageProfile(name=name, shell=_shell(kind), entrypoint=entrypoint)
    return None
