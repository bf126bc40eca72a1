"""Spec validation for training jobs: kubeflow.org/v1 TFJob, PyTorchJob, XGBoostJob, JAXJob,
PaddleJob, MPIJob and trainer.kubeflow.org/v1alpha1 TrainJob, TrainingRuntime, ClusterTrainingRuntime.

Follows the operator's admission webhooks (kubeflow/training-operator ``release-1.9``
``pkg/webhooks/{tensorflow,pytorch,xgboost,jax,paddlepaddle}/*_webhook.go``,
``pkg/webhooks/utils/utils.go``, ``pkg/common/util/webhooks.go``) and kubeflow/trainer
(``pkg/runtime/framework/plugins/{torch,xgboost,jobset}``), plus what this machine cannot do
(GPU requests without a GPU). Every problem is a :class:`SpecError` whose path is written the way
the brief asks: ``PyTorchJob.spec.pytorchReplicaSpecs.Worker.replicas``.

Entry points: :func:`load_job` (default + validate a v1 job, returns the defaulted dict),
:func:`job_errors` (every problem, for reports), :func:`validate_trainjob`,
:func:`validate_runtime`. Each returns/raises; none mutates its input.
"""
from __future__ import annotations

import difflib

import re

from localflow.errors import SpecError
from localflow.specs.podspec import metadata_errors, pod_template_errors
from localflow.specs.trainjob import trainjob_shape_errors
from localflow.training.defaults import apply_defaults
from localflow.training.gpus import detect_gpus, gpu_resources
from localflow.training.kinds import CLEAN_POD_POLICIES, KINDS, RESTART_POLICIES, TrainingKind
from localflow.validation import INT32_MAX, check_dns1123_label

__all__ = [
    "load_job", "job_errors", "job_warnings", "validate_trainjob", "validate_runtime",
    "runtime_errors", "trainjob_errors", "TRAINER_API_VERSION", "TORCH_RESERVED_ENV",
    "XGBOOST_RESERVED_ENV",
]

TRAINER_API_VERSION = "trainer.kubeflow.org/v1alpha1"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_MANAGED_BY_V1 = ("kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue")
_MANAGED_BY_V2 = ("trainer.kubeflow.org/trainjob-controller", "kueue.x-k8s.io/multikueue")
# kubeflow/trainer pkg/constants/constants.go TorchRunReservedEnvNames / XGBoostReservedEnvNames
TORCH_RESERVED_ENV = ("PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT")
XGBOOST_RESERVED_ENV = ("DMLC_TRACKER_URI", "DMLC_TRACKER_PORT", "DMLC_TASK_ID", "DMLC_NUM_WORKER")
_FRAMEWORKS = ("torch", "mpi", "jax", "xgboost", "flux", "plainml")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _name_errors(kind: str, meta, errs: list[SpecError]) -> None:
    if meta is not None and not isinstance(meta, dict):
        errs.extend(metadata_errors(f"{kind}.metadata", meta))
        return
    name = (meta or {}).get("name")
    if name and not isinstance(name, str):
        errs.append(SpecError(f"{kind}.metadata.name", f"must be a string (got {type(name).__name__} {name!r})",
                              fix="quote the name in the YAML"))
    elif not name:
        errs.append(SpecError(f"{kind}.metadata.name", "must be set", fix="give the job a metadata.name"))
    elif not _DNS1035.match(str(name)) or len(str(name)) > 63:
        errs.append(SpecError(
            f"{kind}.metadata.name",
            f"must be a DNS-1035 label: lower case letters, digits and '-', starting with a letter, "
            f"at most 63 characters (got {name!r})",
            fix="rename the job, e.g. " + repr(re.sub(r"[^a-z0-9-]", "-", str(name).lower()).strip("-")[:63] or "job")))
    if isinstance(meta, dict):
        errs.extend(metadata_errors(f"{kind}.metadata", meta, name=None))


