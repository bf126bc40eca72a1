"""One submitted object run to completion, in a process of its own started by the server.

``python -m localflow.server.worker -W WS --kind KIND -n NS --uid UID NAME`` reads the object the
server claimed, and runs it with the same runner ``localflow run`` uses
(the kind table's ``runner``, the existing blocking controllers), as ``localflow run`` would in
the command's own process: the same live progress on stderr, the same result on stdout, the same
exit codes (0, 1, 2, 130) and the same records in the metadata (so ``localflow get runs`` shows a
detached run exactly as a foreground one). SIGTERM (sent by the server when it stops) cancels the
run as Ctrl-C cancels ``localflow run``: its Pods are killed and it is recorded CANCELED.

The object exists already: the runner's ``create`` of it becomes an update of the submission
(:class:`AdoptingStore`: same uid, resourceVersion-checked), so whoever watches it by name sees
one object go from submitted to finished. A process per run keeps a run's signal handling and
faults exactly those of ``localflow run``, and one failing run cannot take the server down.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import signal
import sys

from localflow.errors import LocalflowError, escape

from .submit import MANAGER_ANNOTATION, SUBMISSION_ANNOTATION, submission_of

__all__ = ["AdoptingStore", "main"]


class AdoptingStore:
    """An :class:`~localflow.fakes.ObjectStore` whose first ``create`` of ``target`` (same kind,
    namespace, name) updates the stored submission instead: uid and resourceVersion of ``target``
    (a :class:`~localflow.errors.Conflict` if it changed meanwhile), labels and annotations merged,
    a Run's ``spec`` merged over the submitted one (``spec.pipelineSpec`` stays). Every other call
    goes to ``store``."""

    def __init__(self, store, target: dict):
        self._store, self._target, self._adopted = store, target, False

    def __getattr__(self, name):
        return getattr(self._store, name)

    def create(self, obj: dict) -> dict:
        t = self._target["metadata"]
        m = obj.get("metadata") or {}
        if self._adopted or obj.get("kind") != self._target["kind"] or m.get("name") != t["name"] \
                or (m.get("namespace") or "default") != (t.get("namespace") or "default"):
            return self._store.create(obj)
        self._adopted = True
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        meta.update(uid=t["uid"], resourceVersion=t["resourceVersion"], namespace=t.get("namespace") or "default")
        meta["labels"] = {**(t.get("labels") or {}), **(meta.get("labels") or {})}
        meta["annotations"] = {**(t.get("annotations") or {}), **(meta.get("annotations") or {})}
        if new.get("kind") == "Run":
            new["spec"] = {**(self._target.get("spec") or {}), **(new.get("spec") or {})}
        return self._store.update(new)


def _docs(obj: dict, sub: dict) -> list[dict]:
    """The documents ``localflow run`` was given: a Run's ``spec.pipelineSpec``; a job itself (as
    submitted, without what the store added) followed by the file's other documents."""
    if obj["kind"] == "Run":
        docs = (obj.get("spec") or {}).get("pipelineSpec")
        if not docs:
            raise LocalflowError(f'Run "{obj["metadata"]["name"]}" has no spec.pipelineSpec to run',
                                 fix="submit pipelines with `localflow run SPEC --detach`")
        return docs
    job = copy.deepcopy(obj)
    job.pop("status", None)
    meta = job["metadata"]
    for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"):
        meta.pop(k, None)
    ann = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in (SUBMISSION_ANNOTATION, MANAGER_ANNOTATION)}
    if ann:
        meta["annotations"] = ann
    else:
        meta.pop("annotations", None)
    return [job, *(sub.get("docs") or [])]


_interrupted = False


def _interrupt(signum, frame):
    global _interrupted
    if _interrupted:
        return
    _interrupted = True
    from localflow.faults import on_signal

    on_signal()


def _config(sub: dict) -> str | None:
    """The object's own config (``run --config``), else the server's ``serve --config``."""
    return sub.get("config") or os.environ.get("LOCALFLOW_SERVER_CONFIG") or None


def _resume(ws, obj: dict, sub: dict) -> int:
    """Continue a pipeline Run whose process died (:func:`localflow.runners.resume_pipeline_run`)."""
    from localflow import api, runners
    from localflow.metadata import MetadataStore
    from localflow.progress import Progress

    run_id = (obj.get("status") or {}).get("runId") or (obj["metadata"].get("labels") or {}).get("localflow.dev/run-id")
    with MetadataStore(ws.db_path) as md:
        executor = sub.get("executor") or md.get_run(run_id).get("executor") or "subprocess"
    progress = Progress(enabled=True)
    with api.open_runtime(ws, executor, config=_config(sub)) as rt:
        result = runners.resume_pipeline_run(rt, obj, on_task=progress,
                                             install=False if sub.get("install") is False else None)
    progress.summary(result)
    return 0 if result.succeeded else 1


def run_object(workspace: str, kind: str, name: str, namespace: str, uid: str | None, resume: bool = False) -> int:
    """Run the submitted object; returns the exit code ``localflow run`` would."""
    from localflow import api, runners  # noqa: F401  (registers the runnable kinds)
    from localflow.fakes import ObjectStore
    from localflow.progress import Progress
    from localflow.render import as_list, dump
    from localflow.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    with ObjectStore(ws.db_path) as store:
        obj = store.get(kind, name, namespace)
    if uid and obj["metadata"].get("uid") != uid:
        raise LocalflowError(f"{kind} {name} was replaced (uid {obj['metadata'].get('uid')}, not {uid})")
    sub = submission_of(obj)
    if sub.get("cwd") and os.path.isdir(sub["cwd"]):
        os.chdir(sub["cwd"])  # relative paths of the spec and config as the command saw them
    if resume:
        return _resume(ws, obj, sub)
    docs = _docs(obj, sub)
    spec_kind = "PipelineSpec" if kind == "Run" else obj["kind"]
    runner = api._runner(spec_kind, None)
    output = sub.get("output")
    progress = Progress(enabled=output is None)
    extra = {"install": False} if sub.get("install") is False else {}
    with api.open_runtime(ws, sub.get("executor") or "subprocess", config=_config(sub)) as rt:
        adopting = dataclasses.replace(rt, store=AdoptingStore(rt.store, obj))
        result = runner(docs, adopting, params=sub.get("params") or None, cache=sub.get("cache", True),
                        namespace=namespace, on_task=progress, source=sub.get("source"), run_name=name, **extra)
        result = api._with_config_hint(result, rt, sub.get("source"), "cli")
    if output:
        items = [result.object] + list(result.pods) if result.object else list(result.pods)
        print(dump(as_list(items), output))
    else:
        progress.summary(result)
    return 0 if result.succeeded else 1


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="localflow-worker")
    ap.add_argument("-W", "--workspace", required=True)
    ap.add_argument("--kind", required=True)
    ap.add_argument("-n", "--namespace", default="default")
    ap.add_argument("--uid", default=None)
    ap.add_argument("--resume", action="store_true", help="continue a Run whose process died")
    ap.add_argument("name")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = run_object(args.workspace, args.kind, args.name, args.namespace, args.uid, args.resume)
    except LocalflowError as e:
        print(f"error: {escape(str(e))}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted: the run was canceled and recorded", file=sys.stderr)
        code = 130
    except Exception as e:  # noqa: BLE001 - one line, as the CLI says it
        if os.environ.get("LOCALFLOW_DEBUG"):
            raise
        print(f"error: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    main()
