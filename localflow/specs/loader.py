"""Read spec files: multi-document YAML into dicts, and tell which kind each document is.

A file may hold several documents (``---``): a compiled KFP pipeline is one PipelineSpec
document plus an optional kfp-kubernetes platform document; Kubernetes-style specs (TFJob,
PyTorchJob, ...) carry ``apiVersion``/``kind``. Errors name ``<file>:<line>:<column>``.

The loader has caps, checked on the parser's event stream before any object is built: the text
size (:data:`MAX_DOCUMENT_BYTES`), the nesting depth (:data:`~localflow.validation.MAX_DEPTH`) and the
number of values the documents expand to through YAML aliases (:data:`MAX_EXPANDED_NODES`), so a
"billion laughs" file is refused in milliseconds and deep nesting never reaches libyaml's
recursive composer (which crashes the interpreter at depth ~100000). Timestamps and ``!!binary``
stay strings, as they do when ``sigs.k8s.io/yaml`` converts YAML to JSON for the API server.
"""
from __future__ import annotations

import os
from typing import Any

import yaml

from localflow import kinds
from localflow.errors import SpecError
from localflow.specs import formats
from localflow.validation import MAX_DEPTH, check_tree

# libyaml's loader when PyYAML was built with it: same safe semantics, ~10x faster on compiled IR
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

__all__ = ["load_documents", "detect_kind", "unwrap_pipeline_job", "PIPELINE_SPEC",
           "MAX_DOCUMENT_BYTES", "MAX_EXPANDED_NODES"]

#: Largest spec file accepted (a compiled pipeline of hundreds of tasks is a few MB).
MAX_DOCUMENT_BYTES = 16 * 2**20
#: Most values (scalars, mappings, lists) all documents of one file may expand to, aliases counted
#: at every use: the expanded object is what every later step (validation, JSON, the store) walks.
MAX_EXPANDED_NODES = 1_000_000

_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _SafeLoader(_BaseLoader):
    """The safe loader without implicit timestamps (``2024-01-01`` stays a string; JSON has no dates)."""


_SafeLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
    for ch, resolvers in _BaseLoader.yaml_implicit_resolvers.items()}
_SafeLoader.add_constructor(_TIMESTAMP, _BaseLoader.construct_yaml_str)
_SafeLoader.add_constructor("tag:yaml.org,2002:binary", _BaseLoader.construct_yaml_str)


def _where(name: str, mark) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}" if mark is not None else name