def _gpu_errors(path: str, resources, gpus: int, errs: list[SpecError], field: str = "resources") -> None:
    for res, n in gpu_resources(resources).items():
        if n > gpus:
            section = "limits" if res in ((resources or {}).get("limits") or {}) else "requests"
            have = "no GPU" if gpus == 0 else f"only {gpus} GPU(s)"
            errs.append(SpecError(
                f"{path}.{field}.{section}['{res}']",
                f"requests {n} GPU(s) but this machine has {have}",
                fix=f"remove the {res} {section[:-1]} to train on CPU, or run on a machine with {n} GPU(s)"))


def _container_errors(path: str, containers, info: TrainingKind | None, default_name: str | None,
                      gpus: int, errs: list[SpecError]) -> None:
    if not isinstance(containers, list) or not containers:
        errs.append(SpecError(path, "must be specified",
                              fix=f"add a container named {default_name!r} with an image and a command"
                              if default_name else "add a container with an image and a command"))
        return
    found = False
    for i, c in enumerate(containers):
        cpath = f"{path}[{i}]"
        if not isinstance(c, dict):
            errs.append(SpecError(cpath, "must be a mapping with name and image"))
            continue
        if not c.get("image"):
            errs.append(SpecError(f"{cpath}.image", "must be required", fix="set the container image"))
        if c.get("name") == default_name:
            found = True
        _gpu_errors(cpath, c.get("resources"), gpus, errs)
    if default_name and not found:
        names = ", ".join(repr(c.get("name")) for c in containers if isinstance(c, dict))
        what = "TF_CONFIG" if info is not None and info.kind == "TFJob" else "its environment"
        errs.append(SpecError(
            path, f"must have at least one container with name {default_name} (found {names})",
            fix=f"rename the training container to {default_name!r}: the operator injects {what}, "
                f"adds its port and reads the exit code only there"))


def _run_policy_errors(kind: str, rp, total: int, errs: list[SpecError]) -> None:
    path = f"{kind}.spec.runPolicy"
    if rp is None:
        return
    if not isinstance(rp, dict):
        errs.append(SpecError(path, "must be a mapping"))
        return
    cpp = rp.get("cleanPodPolicy")
    if cpp is not None and cpp not in CLEAN_POD_POLICIES:
        errs.append(SpecError(f"{path}.cleanPodPolicy", f"unsupported value {cpp!r}",
                              fix="use one of: " + ", ".join(CLEAN_POD_POLICIES)))
    for field, lo in (("backoffLimit", 0), ("ttlSecondsAfterFinished", 0), ("activeDeadlineSeconds", 0)):
        v = rp.get(field)
        if v is not None and (not _is_int(v) or v < lo):
            errs.append(SpecError(f"{path}.{field}", f"must be an integer >= {lo} (got {v!r})",
                                  fix=f"set {field} to {lo} or more, or remove it"))
    if rp.get("suspend") is not None and not isinstance(rp.get("suspend"), bool):
        errs.append(SpecError(f"{path}.suspend", f"must be true or false (got {rp['suspend']!r})"))
    mb = rp.get("managedBy")
    if mb is not None and mb not in _MANAGED_BY_V1:
        errs.append(SpecError(f"{path}.managedBy", f"unsupported value {mb!r}",
                              fix="use one of: " + ", ".join(_MANAGED_BY_V1)))
    elif mb == "kueue.x-k8s.io/multikueue":
        errs.append(SpecError(f"{path}.managedBy",
                              "the job is delegated to Kueue MultiKueue, which localflow does not run",
                              fix="remove managedBy (or set kubeflow.org/training-operator) to run it here"))
    sp = rp.get("schedulingPolicy")
    if isinstance(sp, dict) and sp.get("minAvailable") is not None:
        ma = sp["minAvailable"]
        if not _is_int(ma) or ma < 0 or ma > total:
            errs.append(SpecError(f"{path}.schedulingPolicy.minAvailable",
                                  f"must be between 0 and the job's {total} replicas (got {ma!r})",
                                  fix=f"set minAvailable to at most {total}"))


