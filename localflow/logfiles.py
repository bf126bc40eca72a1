"""Container log files: where the kubelet writes them and where ``localflow logs`` reads them.

Layout, like the kubelet's ``/var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log``
(kubernetes ``pkg/kubelet/kuberuntime/kuberuntime_container.go`` ``BuildContainerLogsDirectory``)
but named by identifiers only, never by raw spec strings::

    <workspace>/logs/<pod uid>/<container>/<instance>.log

``<pod uid>`` is the uid the object store gave the Pod; ``<container>`` is the container name when
it is a DNS-1123 label (what the API server accepts) and an encoding of it otherwise;
``<instance>`` is the container's ``restartCount`` when that instance started (0, 1, …): a
container restarted in place (``restartPolicy`` OnFailure/Always) keeps its earlier instances'
logs, so ``localflow logs --previous`` shows the one before the current, as ``kubectl logs -p``
does. ``pod.json`` beside them says which Pod they belong to (:func:`write_index`). Deleting a
job or a run deletes its Pods' logs (:func:`remove_for`), so a re-run under the same name starts
clean; a Pod its controller deleted (``cleanPodPolicy``) keeps them until then.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from localflow.errors import SpecError

__all__ = ["container_key", "log_path", "prepare", "instances", "pod_log", "pod_log_dir", "last_line_path",
           "write_index", "find_deleted", "remove_for"]

RUN_ID_LABEL = "localflow.dev/run-id"
INDEX = "pod.json"

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")


def container_key(name: str) -> str:
    """The directory name of container ``name``: the name itself when it is a DNS-1123 label
    (lower-case alphanumerics and ``-``, at most 63 characters), else ``_`` and 24 hex digits of its
    SHA-256, which no label can collide with and no path can escape through."""
    name = str(name)
    if _LABEL.fullmatch(name):
        return name
    return "_" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _uid(uid: str) -> str:
    if not isinstance(uid, str) or not _UID.fullmatch(uid):
        raise SpecError("Pod.metadata.uid", f"{uid!r} is not a uid", fix="let the object store assign the uid")
    return uid


def pod_log_dir(logs_dir: str | os.PathLike, uid: str) -> Path:
    """``<logs_dir>/<uid>``: every log of the Pod with ``uid``. SpecError when ``uid`` is not a uid."""
    return Path(logs_dir) / _uid(uid)


def log_path(logs_dir: str | os.PathLike, uid: str, container: str, instance: int = 0) -> Path:
    """The log file of instance ``instance`` (its restartCount at start) of ``container`` in Pod ``uid``."""
    return pod_log_dir(logs_dir, uid) / container_key(container) / f"{int(instance)}.log"


def prepare(logs_dir: str | os.PathLike, uid: str, container: str, instance: int = 0) -> str:
    """:func:`log_path`, with its directory created: what the kubelet hands an executor."""
    p = log_path(logs_dir, uid, container, instance)
    p.parent.mkdir(parents=True, exist_ok=True)
    return str(p)


def instances(logs_dir: str | os.PathLike, uid: str, container: str) -> list[int]:
    """The instances of ``container`` that have a log file, oldest first."""
    d = pod_log_dir(logs_dir, uid) / container_key(container)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(int(n[:-4]) for n in names if n.endswith(".log") and n[:-4].isdigit())


def pod_log(logs_dir: str | os.PathLike, pod: dict, container: str, *, previous: bool = False) -> Path | None:
    """The log file of ``container`` of ``pod`` (a Pod object): the current instance (its
    ``restartCount``, or the latest that has a file), or with ``previous`` the instance before it,
    as ``kubectl logs [-p]`` picks. None when there is no such file."""
    uid = (pod.get("metadata") or {}).get("uid")
    have = instances(logs_dir, uid, container)
    if not have:
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
    count = next((int(cs.get("restartCount") or 0) for cs in statuses if cs.get("name") == container), None)
    current = count if count is not None and count in have else have[-1]
    if not previous:
        return log_path(logs_dir, uid, container, current)
    earlier = [i for i in have if i < current]
    return log_path(logs_dir, uid, container, earlier[-1]) if earlier else None


def last_line_path(logs_dir: str | os.PathLike, pod: dict, container: str, instance: int | None = None) -> Path | None:
    """The file to take a failure's last log line from: instance ``instance`` when given and
    present (the instance a restart ended), else the current one."""
    uid = (pod.get("metadata") or {}).get("uid")
    if instance is not None:
        p = log_path(logs_dir, uid, container, instance)
        if p.exists():
            return p
    return pod_log(logs_dir, pod, container)


def write_index(logs_dir: str | os.PathLike, pod: dict) -> None:
    """Record, beside a Pod's logs, what names them (``pod.json``: namespace, name, containers, owner
    uids, run id): the file's content, never a path, carries those spec strings. A Pod the
    controllers deleted (``cleanPodPolicy``) keeps its logs readable by name until its owner is
    deleted (:func:`find_deleted`, :func:`remove_for`)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    d = pod_log_dir(logs_dir, meta.get("uid"))
    d.mkdir(parents=True, exist_ok=True)
    index = {"namespace": meta.get("namespace", "default"), "name": meta.get("name"),
             "containers": [c.get("name") for c in spec.get("containers") or []],
             "initContainers": [c.get("name") for c in spec.get("initContainers") or []],
             "owners": [r.get("uid") for r in meta.get("ownerReferences") or []],
             "runId": (meta.get("labels") or {}).get(RUN_ID_LABEL)}
    (d / INDEX).write_text(json.dumps(index))


