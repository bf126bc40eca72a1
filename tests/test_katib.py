"""Katib Experiments end to end: real trial Pods (subprocesses) under the Experiment, Suggestion,
Trial and Job reconcilers, through ``localflow.run`` and the CLI: goal reached stops early,
maxTrialCount, maxFailedTrialCount and MetricsUnavailable fail it, trialParameters substitution,
grid enumerates every combination and ends with ExperimentSuggestionEndReached, seeded suggestions
repeat, the StdOut collector's line rules (kubeflow/katib file-metricscollector.go), bad specs are
one line with the field path (exit 2, also at admission), and the upstream examples in
../shared/corpus/katib either load or are refused with a reason."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

# declared dependencies of localflow (pyproject); a venv made before they were added lacks them
pytest.importorskip("optuna", reason="optuna is not installed: pip install -e . (a localflow dependency)")
pytest.importorskip("gjson", reason="gjson is not installed: pip install -e . (a localflow dependency)")

import localflow  # noqa: E402
from localflow.errors import SpecError  # noqa: E402
from localflow.katib.metrics import DEFAULT_FILTER, observation, parse_text  # noqa: E402
from localflow.specs.katib import experiment_defaults, experiment_errors, load_experiment  # noqa: E402

PY = sys.executable
ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus" / "katib"


def experiment(name="exp", *, code="print('accuracy=${trialParameters.x}')", algorithm="random", goal=None,
               maximize=True, parallel=2, max_trials=4, max_failed=None, params=None, seed="1"):
    """An Experiment whose trials print their objective: by default the parameter x itself."""
    objective = {"type": "maximize" if maximize else "minimize", "objectiveMetricName": "accuracy"}
    if goal is not None:
        objective["goal"] = goal
    spec = {"objective": objective,
            "algorithm": {"algorithmName": algorithm, "algorithmSettings": [{"name": "random_state", "value": seed}]},
            "parallelTrialCount": parallel,
            "parameters": params or [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}],
            "trialTemplate": {"primaryContainerName": "main",
                              "trialParameters": [{"name": p["name"], "reference": p["name"]}
                                                  for p in params or [{"name": "x"}]],
                              "trialSpec": {"apiVersion": "batch/v1", "kind": "Job", "spec": {
                                  "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                                      {"name": "main", "image": "python:3.11", "command": [PY, "-c", code],
                                       "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]}}}}}}
    if max_trials is not None:
        spec["maxTrialCount"] = max_trials
    if max_failed is not None:
        spec["maxFailedTrialCount"] = max_failed
    return {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", "metadata": {"name": name}, "spec": spec}


def condition(obj, type_):
    return next((c for c in obj["status"]["conditions"] if c["type"] == type_ and c["status"] == "True"), None)


def run(tmp_path, exp, **kw):
    return localflow.run(exp, workspace=tmp_path / "ws", timeout=120, **kw)


def trials_of(tmp_path, name):
    from localflow.fakes import ObjectStore

    with ObjectStore(tmp_path / "ws" / "localflow.db") as store:
        return store.list("Trial", "default", label_selector={"katib.kubeflow.org/experiment": name})


# ---------------------------------------------------------------- end to end


def test_goal_reached_stops_early_with_the_optimal_trial(tmp_path):
    seen = []
    result = run(tmp_path, experiment(goal=0.6, parallel=1, max_trials=30), on_task=seen.append)
    assert result.state == "SUCCEEDED", result.error
    exp = result.object
    assert condition(exp, "Succeeded")["reason"] == "ExperimentGoalReached"
    st = exp["status"]
    assert st["trials"] < 30 and st["trialsSucceeded"] == st["trials"]
    best = st["currentOptimalTrial"]
    value = float(best["observation"]["metrics"][0]["latest"])
    assert value >= 0.6
    assert best["parameterAssignments"][0]["value"] == best["observation"]["metrics"][0]["latest"]
    assert float(result.outputs["accuracy"]) == value
    # one progress line per state change per trial, the objective on the SUCCEEDED line
    assert any(r.state == "SUCCEEDED" and "accuracy=" in r.name for r in seen)
    # every trial ran as a Job whose Pods carry the trial label; the completed jobs are deleted (no retain)
    for t in trials_of(tmp_path, "exp"):
        assert t["metadata"]["labels"]["katib.kubeflow.org/experiment"] == "exp"
    pods = [p for p in result.pods if "katib.kubeflow.org/trial" in p["metadata"]["labels"]]
    assert {p["metadata"]["labels"]["katib.kubeflow.org/trial"] for p in pods} <= {t.trial for t in result.tasks.values()}
    # metadata: the experiment is a run; each trial an execution with its inputs and outputs
    from localflow.metadata import MetadataStore

    md = MetadataStore(tmp_path / "ws" / "localflow.db")
    try:
        runrec = md.get_run(result.id)
        assert runrec["kind"] == "Experiment" and runrec["state"] == "SUCCEEDED"
        execs = md.list_executions(run_id=result.id, type="katib.Trial")
        assert len(execs) == st["trials"]
        assert all(e["state"] == "COMPLETE" and "x" in e["inputs"] and "accuracy" in e["outputs"] for e in execs)
    finally:
        md.close()


def test_max_trial_count_ends_it(tmp_path):
    result = run(tmp_path, experiment(goal=2.0, parallel=2, max_trials=3))
    assert result.state == "SUCCEEDED", result.error
    assert condition(result.object, "Succeeded")["reason"] == "ExperimentMaxTrialsReached"
    assert result.object["status"]["trials"] == 3 and result.object["status"]["trialsSucceeded"] == 3
    assert len(trials_of(tmp_path, "exp")) == 3


def test_max_failed_trial_count_fails_it(tmp_path):
    result = run(tmp_path, experiment(code="import sys; print('x=${trialParameters.x}'); sys.exit(3)", parallel=1, max_trials=5, max_failed=2))
    assert result.state == "FAILED"
    cond = condition(result.object, "Failed")
    assert cond["reason"] == "ExperimentFailed" and "max failed count" in cond["message"]
    st = result.object["status"]
    assert st["trialsFailed"] == 2 and st["trials"] == 2
    trial = trials_of(tmp_path, "exp")[0]
    assert condition(trial, "Failed")["reason"].startswith("TrialFailed. Job reason: BackoffLimitExceeded")


def test_no_objective_in_the_log_is_metrics_unavailable(tmp_path):
    result = run(tmp_path, experiment(code="print('accuracy: ${trialParameters.x}')", parallel=1, max_trials=3, max_failed=1))
    assert result.state == "FAILED"
    st = result.object["status"]
    assert st["trialMetricsUnavailable"] == 1 and st["trials"] == 1
    trial = trials_of(tmp_path, "exp")[0]
    assert condition(trial, "MetricsUnavailable")
    assert trial["status"]["observation"]["metrics"][0]["latest"] == "unavailable"


def test_trial_parameters_are_substituted(tmp_path):
    params = [{"name": "depth", "parameterType": "int", "feasibleSpace": {"min": "2", "max": "9"}},
              {"name": "kind", "parameterType": "categorical", "feasibleSpace": {"list": ["gini", "entropy"]}}]
    code = ("import os; print('name', os.environ['KATIB_TRIAL_NAME']); "
            "print('kind=${trialParameters.kind} accuracy=0.${trialParameters.depth}')")
    result = run(tmp_path, experiment(code=code, params=params, parallel=2, max_trials=2))
    assert result.state == "SUCCEEDED", result.error
    for t in trials_of(tmp_path, "exp"):
        given = {a["name"]: a["value"] for a in t["spec"]["parameterAssignments"]}
        cmd = t["spec"]["runSpec"]["spec"]["template"]["spec"]["containers"][0]["command"][2]
        assert f"kind={given['kind']} accuracy=0.{given['depth']}" in cmd and "${" not in cmd
        assert 2 <= int(given["depth"]) <= 9 and given["kind"] in ("gini", "entropy")
        assert t["status"]["observation"]["metrics"] == [
            {"name": "accuracy", "min": f"0.{given['depth']}", "max": f"0.{given['depth']}", "latest": f"0.{given['depth']}"}]
        assert t["spec"]["runSpec"]["metadata"]["name"] == t["metadata"]["name"]


def test_grid_enumerates_every_combination(tmp_path):
    params = [{"name": "a", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "3"}},
              {"name": "b", "parameterType": "double", "feasibleSpace": {"min": "0.1", "max": "0.2", "step": "0.1"}}]
    code = "print('accuracy=${trialParameters.a}${trialParameters.b}')"
    result = run(tmp_path, experiment(code=code, algorithm="grid", params=params, parallel=3, max_trials=None))
    assert result.state == "SUCCEEDED", result.error
    assert condition(result.object, "Succeeded")["reason"] == "ExperimentSuggestionEndReached"
    combos = sorted(tuple(a["value"] for a in t["spec"]["parameterAssignments"]) for t in trials_of(tmp_path, "exp"))
    assert combos == [(a, b) for a in ("1", "2", "3") for b in ("0.1", "0.2")]


def test_seeded_suggestions_repeat():
    from localflow.katib.suggest import Suggester

    for alg in ("random", "tpe", "multivariate-tpe"):
        spec = experiment_defaults(experiment(algorithm=alg, seed="42"))["spec"]
        first = Suggester(spec).ask(["t1", "t2", "t3"])
        assert Suggester(spec).ask(["t1", "t2", "t3"]) == first
        assert len({a[0]["value"] for a in first}) == 3
        # a rebuilt study (a restarted server) continues the same sequence for random
    spec = experiment_defaults(experiment(algorithm="random", seed="5"))["spec"]
    s = Suggester(spec)
    done = [{"name": n, "parameterAssignments": a} for n, a in zip(["a", "b"], s.ask(["a", "b"]))]
    nxt = s.ask(["c"])
    again = Suggester(spec)
    again.restore(done, {"a": 0.5})
    assert again.ask(["c"]) == nxt


def test_run_from_the_cli_prints_trials_and_the_optimum(tmp_path):
    import yaml

    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(experiment(name="cli-exp", goal=2.0, parallel=2, max_trials=2)))
    p = subprocess.run([PY, "-m", "localflow", "run", str(spec), "-W", str(tmp_path / "ws")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "Experiment cli-exp SUCCEEDED" in p.stdout and "output bestTrialName" in p.stdout
    assert p.stderr.count("SUCCEEDED") == 2 and "RUNNING" in p.stderr and "trial/cli-exp-" in p.stderr
    g = subprocess.run([PY, "-m", "localflow", "get", "trials", "-l", "katib.kubeflow.org/experiment=cli-exp",
                        "-W", str(tmp_path / "ws")], capture_output=True, text=True, timeout=60)
    assert g.returncode == 0 and g.stdout.count("Succeeded") == 2


# ---------------------------------------------------------------- metrics collector rules


@pytest.mark.parametrize("line,want", [
    ("accuracy=0.9", [("accuracy", "0.9")]),
    ("epoch 1: loss=0.3", [("loss", "0.3")]),
    ("Train Epoch: 1 [0/60000 (0%)]\tloss=2.3026", [("loss", "2.3026")]),
    ("loss = 0.3, accuracy=.98", [("loss", "0.3"), ("accuracy", ".98")]),
    ("accuracy=-7.53e-05", [("accuracy", "-7.53e-05")]),
    ("loss=nan", [("loss", "")]),
])
def test_stdout_collector_line_rules(line, want):
    logs = parse_text(line + "\naccuracy=0.5", ["accuracy", "loss"])
    assert [(e["name"], e["value"]) for e in logs[:len(want)]] == want


def test_stdout_collector_unavailable_timestamps_and_strategies():
    assert parse_text("accuracy: 0.9\n{metricName: accuracy, metricValue: 0.9}", ["accuracy"]) == [
        {"timestamp": "0001-01-01T00:00:00Z", "name": "accuracy", "value": "unavailable"}]
    logs = parse_text("2024-01-01T00:00:02Z accuracy=0.5\n2024-01-01T00:00:01Z accuracy=0.9\naccuracy=0.7", ["accuracy"])
    assert logs[0]["timestamp"] == "2024-01-01T00:00:02Z" and logs[2]["timestamp"] == "0001-01-01T00:00:00Z"
    obs = observation(logs, [{"name": "accuracy", "value": "max"}])
    assert obs == {"metrics": [{"name": "accuracy", "min": "0.5", "max": "0.9", "latest": "0.5"}]}
    custom = parse_text("{metricName: accuracy, metricValue: 0.91}", ["accuracy"],
                        [r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}"])
    assert custom[0]["value"] == "0.91"
    assert DEFAULT_FILTER == r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


# ---------------------------------------------------------------- bad input


def _bad(mutate):
    exp = experiment()
    mutate(exp["spec"])
    return exp


BAD = [
    (lambda s: s["parameters"][0]["feasibleSpace"].update(min="2"), "Experiment.spec.parameters[0].feasibleSpace",
     "greater than max"),
    (lambda s: s["parameters"][0]["feasibleSpace"].update(step="-1"), "parameters[0].feasibleSpace.step", "> 0"),
    (lambda s: s["parameters"].__setitem__(0, {"name": "x", "parameterType": "categorical", "feasibleSpace": {"list": []}}),
     "parameters[0].feasibleSpace.list", "non-empty"),
    (lambda s: s["algorithm"].update(algorithmName="anneal"), "spec.algorithm.algorithmName", "unknown algorithm"),
    (lambda s: s["algorithm"].update(algorithmSettings=[{"name": "gamma", "value": "1"}]),
     "algorithmSettings[0].name", "unknown setting gamma for algorithm random"),
    (lambda s: s["objective"].pop("objectiveMetricName"), "spec.objective.objectiveMetricName", "is required"),
    (lambda s: s["objective"].update(goal="high"), "spec.objective.goal", "must be a number"),
    (lambda s: s["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0].update(
        command=[PY, "-c", "print('${trialParameters.x} ${trialParameters.y}')"]), "trialTemplate.trialSpec", "${trialParameters.y}"),
    (lambda s: s["trialTemplate"].update(primaryContainerName="trainer"), "trialTemplate.primaryContainerName",
     "not a container"),
    (lambda s: s.update(parallelTrialCount=9), "spec.parallelTrialCount", "<= maxTrialCount"),
    (lambda s: s.update(earlyStopping={"algorithmName": "medianstop"}), "spec.earlyStopping", "not run by localflow"),
    (lambda s: s["algorithm"].update(algorithmName="grid", algorithmSettings=[]), "feasibleSpace.step", "grid"),
]


@pytest.mark.parametrize("mutate,path,words", BAD)
def test_bad_spec_names_the_field(mutate, path, words):
    errs = experiment_errors(experiment_defaults(_bad(mutate)))
    assert errs, "expected an error"
    assert path in errs[0].path and words in errs[0].message, str(errs[0])


def test_bad_spec_from_the_cli_is_one_line_exit_2(tmp_path):
    import yaml

    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(_bad(lambda s: s["parameters"][0]["feasibleSpace"].update(min="5"))))
    p = subprocess.run([PY, "-m", "localflow", "run", str(spec), "-W", str(tmp_path / "ws")], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Experiment.spec.parameters[0].feasibleSpace" in lines[0] and "swap min and max" in lines[0]


def test_admission_refuses_a_bad_experiment(tmp_path):
    from localflow.runtime import open_runtime

    with open_runtime(tmp_path / "ws") as rt:
        with pytest.raises(SpecError, match=r"spec\.objective\.type"):
            rt.store.create(_bad(lambda s: s["objective"].update(type="best")))
        stored = rt.store.create(experiment(name="ok"))
        assert stored["spec"]["parallelTrialCount"] == 2 and stored["spec"]["resumePolicy"] == "Never"
        assert stored["spec"]["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
        assert stored["spec"]["trialTemplate"]["successCondition"] == 'status.conditions.#(type=="Complete")#|#(status=="True")#'


# ---------------------------------------------------------------- the upstream examples

# what localflow does with each file of ../shared/corpus/katib: "loads", or words of the refusal
CORPUS_EXPECTED = {
    "argo__argo-workflow.yaml": "trialSpec.kind", "early-stopping__median-stop-with-json-format.yaml": "earlyStopping",
    "early-stopping__median-stop.yaml": "earlyStopping", "fpga__xgboost-example.yaml": "loads",  # a batch Job; its FPGA resource and image are the node's concern
    "hp-tuning__bayesian-optimization.yaml": "algorithmName", "hp-tuning__cma-es.yaml": "algorithmName",
    "hp-tuning__grid.yaml": "loads", "hp-tuning__hyperband.yaml": "algorithmName",
    "hp-tuning__hyperopt-distribution.yaml": "distribution", "hp-tuning__multivariate-tpe.yaml": "loads",
    "hp-tuning__optuna-distribution.yaml": "loads", "hp-tuning__random.yaml": "loads",
    "hp-tuning__simple-pbt.yaml": "maxFailedTrialCount",  # 3 > maxTrialCount 2: Katib's webhook refuses it too
    "hp-tuning__sobol.yaml": "algorithmName", "hp-tuning__tpe.yaml": "loads",
    "kubeflow-trainer__trainjob-pytorch.yaml": "trialSpec.kind",
    "kubeflow-training-operator__mpijob-horovod.yaml": "trialSpec.kind",
    "kubeflow-training-operator__pytorchjob-mnist.yaml": "trialSpec.kind",
    "kubeflow-training-operator__tfjob-mnist-with-summaries.yaml": "collector.kind",
    "kubeflow-training-operator__xgboostjob-lightgbm.yaml": "trialSpec.kind",
    "metrics-collector__custom-metrics-collector.yaml": "collector.kind",
    "metrics-collector__file-metrics-collector-with-json-format.yaml": "collector.kind",
    "metrics-collector__file-metrics-collector.yaml": "collector.kind",
    "metrics-collector__metrics-collection-strategy.yaml": "loads",
    "nas__darts-cpu.yaml": "nasConfig", "nas__darts-gpu.yaml": "nasConfig", "nas__enas-cpu.yaml": "nasConfig",
    "nas__enas-gpu.yaml": "nasConfig", "resume-experiment__from-volume-resume.yaml": "loads",
    "resume-experiment__long-running-resume.yaml": "loads", "tekton__pipeline-run.yaml": "trialSpec.kind",
    "trial-template__trial-configmap-source.yaml": "algorithmName",  # cmaes, before its configMap
    "trial-template__trial-metadata-substitution.yaml": "loads",
}


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the upstream corpus is not at {CORPUS}")
def test_corpus_examples_load_or_are_refused_with_a_reason():
    import yaml

    files = sorted(p.name for p in CORPUS.glob("*.yaml"))
    assert files == sorted(CORPUS_EXPECTED), "a corpus file without an expected outcome"
    for f in files:
        doc = yaml.safe_load((CORPUS / f).read_text())
        want = CORPUS_EXPECTED[f]
        try:
            load_experiment(copy.deepcopy(doc))
        except SpecError as e:
            assert want != "loads", f"{f}: refused: {e}"
            assert want in e.path and e.path.startswith("Experiment.") and e.fix, f"{f}: {e}"
        else:
            assert want == "loads", f"{f}: loads, expected a refusal at {want}"


# ---------------------------------------------------------------- the reconcilers, driven by hand


def test_parallel_trial_count_is_respected_and_lowering_it_deletes_the_newest(tmp_path):
    import time

    from localflow.clock import FakeClock
    from localflow.controllers.experiment import ExperimentReconciler
    from localflow.controllers.job import JobReconciler
    from localflow.controllers.manager import ControllerManager
    from localflow.controllers.suggestion import SuggestionReconciler
    from localflow.controllers.trial import TrialReconciler, trial_state
    from localflow.runtime import open_runtime
    from localflow.scheduler import Capacity

    with open_runtime(tmp_path / "ws", clock=FakeClock(), capacity=Capacity(cpu=4, memory=8 << 30)) as rt:
        mgr = ControllerManager(rt.store, rt.clock)
        mgr.register(ExperimentReconciler(rt.store, rt.clock))
        mgr.register(SuggestionReconciler(rt.store, rt.clock))
        mgr.register(TrialReconciler(rt.store, rt.workspace.logs_dir, rt.clock))
        mgr.register(JobReconciler(rt.store, rt.scheduler, rt.clock))
        rt.store.create(experiment(code="import time; print('${trialParameters.x}'); time.sleep(600)", parallel=3,
                                   max_trials=10))
        sel = {"katib.kubeflow.org/experiment": "exp"}

        def trials():
            return rt.store.list("Trial", "default", label_selector=sel)

        def drive(cond, what):
            deadline = time.monotonic() + 60
            while True:
                mgr.run_until_idle()
                got = cond()
                assert len([t for t in trials() if trial_state(t) in ("Pending", "Running")]) <= 3
                if got:
                    return got
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                time.sleep(0.02)

        drive(lambda: sum(trial_state(t) == "Running" for t in trials()) == 3, "3 running trials")
        exp = rt.store.get("Experiment", "exp")
        assert exp["status"]["trialsRunning"] == 3 and condition(exp, "Running")["reason"] == "ExperimentRunning"
        newest = max(trials(), key=lambda t: (t["metadata"]["creationTimestamp"], t["metadata"]["name"]))
        rt.store.patch("Experiment", "exp", {"spec": {"parallelTrialCount": 1}})
        drive(lambda: len(trials()) == 1, "the extra trials deleted")
        assert newest["metadata"]["name"] not in {t["metadata"]["name"] for t in trials()}
        # deleting the Experiment cascades to its Trials, their Jobs and the Suggestion
        rt.store.delete("Experiment", "exp")
        drive(lambda: not trials() and not rt.store.list("Suggestion", "default"), "the cascade")


def test_served_experiment_runs_through_a_server_worker(localflow_server, tmp_path):
    import yaml

    spec = tmp_path / "exp.yaml"
    spec.write_text(yaml.safe_dump(experiment(name="served", goal=2.0, parallel=2, max_trials=2)))
    assert localflow_server.cli("apply", "-f", str(spec)).returncode == 0
    waited = localflow_server.cli("wait", "experiment/served", "--for=condition=Succeeded", "--timeout=90s")
    assert waited.returncode == 0, waited.stderr
    got = localflow_server.cli("get", "trials", "-l", "katib.kubeflow.org/experiment=served")
    assert got.stdout.count("Succeeded") == 2
    runs = localflow_server.cli("get", "runs")
    assert "Experiment" in runs.stdout and "SUCCEEDED" in runs.stdout