def _kind_errors(info: TrainingKind, spec: dict, rspecs: dict, errs: list[SpecError]) -> None:
    kind, field = info.kind, info.replica_specs_field
    base = f"{kind}.spec.{field}"
    if kind == "TFJob":
        chiefs = [t for t in rspecs if t in ("Chief", "Master")]
        if len(chiefs) > 1:
            errs.append(SpecError(base, "must not have more than 1 Chief or Master role (got "
                                  + " and ".join(chiefs) + ")", fix="keep only Chief (Master is its legacy name)"))
        sp = spec.get("successPolicy")
        if sp not in (None, "", "AllWorkers"):
            errs.append(SpecError(f"{kind}.spec.successPolicy", f"unsupported value {sp!r}",
                                  fix='use "" (default: worker 0 decides) or "AllWorkers"'))
    if kind in ("PyTorchJob", "XGBoostJob") and "Master" in rspecs:
        n = rspecs["Master"].get("replicas") if isinstance(rspecs["Master"], dict) else None
        if n != 1:
            errs.append(SpecError(f"{base}.Master.replicas", f"must be 1 (got {n})", fix="set Master replicas to 1"))
    if kind == "PyTorchJob":
        w = rspecs.get("Worker")
        if isinstance(w, dict) and _is_int(w.get("replicas")) and w["replicas"] < 1 and w["replicas"] >= 0:
            errs.append(SpecError(f"{base}.Worker.replicas", f"must be at least 1 (got {w['replicas']})",
                                  fix="set Worker replicas to 1 or more, or remove the Worker spec"))
        _pytorch_errors(spec, rspecs, errs)
    if kind == "XGBoostJob" and "Master" not in rspecs:
        errs.append(SpecError(f"{base}.Master", "must be present", fix="add a Master replica spec with replicas: 1"))
    if kind == "MPIJob":
        if "Launcher" not in rspecs:
            errs.append(SpecError(f"{base}.Launcher", "must be present",
                                  fix="add a Launcher replica spec that runs mpirun"))
        elif isinstance(rspecs["Launcher"], dict) and rspecs["Launcher"].get("replicas") != 1:
            errs.append(SpecError(f"{base}.Launcher.replicas",
                                  f"must be 1 (got {rspecs['Launcher'].get('replicas')})", fix="set Launcher replicas to 1"))
        for t, rs in rspecs.items():
            if isinstance(rs, dict) and rs.get("restartPolicy") == "ExitCode":
                errs.append(SpecError(f"{base}.{t}.restartPolicy",
                                      "ExitCode is not supported by MPIJob (kubeflow/trainer#1768)",
                                      fix="use Never or OnFailure"))
        top, rp = spec.get("cleanPodPolicy"), (spec.get("runPolicy") or {}).get("cleanPodPolicy")
        if top and rp and top != rp:
            errs.append(SpecError(f"{kind}.spec.cleanPodPolicy",
                                  f"conflicts with spec.runPolicy.cleanPodPolicy ({top!r} vs {rp!r})",
                                  fix="set cleanPodPolicy in one place only (spec.runPolicy.cleanPodPolicy)"))
        spw = spec.get("slotsPerWorker")
        if spw is not None and (not _is_int(spw) or spw < 1):
            errs.append(SpecError(f"{kind}.spec.slotsPerWorker", f"must be an integer >= 1 (got {spw!r})"))


