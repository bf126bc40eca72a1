"""KFP v2 IR machinery used by the pipeline run controller (``localflow.controllers.pipelinerun``):
parameter values (``values``), placeholders (``placeholders``), CEL conditions and selectors
(``cel``), lightweight-component bootstrap parsing (``bootstrap``), cache keys (``cache``),
kfp-kubernetes platform config (``platform``), pre-flight checks (``preflight``) and the
launcher's side of a task (``launcher``: ExecutorInput, the task's Pod, output collection).

None of them starts a process or opens the database; each module documents the kubeflow/pipelines
source it follows.
"""
