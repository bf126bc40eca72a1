"""Spec documents: loading YAML files and validating them per kind (KFP PipelineSpec, Kubeflow jobs)."""