def _pytorch_errors(spec: dict, rspecs: dict, errs: list[SpecError]) -> None:
    npn = spec.get("nprocPerNode")
    if npn is not None and not (_is_int(npn) and npn >= 1) and not (
            isinstance(npn, str) and (npn in ("auto", "cpu", "gpu") or (npn.isdigit() and int(npn) >= 1))):
        errs.append(SpecError("PyTorchJob.spec.nprocPerNode", f"must be a positive integer or auto, cpu, gpu (got {npn!r})"))
    ep = spec.get("elasticPolicy")
    if ep is None:
        return
    path = "PyTorchJob.spec.elasticPolicy"
    if not isinstance(ep, dict):
        errs.append(SpecError(path, "must be a mapping"))
        return
    if "Worker" not in rspecs:
        errs.append(SpecError("PyTorchJob.spec.pytorchReplicaSpecs.Worker", "must be configured if elastic policy is used",
                              fix="add a Worker replica spec or remove elasticPolicy"))
    if ep.get("nProcPerNode") is not None and npn is not None and npn != "auto":
        errs.append(SpecError(f"{path}.nProcPerNode", "must not be used with PyTorchJob.spec.nprocPerNode",
                              fix="remove elasticPolicy.nProcPerNode (deprecated) and keep spec.nprocPerNode"))
    lo, hi = ep.get("minReplicas"), ep.get("maxReplicas")
    for f, v in (("minReplicas", lo), ("maxReplicas", hi)):
        if v is not None and (not _is_int(v) or v < 1):
            errs.append(SpecError(f"{path}.{f}", f"must be an integer >= 1 (got {v!r})"))
    if _is_int(lo) and _is_int(hi) and lo > hi:
        errs.append(SpecError(f"{path}.minReplicas", f"must not exceed maxReplicas ({lo} > {hi})",
                              fix="set minReplicas <= maxReplicas"))
    be = ep.get("rdzvBackend")
    if be is not None and be not in ("c10d", "etcd", "etcd-v2"):
        errs.append(SpecError(f"{path}.rdzvBackend", f"unsupported value {be!r}", fix="use c10d, etcd or etcd-v2"))


_REPLICA_SPEC_FIELDS = ("replicas", "template", "restartPolicy")


def job_errors(job: dict, *, gpus: int | None = None) -> list[SpecError]:
    """Every problem of a (defaulted) v1 job, in document order; ``[]`` when it is valid.

    ``gpus`` is the number of GPUs available (default: :func:`detect_gpus`).
    """
    errs: list[SpecError] = []
    if not isinstance(job, dict) or job.get("kind") not in KINDS:
        got = job.get("kind") if isinstance(job, dict) else type(job).__name__
        return [SpecError("kind", f"not a training job kind (got {got!r})", fix="use one of: " + ", ".join(KINDS))]
    info = KINDS[job["kind"]]
    kind = info.kind
    gpus = detect_gpus() if gpus is None else gpus
    api = job.get("apiVersion")
    if api != "kubeflow.org/v1":
        errs.append(SpecError(f"{kind}.apiVersion", f"must be kubeflow.org/v1 (got {api!r})",
                              fix="set apiVersion: kubeflow.org/v1"))
    _name_errors(kind, job.get("metadata"), errs)
    spec = job.get("spec")
    if not isinstance(spec, dict):
        return errs + [SpecError(f"{kind}.spec", "must be a mapping")]
    base = f"{kind}.spec.{info.replica_specs_field}"
    rspecs = spec.get(info.replica_specs_field)
    if not isinstance(rspecs, dict) or not rspecs:
        near = difflib.get_close_matches(info.replica_specs_field, [str(k) for k in spec], n=1, cutoff=0.75)
        fix = f"add replica specs, e.g. {info.replica_specs_field}: {{{info.replica_types[-1]}: ...}}"
        if near and near[0] != info.replica_specs_field:  # a misspelled key: name it
            fix = f"rename {kind}.spec.{near[0]} to {info.replica_specs_field}"
        return errs + [SpecError(base, "must be required", fix=fix)]  # training-operator's webhook wording
    total = 0
    for rtype, rs in rspecs.items():
        rpath = f"{base}.{rtype}"
        if info.canonical_type(rtype) is None:
            errs.append(SpecError(rpath, f"unsupported replica type {rtype!r}",
                                  fix=f"{kind} supports: " + ", ".join(info.replica_types)))
            continue
        if not isinstance(rs, dict):
            errs.append(SpecError(rpath, "must be a mapping with replicas, restartPolicy and template"))
            continue
        for key in rs:  # ReplicaSpec has these fields only (kubeflow/training-operator pkg/apis/kubeflow.org/v1/common_types.go)
            if key not in _REPLICA_SPEC_FIELDS:
                near = difflib.get_close_matches(str(key), _REPLICA_SPEC_FIELDS, n=1)
                errs.append(SpecError(f"{rpath}.{key}", "unknown field",
                                      fix=f"did you mean {near[0]!r}?" if near else
                                      f"a replica spec has: {', '.join(_REPLICA_SPEC_FIELDS)}"))
        n = rs.get("replicas", 1)
        if not _is_int(n):
            errs.append(SpecError(f"{rpath}.replicas", f"must be an integer (got {n!r})"))
        elif n < 0:
            errs.append(SpecError(f"{rpath}.replicas", f"must be >= 0 (got {n})", fix="set replicas to 0 or more"))
        elif n > INT32_MAX:
            errs.append(SpecError(f"{rpath}.replicas", f"Invalid value {n}: must be between 0 and {INT32_MAX}, inclusive",
                                  fix="set a replica count this machine can run"))
        else:
            total += n
        rp = rs.get("restartPolicy")
        if rp is not None and rp not in RESTART_POLICIES:
            errs.append(SpecError(f"{rpath}.restartPolicy", f"unsupported value {rp!r}",
                                  fix="use one of: " + ", ".join(RESTART_POLICIES)))
        tmpl = rs.get("template")
        pod_spec = tmpl.get("spec") if isinstance(tmpl, dict) else None
        if tmpl is not None and not isinstance(tmpl, dict) or pod_spec is not None and not isinstance(pod_spec, dict):
            errs.extend(pod_template_errors(f"{rpath}.template", tmpl))  # a scalar where a mapping belongs
            continue
        if not isinstance(pod_spec, dict):
            errs.append(SpecError(f"{rpath}.template.spec.containers", "must be specified",
                                  fix=f"add template.spec.containers with a container named {info.container!r}"))
            continue
        # MPIJob has no admission webhook in release-1.9: any container name (spec.mainContainer) is accepted.
        want = None if kind == "MPIJob" else info.container
        _container_errors(f"{rpath}.template.spec.containers", pod_spec.get("containers"), info, want, gpus, errs)
        inits = pod_spec.get("initContainers")
        for i, c in enumerate(inits if isinstance(inits, list) else []):
            if isinstance(c, dict):
                _gpu_errors(f"{rpath}.template.spec.initContainers[{i}]", c.get("resources"), gpus, errs)
        errs.extend(pod_template_errors(f"{rpath}.template", tmpl))
    _kind_errors(info, spec, {k: v for k, v in rspecs.items() if info.canonical_type(k)}, errs)
    _run_policy_errors(kind, spec.get("runPolicy"), total, errs)
    return errs


