"""Runners: how :func:`localflow.api.run` runs each kind, adapting a controller to a :class:`~localflow.runtime.Run`.

This is the API layer (it may import controllers; controllers never import it). Each runner takes
``(docs, runtime, **options)`` and returns a ``Run``; the kind table (:mod:`localflow.kinds`, field
``runner``) says which runner runs which kind, and :mod:`localflow.api` reaches them through it
(this module imports :mod:`localflow.runtime`, never :mod:`localflow.api`). Training jobs are
recorded in the metadata store by :mod:`localflow.training.records` (run, one execution per replica
Pod, model files as artifacts). Adding a kind: see :mod:`localflow.kinds`.
"""
from __future__ import annotations

import copy
import shlex
import time

from localflow import kinds as kind_table
from localflow.controllers.sideobjects import RUN_ID_LABEL, create_side_objects
from localflow import dbconn
from localflow.errors import AlreadyExists, LocalflowError, SpecError, Unschedulable
from localflow.faults import SchedulerFault, critical, is_disk_full, run_fault_message, take_pending, with_space_note
from localflow.training.kinds import KINDS
from localflow.training.records import TrainingRunRecorder, job_outcome
from localflow.runtime import Run, Runtime
from localflow.volumes import validate_documents


def run_pipeline(docs: list[dict], rt: Runtime, *, params=None, cache=True, namespace="default", on_task=None,
                 source=None, run_name=None, install=None, **_) -> Run:
    """Run a compiled KFP PipelineSpec with :class:`~localflow.controllers.pipelinerun.PipelineRunController`.

    ``params`` may hold strings (from ``-p``): they are parsed by the declared parameterType.
    ``Run.tasks`` maps task paths to TaskRecords; ``Run.outputs`` holds the root DAG's outputs
    (parameters by value, artifacts as RuntimeArtifact dicts, one or a list). ``install``: install
    ``packages_to_install`` into cached venvs (default: ``packages.install`` of localflow.yaml, true;
    ``--no-install`` passes False).
    """
    import dataclasses

    from localflow.controllers.pipelinerun import PipelineRunController
    from localflow.pipelines.packages import PackageInstaller
    from localflow.pipelines.values import parse_cli_value
    from localflow.specs.pipeline import load_pipeline

    doc = load_pipeline(docs, source or "pipeline.yaml")
    given = dict(params or {})
    defs = ((doc.spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for k, v in list(given.items()):
        if isinstance(v, str) and k in defs and defs[k].get("parameterType") != "STRING":
            given[k] = parse_cli_value(v, defs[k].get("parameterType"), f"-p {k}")
    settings = rt.config.packages
    if install is not None:
        settings = dataclasses.replace(settings, install=bool(install))
    packages = PackageInstaller(settings, str(rt.workspace.root / "venvs"))
    ctl = PipelineRunController(doc, parameters=given, store=rt.store, scheduler=rt.scheduler, metadata=rt.metadata,
                                workspace=rt.workspace, clock=rt.clock, cache=cache, namespace=namespace,
                                run_name=run_name, spec_path=source, on_task=on_task, packages=packages,
                                storage=rt.config.storage)
    return _drive_pipeline(rt, ctl, namespace)


def resume_pipeline_run(rt: Runtime, run_object: dict, *, on_task=None, install=None) -> Run:
    """Continue the unfinished pipeline Run ``run_object`` (a ``Run`` from ``rt.store``) whose
    ``localflow`` process died (killed, crashed): the entry point ``localflow serve`` uses to
    adopt the Runs a dead process left. Returns the finished :class:`Run`, as :func:`run_pipeline`.

    Its DAG progress is recomputed from the workspace (:mod:`localflow.controllers.pipelineresume`):
    completed and cached tasks are not executed again and their outputs are reused; tasks that were
    running when the process died (their Pods are marked Failed, reason ``Orphaned``) run again as
    a new attempt; the run ends with the outputs an uninterrupted run gives. ``on_task`` is called
    for every task, restored ones included. Raises :class:`LocalflowError` when the run already
    ended, when its owning process is still alive, or when it has no saved pipeline.
    """
    import dataclasses

    from localflow.controllers.pipelineresume import resume_controller
    from localflow.pipelines.packages import PackageInstaller

    settings = rt.config.packages
    if install is not None:
        settings = dataclasses.replace(settings, install=bool(install))
    packages = PackageInstaller(settings, str(rt.workspace.root / "venvs"))
    ctl = resume_controller(run_object, store=rt.store, scheduler=rt.scheduler, metadata=rt.metadata,
                            workspace=rt.workspace, clock=rt.clock, on_task=on_task, packages=packages,
                            storage=rt.config.storage)
    return _drive_pipeline(rt, ctl, ctl.namespace)


def _drive_pipeline(rt: Runtime, ctl, namespace: str) -> Run:
    """Run the controller ``ctl`` to its end and wrap what it leaves in a :class:`Run`."""
    try:
        ctl.run()
    finally:
        rt.scheduler.wait_idle(timeout=30)
    outputs: dict = dict(ctl.outputs.get("parameters") or {})
    for k, arts in (ctl.outputs.get("artifacts") or {}).items():
        clean = [{kk: vv for kk, vv in a.items()} for a in arts]
        outputs[k] = clean[0] if len(clean) == 1 else clean
    obj = rt.store.get("Run", ctl.run_name, namespace)
    return Run(id=ctl.run_id, name=ctl.run_name, kind="PipelineRun", state=ctl.state, workspace=rt.workspace,
               tasks=dict(ctl.tasks), outputs=outputs, error=ctl.error, object=obj,
               pods=rt.store.list("Pod", namespace, label_selector={"localflow.dev/run-id": ctl.run_id}))


def abandon_pipeline_run(store, run: dict, reason: str) -> None:
    """``localflow gc``'s end of a pipeline whose process died: its Run object (if any) FAILED with
    ``reason`` (the kind table's ``abandon`` hook of Run; Pods and executions are ended by gc)."""
    from localflow.errors import NotFound

    ns = run.get("namespace") or "default"
    try:
        obj = store.get("Run", run["name"], ns)
    except NotFound:
        return
    status = dict(obj.get("status") or {})
    status.update({"state": "FAILED", "error": {"message": reason}})
    store.update_status("Run", run["name"], status, ns)


# ---------------------------------------------------------------- training jobs


def _refuse_suspended(job: dict, path: str) -> None:
    """``localflow run`` of a job created suspended would wait for a resume nobody sends: refuse it."""
    queue = ((job.get("metadata") or {}).get("labels") or {}).get("kueue.x-k8s.io/queue-name")
    why = (f"is true and the kueue.x-k8s.io/queue-name label ({queue}) leaves admission to Kueue, which localflow "
           "does not run; the job would stay suspended forever") if queue else \
        "is true: the job would stay suspended forever (localflow run never resumes it)"
    raise SpecError(path, why, fix="remove suspend to run it now (localflow admits all replicas together itself), "
                                   "or apply it with TrainingJobController/TrainJobController and call resume()")


def _named(job: dict, run_name: str | None, namespace: str) -> dict:
    """A private copy of ``job`` in ``namespace`` (unless it names one), renamed to ``run_name`` if given."""
    job = copy.deepcopy(job)
    meta = job.setdefault("metadata", {})
    meta.setdefault("namespace", namespace)
    if run_name:
        meta["name"] = run_name
    return job


def _apply(apply, job: dict, source: str | None = None):
    """``apply(job)``, like ``kubectl create``: a job of the same name still in the workspace is
    :class:`AlreadyExists`, whose fix names both ways on: a new name, or deleting the old job."""
    try:
        return apply(job)
    except AlreadyExists as exc:
        meta = job["metadata"]
        if f'{job["kind"]} "{meta["name"]}"' not in str(exc):  # something else of the file (an MPIJob's ConfigMap)
            raise
        ns = meta["namespace"]
        flag = f" -n {ns}" if ns != "default" else ""
        spec = shlex.quote(source) if source and not source.startswith("<") else "SPEC"
        err = AlreadyExists(
            f'{job["kind"]} "{meta["name"]}" already exists in namespace "{ns}" (from an earlier run)',
            fix=f"run it under a new name (`localflow run {spec}{flag} --name {meta['name']}-2`) or delete the old one "
                f"first (`localflow delete {job['kind'].lower()} {meta['name']}{flag}`; its run records stay)")
        # the caller's interface rewrites the fix with every option the user passed (cli.py, vocabulary.py)
        err.job_kind, err.job_name, err.job_namespace = job["kind"], meta["name"], ns
        raise err from None


def _record_unschedulable(rt: Runtime, kind: str, name: str, ns: str, source, exc: Unschedulable) -> None:
    """A job refused at admission still exists (Failed): record its run as FAILED before re-raising."""
    try:
        obj = rt.store.get(kind, name, ns)
    except LocalflowError:
        return
    rec = TrainingRunRecorder(rt, obj, source=source)
    rec.finish("FAILED", job_outcome(obj)[1] or exc.message)


# A job can succeed while replicas still run (the master decides a PyTorchJob or XGBoostJob; a worker
# exits right after it). They get this long to end on their own before the run is closed (and
# `localflow run` stops them); what still runs then is recorded CANCELED.
REPLICA_GRACE_S = 5.0


def _let_replicas_finish(rt: Runtime, rec, seconds: float) -> None:
    """Feed the run's Pods to ``rec`` until none is Running or ``seconds`` (wall time) passed."""
    sel = {RUN_ID_LABEL: rec.run_id}
    with rt.store.watch(kind="Pod", namespace=rec.namespace, label_selector=sel) as w:
        for pod in rt.store.list("Pod", rec.namespace, label_selector=sel):
            rec.on_pod_change("MODIFIED", pod)  # the state after the controller's cleanup
        deadline = time.monotonic() + seconds
        while any(r.state == "RUNNING" for r in rec.records.values()) and time.monotonic() < deadline:
            ev = w.get(timeout=max(0.0, min(0.25, deadline - time.monotonic())))
            if ev is not None:
                rec.on_pod_change(ev.type, ev.object)


# What an interrupted run leaves in its job's Failed condition and its replicas' executions.
CANCEL_REASON = "it was canceled: localflow was interrupted"
CANCEL_REPLICA_ERROR = "canceled: localflow was interrupted"


def _stop(rec, cancel, reason: str, replica_error: str) -> dict | None:
    """Stop a job that is still running: ``cancel(reason, on_change)`` kills its Pods (their changes fed
    to ``rec``, which records them CANCELED with ``replica_error``) and leaves the job Failed with
    ``reason``. Never raises an Exception (the caller is handling an interruption or another
    error); returns the job or None."""
    rec.stop_error = replica_error
    try:
        return cancel(reason, rec.on_pod_change)
    except Exception:  # noqa: BLE001 - whatever the cleanup meets, the original exception must surface
        return None


def _fault(rt: Runtime, rec, cancel, exc: BaseException) -> tuple[dict | None, str, str]:
    """End a training run that met an unexpected error mid-run (a bug, a full disk, a kubelet that
    failed): its Pods are stopped, the job left Failed, its unfinished replicas and the run FAILED
    with one line naming the workspace and the cause. Returns ``(job, "FAILED", message)``."""
    if is_disk_full(exc):
        dbconn.release_reserve(rt.workspace.db_path)
    message = run_fault_message(rt.workspace, exc)
    with critical():
        job = _stop(rec, cancel, f"localflow failed: {message}", message)
        if job is None:
            try:
                job = rt.store.get(rec.kind, rec.name, rec.namespace)
            except Exception:  # noqa: BLE001 - the store cannot be read either
                job = None
        try:
            rec.finish("FAILED", message, replica_error=message, replica_state="FAILED")
        except Exception as exc2:  # noqa: BLE001
            raise LocalflowError(f"{rec.kind} {rec.name} FAILED: {message}; its end could not be recorded: "
                                 f"{run_fault_message(rt.workspace, exc2)}",
                                 fix="free space there, then `localflow gc` ends its records") from exc
    return job, "FAILED", message


def _run_training(rt: Runtime, obj_after_apply, wait, cancel, record_fn, *, on_task, source, started: float,
                  interrupted: bool = False) -> Run:
    """Shared tail of the training runners: record the run, wait with live replica updates, finish.

    ``wait(on_change)`` runs the controller until the job finishes; ``cancel(reason, on_change)``
    stops a job that did not (Ctrl-C, a timeout): its Pods are killed and the job object is left
    Failed as the operator would once they are gone, so ``localflow get`` shows no live job
    afterwards. An interrupted run is CANCELED in the metadata with its unfinished replicas.
    """
    with critical():
        rec = TrainingRunRecorder(rt, obj_after_apply, source=source, record_fn=record_fn, on_task=on_task,
                                  started_wall=started)
        # a Ctrl-C while the job was created (``interrupted``) or recorded: it is canceled below
        interrupted = take_pending() or interrupted
    try:
        if interrupted:
            raise KeyboardInterrupt
        final = wait(rec.on_pod_change)
    except TimeoutError as exc:
        with critical():
            job = _stop(rec, cancel, f"it did not finish in time ({exc})", "stopped: the run did not finish in time")
            rec.finish("FAILED", (job_outcome(job)[1] if job else None) or str(exc),
                       replica_error="stopped: the run did not finish in time")
        raise
    except SchedulerFault as exc:  # a kubelet thread could not record a Pod's end (a full disk)
        final, state, error = _fault(rt, rec, cancel, exc)
    except LocalflowError as exc:  # e.g. Unschedulable when a later step's gang is created
        with critical():
            try:
                failed = job_outcome(rt.store.get(rec.kind, rec.name, rec.namespace))[1]
            except LocalflowError:
                failed = None
            rec.finish("FAILED", failed or getattr(exc, "message", None) or str(exc))
        raise
    except Exception as exc:  # a bug or a full disk mid-run: a true record, not an internal error
        final, state, error = _fault(rt, rec, cancel, exc)
    except BaseException:  # KeyboardInterrupt (Ctrl-C), SystemExit
        with critical():
            try:
                _stop(rec, cancel, CANCEL_REASON, CANCEL_REPLICA_ERROR)
            finally:
                rec.finish("CANCELED", "interrupted: the run was canceled", replica_error=CANCEL_REPLICA_ERROR)
        raise
    else:
        if _deleted_unfinished(rt, rec, final):  # a client deleted it mid-run (kubectl delete): its Pods went with it
            state, error = "CANCELED", f"{rec.kind} {rec.name} was deleted before it finished; its Pods were stopped"
            with critical():
                rec.finish(state, error, replica_error=f"canceled: the {rec.kind} was deleted")
        else:
            state, error = job_outcome(final)
            _let_replicas_finish(rt, rec, REPLICA_GRACE_S if state == "SUCCEEDED" else 0.0)
            if state == "FAILED":
                error = with_space_note(rt.workspace, error)
            with critical():
                rec.finish(state, error)
    return Run(id=rec.run_id, name=rec.name, kind=rec.kind, state=state, workspace=rt.workspace, tasks=dict(rec.records),
               error=error, object=final,
               pods=rt.store.list("Pod", rec.namespace, label_selector={RUN_ID_LABEL: rec.run_id}))


def _deleted_unfinished(rt: Runtime, rec, final: dict | None) -> bool:
    """Whether the job is gone from the store without having finished (deleted by a client, not
    by its ``ttlSecondsAfterFinished``, which only deletes finished jobs)."""
    k = kind_table.entry(rec.kind)
    if final is not None and k is not None and k.finished is not None and k.finished(final) is not None:
        return False
    try:
        rt.store.get(rec.kind, rec.name, rec.namespace)
    except LocalflowError:
        return True
    return False


def _refuse_params(params, kind: str) -> None:
    """Training jobs take no run parameters (a cluster has none for them either): ``-p`` given to
    one would be silently ignored, so it is refused (exit 2) naming the first parameter."""
    if params:
        name = next(iter(params))
        raise SpecError(f"-p {name}", f"a {kind} takes no parameters (only pipelines do)",
                        fix="set the value in the job's YAML instead (a container's args or env)")


def _run_on_manager(ctl, obj: dict, timeout: float | None, on_change) -> dict:
    """Reconcile the training job ``obj`` on an in-process controller manager until it is finished
    (:func:`localflow.controllers.trainingwait.run_on_manager`; the manager is stopped on return,
    so the runner's cancel never races a reconcile). A server's worker runs a job the server
    claimed (``localflow.dev/manager``): the manager acts for that claim instead of waiting for it."""
    from localflow.controllers.manager import MANAGER_ANNOTATION
    from localflow.controllers.trainingwait import run_on_manager

    claim = (obj["metadata"].get("annotations") or {}).get(MANAGER_ANNOTATION)
    return run_on_manager(ctl, obj, timeout=timeout, on_change=on_change, identity=claim or None)


def run_training_job(docs: list[dict], rt: Runtime, *, namespace: str = "default", on_task=None,
                     timeout: float | None = None, source=None, run_name: str | None = None, params=None,
                     **_) -> Run:
    """Run the first ``kubeflow.org/v1`` training job in ``docs`` (TFJob, PyTorchJob, XGBoostJob,
    JAXJob, PaddleJob, MPIJob) with :class:`~localflow.controllers.trainingjob.TrainingJobController`.

    ConfigMaps/Secrets in ``docs`` are created first; ``run_name`` (``--name``) renames the job.
    ``on_task`` receives a :class:`~localflow.controllers.trainingjob.ReplicaRecord` on every replica state change
    (PENDING -> RUNNING -> SUCCEEDED/FAILED/CANCELED) while the job runs. Returns a Run whose ``id``
    is the job's uid, ``tasks`` maps replica Pod names to their latest record, ``state`` is
    SUCCEEDED/FAILED and ``error`` the Failed condition's message; the run, its replicas and the
    files they wrote to PVCs are in the metadata store (:mod:`localflow.training.records`).

    A replica whose container restarts in place (``restartPolicy`` OnFailure/Always) stays RUNNING
    and is reported again at every restart with ``error`` ``restarting (N restarts): exit code X;
    last log line: ...``; ``runPolicy.backoffLimit`` bounds those restarts as the operator does.

    Raises :class:`SpecError` for an invalid or suspended job (nothing runs), :class:`AlreadyExists`
    when a job of that name is still in the workspace (the fix names ``--name`` and ``localflow
    delete``), and :class:`Unschedulable` when its replicas together can never fit this machine (the
    job is then Failed and recorded so). On ``TimeoutError`` (``timeout`` wall seconds) or an
    interruption (``KeyboardInterrupt``: Ctrl-C; SIGTERM in the CLI) the job's Pods are stopped and
    the job left ``Failed`` with nothing active before the exception propagates; an interrupted
    run and its unfinished replicas are recorded CANCELED.
    """
    from localflow.controllers.trainingjob import TrainingJobController, replica_record

    job = next((d for d in docs if isinstance(d, dict) and d.get("kind") in KINDS), None)
    if job is None:
        raise SpecError(f"{source or 'spec'}", "holds no kubeflow.org/v1 training job", fix=f"kinds: {', '.join(KINDS)}")
    _refuse_params(params, job["kind"])
    validate_documents(docs, rt.workspace, rt.scheduler.host_paths)  # volumes and mounts, before anything is stored
    job = _named(job, run_name, namespace)
    ns, kind = job["metadata"]["namespace"], job["kind"]
    if ((job.get("spec") or {}).get("runPolicy") or {}).get("suspend") is True:
        _refuse_suspended(job, f"{kind}.spec.runPolicy.suspend")
    ctl = TrainingJobController(rt.store, rt.scheduler, rt.clock)
    started = time.time()  # wall time: compared with file mtimes of PVC outputs
    create_side_objects(rt.store, docs, ns)
    with critical():  # an interrupt while the job and its Pods are created is held, then cancels the run
        try:
            obj = _apply(ctl.apply, job, source)
        except Unschedulable as exc:
            _record_unschedulable(rt, kind, job["metadata"].get("name", ""), ns, source, exc)
            raise
        interrupted = take_pending()
    name = obj["metadata"]["name"]
    return _run_training(rt, obj, lambda cb: _run_on_manager(ctl, obj, timeout, cb),
                         lambda why, cb: ctl.cancel(name, ns, why, kind=kind, on_change=cb),
                         lambda pod: replica_record(kind, pod), on_task=on_task, source=source, started=started,
                         interrupted=interrupted)


def run_trainjob(docs: list[dict], rt: Runtime, *, namespace: str = "default", on_task=None,
                 timeout: float | None = None, source=None, run_name: str | None = None, params=None,
                 **_) -> Run:
    """Run the first ``trainer.kubeflow.org/v1alpha1`` TrainJob in ``docs`` with
    :class:`~localflow.controllers.trainjob.TrainJobController`, after storing the
    TrainingRuntimes/ClusterTrainingRuntimes and ConfigMaps/Secrets of the same file.

    Returns a Run as :func:`run_training_job` does (``tasks``: one record per node Pod, ``kind``
    ``node``; initializer Pods too). Raises :class:`SpecError` when the file holds no TrainJob, the
    TrainJob is invalid or suspended, :class:`Unschedulable` as :func:`run_training_job`; restarts,
    timeouts and interruptions are handled as there (the TrainJob is left ``Failed``, ``FailedJobs``).
    """
    from localflow.controllers.trainjob import TrainJobController, node_record

    tj = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "TrainJob"), None)
    if tj is None:
        names = [f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}" for d in docs if isinstance(d, dict)]
        raise SpecError(f"{source or 'spec'}", f"holds no TrainJob (only {', '.join(names)})",
                        fix="add a TrainJob whose spec.runtimeRef names the runtime, in the same file")
    validate_documents(docs, rt.workspace, rt.scheduler.host_paths)  # volumes and mounts, before anything is stored
    _refuse_params(params, "TrainJob")
    tj = _named(tj, run_name, namespace)
    ns = tj["metadata"]["namespace"]
    if (tj.get("spec") or {}).get("suspend") is True:
        _refuse_suspended(tj, "TrainJob.spec.suspend")
    ctl = TrainJobController(rt.store, rt.scheduler, rt.clock)
    for d in docs:
        if isinstance(d, dict) and d.get("kind") in ("TrainingRuntime", "ClusterTrainingRuntime"):
            rtd = copy.deepcopy(d)
            if rtd["kind"] == "TrainingRuntime":
                rtd.setdefault("metadata", {}).setdefault("namespace", ns)
            ctl.apply_runtime(rtd)
    started = time.time()
    create_side_objects(rt.store, docs, ns)
    with critical():
        try:
            obj = _apply(ctl.apply, tj, source)
        except Unschedulable as exc:
            _record_unschedulable(rt, "TrainJob", tj["metadata"].get("name", ""), ns, source, exc)
            raise
        interrupted = take_pending()
    name = obj["metadata"]["name"]
    return _run_training(rt, obj, lambda cb: _run_on_manager(ctl, obj, timeout, cb),
                         lambda why, cb: ctl.cancel(name, ns, why, on_change=cb),
                         node_record, on_task=on_task, source=source, started=started, interrupted=interrupted)


