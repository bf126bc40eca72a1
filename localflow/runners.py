"""Runners: how :func:`localflow.api.run` runs each kind, adapting a controller to a :class:`~localflow.api.Run`.

This is the API layer (it may import controllers; controllers never import it). Each runner takes
``(docs, runtime, **options)`` and returns a ``Run``; :func:`register` adds them to
:data:`localflow.api.RUNNERS`. Adding a Kubeflow kind: its spec model, its controller module, a
runner here, and a scenario.
"""
from __future__ import annotations

from localflow.api import Run, Runtime, register_runner


def run_pipeline(docs: list[dict], rt: Runtime, *, params=None, cache=True, namespace="default", on_task=None,
                 source=None, run_name=None, **_) -> Run:
    """Run a compiled KFP PipelineSpec with :class:`~localflow.controllers.pipelinerun.PipelineRunController`.

    ``params`` may hold strings (from ``-p``): they are parsed by the declared parameterType.
    ``Run.tasks`` maps task paths to TaskRecords; ``Run.outputs`` holds the root DAG's outputs
    (parameters by value, artifacts as RuntimeArtifact dicts, one or a list).
    """
    from localflow.controllers.pipelinerun import PipelineRunController
    from localflow.pipelines.values import parse_cli_value
    from localflow.specs.pipeline import load_pipeline

    doc = load_pipeline(docs, source or "pipeline.yaml")
    given = dict(params or {})
    defs = ((doc.spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {}
    for k, v in list(given.items()):
        if isinstance(v, str) and k in defs and defs[k].get("parameterType") != "STRING":
            given[k] = parse_cli_value(v, defs[k].get("parameterType"), f"-p {k}")
    ctl = PipelineRunController(doc, parameters=given, store=rt.store, scheduler=rt.scheduler, metadata=rt.metadata,
                                workspace=rt.workspace, clock=rt.clock, cache=cache, namespace=namespace,
                                run_name=run_name, spec_path=source, on_task=on_task)
    try:
        ctl.run()
    finally:
        rt.scheduler.wait_idle(timeout=30)
    outputs: dict = dict(ctl.outputs.get("parameters") or {})
    for k, arts in (ctl.outputs.get("artifacts") or {}).items():
        clean = [{kk: vv for kk, vv in a.items()} for a in arts]
        outputs[k] = clean[0] if len(clean) == 1 else clean
    obj = rt.store.get("Run", ctl.run_name, namespace)
    return Run(id=ctl.run_id, name=ctl.run_name, kind="PipelineRun", state=ctl.state, workspace=rt.workspace,
               tasks=dict(ctl.tasks), outputs=outputs, error=ctl.error, object=obj,
               pods=rt.store.list("Pod", namespace, label_selector={"localflow.dev/run-id": ctl.run_id}))


register_runner("PipelineSpec", run_pipeline)

# Training kinds (their controllers register runners on import; to be moved here).
from localflow.controllers import trainingjob as _trainingjob  # noqa: E402,F401
from localflow.controllers import trainjob as _trainjob  # noqa: E402,F401