def job_warnings(job: dict) -> list[str]:
    """Admission-style warnings for a v1 job (accepted, but probably not what the user meant)."""
    out: list[str] = []
    info = KINDS.get(job.get("kind"))
    if info is None:
        return out
    spec = job.get("spec") or {}
    for rtype, rs in (spec.get(info.replica_specs_field) or {}).items():
        tmpl_rp = (((rs or {}).get("template") or {}).get("spec") or {}).get("restartPolicy")
        if tmpl_rp:
            out.append(f"{info.kind}.spec.{info.replica_specs_field}.{rtype}.template.spec.restartPolicy: "
                       "Restart policy in pod template will be overwritten by restart policy in replica spec")
    if info.kind == "PyTorchJob" and (spec.get("elasticPolicy") or {}).get("nProcPerNode") is not None:
        out.append("spec.elasticPolicy.nProcPerNode is deprecated, use spec.nprocPerNode instead")
    if info.kind == "TFJob" and spec.get("successPolicy") == "AllWorkers" and \
            any(t in (spec.get("tfReplicaSpecs") or {}) for t in ("Chief", "Master")):
        out.append("TFJob.spec.successPolicy: AllWorkers has no effect when a Chief/Master exists (the chief decides)")
    return out


def load_job(doc: dict, *, gpus: int | None = None) -> dict:
    """Default and validate a v1 training job document; returns the defaulted copy.

    Raises the first :class:`SpecError` of :func:`job_errors` (document order).
    """
    if not isinstance(doc, dict) or doc.get("kind") not in KINDS:
        raise job_errors(doc)[0]
    job = apply_defaults(doc)
    errs = job_errors(job, gpus=gpus)
    if errs:
        raise errs[0]
    return job


# ---------------------------------------------------------------- Trainer v2 (v1alpha1)

