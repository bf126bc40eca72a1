"""The Training Operator v1 job kinds as data: replica types, default container, port, restart policy.

One :class:`TrainingKind` per ``kubeflow.org/v1`` kind, read from kubeflow/training-operator
``release-1.9`` ``pkg/apis/kubeflow.org/v1/*_types.go`` and ``*_defaults.go`` (the table in
section 1 of the training reference). Nothing here does anything; the defaulter, validator, env
injection and controller all read this table. What every kind has (names, scope, printer
columns, admission, runner) is in the kind table :mod:`localflow.kinds`; this one holds only the
training operator's per-kind data, so adding a v1 kind is a row here plus an entry there.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "TrainingKind", "KINDS", "API_VERSION", "kind_info", "is_training_kind",
    "LABEL_JOB_NAME", "LABEL_REPLICA_TYPE", "LABEL_REPLICA_INDEX", "LABEL_OPERATOR_NAME",
    "LABEL_JOB_ROLE", "RESTART_POLICIES", "CLEAN_POD_POLICIES",
]

API_VERSION = "kubeflow.org/v1"

# kubeflow/training-operator pkg/apis/kubeflow.org/v1/common_types.go
LABEL_JOB_NAME = "training.kubeflow.org/job-name"
LABEL_REPLICA_TYPE = "training.kubeflow.org/replica-type"
LABEL_REPLICA_INDEX = "training.kubeflow.org/replica-index"
LABEL_OPERATOR_NAME = "training.kubeflow.org/operator-name"
LABEL_JOB_ROLE = "training.kubeflow.org/job-role"

RESTART_POLICIES = ("Always", "OnFailure", "Never", "ExitCode")
CLEAN_POD_POLICIES = ("All", "Running", "None")


@dataclass(frozen=True)
class TrainingKind:
    """One v1 training kind.

    - ``kind``: ``PyTorchJob``; ``replica_specs_field``: the spec key
      holding the replica map (``pytorchReplicaSpecs``).
    - ``replica_types``: canonical replica type names, in the order the operator iterates them.
    - ``container`` / ``port_name`` / ``port``: the default container and its named port.
    - ``restart_policy``: the kind's default replica restartPolicy.
    - ``master_types``: replica types whose pods get ``job-role: master``; ``worker0_is_master``:
      Worker 0 takes the master role when none of ``master_types`` is present.
    - ``env_only_default_container``: inject env into the default container only (TFJob) instead of
      every container.
    - ``operator_name``: value of the ``training.kubeflow.org/operator-name`` label.
    """

    kind: str
    replica_specs_field: str
    replica_types: tuple[str, ...]
    container: str
    port_name: str
    port: int
    restart_policy: str
    master_types: tuple[str, ...]
    worker0_is_master: bool
    env_only_default_container: bool
    operator_name: str

    def canonical_type(self, name: str) -> str | None:
        """The canonical spelling of replica type ``name`` (case-insensitive), or None if unknown."""
        for t in self.replica_types:
            if t.lower() == str(name).lower():
                return t
        return None


KINDS: dict[str, TrainingKind] = {
    k.kind: k
    for k in (
        TrainingKind("TFJob", "tfReplicaSpecs",
                     ("Chief", "Evaluator", "Master", "PS", "Worker"),
                     "tensorflow", "tfjob-port", 2222, "Never",
                     ("Chief", "Master"), True, True, "tfjob-controller"),
        TrainingKind("PyTorchJob", "pytorchReplicaSpecs", ("Master", "Worker"),
                     "pytorch", "pytorchjob-port", 23456, "OnFailure",
                     ("Master",), True, False, "pytorchjob-controller"),
        TrainingKind("XGBoostJob", "xgbReplicaSpecs", ("Master", "Worker"),
                     "xgboost", "xgboostjob-port", 9999, "Never",
                     ("Master",), False, False, "xgboostjob-controller"),
        TrainingKind("MPIJob", "mpiReplicaSpecs", ("Launcher", "Worker"),
                     "mpi", "mpi-port", 9999, "Never",
                     (), False, False, "mpijob-controller"),
        TrainingKind("PaddleJob", "paddleReplicaSpecs", ("Master", "Worker"),
                     "paddle", "master", 36543, "OnFailure",
                     ("Master",), False, False, "paddlejob-controller"),
        TrainingKind("JAXJob", "jaxReplicaSpecs", ("Worker",),
                     "jax", "jaxjob-port", 6666, "Never",
                     (), True, False, "jaxjob-controller"),
    )
}


def is_training_kind(doc: dict) -> bool:
    """True when ``doc`` is a ``kubeflow.org/v1`` training job of a known kind."""
    return isinstance(doc, dict) and doc.get("kind") in KINDS and \
        str(doc.get("apiVersion", API_VERSION)).startswith("kubeflow.org/")


def kind_info(kind: str) -> TrainingKind:
    """The :class:`TrainingKind` for ``kind``; raises ``KeyError`` listing the known kinds."""
    try:
        return KINDS[kind]
    except KeyError:
        raise KeyError(f"unknown training kind {kind!r}; known: {', '.join(KINDS)}") from None
