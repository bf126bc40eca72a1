"""Metadata of a training run: the run, one execution per replica Pod, and the files its replicas wrote to PVCs.

ML Metadata as Kubeflow Pipelines uses it (kubeflow/pipelines ``backend/src/v2/metadata/client.go``)
has no training-job schema, so this module maps a job onto the same tables
(:class:`localflow.metadata.MetadataStore`):

- a **run** (``runs`` row) keyed by the job's run id (its ``localflow.dev/run-id`` label, the job's
  uid), ``kind`` the job kind, PENDING -> RUNNING (first replica running) -> SUCCEEDED | FAILED |
  CANCELED, ``error`` the job's Failed condition message;
- a **context** of type ``<api group>/<Kind>`` (``kubeflow.org/PyTorchJob``,
  ``trainer.kubeflow.org/TrainJob``) named after the job; every execution and artifact is linked to it;
- one **execution** of type ``kubeflow.org/Replica`` per replica Pod (a Pod the operator recreates,
  e.g. with ``restartPolicy: ExitCode``, gets a new one), named after the Pod: NEW while Pending,
  RUNNING, then COMPLETE / FAILED, or CANCELED when the controller killed it (``cleanPodPolicy``, a
  deadline) or the run ended first; ``attempt`` is how many earlier Pods of the same replica were
  replaced, ``properties`` hold replica_type, index, restarts (in-place container restarts),
  exit_code, address, phase and uid;
- one **artifact** per file that a replica wrote to a PersistentVolumeClaim it mounted (the claim's
  workspace directory ``pvc/<claim>``, only files created or modified since the run started): schema
  ``system.Model`` for model formats (:data:`MODEL_SUFFIXES`), else ``system.Artifact``; ``uri`` the
  host path; ``name`` the path inside the claim; an ``OUTPUT`` event (key ``<claim>/<path>``) from
  the execution of the replica that mounted the claim, preferring the job's rank 0 (master, chief,
  launcher, then the lowest worker/node index).

The caller (the API layer's runners) feeds Pod changes to :meth:`TrainingRunRecorder.on_pod_change`
in commit order; records are kept per Pod uid and applied only forward in resourceVersion order, so a
list+watch overlap does not move a replica backwards. A replica's error gets the last line of its
container's log; a replica whose container restarts in place (``restartPolicy`` OnFailure/Always)
stays RUNNING with the error ``restarting (N restarts): exit code X; last log line: ...``, reported
to ``on_task`` at every restart (:mod:`localflow.training.trouble`).

:func:`mark_abandoned` finishes the objects and records of a run whose localflow process died
(``localflow gc``): its Pods, its job's status, its executions and the run.
"""
from __future__ import annotations

import time
from typing import Callable

import copy
import os
import stat
from pathlib import Path

from localflow.clock import SYSTEM_CLOCK, Clock
from localflow.errors import LocalflowError, NotFound
from localflow.logfiles import last_line_path
from localflow.training.kinds import KINDS
from localflow.training.policy import final_status
from localflow.training.trainjob import final_trainjob_status
from localflow.training.trouble import last_log_line, restart_error, restart_trouble

__all__ = ["TrainingRunRecorder", "MODEL_SUFFIXES", "REPLICA_EXECUTION_TYPE", "job_outcome", "mark_abandoned",
           "stopped_message"]

RUN_ID_LABEL = "localflow.dev/run-id"

REPLICA_EXECUTION_TYPE = "kubeflow.org/Replica"

# Files that hold a trained model (PyTorch, pickle/joblib, ONNX, safetensors, Keras/HDF5, TF SavedModel
# protobuf and checkpoints, XGBoost/LightGBM boosters, GGUF). JSON, CSV, logs and event files are
# recorded as system.Artifact: a metrics.json next to model.pt is not a model.
MODEL_SUFFIXES = frozenset({".pt", ".pth", ".pkl", ".pickle", ".joblib", ".onnx", ".safetensors", ".h5", ".keras",
                            ".pb", ".ckpt", ".ubj", ".bst", ".gguf"})