def _get(value, key):
    """``value[key]`` when ``value`` is a mapping, else None (its shape is reported elsewhere)."""
    return value.get(key) if isinstance(value, dict) else None


def _replicated_job_errors(p: str, rj: dict) -> list[SpecError]:
    """Shapes of one JobSet replicated job: name a DNS-1123 label, ``template.spec.template.spec``
    mappings all the way down, ``replicas``/``parallelism``/``completions``/``backoffLimit`` int32."""
    errs = [e for e in (_first_error(lambda: check_dns1123_label(f"{p}.name", rj["name"])),) if e]
    if errs:
        return errs
    node = rj
    sub = p
    for key in ("template", "spec", "template", "spec"):
        node = node.get(key)
        sub = f"{sub}.{key}"
        if not isinstance(node, dict):
            what = "is missing" if node is None else f"must be a mapping (got {type(node).__name__} {str(node)[:40]!r})"
            return [SpecError(sub, what, fix="a replicated job holds template.spec.template.spec (a Job's Pod template)")]
    jspec = rj["template"]["spec"]
    for f, lo in (("parallelism", 0), ("completions", 0), ("backoffLimit", 0)):
        v = jspec.get(f)
        if v is not None and (not _is_int(v) or not lo <= v <= INT32_MAX):
            return [SpecError(f"{p}.template.spec.{f}", f"must be an integer between {lo} and {INT32_MAX} (got {v!r})")]
    v = rj.get("replicas")
    if v is not None and (not _is_int(v) or not 0 <= v <= INT32_MAX):
        return [SpecError(f"{p}.replicas", f"must be an integer between 0 and {INT32_MAX} (got {v!r})")]
    if rj.get("dependsOn") is not None and not isinstance(rj["dependsOn"], list):
        return [SpecError(f"{p}.dependsOn", "must be a list of {name, status}")]
    return []


def _first_error(fn) -> SpecError | None:
    try:
        fn()
    except SpecError as err:
        return err
    return None