# ---------------------------------------------------------------- batch/v1 Job


def run_job(docs: list[dict], rt: Runtime, *, namespace: str = "default", on_task=None, timeout: float | None = None,
            source=None, run_name: str | None = None, params=None, **_) -> Run:
    """Run the first ``batch/v1 Job`` in ``docs`` on an in-process controller manager with
    :class:`~localflow.controllers.job.JobReconciler` until it is Complete or Failed.

    ConfigMaps/Secrets in ``docs`` are created first; ``run_name`` (``--name``) renames the Job.
    Returns a Run as :func:`run_training_job` does (``tasks``: one record per Pod, ``kind``
    ``pod``, ``index`` its completion index), recorded in the metadata store. Raises
    :class:`SpecError` for an invalid or suspended Job, :class:`Unschedulable` when one Pod can
    never fit this machine (nothing is created), :class:`AlreadyExists` as the training runners;
    a timeout or an interruption stops the Job's Pods and leaves it ``Failed`` (reason ``Canceled``).
    """
    from localflow.controllers.job import JobReconciler, backoff_record, job_finished, job_pod_record
    from localflow.controllers.manager import MANAGER_ANNOTATION, ControllerManager
    from localflow.scheduler import pod_requests
    from localflow.specs.job import load_job

    job = next((d for d in docs if isinstance(d, dict) and d.get("kind") == "Job"), None)
    if job is None:
        raise SpecError(f"{source or 'spec'}", "holds no batch/v1 Job", fix="add a Job (apiVersion: batch/v1)")
    _refuse_params(params, "Job")
    validate_documents(docs, rt.workspace, rt.scheduler.host_paths)
    job = _named(job, run_name, namespace)
    spec = load_job(job)["spec"]
    if spec["suspend"]:
        _refuse_suspended(job, "Job.spec.suspend")
    cpu, mem = pod_requests(spec["template"], "Job.spec.template.spec")
    cap = rt.scheduler.capacity
    if cpu > cap.cpu + 1e-9 or mem > cap.memory:
        raise Unschedulable("Job.spec.template.spec.containers[].resources.requests",
                            f"a Pod of the Job requests more {'cpu' if cpu > cap.cpu + 1e-9 else 'memory'} than this machine "
                            "has: 0/1 nodes are available", fix="lower the requests")
    ns = job["metadata"]["namespace"]
    backoff = (lambda j, delay, n: on_task(backoff_record(j, delay, n))) if on_task else None
    reconciler = JobReconciler(rt.store, rt.scheduler, rt.clock, on_backoff=backoff)
    started = time.time()
    create_side_objects(rt.store, docs, ns)
    with critical():
        obj = _apply(rt.store.create, job, source)
        obj = rt.store.patch("Job", obj["metadata"]["name"], {"metadata": {"labels": {RUN_ID_LABEL: obj["metadata"]["uid"]}}}, ns)
        interrupted = take_pending()
    name, uid = obj["metadata"]["name"], obj["metadata"]["uid"]
    # A server's worker runs a Job the server claimed (localflow.dev/manager): this call's manager
    # acts for that claim rather than waiting for its owner; otherwise it claims the Job itself.
    claim = (obj["metadata"].get("annotations") or {}).get(MANAGER_ANNOTATION)
    mgr = ControllerManager(rt.store, rt.clock, workers=2, identity=claim or None)
    mgr.register(reconciler)

    def wait(on_change) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        with rt.store.watch("Pod", ns, owner_uid=uid) as pods, rt.store.watch("Job", ns) as jobs:
            mgr.start()
            current = rt.store.get("Job", name, ns)
            while not job_finished(current):
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"Job {name} did not finish within {timeout:g} s")
                ev = pods.get(timeout=0.1)
                for e in ([ev] if ev else []) + pods.drain():
                    on_change(e.type, e.object)
                for e in jobs.drain():
                    if e.object["metadata"]["name"] == name and e.type != "DELETED":
                        current = e.object
                rt.scheduler.raise_fault()
            for e in pods.drain():
                on_change(e.type, e.object)
        mgr.stop()
        return current

    def cancel(why: str, on_change) -> dict | None:
        mgr.stop()  # no reconcile may replace the Pods being stopped
        reconciler.fail(name, ns, "Canceled", why)
        rt.scheduler.wait_idle(timeout=30)
        for pod in rt.store.list("Pod", ns, owner_uid=uid):
            on_change("MODIFIED", pod)
        return rt.store.get("Job", name, ns)

    try:
        return _run_training(rt, obj, wait, cancel, job_pod_record, on_task=on_task, source=source, started=started,
                             interrupted=interrupted)
    finally:
        mgr.stop()



