"""``localflow serve``: one long-lived process per workspace that owns the work handed to it.

:class:`Server` takes the workspace's lock and writes its record (:mod:`.record`), then loops: a
watch per runnable kind (:func:`~.submit.runnable_kinds`; the store's watches see every process's
writes) wakes it, and a scan picks up every object of those kinds that is not finished and not
owned by a live process:

- never started (no ``localflow.dev/owner-pid``): the server claims it by writing its id into
  ``localflow.dev/manager`` with a resourceVersion-checked update (a stale read is a Conflict and
  is skipped: two managers never run one object), then runs it in a worker process
  (:mod:`.worker`: the existing runners and blocking controllers, exactly as ``localflow run``),
  its stderr/stdout in ``server/runs/<uid>.err``/``.out``, its exit code in ``.rc``;
- started by a process that is gone (a ``localflow run`` or a worker killed with ``kill -9``):
  a pipeline ``Run`` is claimed the same way and continued where it stopped
  (:func:`localflow.runners.resume_pipeline_run`: completed and cached tasks are not run again,
  Pods whose processes are gone Failed ``Orphaned``, their tasks run again); a training job is
  ended as ``localflow gc`` ends it (its Pods Failed, the run FAILED with the reason) -- continuing
  one needs the training reconcilers to keep no state only in memory (issue 8's manager).
  A worker of a server killed with ``kill -9`` lives on (its own session) and finishes its run; the
  next server leaves its object to it and stops it when it stops itself.

A server starting ends the Pods a dead localflow process left bound and Running (their kubelet is
gone: :func:`localflow.node.restart.fail_orphaned_pods`, leftover processes killed, the Pods
``Failed``, reason ``Orphaned``) before its controllers run, so a ReplicaSet replaces them.

Ownership is liveness of a process (``<pid>@<start time>``): on one machine that is exact, where a
cluster needs leases with heartbeats (client-go ``tools/leaderelection``). SIGTERM/Ctrl-C stop the
server cleanly: every worker gets SIGTERM and cancels its run as Ctrl-C cancels ``localflow run``
(Pods killed, CANCELED recorded), with a bounded wait before SIGKILL and a gc of what is left.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import psutil

from localflow.errors import Conflict, LocalflowError, NotFound
from localflow.workspace import Workspace, resolve_workspace

from .record import ServerLock, alive, process_id, server_dir
from .submit import MANAGER_ANNOTATION, outcome, runnable_kinds, submission_of

__all__ = ["Server", "WorkerProcess", "OWNER_PID_ANNOTATION"]

OWNER_PID_ANNOTATION = "localflow.dev/owner-pid"


@dataclass
class WorkerProcess:
    """A run the server started: the object's key and uid, the process, where its output goes."""

    kind: str
    namespace: str
    name: str
    uid: str
    proc: subprocess.Popen
    base: str  # path prefix of .out/.err/.rc/.pid
    resume: bool = False  # it continues a Run whose earlier process died
    started: float = field(default_factory=time.monotonic)


#: The server's ``--config``, handed to a worker whose object was not submitted with one.
SERVER_CONFIG_ENV = "LOCALFLOW_SERVER_CONFIG"