def _indexes(logs_dir):
    try:
        names = os.listdir(logs_dir)
    except OSError:
        return
    for n in names:
        if not _UID.fullmatch(n):
            continue
        try:
            f = os.path.join(logs_dir, n, INDEX)
            yield n, json.loads(Path(f).read_text()), os.stat(f).st_mtime
        except (OSError, ValueError):
            continue


def find_deleted(logs_dir: str | os.PathLike, namespace: str, name: str) -> dict | None:
    """A Pod object stand-in (``metadata.uid/name/namespace``, ``spec`` container names) for the
    newest logs of a Pod named ``name`` in ``namespace`` that is no longer in the store; None when
    there are none."""
    hits = [(mtime, uid, ix) for uid, ix, mtime in _indexes(logs_dir)
            if ix.get("namespace") == namespace and ix.get("name") == name]
    if not hits:
        return None
    _, uid, ix = max(hits)
    return {"metadata": {"uid": uid, "name": name, "namespace": namespace},
            "spec": {"containers": [{"name": c} for c in ix.get("containers") or []],
                     "initContainers": [{"name": c} for c in ix.get("initContainers") or []]},
            "status": {}}


def remove_for(logs_dir: str | os.PathLike, deleted: dict, live_uids) -> list[str]:
    """After ``deleted`` (an object's last state) was deleted with its dependents: remove the logs of
    every Pod that is gone and belonged to it (it was that Pod, an owner reference named it, or it
    carries its run id). ``live_uids`` (a set, or a function called after the log directories were
listed, so a Pod created meanwhile is never touched) are the Pods that still exist. Returns the
removed uids."""
    meta = deleted.get("metadata") or {}
    ids = {meta.get("uid"), (meta.get("labels") or {}).get(RUN_ID_LABEL), (deleted.get("status") or {}).get("runId")}
    ids.discard(None)
    mine = [uid for uid, ix, _ in _indexes(logs_dir)
            if uid in ids or ix.get("runId") in ids or set(ix.get("owners") or []) & ids]
    live = set(live_uids() if callable(live_uids) else live_uids)
    gone = [uid for uid in mine if uid not in live]
    for uid in gone:
        shutil.rmtree(os.path.join(logs_dir, uid), ignore_errors=True)
    return gone