def _check_events(text: str, name: str) -> None:
    """Walk the parser's events once: refuse nesting deeper than MAX_DEPTH and more than
    MAX_EXPANDED_NODES values after alias expansion, without building any object.

    Each frame on the stack is ``[anchor, expanded size, height]``; an anchor's size and height are
    remembered when its node ends, so an alias costs what its node would if written out again.
    """
    anchors: dict[str, tuple[int, int]] = {}
    stack: list[list] = []
    total = 0
    aliased = False

    def add(size: int, height: int, mark) -> None:
        nonlocal total
        total += size
        if stack:
            stack[-1][1] += size
            stack[-1][2] = max(stack[-1][2], height + 1)
        if len(stack) + height > MAX_DEPTH:
            raise SpecError(_where(name, mark), f"values are nested deeper than {MAX_DEPTH} levels",
                            fix="flatten the document; no Kubeflow spec nests this deep")
        if total > MAX_EXPANDED_NODES:
            why = "the document contains excessive aliasing: its anchors and aliases (&a, *a) expand to" \
                if aliased else "the file holds"
            raise SpecError(_where(name, mark), f"{why} more than {MAX_EXPANDED_NODES} values",
                            fix="write the values out instead of nesting aliases" if aliased else
                            "split the file; a spec this large is not a Kubeflow spec")

    for ev in yaml.parse(text, Loader=_BaseLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            stack.append([ev.anchor, 0, 0])
            if len(stack) > MAX_DEPTH:
                add(0, 0, ev.start_mark)
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            anchor, size, height = stack.pop()
            if anchor:
                anchors[anchor] = (size + 1, height)
            add(size + 1, height, ev.start_mark)
            total -= size  # its children were counted when they ended
        elif isinstance(ev, yaml.ScalarEvent):
            if ev.anchor:
                anchors[ev.anchor] = (1, 0)
            add(1, 0, ev.start_mark)
        elif isinstance(ev, yaml.AliasEvent):
            aliased = True
            size, height = anchors.get(ev.anchor, (1, 0))
            add(size, height, ev.start_mark)
        elif isinstance(ev, yaml.DocumentStartEvent):
            anchors.clear()  # anchors do not cross documents

#: The kind name :func:`detect_kind` returns for a compiled KFP pipeline (or a PipelineJob).
PIPELINE_SPEC = kinds.PIPELINE_SPEC

def load_documents(source: str | os.PathLike, *, text: str | None = None) -> list[dict]:
    """Parse every YAML document of ``source`` (or of ``text`` when given; ``source`` then only
    names it in errors) with ``yaml.safe_load_all``; empty documents are skipped.

    Returns a list of dicts in file order. Raises SpecError when the file does not exist,
    SpecError(``<file>:<line>:<col>``) for malformed YAML (the YAML parser's message), and
    SpecError(``<file>: document N``) when a document is not a mapping.
    """
    name = os.fspath(source)
    if text is None and os.path.isfile(name) and formats.is_archive(name):
        text = formats.read_spec_text(name)  # a .zip/.tar.gz package as kfp.Client uploads it
    if text is None:
        try:
            if os.path.getsize(name) > MAX_DOCUMENT_BYTES:
                raise SpecError(name, f"is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB",
                                fix="a spec file is YAML of a few MB at most; check that this is the right file")
            with open(name, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise SpecError(name, "no such file", fix="check the path") from None
        except IsADirectoryError:
            raise SpecError(name, "is a directory, not a YAML file") from None
        except UnicodeDecodeError as exc:
            raise SpecError(name, f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except OSError as exc:  # a FIFO, a device, no permission
            raise SpecError(name, f"cannot be read ({exc.strerror or exc})", fix="pass a readable YAML file") from None
    if len(text) > MAX_DOCUMENT_BYTES:
        raise SpecError(name, f"is larger than {MAX_DOCUMENT_BYTES // 2**20} MiB",
                        fix="a spec file is YAML of a few MB at most; check that this is the right file")
    try:
        _check_events(text, name)
        raw = list(yaml.load_all(text, Loader=_SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{problem} ({exc.context})"
        raise SpecError(where, problem, fix="fix the YAML syntax at that line and column") from None
    except yaml.YAMLError as exc:
        raise SpecError(name, f"invalid YAML: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a !!float tag on a non-number
        raise SpecError(name, f"invalid YAML value: {exc}", fix="remove the explicit !!tag or fix the value") from None
    docs: list[dict] = []
    for index, doc in enumerate(raw):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SpecError(
                f"{name}: document {index + 1}",
                f"expected a mapping (a spec with keys), got {type(doc).__name__}",
                fix="a spec file holds mappings such as a compiled pipeline or a TFJob",
            )
        docs.append(check_tree(doc, _doc_root(doc, index, len(raw), name)))
    return docs


def _doc_root(doc: dict, index: int, count: int, name: str) -> str:
    """How field paths of one document start: its kind (``TFJob``), none for a PipelineSpec (the IR's
    own paths: ``root.dag...``), ``platforms`` for its platform document."""
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.isidentifier():
        return kind
    if count > 1 and index > 0 and "platforms" in doc:
        return ""
    return "" if "pipelineInfo" in doc or "pipelineSpec" in doc else f"{name}: document {index + 1}"


def unwrap_pipeline_job(doc: dict) -> tuple[dict, dict | None]:
    """Split a PipelineJob (``{pipelineSpec: {...}, runtimeConfig: {...}}``) into its
    PipelineSpec and runtimeConfig; a plain PipelineSpec comes back with ``None``."""
    inner = doc.get("pipelineSpec")
    if isinstance(inner, dict) and "pipelineInfo" not in doc:
        return inner, doc.get("runtimeConfig")
    return doc, None


def detect_kind(doc: dict[str, Any], path: str = "") -> str:
    """Name the kind of one document.

    ``"PipelineSpec"`` for a compiled KFP pipeline (has ``pipelineInfo`` and ``root``) or a
    PipelineJob wrapping one in ``pipelineSpec``; otherwise ``doc["kind"]``, after checking its
    ``apiVersion`` against the kind table (:func:`localflow.kinds.check_api_version`: one version
    per kind; a version localflow knows and does not run, e.g. the MPI Operator's
    ``kubeflow.org/v2beta1`` MPIJob, is refused with the fix). Kinds not in the table come back as
    written; the caller decides. Raises SpecError at ``path`` when the document is neither, or when
    the apiVersion is missing or wrong.
    """
    spec, _ = unwrap_pipeline_job(doc)
    if isinstance(spec, dict) and "pipelineInfo" in spec and "root" in spec:
        return PIPELINE_SPEC
    kind = doc.get("kind")
    prefix = f"{path}." if path else ""
    if not isinstance(kind, str) or not kind:
        raise SpecError(
            path or "document",
            "is neither a compiled KFP pipeline (pipelineInfo + root) nor a Kubernetes object (apiVersion + kind)",
            fix="pass the YAML written by kfp.compiler.Compiler().compile(...) or a TFJob/PyTorchJob/... manifest",
        )
    api = doc.get("apiVersion")
    allowed = kinds.accepted_api_versions(kind)
    if not api:
        raise SpecError(
            f"{prefix}{kind}.apiVersion",
            "is missing",
            fix=f"set apiVersion: {allowed[0]}" if allowed else "set the apiVersion of the resource",
        )
    kinds.check_api_version(kind, str(api), f"{prefix}{kind}.")
    for key in ("metadata", "spec"):
        if key in doc and not isinstance(doc[key], dict):
            raise SpecError(f"{prefix}{kind}.{key}", f"must be a mapping (got {type(doc[key]).__name__} {str(doc[key])[:40]!r})",
                            fix="check the indentation and the ':' after each key")
    return kind
