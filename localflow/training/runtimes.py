"""Trainer v2: training runtimes and the Pods a TrainJob becomes.

A TrainJob references a ``ClusterTrainingRuntime`` or ``TrainingRuntime`` (a JobSet template plus
an ``mlPolicy``). kubeflow/trainer renders it into a JobSet whose replicated jobs run Indexed Jobs;
locally each replicated job's Pods are created directly, named as JobSet names hostnames
(``<trainjob>-<replicatedJob>-<jobIndex>-<podIndex>``, subdomain ``<trainjob>``), with the
framework plugin's environment (kubeflow/trainer ``pkg/runtime/framework/plugins/{torch,jax,xgboost}``,
``plugins/jobset/{jobset.go,builder.go}``; training reference section 7).

Built-in runtimes (:data:`BUILTIN_RUNTIMES`): ``torch-distributed`` (the reference's HEAD
definition), ``jax-distributed`` and ``xgboost-distributed`` (kubeflow/trainer
``manifests/base/runtimes``). A runtime in the store with the same name wins.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

from localflow.errors import SpecError
from localflow.training.addressing import LOOPBACK_HOST
from localflow.training.gpus import gpu_resources
from localflow.training.ports import PortAllocator

__all__ = ["BUILTIN_RUNTIMES", "TRAINER_PORT", "ReplicatedJobPlan", "resolve_runtime", "trainjob_plan",
           "apply_runtime_patches", "runtime_patch_errors",
           "framework", "num_nodes", "torch_nproc_per_node", "LABEL_JOBSET_NAME", "LABEL_REPLICATED_JOB",
           "LABEL_JOB_INDEX", "LABEL_COMPLETION_INDEX", "LABEL_ANCESTOR", "COMPLETION_INDEX_FIELD"]

TRAINER_PORT = 29500  # constants.ContainerTrainerPort
LABEL_JOBSET_NAME = "jobset.sigs.k8s.io/jobset-name"
LABEL_REPLICATED_JOB = "jobset.sigs.k8s.io/replicatedjob-name"
LABEL_JOB_INDEX = "jobset.sigs.k8s.io/job-index"
LABEL_COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
LABEL_ANCESTOR = "trainer.kubeflow.org/trainjob-ancestor-step"
COMPLETION_INDEX_FIELD = f"metadata.annotations['{LABEL_COMPLETION_INDEX}']"
_NODE = "node"


def _runtime(name: str, framework_: str, image: str) -> dict:
    return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "ClusterTrainingRuntime",
            "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": framework_}},
            "spec": {"mlPolicy": {"numNodes": 1, framework_: {}},
                     "template": {"spec": {"replicatedJobs": [{
                         "name": _NODE,
                         "template": {"metadata": {"labels": {LABEL_ANCESTOR: "trainer"}},
                                      "spec": {"template": {"spec": {"containers": [{"name": _NODE, "image": image}]}}}}}]}}}}


BUILTIN_RUNTIMES: dict[str, dict] = {
    "torch-distributed": _runtime("torch-distributed", "torch", "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime"),
    "jax-distributed": _runtime("jax-distributed", "jax", "nvcr.io/nvidia/jax:25.10-py3"),
    "xgboost-distributed": _runtime("xgboost-distributed", "xgboost", "ghcr.io/kubeflow/trainer/xgboost-runtime:v2.2.5"),
}


def resolve_runtime(tj: dict, lookup: Callable[[str, str, str | None], dict | None] | None = None) -> dict:
    """The runtime a TrainJob references: ``lookup(kind, name, namespace)`` first (the store; a
    ``TrainingRuntime`` must be in the TrainJob's namespace), then the built-ins for
    ``ClusterTrainingRuntime``. Raises :class:`SpecError` at ``TrainJob.spec.runtimeRef.name``, or at
    the first field of the TrainJob whose shape is wrong (:func:`~localflow.specs.trainjob.trainjob_shape_errors`)."""
    from localflow.specs.trainjob import trainjob_shape_errors

    shape = trainjob_shape_errors(tj)
    if shape:
        raise shape[0]
    spec = tj.get("spec")
    if not isinstance(spec, dict):
        raise SpecError("TrainJob.spec", "must be a mapping", fix="add spec.runtimeRef and spec.trainer")
    ref = spec.get("runtimeRef") or {}
    if not ref.get("name"):
        raise SpecError("TrainJob.spec.runtimeRef.name", "must be set",
                        fix="reference a runtime, e.g. runtimeRef: {name: torch-distributed}")
    kind = ref.get("kind") or "ClusterTrainingRuntime"
    if kind not in ("ClusterTrainingRuntime", "TrainingRuntime"):
        raise SpecError("TrainJob.spec.runtimeRef.kind", f"unsupported value {kind!r}",
                        fix="use ClusterTrainingRuntime or TrainingRuntime")
    name = ref.get("name")
    ns = None if kind == "ClusterTrainingRuntime" else (tj.get("metadata") or {}).get("namespace") or "default"
    found = lookup(kind, name, ns) if lookup else None
    if found is None and kind == "ClusterTrainingRuntime":
        found = copy.deepcopy(BUILTIN_RUNTIMES.get(name))
    if found is None:
        where = "cluster-wide" if ns is None else f"in namespace {ns!r}"
        known = ", ".join(BUILTIN_RUNTIMES) if kind == "ClusterTrainingRuntime" else "none built in"
        raise SpecError("TrainJob.spec.runtimeRef.name", f"{kind} {name!r} not found {where}",
                        fix=f"define it in the same YAML (---) or use a built-in runtime ({known})")
    return found


def framework(runtime: dict) -> str | None:
    """The runtime's ML framework: ``torch``, ``jax``, ``xgboost``, ``mpi``, ``flux``, or None (plain)."""
    ml = (runtime.get("spec") or {}).get("mlPolicy") or {}
    return next((f for f in ("torch", "jax", "xgboost", "mpi", "flux") if f in ml), None)


def num_nodes(tj: dict, runtime: dict) -> int:
    """``trainer.numNodes``, else the runtime's ``mlPolicy.numNodes``, else 1."""
    tr = (tj.get("spec") or {}).get("trainer") or {}
    ml = (runtime.get("spec") or {}).get("mlPolicy") or {}
    return int(tr.get("numNodes") or ml.get("numNodes") or 1)


def _cpu_value(q) -> int:
    s = str(q)
    v = float(s[:-1]) / 1000 if s.endswith("m") else float(s)
    return int(math.ceil(v))


def torch_nproc_per_node(tj: dict, runtime: dict) -> str:
    """``PET_NPROC_PER_NODE`` as the torch plugin computes it: the TrainJob's or runtime's
    numProcPerNode (default ``auto``); with ``resourcesPerNode``: ``auto`` becomes max(1, cpu) when
    no GPU is requested (limits first, then requests), ``cpu`` becomes the cpu count."""
    tr = (tj.get("spec") or {}).get("trainer") or {}
    torch = ((runtime.get("spec") or {}).get("mlPolicy") or {}).get("torch") or {}
    npn = tr.get("numProcPerNode") or torch.get("numProcPerNode") or "auto"
    res = tr.get("resourcesPerNode")
    if not res:
        return str(npn)
    if npn == "auto":
        # a GPU named in limits or requests keeps "auto" (torchrun then uses one process per GPU)
        has_gpu = bool(gpu_resources(res))

        def use_cpu(r):
            return not has_gpu
        fallback = "auto"
    elif npn == "cpu":
        def use_cpu(r):
            return "cpu" in r
        fallback = "1"
    else:
        def use_cpu(r):
            return False
        fallback = str(npn)

    def calc(r):
        if r is None:
            return "1", False
        if use_cpu(r):
            return str(max(1, _cpu_value(r.get("cpu", 0)))), True
        return fallback, False
    value, used = calc(res.get("limits"))
    if not used:
        value, _ = calc(res.get("requests"))
    return value


def _merge_by_name(base: list[dict], extra: list[dict]) -> list[dict]:
    out = [dict(x) for x in base or []]
    for item in extra or []:
        for i, cur in enumerate(out):
            if cur.get("name") == item.get("name"):
                out[i] = {**cur, **item}
                break
        else:
            out.append(dict(item))
    return out


def runtime_patch_errors(tj: dict, runtime: dict) -> list[SpecError]:
    """Problems of ``spec.runtimePatches``: unknown replicated jobs or containers, env for the
    ``node``/initializer containers (only the Trainer/Initializer APIs may set it)."""
    errs = []
    jobs = {rj.get("name"): rj for rj in ((runtime.get("spec") or {}).get("template") or {}).get("spec", {})
            .get("replicatedJobs") or []}
    for i, patch in enumerate((tj.get("spec") or {}).get("runtimePatches") or []):
        base = f"TrainJob.spec.runtimePatches[{i}]"
        if not isinstance(patch, dict) or not patch.get("manager"):
            errs.append(SpecError(f"{base}.manager", "must be set", fix="name who owns the patch, e.g. example.io/team"))
            continue
        rjs = ((((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {})
               .get("replicatedJobs") or [])
        for j, rp in enumerate(rjs):
            p = f"{base}.trainingRuntimeSpec.template.spec.replicatedJobs[{j}]"
            rj = jobs.get(rp.get("name"))
            if rj is None:
                errs.append(SpecError(f"{p}.name", f"the runtime has no replicated job {rp.get('name')!r}",
                                      fix="patch one of: " + ", ".join(str(n) for n in jobs)))
                continue
            pod = ((((rj.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
            names = {c.get("name") for c in (pod.get("containers") or []) + (pod.get("initContainers") or [])}
            pspec = (((rp.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
            for list_key in ("containers", "initContainers"):
                for k, c in enumerate(pspec.get(list_key) or []):
                    cp = f"{p}.template.spec.template.spec.{list_key}[{k}]"
                    if c.get("name") not in names:
                        errs.append(SpecError(f"{cp}.name", f"the runtime job {rp.get('name')!r} has no container {c.get('name')!r}"))
                    elif c.get("env") and c.get("name") in (_NODE, "dataset-initializer", "model-initializer"):
                        errs.append(SpecError(f"{cp}.env", f"must not have envs for the {c.get('name')} container",
                                              fix="set them with spec.trainer.env or spec.initializer"))
    return errs


def apply_runtime_patches(runtime: dict, tj: dict) -> dict:
    """The runtime with the TrainJob's ``runtimePatches`` applied (a copy).

    Applied: job/pod template labels and annotations, Pod ``volumes`` and containers'
    ``volumeMounts`` and ``env`` (merged by name). Accepted without effect on one machine:
    serviceAccountName, nodeSelector, affinity, tolerations, imagePullSecrets, securityContext,
    schedulingGates.
    """
    rt = copy.deepcopy(runtime)
    jobs = {rj.get("name"): rj for rj in ((rt.get("spec") or {}).get("template") or {}).get("spec", {})
            .get("replicatedJobs") or []}
    for patch in (tj.get("spec") or {}).get("runtimePatches") or []:
        rjs = ((((patch.get("trainingRuntimeSpec") or {}).get("template") or {}).get("spec") or {})
               .get("replicatedJobs") or [])
        for rp in rjs:
            rj = jobs.get(rp.get("name"))
            if rj is None:
                continue
            jt = rj.setdefault("template", {})
            jpatch = rp.get("template") or {}
            jmeta = jt.setdefault("metadata", {})
            for f in ("labels", "annotations"):
                jmeta[f] = {**(jmeta.get(f) or {}), **((jpatch.get("metadata") or {}).get(f) or {})}
            ptmpl = jt.setdefault("spec", {}).setdefault("template", {})
            ppatch = (jpatch.get("spec") or {}).get("template") or {}
            pmeta = ptmpl.setdefault("metadata", {})
            for f in ("labels", "annotations"):
                pmeta[f] = {**(pmeta.get(f) or {}), **((ppatch.get("metadata") or {}).get(f) or {})}
            pspec = ptmpl.setdefault("spec", {})
            pp = ppatch.get("spec") or {}
            if pp.get("volumes"):
                pspec["volumes"] = _merge_by_name(pspec.get("volumes") or [], pp["volumes"])
            for list_key in ("containers", "initContainers"):
                for cpatch in pp.get(list_key) or []:
                    for c in pspec.get(list_key) or []:
                        if c.get("name") == cpatch.get("name"):
                            if cpatch.get("volumeMounts"):
                                c["volumeMounts"] = _merge_by_name(c.get("volumeMounts") or [], cpatch["volumeMounts"])
                            if cpatch.get("env"):
                                c["env"] = _upsert_env(c.get("env") or [], cpatch["env"])
    return rt


@dataclass
class ReplicatedJobPlan:
    """One replicated job of the rendered TrainJob.

    ``pods``: its Pod manifests (all completion indexes of job index 0); ``depends_on``:
    ``[(job name, "Complete"|"Ready")]``; ``backoff_limit``: the Job's backoffLimit (default 6);
    ``ancestor``: the ``trainjob-ancestor-step`` label (``trainer`` for the node job).
    """

    name: str
    pods: list[dict]
    depends_on: list[tuple[str, str]] = field(default_factory=list)
    backoff_limit: int = 6
    ancestor: str | None = None


def _upsert_env(env: list[dict], items: list[dict]) -> list[dict]:
    out = [dict(e) for e in env]
    for item in items:
        for i, e in enumerate(out):
            if e.get("name") == item.get("name"):
                out[i] = dict(item)
                break
        else:
            out.append(dict(item))
    return out


def _plugin_env(fw: str | None, tj: dict, runtime: dict, master_host: str, master_port: int, nodes: int) -> list[dict]:
    idx = {"valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX_FIELD}}}
    if fw == "torch":
        return [{"name": "PET_NNODES", "value": str(nodes)},
                {"name": "PET_NPROC_PER_NODE", "value": torch_nproc_per_node(tj, runtime)},
                dict(name="PET_NODE_RANK", **idx),
                {"name": "PET_MASTER_ADDR", "value": master_host},
                {"name": "PET_MASTER_PORT", "value": str(master_port)}]
    if fw == "jax":
        return [{"name": "JAX_NUM_PROCESSES", "value": str(nodes)}, dict(name="JAX_PROCESS_ID", **idx),
                {"name": "JAX_COORDINATOR_ADDRESS", "value": f"{master_host}:{master_port}"}]
    if fw == "xgboost":
        res = ((tj.get("spec") or {}).get("trainer") or {}).get("resourcesPerNode")
        gpus = sum(gpu_resources(res).values())
        return [{"name": "DMLC_TRACKER_URI", "value": master_host},
                {"name": "DMLC_TRACKER_PORT", "value": str(master_port)},
                dict(name="DMLC_TASK_ID", **idx),
                {"name": "DMLC_NUM_WORKER", "value": str(nodes * (gpus or 1))}]
    return []


def trainjob_plan(tj: dict, runtime: dict, addressing: str = "loopback",
                  ports: PortAllocator | None = None) -> list[ReplicatedJobPlan]:
    """Render a TrainJob on its runtime into replicated jobs with Pod manifests.

    The ``node`` container of the trainer job gets the TrainJob's image/command/args/env/
    resourcesPerNode and the framework env; initializer containers get ``STORAGE_URI`` from
    ``spec.initializer``. ``addressing`` as in :func:`localflow.training.pods.replica_pods`.
    Raises :class:`SpecError` for frameworks localflow cannot run (mpi, flux).
    """
    runtime = apply_runtime_patches(runtime, tj)
    fw = framework(runtime)
    if fw in ("mpi", "flux"):
        raise SpecError(f"{runtime.get('kind')}.spec.mlPolicy.{fw}",
                        f"the {fw} runtime is not supported by localflow (it needs SSH between nodes)",
                        fix="use a torch, jax, xgboost or plain runtime, or the v1 MPIJob")
    meta = tj["metadata"]
    name, ns = meta["name"], meta.get("namespace") or "default"
    spec = tj.get("spec") or {}
    tr = spec.get("trainer") or {}
    init = spec.get("initializer") or {}
    nodes = num_nodes(tj, runtime)
    ports = ports or PortAllocator()
    rjobs = ((runtime.get("spec") or {}).get("template") or {}).get("spec", {}).get("replicatedJobs") or []
    owner = {"apiVersion": tj.get("apiVersion", "trainer.kubeflow.org/v1alpha1"), "kind": "TrainJob", "name": name,
             "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}
    plans = []
    master: tuple[str, int] | None = None
    for rj in rjobs:
        jt = rj.get("template") or {}
        jlabels = dict((jt.get("metadata") or {}).get("labels") or {})
        ancestor = jlabels.get(LABEL_ANCESTOR) or ("trainer" if rj["name"] == _NODE else None)
        jspec = jt.get("spec") or {}
        count = nodes if ancestor == "trainer" else int(jspec.get("parallelism") or jspec.get("completions") or 1)
        pods = []
        for i in range(count):
            ptmpl = copy.deepcopy(jspec.get("template") or {})
            pspec = ptmpl.get("spec") or {}
            hostname = f"{name}-{rj['name']}-0-{i}"
            port = ports.allocate() if addressing == "loopback" else TRAINER_PORT
            if ancestor == "trainer" and i == 0:
                master = (LOOPBACK_HOST if addressing == "loopback" else f"{hostname}.{name}", port)
            labels = {**jlabels, **((ptmpl.get("metadata") or {}).get("labels") or {}),
                      LABEL_JOBSET_NAME: name, LABEL_REPLICATED_JOB: rj["name"], LABEL_JOB_INDEX: "0",
                      LABEL_COMPLETION_INDEX: str(i)}
            annotations = {**((ptmpl.get("metadata") or {}).get("annotations") or {}), LABEL_COMPLETION_INDEX: str(i)}
            pspec.setdefault("restartPolicy", "OnFailure")  # JobSet's webhook default
            pspec["subdomain"] = name
            if addressing == "dns":
                pspec["hostname"] = hostname
                annotations["localflow.dev/network"] = f"{ns}-{name}"
            annotations["localflow.dev/address"] = f"{LOOPBACK_HOST if addressing == 'loopback' else hostname + '.' + name}:{port}"
            for c in pspec.get("containers") or []:
                if ancestor == "trainer" and c.get("name") == _NODE:
                    if tr.get("image"):
                        c["image"] = tr["image"]
                    if tr.get("command"):
                        c["command"] = list(tr["command"])
                    if tr.get("args"):
                        c["args"] = list(tr["args"])
                    if tr.get("resourcesPerNode"):
                        c["resources"] = copy.deepcopy(tr["resourcesPerNode"])
                    c["env"] = _upsert_env(c.get("env") or [], tr.get("env") or [])
                    c["ports"] = [p for p in c.get("ports") or [] if p.get("containerPort") != TRAINER_PORT] + \
                        [{"containerPort": port}]
                for step in ("dataset", "model"):
                    if c.get("name") == f"{step}-initializer" and init.get(step):
                        extra = [{"name": "STORAGE_URI", "value": init[step]["storageUri"]}] \
                            if init[step].get("storageUri") else []
                        c["env"] = _upsert_env(c.get("env") or [], extra + list(init[step].get("env") or []))
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": hostname, "namespace": ns, "labels": labels, "annotations": annotations,
                                      "ownerReferences": [owner]},
                         "spec": pspec})
        deps = [(d.get("name"), d.get("status", "Complete")) for d in rj.get("dependsOn") or []]
        plans.append(ReplicatedJobPlan(rj["name"], pods, deps, int(jspec.get("backoffLimit", 6)), ancestor))
    if master is not None:
        for plan in plans:
            if plan.ancestor != "trainer":
                continue
            for pod in plan.pods:
                for c in pod["spec"].get("containers") or []:
                    if c.get("name") == _NODE:
                        c["env"] = _upsert_env(c.get("env") or [], _plugin_env(fw, tj, runtime, master[0], master[1], nodes))
    return plans
