"""The Python API: ``localflow.run(spec)`` and the runtime it runs in.

Everything the CLI does is a function here (sqlite-utils' habit: library first, CLI second). A
:class:`Runtime` (:mod:`localflow.runtime`) bundles one workspace's object store, metadata store,
scheduler and executor; :func:`run` loads a spec, finds its kind in the kind table
(:mod:`localflow.kinds`), calls the runner the table names and returns a :class:`Run`. Adding a
kind is described there; nothing here changes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from localflow import kinds as kind_table
from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.config import Config
from localflow.errors import NotFound, SpecError
from localflow.fakes import ObjectStore
from localflow.metadata import MetadataStore
from localflow.runtime import Run, Runtime, log_file, open_runtime, read_logs
from localflow.scheduler import WORKSPACE_LABEL, workspace_id
from localflow.specs.loader import detect_kind, load_documents
from localflow.workspace import Workspace, resolve_workspace

__all__ = ["run", "Run", "Runtime", "open_runtime", "load_spec", "garbage_collect", "apply",
           "read_logs", "log_file", "delete", "run_object", "object_exists", "kind_info"]


def delete(kind: str, name: str, workspace: str | os.PathLike | Workspace | None = None, *,
           namespace: str = "default") -> tuple[Any, str, str]:
    """``kubectl delete KIND NAME``: delete the object and what it owns (ownerReferences cascade), and
    the logs of every Pod that went with it, so a re-run under the same name starts clean. ``run
    NAME`` reaches the object of a run of any kind (a pipeline's Run, a training job). The metadata
    history (runs, executions, artifacts) stays. Returns ``(KindInfo, name, namespace)`` of what
    was deleted; NotFound when there is nothing to delete."""
    from localflow import logfiles
    from localflow.fakes import resolve_kind

    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    if not ws.db_path.exists():
        raise NotFound(f"no localflow workspace at {ws.root}", fix="run something first (`localflow run SPEC`) or pass --workspace")
    info = kind_info(kind)
    with ObjectStore(ws.db_path) as store, MetadataStore(ws.db_path) as md:
        if info.kind == "Run" and not object_exists(store, "Run", name, namespace):
            obj = run_object(store, md, name, namespace)
            if obj is None:
                raise NotFound(f"run {name} has no object left to delete (its metadata history stays)")
            info = resolve_kind(obj["kind"])
            name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace", namespace)
        gone = store.delete(info.kind, name, namespace)
        logfiles.remove_for(ws.logs_dir, gone, lambda: {p["metadata"]["uid"] for p in store.list("Pod", None)})
    return info, name, namespace


def kind_info(kind: str):
    """The store's kind for what a user typed (plural, singular, short name, Kind, or an alias of
    the kind table such as ``pipelineruns`` for a pipeline's Run); SpecError listing the known
    kinds otherwise."""
    return kind_table.lookup(kind)


def run_object(store, md, name: str, namespace: str) -> dict | None:
    """The object a run of any kind is mirrored by (a pipeline's Run, a training job), by run name
    or id; None when that object was deleted. NotFound when no run has that name."""
    from localflow.fakes import resolve_kind

    record = md.get_run(name)
    k = kind_table.for_run_kind(record["kind"])
    kind = k.kind if k is not None else record["kind"]
    try:
        return store.get(resolve_kind(kind).kind, record["name"], record.get("namespace") or namespace)
    except (NotFound, SpecError):
        return None


def object_exists(store, kind: str, name: str, ns: str) -> bool:
    """Whether ``store`` holds the object ``kind``/``ns``/``name``."""
    try:
        store.get(kind, name, ns)
        return True
    except NotFound:
        return False


def load_spec(spec: Any) -> tuple[str, list[dict], str | None]:
    """Normalise what :func:`run` accepts into ``(kind, documents, source path)``.

    Accepts a path (str or PathLike), YAML text (a string containing a newline), a dict, a list
    of dicts, or a kfp ``@dsl.pipeline`` function (compiled in memory with the real compiler).
    """
    source = None
    if hasattr(spec, "pipeline_spec") or hasattr(spec, "component_spec"):
        from localflow.specs.pipeline import compile_pipeline_func

        docs = compile_pipeline_func(spec)
        source = getattr(spec, "name", None) or "<pipeline function>"
    elif isinstance(spec, dict):
        docs = [spec]
    elif isinstance(spec, list):
        docs = list(spec)
    elif isinstance(spec, (str, os.PathLike)) and (isinstance(spec, os.PathLike) or "\n" not in spec):
        source = str(spec)
        if source.endswith(".py"):
            raise SpecError(source, "is a Python file; localflow runs compiled pipelines (YAML) and job specs",
                            fix=f"compile it with kfp: `kfp dsl compile --py {source} --output "
                                f"{source[:-3]}.yaml`, then run the YAML; or from Python: `localflow.run(my_pipeline)` "
                                "with the @dsl.pipeline function")
        docs = load_documents(source)
    elif isinstance(spec, str):
        docs = load_documents("<text>", text=spec)
        source = "<text>"
    else:
        raise SpecError("spec", f"cannot run a {type(spec).__name__}",
                        fix="pass a YAML path, YAML text, a dict, or a kfp pipeline function")
    if not docs:
        raise SpecError(source or "spec", "the file holds no document")
    kind = detect_kind(docs[0])
    return kind, docs, source


def run(spec: Any, params: dict | None = None, executor: str = "subprocess",
        workspace: str | os.PathLike | Workspace | None = None, *, config: str | os.PathLike | Config | None = None,
        cache: bool = True, namespace: str = "default", on_task: Callable | None = None,
        clock: Clock = SYSTEM_CLOCK, runtime: Runtime | None = None, surface: str = "python", **options) -> Run:
    """Run a spec to completion and return its :class:`Run`.

    ``spec``: path, YAML text, dict(s) or a kfp pipeline function; ``params``: pipeline
    parameters (Python values; strings are cast by the declared type); ``executor``:
    ``subprocess`` (default) or ``docker``; ``workspace``: directory; ``cache``: use the KFP task
    cache. Raises :class:`SpecError` (bad spec/params/config) before anything runs; a run that
    fails returns a Run with ``state == "FAILED"`` (call :meth:`Run.raise_for_state`).
    ``surface``: whose words errors use for the inputs: ``"python"`` names this function's
    arguments (``params['n']``, ``executor=``), ``"cli"`` the command's flags (``-p n``,
    ``--executor``) (:mod:`localflow.vocabulary`).
    """
    if surface not in ("python", "cli"):
        raise SpecError("surface", f"must be 'python' or 'cli' (got {surface!r})")
    from localflow.errors import LocalflowError
    from localflow.vocabulary import to_python_api

    try:
        return _run(spec, params, executor, workspace, config=config, cache=cache, namespace=namespace,
                    on_task=on_task, clock=clock, runtime=runtime, surface=surface, **options)
    except LocalflowError as exc:
        if surface == "python":
            to_python_api(exc)
        raise


def _run(spec, params, executor, workspace, *, config, cache, namespace, on_task, clock, runtime, surface,
         **options) -> Run:
    kind, docs, source = load_spec(spec)
    from localflow.validation import check_dns1123_label, check_dns1123_subdomain

    check_dns1123_label("namespace", namespace)  # as the API server checks metadata.namespace
    check_dns1123_subdomain("run_name", options.get("run_name"), required=False)
    runner = _runner(kind, source)
    if runtime is not None:
        return _with_config_hint(runner(docs, runtime, params=params, cache=cache, namespace=namespace,
                                        on_task=on_task, source=source, **options), runtime, source, surface)
    with open_runtime(workspace, executor, config=config, clock=clock) as rt:
        return _with_config_hint(runner(docs, rt, params=params, cache=cache, namespace=namespace, on_task=on_task,
                                        source=source, **options), rt, source, surface)


def _runner(kind: str, source: str | None) -> Callable[..., Run]:
    """The runner of a file whose first document is ``kind``: the kind table's ``runner``, or the
    bundle runner for a companion kind (a Secret, a runtime: the first job of the file runs);
    SpecError naming the runnable kinds for any other kind."""
    from localflow import runners

    entry = kind_table.for_document(kind)
    if entry is not None and entry.runner:
        return entry.hook("runner")
    if entry is not None and entry.companion:
        return runners.run_bundle
    if runners.long_running([kind]):
        raise runners.served_refusal(source or "spec", [kind])
    raise SpecError(f"{source or 'spec'}: kind", f"localflow cannot run kind {kind!r} yet",
                    fix=f"runnable kinds: {runners.runnable_kinds()}")


def _with_config_hint(run: Run, rt: Runtime, source: str | None, surface: str = "cli") -> Run:
    """A failed run that used no ``localflow.yaml`` while one lies beside its spec (as the bundled
    scenarios have) says so in its error: that file is not read unless passed with ``--config``."""
    if run.succeeded or rt.config.path is not None or not source or source.startswith("<"):
        return run
    beside = Path(source).resolve().parent / "localflow.yaml"
    if beside.is_file():
        rel = os.path.relpath(beside)
        how = f"--config {rel}" if surface == "cli" else f"config={rel!r}"
        hint = f"note: {rel} maps this spec's images and was not used; pass {how}"
        run.error = f"{run.error} ({hint})" if run.error else hint
    return run


def apply(spec: Any, workspace: str | os.PathLike | Workspace | None = None, *,
          namespace: str = "default") -> list[tuple[str, dict]]:
    """``kubectl apply``: create or replace the objects in ``spec`` (path, YAML text or dicts) in the
    workspace's object store, e.g. the Secrets, ConfigMaps and TrainingRuntimes that runs refer to.

    Returns ``[("created" | "configured" | "unchanged", stored object), ...]``. The store's admission
    defaults and validates each object (a Secret's ``stringData`` is merged into ``data``
    base64-encoded, as the API server does); an object equal to the stored one once defaulted is
    ``unchanged``. Kinds localflow runs (pipelines,
    training jobs) are refused with a
    pointer to ``localflow run``; a kind the store does not know is a :class:`SpecError` listing the
    known ones. Objects keep their namespace, else get ``namespace``.
    """
    from localflow.errors import NotFound as _NotFound

    kind, docs, source = load_spec(spec)
    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    ws.ensure()
    from localflow.fakes import admission
    from localflow.fakes.kinds import api_group

    out = []
    store = ObjectStore(ws.db_path)
    try:
        for i, doc in enumerate(docs):
            k = detect_kind(doc)
            entry = kind_table.for_document(k)
            if entry is not None and entry.runner:
                raise SpecError(f"{source or 'spec'}: document {i + 1}", f"{k} is run, not applied",
                                fix=f"use `localflow run {source or 'SPEC'}`")
            obj = dict(doc)
            meta = dict(obj.get("metadata") or {})
            meta.setdefault("namespace", namespace)
            obj["metadata"] = meta
            obj = admission.default(api_group(str(obj.get("apiVersion") or "")), obj)  # as stored: compared with the stored object below
            try:
                current = store.get(obj.get("kind"), meta.get("name"), meta["namespace"])
            except _NotFound:
                out.append(("created", store.create(obj)))
                continue
            same = all(obj.get(k) == current.get(k) for k in set(obj) | set(current) if k not in ("metadata", "status")) \
                and all(meta.get(k) == current["metadata"].get(k) for k in ("labels", "annotations"))
            if same:
                out.append(("unchanged", current))
                continue
            meta["uid"] = current["metadata"]["uid"]
            meta.pop("resourceVersion", None)
            out.append(("configured", store.update(obj)))
    finally:
        store.close()
    return out


ACTIVE_RUN_STATES = ("PENDING", "RUNNING")


GONE = "the localflow process running it is gone (cleaned by gc)"


def _abandon_objects(store, md, run: dict) -> None:
    """Put what a dead run left in the object store into a truthful terminal state: its Pods that
    were still Pending/Running become Failed (reason ``Orphaned``), a pipeline's Run object FAILED,
    and a training job gets the terminal status its controller gives a canceled job. Its
    executions still NEW/RUNNING (container, importer and DAG executions alike) become CANCELED."""
    for pod in store.list("Pod", None, label_selector={"localflow.dev/run-id": run["id"]}):
        status = dict(pod.get("status") or {})
        if status.get("phase") in ("Succeeded", "Failed"):
            continue
        status.update({"phase": "Failed", "reason": "Orphaned", "message": f"the Pod's run is gone: {GONE}"})
        store.update_status("Pod", pod["metadata"]["name"], status, pod["metadata"].get("namespace", "default"))
    for x in md.list_executions(run_id=run["id"]):
        if x["state"] in ("NEW", "RUNNING"):
            md.update_execution(x["id"], state="CANCELED", finished=True, error=GONE)
    entry = kind_table.for_run_kind(run["kind"])
    abandon = entry.hook("abandon") if entry is not None else None
    if abandon is not None:  # the kind's end of its object (a pipeline's Run FAILED, a job's terminal status)
        abandon(store, run, GONE)


def _orphan_processes(store, run_id: str, *, kill: bool) -> list[int]:
    """Process groups still running for the Pods of a dead run (``containerID: process://<pid>``),
    killed with SIGKILL when ``kill``. A pid is only trusted when that process started before the
    Pod's container was recorded as running (pid reuse), i.e. it is the same process."""
    import calendar
    import signal
    import time as _time

    import psutil

    found = []
    for pod in store.list("Pod", None, label_selector={"localflow.dev/run-id": run_id}):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            cid = cs.get("containerID") or ""
            started = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
            if not cid.startswith("process://") or not started:
                continue
            pid = int(cid[len("process://"):])
            try:
                proc = psutil.Process(pid)
                t0 = calendar.timegm(_time.strptime(started, "%Y-%m-%dT%H:%M:%SZ"))
                if proc.create_time() > t0 + 2 or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
            except (psutil.Error, ValueError):
                continue
            found.append(pid)
            if kill:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
    return found


def garbage_collect(workspace: str | os.PathLike | Workspace | None = None, *, dry_run: bool = False,
                    namespace: str | None = None) -> dict:
    """Clean up after runs whose localflow process died (killed, crashed, machine rebooted).

    Runs still PENDING/RUNNING in the metadata whose owning process is gone are marked FAILED
    (their records stay; their executions still NEW/RUNNING, a pipeline's DAG executions
    included, CANCELED), and Docker containers and networks labelled with a run id that is not
    alive are removed (``executors/docker.py`` ``remove_leftovers``). Returns
    ``{"runs": [names], "processes": [pids], "containers": [names], "networks": [names]}``:
    the process groups of their Pods on the subprocess executor (``containerID:
    process://<pid>``) are killed too. Without a Docker engine
    there are no containers to remove and that part is skipped. ``namespace``: only runs of that
    namespace (and their containers); default every namespace.
    """
    from localflow.controllers.ownership import OWNER_PID_ANNOTATION, owner_alive
    from localflow.errors import ExecutorError

    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    result: dict = {"runs": [], "processes": [], "containers": [], "networks": []}
    alive: set[str] = set()
    if ws.db_path.exists():
        store, md = ObjectStore(ws.db_path), MetadataStore(ws.db_path)
        try:
            owners = {}
            for obj in store.list(None, None):
                ann = (obj.get("metadata") or {}).get("annotations") or {}
                run_id = ((obj.get("metadata") or {}).get("labels") or {}).get("localflow.dev/run-id") or \
                    ((obj.get("status") or {}).get("runId"))
                if run_id and OWNER_PID_ANNOTATION in ann:
                    owners[run_id] = ann[OWNER_PID_ANNOTATION]
            for r in md.list_runs():
                if r["state"] not in ACTIVE_RUN_STATES:
                    continue
                if owner_alive(owners.get(r["id"])) or (namespace is not None and (r.get("namespace") or "default") != namespace):
                    alive.add(r["id"])  # alive, or outside the namespace asked for: left alone
                    continue
                result["runs"].append(r["name"])
                result.setdefault("processes", []).extend(_orphan_processes(store, r["id"], kill=not dry_run))
                if not dry_run:
                    md.update_run(r["id"], state="FAILED", error=GONE, finished=True)
                    _abandon_objects(store, md, r)
        finally:
            store.close()
            md.close()
    try:
        from localflow.executors import docker as docker_executor

        ex = docker_executor.DockerExecutor()
        ex.check()
    except (ExecutorError, ImportError):
        return result
    within = {WORKSPACE_LABEL: workspace_id(ws)}
    if dry_run:
        containers, networks = docker_executor.find_leftovers(ex.client, alive, within=within)
        result["containers"] = [c.name for c in containers]
        result["networks"] = [n.name for n in networks]
    else:
        result["containers"], result["networks"] = docker_executor.remove_leftovers(ex.client, alive, within=within)
    return result