# ---------------------------------------------------------------- files that start with something else


def _refusal(docs: list[dict], source) -> SpecError:
    """Why a file with no job in it cannot run, as precisely as its documents allow."""
    where = source or "spec"
    objs = [d for d in docs if isinstance(d, dict)]
    kinds = [d.get("kind") for d in objs]
    images = [c.get("image", "") for d in objs if d.get("kind") == "Pod"
              for c in ((d.get("spec") or {}).get("containers") or [])]
    if any("etcd" in i for i in images):
        return SpecError(f"{where}: Pod", "deploys an etcd server (a Pod and Services) for PyTorch elastic training "
                         "with rdzvBackend etcd; localflow runs Kubeflow jobs, not bare Pods or Services",
                         fix="use elasticPolicy.rdzvBackend: c10d (worker 0 hosts the rendezvous) and run the PyTorchJob")
    if kinds and all(k == "PersistentVolumeClaim" for k in kinds):
        claims = ", ".join((d.get("metadata") or {}).get("name", "?") for d in objs)
        return SpecError(f"{where}: PersistentVolumeClaim", f"needs no apply: localflow backs claim {claims} with the "
                         "workspace directory pvc/<claim>, made when a Pod first mounts it",
                         fix="run the job that mounts the claim")
    if kinds and all(k == "PersistentVolume" for k in kinds):
        return SpecError(f"{where}: PersistentVolume", "is cluster storage: localflow binds every claim to a workspace "
                         "directory (pvc/<claim>), not to PersistentVolumes",
                         fix="run the job; its claims get workspace directories")
    served = long_running(kinds)
    if served:
        return served_refusal(where, served)
    if kinds and all(k in ("TrainingRuntime", "ClusterTrainingRuntime") for k in kinds):
        return SpecError(where, "holds training runtimes but no TrainJob to run on them",
                         fix="add a TrainJob whose spec.runtimeRef names the runtime, in the same file")
    return SpecError(f"{where}: kind", f"holds no job localflow can run (kinds: {', '.join(map(str, kinds))})",
                     fix=f"runnable kinds: {runnable_kinds()}")


