"""KFP v2 IR machinery with no processes and no database: parameter values, placeholders,
CEL conditions and selectors, and lightweight-component bootstrap parsing.

The pipeline engine (``localflow.controllers.pipelinerun``) calls these pure functions; each
module documents the kubeflow/pipelines source it follows.
"""
