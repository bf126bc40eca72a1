"""The kind table: everything localflow knows about each kind, in one entry per kind.

Each :class:`Kind` says what the cluster's discovery API and CRD say (group, version, Kind, plural,
singular, short names, scope, categories, printer columns) and what localflow does with it: how a
spec file of it is loaded, how the store admits it (defaulting and validation on every write,
:mod:`localflow.fakes.admission`), which runner and controller run it, when it is finished, who
records it in the metadata, what ``localflow gc`` does with what a dead run left. The loader
(:func:`localflow.specs.loader.detect_kind`), the object store (every kind is registered into
:mod:`localflow.fakes.kinds` at import), ``run``, ``apply``, ``get``, ``describe`` and ``gc``
(:mod:`localflow.api`, :mod:`localflow.cli`) all read it; nothing else keeps a per-kind list.

Printer columns are the ``additionalPrinterColumns`` of the official CRDs
(kubeflow/training-operator ``manifests/base/crds``, kubeflow/trainer, kubeflow/katib, kserve) and
kubectl's printers for the core kinds (kubernetes ``pkg/printers/internalversion/printers.go``).

Hooks are ``"module:attribute"`` strings resolved on first use (:meth:`Kind.hook`), so this module
imports only the store's registries, the errors and the printers: any layer may read the table,
and the API layer reaches the runners through it (there is no import from the runners back to it).

**Adding a kind** takes exactly:

1. a spec module (``localflow/specs/<kind>.py``): ``<kind>_errors(doc) -> [SpecError]`` with field
   paths, and defaults if the kind has any;
2. a controller module (``localflow/controllers/<kind>.py``) and, if ``localflow run`` runs it, a
   runner in :mod:`localflow.runners` (``fn(docs, runtime, **options) -> Run``);
3. one :class:`Kind` entry in :data:`KINDS` below naming them (``validate``/``mutate``,
   ``runner``, ``reconciler``, ``finished``, ``columns``, ``recorder``, ``abandon``);
4. one scenario under ``scenarios/`` with a test that runs it.
"""
from __future__ import annotations

import base64
import importlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from localflow import render
from localflow.errors import SpecError
from localflow.fakes.admission import register_admission
from localflow.fakes.kinds import KindInfo, api_group, register_kind, resolve_kind

__all__ = ["Kind", "Column", "Record", "KINDS", "RECORDS", "lookup", "entry", "for_document", "runnable",
           "accepted_api_versions", "check_api_version", "entry_of", "for_run_kind", "record", "PIPELINE_SPEC", "ANY_GPUS",
           "AGE"]

#: What the loader calls a compiled KFP pipeline (or a PipelineJob): it runs as a pipelines Run.
PIPELINE_SPEC = "PipelineSpec"
#: GPUs admission assumes: the machine's GPU count is the scheduler's concern, not the store's.
ANY_GPUS = 2**31


@dataclass(frozen=True)
class Column:
    """One printer column: ``name`` as the CRD spells it (printed upper-case), ``json_path`` (a
    kubectl JSONPath, :func:`localflow.render.jsonpath`) or ``value(obj)`` (a computed column of a
    core kind), ``type`` (``string``, ``integer``, ``number``, ``boolean``, ``date``: an age) and
    ``priority`` (0 always shown, 1 only with ``-o wide``)."""

    name: str
    json_path: str | None = None
    type: str = "string"
    priority: int = 0
    value: Callable[[dict], Any] | None = None


AGE = Column("Age", ".metadata.creationTimestamp", "date")
STATE = Column("State", ".status.conditions[-1:].type")  # the training jobs' CRDs