def long_running(kinds) -> list[str]:
    """The kinds among ``kinds`` that run until deleted (a reconciler, no runner: Deployment,
    ReplicaSet, Service), which ``localflow serve`` runs and ``localflow run`` does not."""
    out = []
    for k in kinds:
        e = kind_table.for_document(str(k))
        if e is not None and e.reconciler and not e.runner and e.kind not in out:
            out.append(e.kind)
    return out


def served_refusal(where: str, kinds: list[str]) -> SpecError:
    """Why ``localflow run`` does not run ``kinds`` (they run until deleted), and how to run them."""
    return SpecError(f"{where}: kind", f"holds {', '.join(kinds)}, which run until deleted: `localflow run` runs work "
                     "that finishes", fix="start a server (`localflow serve -W DIR`) and `localflow apply -f` this file "
                     "with the same -W; the server reconciles them and serves Service addresses")


def runnable_kinds() -> str:
    """The kinds ``localflow run`` runs, for fixes: ``MPIJob, ..., TrainJob, a compiled pipeline``."""
    return ", ".join(sorted(k.kind for k in kind_table.runnable(jobs_only=True))) + ", a compiled pipeline (PipelineSpec)"


def run_bundle(docs: list[dict], rt: Runtime, **options) -> Run:
    """A file whose first document is not a job (runtimes, ConfigMaps, Secrets, PVCs, Services, Pods):
    run the first training job in it as ``kubectl apply -f`` would end up doing, or refuse with the reason
    (:class:`SpecError`: e.g. an etcd server for elastic PyTorch, a lone PersistentVolumeClaim)."""
    jobs = {k.kind: k for k in kind_table.runnable(jobs_only=True)}
    for d in docs:
        if isinstance(d, dict) and d.get("kind") in jobs:
            return jobs[d["kind"]].hook("runner")(docs, rt, **options)
    raise _refusal(docs, options.get("source"))