def runtime_errors(rt: dict, *, gpus: int | None = None) -> list[SpecError]:
    """Problems of a TrainingRuntime / ClusterTrainingRuntime document."""
    errs: list[SpecError] = []
    kind = rt.get("kind") if isinstance(rt, dict) else None
    if kind not in ("TrainingRuntime", "ClusterTrainingRuntime"):
        return [SpecError("kind", f"not a training runtime (got {kind!r})",
                          fix="use TrainingRuntime or ClusterTrainingRuntime")]
    if rt.get("apiVersion") != TRAINER_API_VERSION:
        errs.append(SpecError(f"{kind}.apiVersion", f"must be {TRAINER_API_VERSION} (got {rt.get('apiVersion')!r})"))
    meta = rt.get("metadata")
    if not (isinstance(meta, dict) and meta.get("name")):
        errs.append(SpecError(f"{kind}.metadata.name", "must be set"))
    else:
        errs.extend(metadata_errors(f"{kind}.metadata", meta))
    spec = rt.get("spec")
    if not isinstance(spec, dict):
        return errs + [SpecError(f"{kind}.spec", "must be a mapping")]
    ml = spec.get("mlPolicy") or {}
    if not isinstance(ml, dict):
        errs.append(SpecError(f"{kind}.spec.mlPolicy", "must be a mapping"))
        ml = {}
    for f in _FRAMEWORKS:
        if ml.get(f) is not None and not isinstance(ml[f], dict):
            errs.append(SpecError(f"{kind}.spec.mlPolicy.{f}", f"must be a mapping (got {ml[f]!r})",
                                  fix=f"write {f}: {{}} for the defaults"))
    fw = [f for f in _FRAMEWORKS if f in ml]
    if len(fw) > 1:
        errs.append(SpecError(f"{kind}.spec.mlPolicy", "must set at most one of " + ", ".join(_FRAMEWORKS)
                              + f" (got {', '.join(fw)})"))
    nn = ml.get("numNodes")
    if nn is not None and (not _is_int(nn) or nn < 1 or nn > INT32_MAX):
        errs.append(SpecError(f"{kind}.spec.mlPolicy.numNodes", f"must be an integer between 1 and {INT32_MAX} (got {nn!r})"))
    tmpl = spec.get("template")
    for p, v in ((f"{kind}.spec.template", tmpl), (f"{kind}.spec.template.spec", _get(tmpl, "spec"))):
        if v is not None and not isinstance(v, dict):
            return errs + [SpecError(p, f"must be a mapping (got {type(v).__name__} {str(v)[:40]!r})",
                                     fix="check the indentation and the ':' after each key")]
    jobs = _get(_get(tmpl, "spec"), "replicatedJobs")
    jpath = f"{kind}.spec.template.spec.replicatedJobs"
    if not isinstance(jobs, list) or not jobs:
        return errs + [SpecError(jpath, "must be specified", fix="add a replicated job named 'node' with a container named 'node'")]
    gpus = detect_gpus() if gpus is None else gpus
    names = set()
    for i, rj in enumerate(jobs):
        p = f"{jpath}[{i}]"
        if not isinstance(rj, dict) or not rj.get("name"):
            errs.append(SpecError(f"{p}.name", "must be set"))
            continue
        shape = _replicated_job_errors(p, rj)
        if shape:
            errs.extend(shape)
            continue
        if rj["name"] in names:
            errs.append(SpecError(f"{p}.name", f"duplicate replicated job {rj['name']!r}"))
        names.add(rj["name"])
        pod = rj["template"]["spec"]["template"]["spec"]
        want = "node" if rj["name"] == "node" else None
        _container_errors(f"{p}.template.spec.template.spec.containers", pod.get("containers"), None, want, gpus, errs)
        errs.extend(pod_template_errors(f"{p}.template.spec.template", rj["template"]["spec"]["template"]))
        for j, d in enumerate(rj.get("dependsOn") or []):
            if not isinstance(d, dict):
                errs.append(SpecError(f"{p}.dependsOn[{j}]", "must be a mapping with name and status"))
            elif d.get("name") not in names:
                errs.append(SpecError(f"{p}.dependsOn", f"depends on {d.get('name')!r}, which is not an earlier replicated job"))
            elif d.get("status", "Complete") not in ("Complete", "Ready"):
                errs.append(SpecError(f"{p}.dependsOn[{j}].status", f"Unsupported value: {d.get('status')!r}",
                                      fix="use Complete or Ready"))
    return errs


def validate_runtime(rt: dict, *, gpus: int | None = None) -> None:
    """Raise the first problem of :func:`runtime_errors`."""
    errs = runtime_errors(rt, gpus=gpus)
    if errs:
        raise errs[0]