class Server:
    """The server of one workspace. ``serve(stop)`` blocks until ``stop`` is set (or a signal
    handler sets it), then shuts down; ``rescan``: seconds between scans without any change;
    ``grace``: seconds a stopping server waits for its workers before SIGKILL.

    Raises :class:`~.record.ServerRunning` (exit 2, naming the other server's pid) when the
    workspace has a live server.
    """

    def __init__(self, workspace: str | os.PathLike | Workspace | None = None, *, rescan: float = 2.0,
                 grace: float = 60.0, log=None, port: int | None = 0, config: str | os.PathLike | None = None):
        self.ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
        self.rescan, self.grace = rescan, grace
        self.id = process_id()
        self.workers: dict[str, WorkerProcess] = {}
        self.done: set[str] = set()  # uids handled (run, refused, cleaned): never picked up again
        self.adopted: dict[str, psutil.Process] = {}  # uid -> a dead server's worker, still running
        self._wake = threading.Event()
        self._lock = ServerLock(self.ws)
        self._log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.store = None
        self.hosted = None  # HostedControllers, once started
        self.port = port  # the Kubernetes API's port (0: a free one; None: no API)
        # localflow.yaml for objects that name none (created by kubectl or an SDK, not by `run`)
        self.config = str(Path(config).resolve()) if config else None
        self.api = None  # localflow.apiserver.ApiServer, once started
        self._watches: list = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> dict:
        """Take the lock, write the record, open the store and the watches. Returns the record."""
        if self.config:
            from localflow.config import load_config

            load_config(self.config)  # a bad --config is refused before anything starts
        self._lock.acquire()
        try:
            self.ws.ensure()
            from localflow.fakes import ObjectStore

            self.store = ObjectStore(self.ws.db_path)
            (server_dir(self.ws) / "runs").mkdir(parents=True, exist_ok=True)
            for kind in runnable_kinds():
                w = self.store.watch(kind=kind, namespace=None)
                self._watches.append(w)
                threading.Thread(target=self._pump, args=(w,), name=f"localflow-serve-{kind}", daemon=True).start()
            from localflow.node.restart import fail_orphaned_pods
            from localflow.server.hosted import HostedControllers

            for pod in fail_orphaned_pods(self.store):  # a node starting again: before any controller acts
                self._log(f"pod/{pod['metadata']['name']}: {pod['status']['message']}; marked Failed (Orphaned)")
            self.hosted = HostedControllers(self.ws).start()  # ReplicaSets, Deployments: run until deleted
            urls = {}
            if self.port is not None:
                from localflow.apiserver import ApiServer

                self.api = ApiServer(self.ws.db_path, port=self.port, logs_dir=self.ws.logs_dir)
                urls["kubernetes"] = self.api.start()
                urls["kfp"] = urls["kubernetes"]  # the KFP v2beta1 API (kfp.Client(host=...)) on the same port
            record = self._lock.write(urls=urls)
        except BaseException:
            if self.api is not None:
                self.api.stop()
            if self.hosted is not None:
                self.hosted.stop()
            self._close_store()
            self._lock.release()
            raise
        api = f", Kubernetes API at {urls['kubernetes']} (`localflow kubeconfig`)" if urls else ""
        self._log(f"localflow server pid {record['pid']} serving workspace {self.ws.root}{api} "
                  f"(stop: Ctrl-C or localflow serve --stop -W {self.ws.root})")
        return record

    def _pump(self, w) -> None:
        try:
            for _ in w:
                self._wake.set()
        except LocalflowError:  # 410 Gone: the next scan relists anyway
            self._wake.set()

    def serve(self, stop: threading.Event) -> None:
        """Start, then scan and reap until ``stop`` is set; always shuts down cleanly."""
        self.start()
        try:
            while not stop.is_set():
                self._wake.clear()
                self.reap()
                self.scan()
                self._wake.wait(self.rescan)
                if stop.is_set():
                    break
        finally:
            self.shutdown()

    def wake(self) -> None:
        """Make the loop scan now (a signal handler calls this after setting ``stop``)."""
        self._wake.set()

    # ------------------------------------------------------------------ picking up work

    def scan(self) -> None:
        """Claim and start every runnable object nobody live owns; clean those of dead owners."""
        for kind in runnable_kinds():
            try:
                items = self.store.list(kind, None)
            except LocalflowError:
                continue
            for obj in items:
                meta = obj["metadata"]
                uid = meta.get("uid")
                if uid in self.done or uid in self.workers or meta.get("deletionTimestamp"):
                    continue
                if outcome(obj)[0] is not None:
                    self.done.add(uid)
                    continue
                ann = meta.get("annotations") or {}
                owner, manager = ann.get(OWNER_PID_ANNOTATION), ann.get(MANAGER_ANNOTATION)
                if owner and alive(owner):
                    if manager and manager != self.id and not alive(manager):
                        self._adopt_worker(uid, owner)
                    continue
                if manager and manager != self.id and alive(manager):
                    continue
                if owner:  # started by a process that is gone
                    if obj["kind"] == "Run":
                        self._claim_and_run(obj, resume=True)  # continued where it stopped
                    else:
                        self._abandon(obj)
                        self.done.add(uid)
                    continue
                self._claim_and_run(obj)

    def _adopt_worker(self, uid: str, owner: str) -> None:
        """A worker of a server that died (``kill -9``) still runs its object: it goes on (nothing is
        run twice), and this server stops it when it stops, as it stops its own workers."""
        if uid in self.adopted:
            return
        try:
            proc = psutil.Process(int(owner.split("@")[0]))
            cmd = proc.cmdline()
        except (psutil.Error, ValueError):
            return
        if "localflow.server.worker" in cmd and str(self.ws.root) in cmd:
            self.adopted[uid] = proc
            self._log(f"adopted the running worker pid {proc.pid} of a server that is gone")

    def _abandon(self, obj: dict) -> None:
        """End the run of a training job whose process is gone, as ``localflow gc`` ends it: its
        Pods' processes killed, its Pods Failed (``Orphaned``), its executions CANCELED, the run
        FAILED, the job given the status of a canceled job. (Only pipeline Runs can be continued.)"""
        from localflow import api
        from localflow.metadata import MetadataStore

        run_id = ((obj["metadata"].get("labels") or {}).get("localflow.dev/run-id")
                  or (obj.get("status") or {}).get("runId") or obj["metadata"].get("uid"))
        try:
            with MetadataStore(self.ws.db_path) as md:
                try:
                    record = md.get_run(run_id)
                except NotFound:
                    return
                if record["state"] not in api.ACTIVE_RUN_STATES:
                    return
                api._orphan_processes(self.store, run_id, kill=True)
                md.update_run(run_id, state="FAILED", error=api.GONE, finished=True)
                api._abandon_objects(self.store, md, record)
        except LocalflowError as exc:
            self._log(f"could not end {obj['kind'].lower()}/{obj['metadata']['name']} of a dead process: {exc}")
            return
        self._log(f"{obj['kind'].lower()}/{obj['metadata']['name']}: its process is gone; marked FAILED (as gc does)")

    def _claim_and_run(self, obj: dict, *, resume: bool = False) -> None:
        meta = obj["metadata"]
        claimed = json.loads(json.dumps(obj))
        claimed["metadata"]["annotations"] = {**(meta.get("annotations") or {}), MANAGER_ANNOTATION: self.id}
        try:
            claimed = self.store.update(claimed)  # carries the resourceVersion read: stale -> Conflict
        except (Conflict, NotFound):
            return
        except LocalflowError as exc:  # admission refused the object as it is now: say so on it
            self._refuse(obj, str(exc))
            return
        m = claimed["metadata"]
        ns = m.get("namespace") or "default"
        base = str(server_dir(self.ws) / "runs" / m["uid"])
        sub = submission_of(claimed)
        cwd = sub.get("cwd") if sub.get("cwd") and os.path.isdir(sub["cwd"]) else str(self.ws.root)
        cmd = [sys.executable, "-m", "localflow.server.worker", "-W", str(self.ws.root), "--kind", claimed["kind"],
               "-n", ns, "--uid", m["uid"], *(["--resume"] if resume else []), m["name"]]
        env = {k: v for k, v in os.environ.items() if k != "LOCALFLOW_HOME"}
        if self.config and not sub.get("config"):
            env[SERVER_CONFIG_ENV] = self.config
        for stale in (".rc", ".pid"):  # of an earlier worker of the same object (a resume)
            if os.path.exists(base + stale):
                os.unlink(base + stale)
        mode = "ab" if resume else "wb"
        with open(base + ".out", mode) as out, open(base + ".err", mode) as err, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(cmd, stdin=devnull, stdout=out, stderr=err, cwd=cwd, env=env,
                                    start_new_session=True)
        with open(base + ".pid.tmp", "w") as f:
            f.write(process_id(proc.pid) if _exists(proc.pid) else str(proc.pid))
        os.replace(base + ".pid.tmp", base + ".pid")
        self.workers[m["uid"]] = WorkerProcess(claimed["kind"], ns, m["name"], m["uid"], proc, base, resume)
        threading.Thread(target=self._await_exit, args=(proc,), name="localflow-serve-reaper", daemon=True).start()
        self._log(f"{'resuming' if resume else 'running'} {claimed['kind'].lower()}/{m['name']} (namespace {ns}, worker pid {proc.pid}, "
                  f"log {base}.err)")

    def _await_exit(self, proc: subprocess.Popen) -> None:
        try:
            proc.wait()
        finally:
            self._wake.set()  # the loop reaps it now

    def reap(self) -> None:
        """Record the exit code of every worker that ended; a run that never got going (its spec
        refused by the runner) is left failed with the worker's last error line."""
        for uid, w in list(self.workers.items()):
            code = w.proc.poll()
            if code is None:
                continue
            del self.workers[uid]
            self.done.add(uid)
            code = _exit_code(code)
            _write_text(w.base + ".rc", f"{code}\n")
            self._log(f"{w.kind.lower()}/{w.name} ended: exit code {code}")
            try:
                obj = self.store.get(w.kind, w.name, w.namespace)
            except LocalflowError:
                continue
            ann = obj["metadata"].get("annotations") or {}
            if obj["metadata"].get("uid") == uid and outcome(obj)[0] is None and OWNER_PID_ANNOTATION in ann:
                if obj["kind"] == "Run" and not w.resume and code != 0:
                    self.done.discard(uid)  # its worker died mid-run: the next scan resumes it, once
                    self.wake()
                else:
                    self._abandon(obj)  # could not be resumed (or not a Run): a true end
            elif obj["metadata"].get("uid") == uid and outcome(obj)[0] is None:
                if code > 128:  # stopped by a signal (Ctrl-C of the `run` that handed it over) before it began
                    self._refuse(obj, f"canceled before it started (its worker got signal {code - 128})", canceled=True)
                else:
                    self._refuse(obj, _last_error(w.base + ".err") or f"the run's worker ended with exit code {code}")

    def _refuse(self, obj: dict, message: str, *, canceled: bool = False) -> None:
        """Leave a submission that cannot run finished, with ``message`` (and an Event): failed
        (reason ``FailedCreate``), or ``canceled`` (a Run ``CANCELED``; a job ``Failed`` with reason
        ``Canceled``, as a canceled `run` leaves it), and recorded in the metadata
        (:meth:`_record_run`) so ``localflow get runs`` lists it."""
        kind, meta = obj["kind"], obj["metadata"]
        ns = meta.get("namespace") or "default"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = "Canceled" if canceled else "FailedCreate"
        if kind == "Run":
            status = {**(obj.get("status") or {}), "state": "CANCELED" if canceled else "FAILED",
                      "error": {"message": message}}
        else:
            status = {**(obj.get("status") or {}), "conditions": [
                *((obj.get("status") or {}).get("conditions") or []),
                {"type": "Failed", "status": "True", "reason": reason, "message": message,
                 "lastTransitionTime": now, "lastUpdateTime": now}]}
        try:
            self.store.update_status(kind, meta["name"], status, ns)
            self.store.record_event(obj, reason, message, type="Warning", component="localflow-server")
        except LocalflowError:
            pass
        self._record_run(obj, "CANCELED" if canceled else "FAILED", message)
        self.done.add(meta.get("uid"))
        self._log(f"{kind.lower()}/{meta['name']} {'canceled' if canceled else 'refused'}: {message}")

    def _record_run(self, obj: dict, state: str, message: str) -> None:
        """The metadata record of a submission that ended before its runner recorded anything, so
        ``localflow get runs`` and ``describe`` show it as they show every other run: its run id
        (``status.runId``, the ``localflow.dev/run-id`` label, else the object's uid), name, kind
        (``PipelineRun`` for a pipeline's Run), ``state`` and ``message``, finished now. A record
        the runner already wrote is only ended (when it is still active), never duplicated."""
        from localflow.metadata import MetadataStore

        meta = obj["metadata"]
        sub = submission_of(obj)
        run_id = ((obj.get("status") or {}).get("runId") or (meta.get("labels") or {}).get("localflow.dev/run-id")
                  or meta.get("uid"))
        kind = "PipelineRun" if obj["kind"] == "Run" else obj["kind"]
        try:
            with MetadataStore(self.ws.db_path) as md:
                try:
                    record = md.get_run(run_id)
                except NotFound:
                    record = None
                if record is not None and record["id"] == run_id:
                    if record["state"] in ("PENDING", "RUNNING"):
                        md.update_run(run_id, state=state, error=message, finished=True)
                    return
                md.create_run(run_id, meta["name"], kind, pipeline_name=(obj.get("spec") or {}).get("pipelineName"),
                              spec_path=sub.get("source"), parameters=sub.get("params") or {},
                              executor=sub.get("executor") or "subprocess", namespace=meta.get("namespace") or "default",
                              state=state)
                md.update_run(run_id, error=message, finished=True)
        except LocalflowError as exc:
            self._log(f"could not record the end of {kind.lower()}/{meta['name']}: {exc}")

    def _clean_orphans(self) -> None:
        from localflow.api import garbage_collect

        try:
            removed = garbage_collect(self.ws)
        except LocalflowError as exc:
            self._log(f"could not clean runs of dead processes: {exc}")
            return
        if removed["runs"]:
            self._log(f"marked {len(removed['runs'])} run(s) of dead processes FAILED: {', '.join(removed['runs'])}")

    # ------------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """SIGTERM every worker (each cancels its run), wait up to ``grace`` s, SIGKILL what is left
        (and gc its Pods), close the store, remove the record and release the lock."""
        try:
            if self.workers:
                self._log(f"stopping: canceling {len(self.workers)} run(s)")
            for w in self.workers.values():
                _signal(w.proc, signal.SIGTERM)
            adopted = [p for p in self.adopted.values() if p.is_running()]
            for p in adopted:
                try:
                    p.send_signal(signal.SIGTERM)
                except psutil.Error:
                    pass
            deadline = time.monotonic() + self.grace
            for w in self.workers.values():
                try:
                    w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self._log(f"{w.kind.lower()}/{w.name}: worker pid {w.proc.pid} did not stop; killed")
                    try:
                        os.killpg(w.proc.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
                    w.proc.wait()
            _, stuck = psutil.wait_procs(adopted, timeout=max(0.0, deadline - time.monotonic()))
            for p in stuck:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            killed = bool(stuck) or any(w.proc.returncode == -signal.SIGKILL for w in self.workers.values())
            for w in self.workers.values():
                _write_text(w.base + ".rc", f"{_exit_code(w.proc.returncode)}\n")
            self.workers.clear()
            if killed:
                self._clean_orphans()
        finally:
            if self.api is not None:
                self.api.stop()
                self.api = None
            if self.hosted is not None:
                try:
                    self.hosted.stop()
                except Exception as exc:  # noqa: BLE001 - the lock must still be released
                    self._log(f"stopping the controllers: {exc}")
                self.hosted = None
            self._close_store()
            self._lock.release()
            self._log("localflow server stopped")

    def _close_store(self) -> None:
        for w in self._watches:
            w.close()
        self._watches.clear()
        if self.store is not None:
            self.store.close()
            self.store = None


def _exit_code(code: int) -> int:
    """A shell's exit status for a Popen returncode (killed by signal N: 128 + N)."""
    return code if code >= 0 else 128 - code


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _signal(proc: subprocess.Popen, sig: int) -> None:
    try:
        proc.send_signal(sig)
    except (ProcessLookupError, OSError):
        pass


def _write_text(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def _last_error(path: str) -> str | None:
    """The last ``error: ...`` line of a worker's stderr, without the prefix."""
    try:
        lines = [ln.strip() for ln in open(path, errors="replace").read().splitlines() if ln.strip()]
    except OSError:
        return None
    errs = [ln for ln in lines if ln.startswith("error: ")]
    return errs[-1][len("error: "):] if errs else (lines[-1] if lines else None)
