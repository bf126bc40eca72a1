"""Host paths built from spec-controlled parts, and nothing outside their root.

Every host path that contains a string from a spec (a claim name, a ``subPath``, a ConfigMap item
path, a task or artifact name) is built here:

- :func:`check_relative` / :func:`check_component` refuse what Kubernetes' API server refuses
  (``validateLocalDescendingPath`` / ``validatePathNoBacksteps`` in kubernetes
  ``pkg/apis/core/validation/validation.go``: absolute paths and ``..`` elements), plus what no
  filesystem can hold: NUL, empty values, components longer than 255 bytes;
- :func:`safe_join` joins checked parts under a root and resolves the symbolic links already on
  disk, so a link planted inside the workspace cannot lead out of it;
- :func:`encode_component` turns any name (a KFP task, parameter or artifact name, a volume name)
  into one directory entry: injective, readable for ordinary names, never ``.``/``..``;
- :func:`within` / :func:`write_file` answer "is this inside that" and write a file without
  following a link at its last component.

Every refusal is a :class:`~localflow.errors.SpecError` whose path is the spec field the value came
from. Imports nothing of localflow but :mod:`localflow.errors`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

from localflow.errors import SpecError

__all__ = ["MAX_COMPONENT_BYTES", "check_relative", "check_component", "safe_join", "encode_component",
           "within", "write_file"]

#: NAME_MAX of Linux filesystems (ext4, xfs, tmpfs), in bytes of the UTF-8 encoding.
MAX_COMPONENT_BYTES = 255

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def _show(value) -> str:
    """``value`` for a message: repr (control characters escaped), cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_relative(value, field: str, *, what: str = "path") -> list[str]:
    """Check a relative path from a spec (``subPath``, ``items[].path``) and return its elements.

    Refused with :class:`SpecError` at ``field``: a non-string or empty value, NUL, an absolute
    path, a ``..`` element (Kubernetes ``validateLocalDescendingPath``), an element longer than
    :data:`MAX_COMPONENT_BYTES` bytes. Empty and ``.`` elements (``a//b``, ``./a``) are dropped as
    the kernel would; the result may be empty (``"."`` names the root itself).
    """
    if not isinstance(value, str) or value == "":
        raise SpecError(field, f"the {what} must be a non-empty string (got {_show(value)})",
                        fix="use a relative path such as 'data/file.txt'")
    if "\0" in value:
        raise SpecError(field, f"the {what} {_show(value)} contains a NUL character", fix="remove it")
    if value.startswith("/") or value.startswith("\\"):
        raise SpecError(field, f"the {what} {_show(value)} must be a relative path",
                        fix="remove the leading '/': it is taken relative to its volume")
    elements = value.replace("\\", "/").split("/")
    if ".." in elements:
        raise SpecError(field, f"the {what} {_show(value)} must not contain '..'",
                        fix="name a file or directory inside the volume")
    out = []
    for e in elements:
        if e in ("", "."):
            continue
        if len(e.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
            raise SpecError(field, f"the {what} has an element longer than {MAX_COMPONENT_BYTES} bytes "
                                   f"({_show(e)})", fix="shorten it")
        out.append(e)
    return out


def check_component(value, field: str, *, what: str = "name") -> str:
    """Check that ``value`` can be one directory entry as it is (a claim name, a uid): a non-empty
    string without ``/``, ``\\`` or NUL, not ``.`` or ``..``, at most :data:`MAX_COMPONENT_BYTES`
    bytes. Returns it; :class:`SpecError` at ``field`` otherwise."""
    if not isinstance(value, str) or value == "":
        raise SpecError(field, f"the {what} must be a non-empty string (got {_show(value)})",
                        fix="use lower-case letters, digits and '-'")
    if value in (".", "..") or any(c in value for c in "/\\\0"):
        raise SpecError(field, f"{_show(value)} cannot be a {what}: it must not be '.' or '..' nor contain "
                               "'/', '\\' or NUL", fix="use lower-case letters, digits and '-'")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_COMPONENT_BYTES:
        raise SpecError(field, f"the {what} is longer than {MAX_COMPONENT_BYTES} bytes", fix="shorten it")
    return value


def within(path, root) -> bool:
    """True when ``path`` is ``root`` or below it, both with symbolic links resolved."""
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


def safe_join(root, *parts: str, field: str, what: str = "path") -> Path:
    """``root`` joined with ``parts`` (each a relative path from a spec, checked with
    :func:`check_relative`), refusing with :class:`SpecError` at ``field`` anything that leaves
    ``root``, also through a symbolic link already on disk (the existing prefix of the result is
    resolved and must stay inside the resolved root). Returns the joined path (links not
    replaced, so messages and records show the workspace's own layout)."""
    elements: list[str] = []
    for part in parts:
        elements.extend(check_relative(part, field, what=what))
    path = Path(root).joinpath(*elements)
    if not within(path, root):
        raise SpecError(field, f"{_show('/'.join(elements))} leads outside {root} through a symbolic link "
                               f"(it resolves to {os.path.realpath(path)})",
                        fix="remove the link, or use a path that stays inside the volume")
    return path


def encode_component(name, *, reserved: Iterable[str] = ()) -> str:
    """``name`` (any string) as one directory entry, injectively.

    Characters in ``[A-Za-z0-9._-]`` stay; every other byte of the UTF-8 encoding becomes ``%XX``
    (so ``%`` itself is encoded and decoding is unambiguous); a leading ``.`` is encoded too, so the
    result is never ``.``, ``..`` or hidden; an empty name is ``%``. A result equal to one of
    ``reserved`` (names the caller uses itself, e.g. ``outputs``) gets its first character encoded.
    A result longer than :data:`MAX_COMPONENT_BYTES` is cut and ends with ``~`` and 16 hex digits of
    the SHA-256 of the name (``~`` never appears otherwise). ``"train.step"`` stays
    ``"train.step"``; ``"../x"`` is ``"%2E.%2Fx"``.
    """
    text = str(name)
    if text == "":
        return "%"
    raw = text.encode("utf-8", "surrogateescape")
    out = []
    for i, b in enumerate(raw):
        c = chr(b)
        out.append(c if c in _SAFE and not (i == 0 and c == ".") else f"%{b:02X}")
    enc = "".join(out)
    if enc in set(reserved):
        enc = f"%{ord(enc[0]):02X}{enc[1:]}"
    if len(enc) > MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(raw).hexdigest()[:16]
        cut = enc[:MAX_COMPONENT_BYTES - 17]
        if "%" in cut[-2:]:  # do not end in the middle of a %XX
            cut = cut[:cut.rindex("%")]
        enc = f"{cut}~{digest}"
    return enc


def write_file(path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` (created or truncated, then chmod ``mode``) without following a
    symbolic link at its last component (``O_NOFOLLOW``): a link there is an ``OSError``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        os.fchmod(f.fileno(), mode)