def trainjob_errors(tj: dict, runtime: dict | None = None, *, gpus: int | None = None) -> list[SpecError]:
    """Problems of a TrainJob, checked against its resolved ``runtime`` when given."""
    errs: list[SpecError] = []
    if not isinstance(tj, dict) or tj.get("kind") != "TrainJob":
        return [SpecError("kind", "not a TrainJob")]
    if tj.get("apiVersion") != TRAINER_API_VERSION:
        errs.append(SpecError("TrainJob.apiVersion", f"must be {TRAINER_API_VERSION} (got {tj.get('apiVersion')!r})"))
    _name_errors("TrainJob", tj.get("metadata"), errs)
    spec = tj.get("spec")
    if not isinstance(spec, dict):
        return errs + [SpecError("TrainJob.spec", "must be a mapping")]
    shape = trainjob_shape_errors(tj)
    if shape:
        return errs + shape
    ref = spec.get("runtimeRef")
    if not isinstance(ref, dict) or not ref.get("name"):
        errs.append(SpecError("TrainJob.spec.runtimeRef.name", "must be set",
                              fix="reference a runtime, e.g. runtimeRef: {name: torch-distributed}"))
    else:
        if ref.get("kind", "ClusterTrainingRuntime") not in ("ClusterTrainingRuntime", "TrainingRuntime"):
            errs.append(SpecError("TrainJob.spec.runtimeRef.kind", f"unsupported value {ref.get('kind')!r}",
                                  fix="use ClusterTrainingRuntime or TrainingRuntime"))
        if ref.get("apiGroup", "trainer.kubeflow.org") != "trainer.kubeflow.org":
            errs.append(SpecError("TrainJob.spec.runtimeRef.apiGroup", f"unsupported value {ref.get('apiGroup')!r}",
                                  fix="use trainer.kubeflow.org"))
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not _is_int(ads) or ads < 1 or ads > 2**63 - 1):
        errs.append(SpecError("TrainJob.spec.activeDeadlineSeconds", f"must be an integer >= 1 (got {ads!r})"))
    mb = spec.get("managedBy")
    if mb is not None and mb not in _MANAGED_BY_V2:
        errs.append(SpecError("TrainJob.spec.managedBy", f"unsupported value {mb!r}", fix="use " + " or ".join(_MANAGED_BY_V2)))
    elif mb == "kueue.x-k8s.io/multikueue":
        errs.append(SpecError("TrainJob.spec.managedBy", "the job is delegated to Kueue MultiKueue, which localflow does not run",
                              fix="remove managedBy to run it here"))
    tr = spec.get("trainer") or {}
    if not isinstance(tr, dict):
        return errs + [SpecError("TrainJob.spec.trainer", "must be a mapping")]
    nn = tr.get("numNodes")
    if nn is not None and (not _is_int(nn) or nn < 1 or nn > INT32_MAX):
        errs.append(SpecError("TrainJob.spec.trainer.numNodes", f"must be an integer >= 1 (got {nn!r})",
                              fix=f"set numNodes to 1 or more (at most {INT32_MAX}, an int32)"))
    npn = tr.get("numProcPerNode")
    if npn is not None and not ((_is_int(npn) and npn >= 1) or npn in ("auto", "cpu", "gpu")):
        errs.append(SpecError("TrainJob.spec.trainer.numProcPerNode",
                              f"must have an int value or [auto cpu gpu] (got {npn!r})"))
    gpus = detect_gpus() if gpus is None else gpus
    _gpu_errors("TrainJob.spec.trainer", tr.get("resourcesPerNode"), gpus, errs, "resourcesPerNode")
    ml = ((runtime or {}).get("spec") or {}).get("mlPolicy") or {}
    env_names = [e.get("name") for e in tr.get("env") or [] if isinstance(e, dict)]
    if "torch" in ml:
        bad = sorted({n for n in env_names if n in TORCH_RESERVED_ENV})
        if bad:
            errs.append(SpecError("TrainJob.spec.trainer.env", f"must not have reserved envs, invalid envs configured: [{' '.join(bad)}]",
                                  fix="remove them: the torch runtime sets " + ", ".join(TORCH_RESERVED_ENV)))
    if "xgboost" in ml:
        for i, n in enumerate(env_names):
            if n in XGBOOST_RESERVED_ENV:
                errs.append(SpecError(f"TrainJob.spec.trainer.env[{i}]", f"{n} is reserved for the XGBoost runtime",
                                      fix="remove it: the runtime sets it"))
    if runtime is not None:
        from localflow.training.runtimes import runtime_patch_errors

        bad_runtime = runtime_errors(runtime, gpus=2**31)  # GPUs: the trainer's resourcesPerNode decide
        if bad_runtime:
            return errs + bad_runtime

        errs.extend(runtime_patch_errors(tj, runtime))
        jobs = {rj.get("name") for rj in (((runtime.get("spec") or {}).get("template") or {}).get("spec") or {}).get("replicatedJobs") or []
                if isinstance(rj, dict)}
        init = spec.get("initializer") or {}
        for what, job in (("dataset", "dataset-initializer"), ("model", "model-initializer")):
            if init.get(what) and job not in jobs:
                errs.append(SpecError("TrainJob.spec.runtimeRef",
                                      f"must have {job} job when trainJob is configured with input {what}Config",
                                      fix=f"use a runtime with a {job} replicated job, or drop spec.initializer.{what}"))
    return errs


def validate_trainjob(tj: dict, runtime: dict | None = None, *, gpus: int | None = None) -> None:
    """Raise the first problem of :func:`trainjob_errors`."""
    errs = trainjob_errors(tj, runtime, gpus=gpus)
    if errs:
        raise errs[0]
