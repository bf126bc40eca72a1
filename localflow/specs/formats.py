"""Every file format kfp emits or accepts for a compiled pipeline: YAML, JSON and the packages
``kfp.Client`` uploads (``.zip``, ``.tar.gz``/``.tgz`` holding one pipeline file).

:func:`read_spec_text` returns the text of the pipeline document inside a spec file; YAML and
JSON need nothing more (JSON is YAML), archives are opened and their pipeline file chosen as
kubeflow/pipelines ``sdk/python/kfp/client/client.py`` ``_extract_pipeline_yaml`` chooses it:
``pipeline.yaml`` when present, else the only ``.yaml`` (``.yml``/``.json`` accepted here too).
"""
from __future__ import annotations

import os
import tarfile
import zipfile

from localflow.errors import SpecError

__all__ = ["ARCHIVE_SUFFIXES", "is_archive", "read_spec_text"]

ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz")
_PIPELINE_SUFFIXES = (".yaml", ".yml", ".json")
#: A compiled pipeline is kilobytes to a few MB; anything past this inside a package is refused.
MAX_MEMBER_BYTES = 64 * 1024 * 1024


def is_archive(path: str) -> bool:
    """True when ``path`` names a kfp pipeline package by its suffix or its magic bytes."""
    if path.lower().endswith(ARCHIVE_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return False
    return head.startswith(b"PK\x03\x04") or head.startswith(b"\x1f\x8b")


def _choose(names: list[str], source: str) -> str:
    files = [n for n in names if n.lower().endswith(_PIPELINE_SUFFIXES) and not os.path.basename(n).startswith(".")]
    for preferred in ("pipeline.yaml", "pipeline.yml", "pipeline.json"):
        if preferred in files:
            return preferred
    if len(files) == 1:
        return files[0]
    if not files:
        raise SpecError(source, "the package holds no pipeline file (.yaml, .yml or .json)",
                        fix="package the compiled pipeline as pipeline.yaml inside the archive")
    raise SpecError(source, f"the package holds several pipeline files ({', '.join(sorted(files)[:5])}) "
                            "and none is named pipeline.yaml", fix="name the one to run pipeline.yaml")


def read_spec_text(path: str) -> str:
    """The UTF-8 text of the pipeline file inside the package ``path`` (see the module doc).

    Raises SpecError naming the file for a corrupt archive, a package without (or with several
    unnamed) pipeline files, an oversized member, or a member that is not UTF-8.
    """
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                infos = {i.filename: i for i in zf.infolist() if not i.is_dir()}
                name = _choose(list(infos), path)
                if infos[name].file_size > MAX_MEMBER_BYTES:
                    raise SpecError(f"{path}: {name}", f"is larger than {MAX_MEMBER_BYTES} bytes")
                data = zf.read(name)
        else:
            with tarfile.open(path, "r:*") as tf:
                members = {m.name.removeprefix("./"): m for m in tf.getmembers() if m.isfile()}
                name = _choose(list(members), path)
                if members[name].size > MAX_MEMBER_BYTES:
                    raise SpecError(f"{path}: {name}", f"is larger than {MAX_MEMBER_BYTES} bytes")
                fh = tf.extractfile(members[name])
                data = fh.read() if fh is not None else b""
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        raise SpecError(path, f"is not a readable .zip or .tar.gz package ({exc})",
                        fix="pass the compiled pipeline YAML, or the package kfp.Client would upload") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: {name}", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