@dataclass(frozen=True)
class Kind:
    """One kind. Names: ``group`` (``""`` for core), ``version``, ``kind``, ``plural``,
    ``singular``, ``short_names``, ``aliases`` (more names a user may type: ``pipelineruns``),
    ``namespaced``, ``categories``. Behaviour (hooks are ``"module:attr"`` strings, see :meth:`hook`):

    - ``document``: the document kind a spec file holds when it is not ``kind`` (``PipelineSpec``
      for a pipelines Run); ``loader``: ``fn(docs, source) -> loaded spec``;
    - ``mutate`` ``fn(obj) -> obj`` / ``validate`` ``fn(obj, old)``: admission on every store write;
    - ``runner``: what ``localflow run`` calls (``fn(docs, runtime, **options) -> Run``);
      ``companion``: the kind rides along in a job's file (a Secret, a runtime), so a file that
      starts with it runs the first job in it; ``reconciler``: the controller class;
    - ``finished(obj) -> (state, message) | None``: SUCCEEDED/FAILED/CANCELED once the object is
      done, None while it is not (or for kinds that never finish);
    - ``columns``: printer columns after NAME (``name_column`` false: no NAME, as Events);
      ``describe``: ``fn(obj, events) -> text`` (default :func:`localflow.render.describe`);
    - ``recorder``: who writes its runs into the metadata; ``run_kind``: the kind those records
      name (``PipelineRun``); ``abandon``: ``fn(store, run, reason)``, what ``gc`` does with the
      object of a dead run;
    - ``refused_versions``: apiVersions of the same Kind that localflow knows and refuses, with why
      and the fix.
    """

    group: str
    version: str
    kind: str
    plural: str
    singular: str = ""
    short_names: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    namespaced: bool = True
    categories: tuple[str, ...] = ()
    columns: tuple[Column, ...] = (AGE,)
    name_column: bool = True
    document: str | None = None
    loader: str | None = None
    mutate: str | None = None
    validate: str | None = None
    runner: str | None = None
    companion: bool = False
    reconciler: str | None = None
    finished: Callable[[dict], "tuple[str, str | None] | None"] | None = None
    describe: str | None = None
    recorder: str | None = None
    run_kind: str | None = None
    abandon: str | None = None
    refused_versions: dict[str, str] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        """``group/version`` (``v1`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def hook(self, name: str) -> Callable | None:
        """The callable a hook field (``runner``, ``validate``, ...) names, imported on first use;
        None when the kind has none."""
        ref = getattr(self, name)
        if ref is None or callable(ref):
            return ref
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)


# ---------------------------------------------------------------- finished predicates


def _conditions(success: str, failure: str = "Failed") -> Callable[[dict], "tuple[str, str | None] | None"]:
    def finished(obj: dict):
        for c in reversed((obj.get("status") or {}).get("conditions") or []):
            if c.get("status") == "True" and c.get("type") in (success, failure):
                return ("SUCCEEDED" if c["type"] == success else "FAILED"), c.get("message") or None
        return None

    finished.__doc__ = f"``SUCCEEDED`` once condition {success} is True, ``FAILED`` once {failure} is, else None."
    return finished


def _run_finished(obj: dict):
    """A pipelines Run: its ``status.state`` once terminal, with ``status.error.message``."""
    st = obj.get("status") or {}
    if st.get("state") in ("SUCCEEDED", "FAILED", "CANCELED", "SKIPPED"):
        return st["state"], (st.get("error") or {}).get("message")
    return None


def _pod_finished(obj: dict):
    """A Pod: SUCCEEDED/FAILED with its phase, the reason and message of a failure."""
    st = obj.get("status") or {}
    if st.get("phase") == "Succeeded":
        return "SUCCEEDED", None
    if st.get("phase") == "Failed":
        return "FAILED", ": ".join(x for x in (st.get("reason"), st.get("message")) if x) or None
    return None


# ---------------------------------------------------------------- admission hooks (localflow's validators)


def default_training_job(obj: dict) -> dict:
    """Mutating hook of the kubeflow.org/v1 jobs: the operator's defaults
    (:func:`localflow.training.defaults.apply_defaults`)."""
    from localflow.training.defaults import apply_defaults

    return apply_defaults(obj)


def validate_training_job(obj: dict, old: dict | None) -> None:
    """Validating hook of the kubeflow.org/v1 jobs: the first error of
    :func:`localflow.specs.training.job_errors` (what ``localflow run`` reports), GPUs unlimited."""
    from localflow.specs.training import job_errors

    errs = job_errors(obj, gpus=ANY_GPUS)
    if errs:
        raise errs[0]


def validate_trainjob(obj: dict, old: dict | None) -> None:
    """Validating hook of TrainJob: :func:`localflow.specs.training.trainjob_errors` without its
    runtime (its controller checks the job against the runtime when it runs it)."""
    from localflow.specs.training import trainjob_errors

    errs = trainjob_errors(obj, None, gpus=ANY_GPUS)
    if errs:
        raise errs[0]


def validate_runtime(obj: dict, old: dict | None) -> None:
    """Validating hook of TrainingRuntime/ClusterTrainingRuntime
    (:func:`localflow.specs.training.validate_runtime`; GPUs are checked when a TrainJob uses it)."""
    from localflow.specs.training import validate_runtime as check

    check(obj, gpus=ANY_GPUS)


def validate_pod(obj: dict, old: dict | None) -> None:
    """Validating hook of Pod: its spec as the API server checks it
    (:func:`localflow.specs.podspec.pod_spec_errors`: at least one container, names, env, ports,
    volumes and mounts), at ``Pod.spec...``. Status writes (the kubelet's) never reach it."""
    from localflow.specs.podspec import pod_spec_errors

    errs = pod_spec_errors("Pod.spec", obj.get("spec"))
    if errs:
        raise errs[0]


def validate_side_object(obj: dict, old: dict | None) -> None:
    """Validating hook of ConfigMap, Secret, PersistentVolumeClaim
    (:func:`localflow.controllers.sideobjects.check_side_object`, the API server's checks)."""
    from localflow.controllers.sideobjects import check_side_object

    check_side_object(obj)


def validate_job(obj: dict, old: dict | None) -> None:
    """Validating hook of ``batch/v1`` Job (:func:`localflow.specs.job.load_job`)."""
    from localflow.specs.job import load_job

    load_job(obj)


def validate_replicaset(obj: dict, old: dict | None) -> None:
    """Validating hook of ``apps/v1`` ReplicaSet (:func:`localflow.specs.apps.load_replicaset`)."""
    from localflow.specs.apps import load_replicaset

    load_replicaset(obj)


def validate_deployment(obj: dict, old: dict | None) -> None:
    """Validating hook of ``apps/v1`` Deployment (:func:`localflow.specs.apps.load_deployment`)."""
    from localflow.specs.apps import load_deployment

    load_deployment(obj)


def validate_experiment(obj: dict, old: dict | None) -> None:
    """Validating hook of Katib's Experiment: the first error of
    :func:`localflow.specs.katib.experiment_errors` (Katib's webhook checks, at ``Experiment.spec...``)."""
    from localflow.specs.katib import experiment_errors

    errs = experiment_errors(obj)
    if errs:
        raise errs[0]


def _count(*keys: str, default: int = 0) -> Callable[[dict], int]:
    """A printer column of an integer at ``keys`` (``status``, ``replicas``), ``default`` when unset
    (0 for counts, as kubectl prints them; 1 for ``spec.replicas``, the API server's default)."""
    def value(obj: dict) -> int:
        cur: Any = obj
        for k in keys:
            cur = cur.get(k) if isinstance(cur, dict) else None
        return default if cur is None else int(cur)
    return value


def _job_status(job: dict) -> str:
    """kubectl's Job ``STATUS`` (1.31+): Complete, Failed, Suspended, FailureTarget, SuccessCriteriaMet or Running."""
    conds = {c.get("type") for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"}
    for t in ("Complete", "Failed", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if t in conds:
            return t
    return "Running"


def _job_completions(job: dict) -> str:
    """kubectl's Job ``COMPLETIONS``: ``succeeded/completions`` (``/1 of N`` without completions)."""
    spec, st = job.get("spec") or {}, job.get("status") or {}
    done = st.get("succeeded") or 0
    if spec.get("completions") is not None:
        return f"{done}/{spec['completions']}"
    return f"{done}/1 of {spec.get('parallelism', 1)}"


def encode_string_data(obj: dict) -> dict:
    """Mutating hook of Secret: ``stringData`` merged into ``data`` base64-encoded (a key in both
    takes the ``stringData`` value) and removed, as the API server converts a v1 Secret
    (kubernetes ``pkg/apis/core/v1/conversion.go``). Its keys and values are checked first."""
    string_data = obj.get("stringData")
    if string_data is None:
        return obj
    from localflow.controllers.sideobjects import check_side_object

    check_side_object(obj)
    data = dict(obj.get("data") or {})
    data.update({k: base64.b64encode(("" if v is None else str(v)).encode()).decode() for k, v in string_data.items()})
    obj.pop("stringData")
    obj["data"] = data
    return obj


# ---------------------------------------------------------------- the table

_V1_JOB = dict(
    columns=(STATE, AGE), mutate="localflow.kinds:default_training_job", validate="localflow.kinds:validate_training_job",
    loader="localflow.specs.training:load_job", runner="localflow.runners:run_training_job",
    reconciler="localflow.controllers.trainingjob:TrainingJobController", finished=_conditions("Succeeded"),
    recorder="localflow.training.records:TrainingRunRecorder", abandon="localflow.training.records:mark_abandoned")

_KATIB = (Column("Type", ".status.conditions[-1:].type"), Column("Status", ".status.conditions[-1:].status"))
_SERVING_RUNTIME = (Column("Disabled", ".spec.disabled", "boolean"),
                    Column("ModelType", ".spec.supportedModelFormats[*].name"),
                    Column("Containers", ".spec.containers[*].name"), AGE)
_NONE = "<none>"


def _pv_claim(pv: dict) -> str:
    """``CLAIM`` of a PersistentVolume: ``namespace/name`` of its claimRef."""
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    return f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else ""

def _service_external(svc: dict) -> str:
    """``EXTERNAL-IP`` of a Service: its ``externalIPs``, else the local addresses this machine
    serves it at (``127.0.0.1:<port>``, :mod:`localflow.controllers.service`), else ``<none>``."""
    ips = (svc.get("spec") or {}).get("externalIPs") or []
    local = [v for k, v in sorted(((svc.get("metadata") or {}).get("annotations") or {}).items())
             if k.startswith("localflow.dev/address-")]
    return ",".join([*ips, *local]) or _NONE


def _endpoints_column(ep: dict) -> str:
    """kubectl's ``ENDPOINTS``: ``ip:port`` of the ready addresses, the first three and
    ``+ N more...`` (``formatEndpoints``), ``<none>`` when there is none."""
    items = [f"{a.get('ip')}:{p.get('port')}" for sub in ep.get("subsets") or [] for p in sub.get("ports") or []
             for a in sub.get("addresses") or []]
    if not items:
        return _NONE
    return ",".join(items[:3]) + (f" + {len(items) - 3} more..." if len(items) > 3 else "")


KINDS: tuple[Kind, ...] = (
    # core (kubectl's printers)
    Kind("", "v1", "Pod", "pods", short_names=("po",), categories=("all",), finished=_pod_finished,
         columns=(Column("Ready", value=render.pod_ready), Column("Status", value=render.pod_status),
                  Column("Restarts", type="integer", value=render.pod_restarts), Column("Age", value=render.created_age),
                  Column("IP", priority=1, value=lambda p: (p.get("status") or {}).get("podIP") or _NONE),
                  Column("Node", priority=1, value=lambda p: (p.get("spec") or {}).get("nodeName") or _NONE)),
         companion=True, validate="localflow.kinds:validate_pod"),
    Kind("", "v1", "Event", "events", short_names=("ev",), name_column=False,
         columns=(Column("Last Seen", value=render.event_last_seen), Column("Type", ".type"),
                  Column("Reason", ".reason"), Column("Object", value=render.event_object), Column("Message", ".message"))),
    Kind("", "v1", "ConfigMap", "configmaps", short_names=("cm",), companion=True,
         columns=(Column("Data", value=render.data_count), AGE), validate="localflow.kinds:validate_side_object",
         describe="localflow.render:describe_configmap"),
    Kind("", "v1", "Secret", "secrets", companion=True,
         columns=(Column("Type", value=lambda s: s.get("type") or "Opaque"), Column("Data", value=render.data_count), AGE),
         mutate="localflow.kinds:encode_string_data", validate="localflow.kinds:validate_side_object",
         describe="localflow.render:describe_secret"),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",), companion=True,
         columns=(Column("Status", ".status.phase"), Column("Volume", ".spec.volumeName"),
                  Column("Capacity", ".status.capacity.storage"), Column("Access Modes", ".status.accessModes[*]"),
                  Column("StorageClass", ".spec.storageClassName"), AGE),
         validate="localflow.kinds:validate_side_object"),
    Kind("", "v1", "PersistentVolume", "persistentvolumes", short_names=("pv",), namespaced=False, companion=True,
         columns=(Column("Capacity", ".spec.capacity.storage"), Column("Access Modes", ".spec.accessModes[*]"),
                  Column("Reclaim Policy", ".spec.persistentVolumeReclaimPolicy"), Column("Status", ".status.phase"),
                  Column("Claim", value=_pv_claim),
                  Column("StorageClass", ".spec.storageClassName"), AGE)),
    Kind("", "v1", "Service", "services", short_names=("svc",), categories=("all",), companion=True,
         columns=(Column("Type", value=lambda s: (s.get("spec") or {}).get("type") or "ClusterIP"),
                  Column("Cluster-IP", value=lambda s: (s.get("spec") or {}).get("clusterIP") or _NONE),
                  Column("External-IP", value=_service_external),
                  Column("Port(s)", value=render.service_ports), AGE,
                  Column("Selector", priority=1, value=render.service_selector)),
         reconciler="localflow.controllers.service:ServiceReconciler",
         describe="localflow.controllers.service:describe_service"),
    Kind("", "v1", "Endpoints", "endpoints", short_names=("ep",), companion=True,
         columns=(Column("Endpoints", value=_endpoints_column), AGE)),
    # batch/v1 Job (kubectl's printer columns; the controller: localflow.controllers.job)
    Kind("batch", "v1", "Job", "jobs", categories=("all",),
         columns=(Column("Status", value=_job_status), Column("Completions", value=_job_completions), AGE),
         validate="localflow.kinds:validate_job", runner="localflow.runners:run_job",
         reconciler="localflow.controllers.job:JobReconciler", finished=_conditions("Complete"),
         recorder="localflow.training.records:TrainingRunRecorder"),
    # apps/v1 (kubectl's printer columns; the controllers: localflow.controllers.replicaset / .deployment)
    Kind("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",), categories=("all",),
         columns=(Column("Desired", value=_count("spec", "replicas", default=1)), Column("Current", value=_count("status", "replicas")),
                  Column("Ready", value=_count("status", "readyReplicas")), AGE),
         validate="localflow.kinds:validate_replicaset", reconciler="localflow.controllers.replicaset:ReplicaSetReconciler"),
    Kind("apps", "v1", "Deployment", "deployments", short_names=("deploy",), categories=("all",),
         columns=(Column("Ready", value=lambda d: f"{_count('status', 'readyReplicas')(d)}/{_count('spec', 'replicas', default=1)(d)}"),
                  Column("Up-to-date", value=_count("status", "updatedReplicas")),
                  Column("Available", value=_count("status", "availableReplicas")), AGE),
         validate="localflow.kinds:validate_deployment", reconciler="localflow.controllers.deployment:DeploymentReconciler"),
    # Kubeflow Pipelines: a compiled pipeline runs as a Run (its columns: no CRD, the KFP API's state)
    Kind("pipelines.kubeflow.org", "v2beta1", "Run", "runs", aliases=("pipelinerun", "pipelineruns", "pr"),
         document=PIPELINE_SPEC, loader="localflow.specs.pipeline:load_pipeline", runner="localflow.runners:run_pipeline",
         reconciler="localflow.controllers.pipelinerun:PipelineRunController", finished=_run_finished,
         columns=(Column("State", ".status.state"), AGE), recorder="localflow.controllers.pipelinerun:PipelineRunController",
         run_kind="PipelineRun", abandon="localflow.runners:abandon_pipeline_run"),
    # Training Operator v1 (kubeflow/training-operator release-1.9 CRDs)
    Kind("kubeflow.org", "v1", "TFJob", "tfjobs", **_V1_JOB),
    Kind("kubeflow.org", "v1", "PyTorchJob", "pytorchjobs", **_V1_JOB),
    Kind("kubeflow.org", "v1", "XGBoostJob", "xgboostjobs", **_V1_JOB),
    Kind("kubeflow.org", "v1", "JAXJob", "jaxjobs", **_V1_JOB),
    Kind("kubeflow.org", "v1", "PaddleJob", "paddlejobs", **_V1_JOB),
    Kind("kubeflow.org", "v1", "MPIJob", "mpijobs", **{**_V1_JOB, "columns": (AGE, STATE)}, refused_versions={
        "kubeflow.org/v2beta1": "is the MPI Operator's MPIJob, which localflow does not run; it runs the Training "
                                "Operator's kubeflow.org/v1 MPIJob|set apiVersion: kubeflow.org/v1 to run it with the "
                                "Training Operator's semantics (mpiReplicaSpecs, slotsPerWorker and runPolicy carry over)"}),
    # Kubeflow Trainer v2
    Kind("trainer.kubeflow.org", "v1alpha1", "TrainJob", "trainjobs", columns=(STATE, AGE),
         validate="localflow.kinds:validate_trainjob", runner="localflow.runners:run_trainjob",
         reconciler="localflow.controllers.trainjob:TrainJobController", finished=_conditions("Complete"),
         recorder="localflow.training.records:TrainingRunRecorder", abandon="localflow.training.records:mark_abandoned"),
    Kind("trainer.kubeflow.org", "v1alpha1", "TrainingRuntime", "trainingruntimes", companion=True,
         validate="localflow.kinds:validate_runtime"),
    Kind("trainer.kubeflow.org", "v1alpha1", "ClusterTrainingRuntime", "clustertrainingruntimes", namespaced=False,
         companion=True, validate="localflow.kinds:validate_runtime"),
    # Katib (the controllers: localflow.controllers.experiment / .suggestion / .trial; the runner: localflow.katib.runner)
    Kind("kubeflow.org", "v1beta1", "Experiment", "experiments", categories=("all", "kubeflow", "katib"),
         columns=(*_KATIB, AGE), finished=_conditions("Succeeded"), mutate="localflow.specs.katib:experiment_defaults",
         validate="localflow.kinds:validate_experiment", runner="localflow.katib.runner:run_experiment",
         reconciler="localflow.controllers.experiment:ExperimentReconciler"),
    Kind("kubeflow.org", "v1beta1", "Trial", "trials", categories=("all", "kubeflow", "katib"),
         columns=(*_KATIB, AGE), finished=_conditions("Succeeded")),
    Kind("kubeflow.org", "v1beta1", "Suggestion", "suggestions", categories=("all", "kubeflow", "katib"),
         columns=(*_KATIB, Column("Requested", ".spec.requests"), Column("Assigned", ".status.suggestionCount"), AGE)),
    # KServe (stored and listed; not run yet)
    Kind("serving.kserve.io", "v1beta1", "InferenceService", "inferenceservices", short_names=("isvc",),
         columns=(Column("URL", ".status.url"), Column("Ready", ".status.conditions[?(@.type=='Ready')].status"),
                  Column("Prev", ".status.components.predictor.traffic[?(@.tag=='prev')].percent", "integer"),
                  Column("Latest", ".status.components.predictor.traffic[?(@.latestRevision==true)].percent", "integer"),
                  Column("PrevRolledoutRevision", ".status.components.predictor.traffic[?(@.tag=='prev')].revisionName"),
                  Column("LatestReadyRevision",
                         ".status.components.predictor.traffic[?(@.latestRevision==true)].revisionName"), AGE)),
    Kind("serving.kserve.io", "v1alpha1", "ServingRuntime", "servingruntimes", columns=_SERVING_RUNTIME),
    Kind("serving.kserve.io", "v1alpha1", "ClusterServingRuntime", "clusterservingruntimes", namespaced=False,
         columns=_SERVING_RUNTIME),
    Kind("serving.kserve.io", "v1alpha1", "InferenceGraph", "inferencegraphs", short_names=("ig",),
         columns=(Column("URL", ".status.url"), Column("Ready", ".status.conditions[?(@.type=='Ready')].status"), AGE)),
)


@dataclass(frozen=True)
class Record:
    """A metadata record type ``localflow get`` lists (not a store kind): ``what`` (``runs``),
    its ``names`` (``run``, ``runs``), ``columns`` over the record dict (``priority`` 1: ``-o wide``)."""

    what: str
    names: tuple[str, ...]
    columns: tuple[Column, ...]


def _field(key: str, *, priority: int = 0, header: str | None = None, fn=None) -> Column:
    return Column(header or key.upper(), priority=priority, value=fn or (lambda r: r.get(key)))


RECORDS: tuple[Record, ...] = (
    Record("runs", ("run", "runs"), (
        _field("name"), _field("kind"), _field("state"), _field("executor"),
        _field("age", fn=lambda r: render.age(r.get("created_at"))),
        _field("id", priority=1), _field("spec", priority=1, fn=lambda r: r.get("spec_path")))),
    Record("artifacts", ("artifact", "artifacts"), (
        _field("id"), _field("name"), _field("type", fn=lambda a: a.get("schema_title") or a.get("type")), _field("uri"),
        _field("metadata", priority=1, fn=lambda a: json.dumps(a.get("metadata") or {})))),
    Record("executions", ("execution", "executions"), (
        _field("id"), _field("name"), _field("type"), _field("state"), _field("pod", fn=lambda e: e.get("pod_name") or ""),
        _field("fingerprint", priority=1, fn=lambda e: (e.get("fingerprint") or "")[:16]))),
)


def record(name: str) -> Record | None:
    """The metadata record type ``name`` means (``runs``, ``artifact``, ...), or None."""
    key = str(name).lower()
    return next((r for r in RECORDS if key in r.names), None)


_BY_KEY: dict[tuple[str, str], Kind] = {}
_BY_DOCUMENT: dict[str, Kind] = {}


def _register(k: Kind) -> None:
    """Put ``k`` in the store's discovery registry and admission chain."""
    _BY_KEY[(k.group, k.kind)] = k
    _BY_DOCUMENT.setdefault(k.document or k.kind, k)
    register_kind(k.api_version, k.kind, k.plural, k.singular or None, (*k.short_names, *k.aliases), k.namespaced,
                  k.categories)
    if k.mutate or k.validate:
        register_admission(k.group, k.kind, mutate=_lazy(k, "mutate") if k.mutate else None,
                           validate=_lazy(k, "validate") if k.validate else None)


def _lazy(k: Kind, name: str) -> Callable:
    """An admission hook that imports the one ``k.<name>`` names on its first call."""
    cache: list = []

    def hook(*args):
        if not cache:
            cache.append(k.hook(name))
        return cache[0](*args)

    hook.__qualname__ = f"{k.kind}.{name}"
    return hook


for _k in KINDS:
    _register(_k)


def entry(info: KindInfo | str) -> Kind | None:
    """The table entry of a store kind (a :class:`KindInfo`, or a name :func:`lookup` takes), or None
    for a kind registered elsewhere (a test's ``Widget``)."""
    if not isinstance(info, KindInfo):
        info = resolve_kind(info)
    return _BY_KEY.get((info.group, info.kind))


def entry_of(obj: dict) -> Kind | None:
    """The table entry of a stored object, by its apiVersion's group and its Kind."""
    return _BY_KEY.get((api_group(str(obj.get("apiVersion") or "")), obj.get("kind")))


def lookup(name: str) -> KindInfo:
    """The store kind a user typed: plural, singular, short name, alias or Kind, optionally
    ``plural.group``; :class:`SpecError` (path ``kind``) listing the known kinds otherwise --
    the store's plurals and the plural aliases of this table (``pipelineruns``), which are names
    a user may type as well."""
    try:
        return resolve_kind(name)
    except SpecError as err:
        known = "known kinds: "
        if not err.fix or known not in err.fix:
            raise
        head, _, listed = err.fix.partition(known)
        names = set(listed.split(", ")) | {a for k in KINDS for a in k.aliases if a.endswith("s") and len(a) > 2}
        message = err.message[len(f"{err.path}: "):] if err.message.startswith(f"{err.path}: ") else err.message
        raise SpecError(err.path, message, fix=head + known + ", ".join(sorted(names))) from None


def for_document(kind: str) -> Kind | None:
    """The entry of a document kind as :func:`localflow.specs.loader.detect_kind` names it
    (``PipelineSpec``, ``TFJob``, ``Secret``), or None when localflow has no such kind."""
    return _BY_DOCUMENT.get(kind)


def for_run_kind(kind: str) -> Kind | None:
    """The entry whose runs the metadata records as ``kind`` (``PipelineRun``, ``PyTorchJob``)."""
    return next((k for k in KINDS if (k.run_kind or k.kind) == kind), None)


def runnable(*, jobs_only: bool = False) -> list[Kind]:
    """The kinds ``localflow run`` runs (``jobs_only``: not the pipeline document)."""
    return [k for k in KINDS if k.runner and not (jobs_only and k.document)]


def accepted_api_versions(kind: str) -> tuple[str, ...]:
    """The apiVersions localflow runs or stores for document kind ``kind`` (empty when unknown)."""
    k = _BY_DOCUMENT.get(kind)
    return (k.api_version,) if k is not None and not k.document else ()


def check_api_version(kind: str, api_version: str, path: str) -> None:
    """Raise :class:`SpecError` at ``<path>.apiVersion`` when ``api_version`` is not the one
    localflow has for ``kind``: a known other version names why it is refused and the fix, any
    other the version to set. Kinds not in the table pass (the caller decides about them)."""
    allowed = accepted_api_versions(kind)
    if not allowed or api_version in allowed:
        return
    refused = _BY_DOCUMENT[kind].refused_versions.get(api_version)
    if refused:
        why, _, fix = refused.partition("|")
        raise SpecError(f"{path}apiVersion", f"{api_version} {why}", fix=fix)
    raise SpecError(f"{path}apiVersion", f"expected {' or '.join(allowed)} (got {api_version})",
                    fix=f"set apiVersion: {allowed[0]}")