_EXEC_STATE = {"PENDING": "NEW", "RUNNING": "RUNNING", "SUCCEEDED": "COMPLETE", "FAILED": "FAILED",
               "CANCELED": "CANCELED"}
_TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")
_PRODUCER_ORDER = {"master": 0, "chief": 1, "launcher": 2, "worker": 3, "node": 4}
_MAX_ARTIFACTS = 1000  # per run: a job that writes more (checkpoint shards, event files) records the first 1000


def job_outcome(job: dict) -> tuple[str, str | None]:
    """``(run state, error)`` of a finished job: ``FAILED`` with the Failed condition's message, else
    ``SUCCEEDED`` (v1 ``Succeeded`` or TrainJob ``Complete``)."""
    conds = (job.get("status") or {}).get("conditions") or []
    failed = [c for c in conds if c.get("type") == "Failed" and c.get("status") == "True"]
    if failed:
        return "FAILED", failed[-1].get("message")
    return "SUCCEEDED", None


class TrainingRunRecorder:
    """Records one training job's run (see the module docstring).

    ``rt``: the runtime (``metadata``, ``workspace``, ``scheduler.executor.name``); ``job``: the stored
    job after apply; ``record_fn(pod) -> ReplicaRecord``; ``on_task(record)``: called on every replica
    state change; ``started_wall``: epoch seconds the run started (PVC files older than this are not
    outputs of the run; None skips artifact recording).
    """

    def __init__(self, rt, job: dict, *, source: str | None = None, record_fn: Callable | None = None,
                 on_task: Callable | None = None, started_wall: float | None = None):
        meta = job["metadata"]
        self.md, self.ws = rt.metadata, rt.workspace
        self.job = job
        self.run_id = (meta.get("labels") or {}).get(RUN_ID_LABEL) or meta["uid"]
        self.name, self.namespace, self.kind = meta["name"], meta.get("namespace") or "default", job["kind"]
        self.record_fn, self.on_task, self.started_wall = record_fn, on_task, started_wall
        self.records: dict = {}            # pod name -> latest ReplicaRecord (latest incarnation)
        self._rv: dict[str, int] = {}      # pod uid -> newest resourceVersion applied
        self._incarnations: dict[str, list[str]] = {}  # pod name -> uids in order seen
        self._by_uid: dict[str, object] = {}  # pod uid -> its latest record
        self._exec: dict[str, int] = {}    # pod uid -> execution id
        self._exec_state: dict[str, str] = {}
        self._running = False
        group = job["apiVersion"].split("/")[0]
        self._trouble: dict[str, tuple[int, str | None]] = {}  # pod uid -> (restarts, detail) of its last restart
        self._failure: dict[str, str] = {}   # pod uid -> its FAILED error with the log line
        self.stop_error: str | None = None   # set by the caller before it stops the job: the error of Pods it cancels
        self.md.create_run(self.run_id, self.name, self.kind, spec_path=source, executor=rt.scheduler.executor.name,
                           namespace=self.namespace)
        self.context_id = self.md.put_context(f"{group}/{self.kind}", self.name,
                                              {"namespace": self.namespace, "run_id": self.run_id})

    # ------------------------------------------------------------------ replicas

    def on_pod_change(self, event_type: str, pod: dict) -> None:
        """Apply one Pod change (``ADDED``/``MODIFIED``/``DELETED`` and the object): update the
        replica's record and execution, and call ``on_task`` when its state changed."""
        meta = pod["metadata"]
        uid, name = meta["uid"], meta["name"]
        rv = int(meta.get("resourceVersion") or 0)
        if rv <= self._rv.get(uid, -1):
            return  # already seen (list+watch overlap)
        self._rv[uid] = rv
        rec = self.record_fn(pod)
        if event_type == "DELETED" and rec.state in ("PENDING", "RUNNING"):
            rec.state, rec.error = "CANCELED", "the Pod was deleted before it finished"
        self._explain(uid, rec, pod)
        seen = self._incarnations.setdefault(name, [])
        if uid not in seen:
            seen.append(uid)
        self._by_uid[uid] = rec
        self._record_execution(uid, rec, attempt=seen.index(uid))
        rec.execution_id = self._exec[uid]
        latest = self.records.get(name)
        if latest is not None and latest.uid != uid and self._rv.get(latest.uid, -1) > rv:
            return  # a change of a replaced Pod: its execution is updated, the replica's record stays
        self.records[name] = rec
        if rec.state == "RUNNING" and not self._running:
            self._running = True
            self.md.update_run(self.run_id, state="RUNNING")
        changed = latest is None or latest.uid != uid or latest.state != rec.state or latest.error != rec.error
        if changed and self.on_task is not None:
            self.on_task(rec)

    def _log_line(self, pod: dict, container: str | None, instance: int | None = None) -> str | None:
        if not container:
            return None
        path = last_line_path(self.ws.logs_dir, pod, container, instance)
        return last_log_line(path) if path is not None else None

    def _explain(self, uid: str, rec, pod: dict) -> None:
        """Complete ``rec.error`` from what the Pod went through: the log line of a failure; while
        the container restarts in place, why it last restarted (kept across its next start, when the
        status no longer says); a crash-looping replica stopped by the operator (backoffLimit) is
        FAILED with that reason, not CANCELED."""
        st = pod.get("status") or {}
        if rec.state == "RUNNING":
            trouble = restart_trouble(st.get("containerStatuses") or [])
            if trouble is None:
                return
            container, n, detail = trouble
            known = self._trouble.get(uid)
            if known is not None and (known[0] == n or detail is None):
                n, detail = known  # this restart is explained already, or the status lost why
            elif detail is not None:
                line = self._log_line(pod, container, n - 1)  # the instance that restart ended
                detail = f"{detail}; last log line: {line}" if line else detail
                self._trouble[uid] = (n, detail)
            rec.error = restart_error(n, detail)
        elif rec.state == "FAILED" and rec.error:
            if uid not in self._failure:
                line = self._log_line(pod, rec.container)
                self._failure[uid] = f"{rec.error}; last log line: {line}" if line else rec.error
            rec.error = self._failure[uid]
        elif rec.state == "CANCELED":
            loop = None
            if uid in self._trouble:
                n, detail = self._trouble[uid]
                loop = f"crash-looping ({n} restart{'s' if n != 1 else ''})" + (f": {detail}" if detail else "")
            if st.get("reason") == "Canceled":  # stopped by the caller (Ctrl-C): CANCELED, with its trouble if any
                rec.error = self.stop_error or rec.error
                if loop:
                    rec.error = f"{rec.error} (it was {loop})"
            elif loop:  # stopped by the operator (backoffLimit): the replica is why the job failed
                rec.state, rec.error = "FAILED", f"stopped after {loop}"

    def _record_execution(self, uid: str, rec, attempt: int) -> None:
        state = _EXEC_STATE[rec.state]
        props = {"replica_type": rec.replica_type, "index": rec.index, "restarts": rec.restarts,
                 "exit_code": rec.exit_code, "address": rec.address, "phase": rec.phase, "uid": uid}
        if uid not in self._exec:
            eid = self.md.create_execution(self.run_id, REPLICA_EXECUTION_TYPE, rec.pod, state=state, pod_name=rec.pod,
                                           attempt=attempt, properties=props)
            self.md.associate(self.context_id, eid)
            self._exec[uid] = eid
            self._exec_state[uid] = state
            if state != "NEW":
                self.md.update_execution(eid, started=True, finished=rec.state in _TERMINAL, error=rec.error)
            return
        old = self._exec_state[uid]
        if old in ("COMPLETE", "FAILED", "CANCELED"):  # a final state stays (a killed Pod's DELETED event after it)
            self.md.update_execution(self._exec[uid], properties=props)
            return
        self.md.update_execution(self._exec[uid], state=state if state != old else None, properties=props,
                                 started=old == "NEW" and state != "NEW", finished=rec.state in _TERMINAL,
                                 error=rec.error if rec.state in ("FAILED", "CANCELED") else None)
        self._exec_state[uid] = state

    # ------------------------------------------------------------------ end of the run

    def finish(self, state: str, error: str | None, replica_error: str | None = None,
               replica_state: str = "CANCELED") -> None:
        """Close the run: executions still NEW/RUNNING become ``replica_state`` (CANCELED, or FAILED
        when a fault ended the run; error ``replica_error``, default: the job finished before the
        replica did), PVC outputs become artifacts (unless the run was canceled or met a fault),
        and the run gets ``state`` and ``error``."""
        for uid, eid in self._exec.items():
            if self._exec_state[uid] in ("NEW", "RUNNING"):
                self.md.update_execution(eid, state=replica_state, finished=True,
                                         error=replica_error or f"the {self.kind} finished before this replica did")
                self._exec_state[uid] = replica_state
                rec = self._by_uid[uid]
                if self.records.get(rec.pod) is rec:
                    rec.state = replica_state
        if state != "CANCELED" and replica_state != "FAILED" and self.started_wall is not None:
            self._record_outputs()
        self.md.update_run(self.run_id, state=state, error=error, finished=True)

    def _producer(self, users: list) -> object:
        return min(users, key=lambda r: (_PRODUCER_ORDER.get(str(r.replica_type).lower(), 5), r.index, r.pod))

    def _record_outputs(self) -> None:
        claims: dict[str, list] = {}
        for rec in self.records.values():
            for v in rec.volumes:
                claims.setdefault(v["claim"], []).append(rec)
        count = 0
        since = self.started_wall - 0.05
        for claim in sorted(claims):
            producer = self._producer(claims[claim])
            mount = next(v["mountPath"] for v in producer.volumes if v["claim"] == claim)
            try:
                root = self.ws.pvc_dir(claim)
            except LocalflowError:  # a claim name that is no directory name was refused before any Pod ran
                continue
            if not root.is_dir():
                continue
            for path in sorted(_files_below(root)):
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode) or st.st_mtime < since:  # symbolic links are not followed
                    continue
                if count >= _MAX_ARTIFACTS:
                    return
                rel = path.relative_to(root).as_posix()
                schema = "system.Model" if path.suffix.lower() in MODEL_SUFFIXES else "system.Artifact"
                aid = self.md.create_artifact(
                    str(path), schema, rel, run_id=self.run_id,
                    metadata={"claim": claim, "path": rel, "mountPath": f"{mount.rstrip('/')}/{rel}", "size": st.st_size,
                              "modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))})
                try:
                    self.md.add_event(producer.execution_id, aid, "OUTPUT", f"{claim}/{rel}")
                except LocalflowError:
                    pass
                self.md.attribute(self.context_id, aid)
                count += 1


def _files_below(root: Path) -> list[Path]:
    """Every entry below ``root`` without following symbolic links to directories (a link planted in
    a claim must not make the walk record files outside the workspace)."""
    out = []
    for d, dirs, files in os.walk(root, followlinks=False):
        out.extend(Path(d) / f for f in files)
    return out


# ---------------------------------------------------------------- runs whose localflow process died


def stopped_message(kind: str, name: str, reason: str) -> str:
    """The Failed condition message of a job stopped from outside its operator:
    ``<Kind> <name> is failed because <reason>; its Pods were stopped.``"""
    return f"{kind} {name} is failed because {reason}; its Pods were stopped."


def _stopped_pod_status(pod: dict, ts: str, reason: str) -> dict:
    """A Pod whose kubelet (the localflow process) died and whose processes were killed: Failed,
    reason ``Orphaned`` (as ``localflow gc`` writes it), every container terminated (``Killed``,
    exit code 137)."""
    status = copy.deepcopy(pod.get("status") or {})
    message = f"the Pod's run is gone: {reason}"
    statuses = []
    for cs in status.get("containerStatuses") or []:
        cs = dict(cs)
        state = cs.get("state") or {}
        if "terminated" not in state:
            started = (state.get("running") or {}).get("startedAt")
            cs["state"] = {"terminated": {"exitCode": 137, "reason": "Killed", "message": message,
                                          **({"startedAt": started} if started else {}), "finishedAt": ts}}
        cs["ready"], cs["started"] = False, False
        statuses.append(cs)
    status.update(phase="Failed", reason="Orphaned", message=message, containerStatuses=statuses)
    status["conditions"] = [dict(c, status="False", reason="PodFailed", lastTransitionTime=ts)
                            if c.get("type") in ("Ready", "ContainersReady") else c
                            for c in status.get("conditions") or []]
    return status


def mark_abandoned(store, run, reason: str, *, metadata=None, clock: Clock = SYSTEM_CLOCK) -> list[dict]:
    """Finish what a training run left behind when the localflow process running it died (the
    ``localflow gc`` hook; call it after the run's processes were killed).

    ``store``: :class:`localflow.fakes.ObjectStore`; ``run``: the run's metadata row (a dict with
    ``id``, as :meth:`localflow.metadata.MetadataStore.list_runs` gives) or its id; ``reason``: a
    clause, e.g. ``"the localflow process running it is gone (cleaned by gc)"``.

    - its Pods (label ``localflow.dev/run-id=<id>``) still Pending/Running become ``Failed``
      (reason ``Orphaned``, containers terminated ``Killed`` with exit code 137): their kubelet is gone;
    - its training job (a kubeflow.org/v1 kind or a TrainJob with that label) gets the status its
      operator would write once the Pods are gone (:func:`localflow.training.policy.final_status`,
      :func:`localflow.training.trainjob.final_trainjob_status`): ``Failed=True`` with
      :func:`stopped_message` unless it had finished, nothing active, plus a Warning Event;
    - with ``metadata`` (:class:`localflow.metadata.MetadataStore`), its executions still
      NEW/RUNNING become CANCELED and the run, if still PENDING/RUNNING, FAILED, both with ``reason``.

    Returns the jobs it updated (``[]`` for a run with no training job, e.g. a pipeline run).
    Idempotent; raises nothing for a run id that is in neither store.
    """
    run_id = run if isinstance(run, str) else run["id"]
    sel = {RUN_ID_LABEL: run_id}
    now, ts = clock.now(), clock.rfc3339()
    pods = []
    for pod in store.list("Pod", None, label_selector=sel):
        if (pod.get("status") or {}).get("phase", "Pending") in ("Pending", "Running"):
            meta = pod["metadata"]
            try:
                pod = store.update_status("Pod", meta["name"], _stopped_pod_status(pod, ts, reason), meta.get("namespace"))
            except NotFound:
                continue
        pods.append(pod)
    updated = []
    for kind in (*KINDS, "TrainJob"):
        for job in store.list(kind, None, label_selector=sel):
            meta = job["metadata"]
            message = stopped_message(kind, meta["name"], reason)
            conds = (job.get("status") or {}).get("conditions") or []
            if kind == "TrainJob":
                status = final_trainjob_status(job, now, message)
                done = ("Complete", "Failed")
                component, why = "trainjob-controller", "FailedJobs"
            else:
                status = final_status(job, pods, now, message)
                done = ("Succeeded", "Failed")
                component, why = KINDS[kind].operator_name, f"{kind}Failed"
            finished_before = any(c.get("type") in done and c.get("status") == "True" for c in conds)
            if status != job.get("status"):
                job = store.update_status(kind, meta["name"], status, meta.get("namespace"))
            if not finished_before:
                store.record_event(job, why, message, type="Warning", component=component)
            updated.append(job)
    if metadata is None:
        return updated
    for e in metadata.list_executions(run_id=run_id):
        if e["state"] in ("NEW", "RUNNING"):
            metadata.update_execution(e["id"], state="CANCELED", finished=True, error=reason)
    try:
        row = metadata.get_run(run_id)
    except NotFound:
        return updated
    if row["state"] in ("PENDING", "RUNNING"):
        metadata.update_run(run_id, state="FAILED", error=reason, finished=True)
    return updated
