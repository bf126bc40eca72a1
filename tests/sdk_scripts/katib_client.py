"""Run inside the kubeflow-katib 0.19.0 venv (kubernetes 35.0.0; tests/sdk_envs.py) against a
``localflow serve`` named by ``$KUBECONFIG``: KatibClient create_experiment (a model object built as
Katib's SDK examples do, and the official random-search YAML as a dict), get/list, the 409 message,
list_trials by label, get_optimal_hyperparameters from a status, edit_experiment_budget (merge
patch), delete_experiment. The server's Katib controller runs the experiments meanwhile; the checks are API-level. Prints one JSON line.

Usage: python katib_client.py EXPERIMENT_YAML
"""
import json
import sys

import yaml
from kubeflow.katib import KatibClient, models
from kubernetes import client as k8s


def model_experiment(name: str) -> models.V1beta1Experiment:
    """An Experiment as Katib's SDK notebooks build it (sdk/python/v1beta1/examples)."""
    trial_spec = {"apiVersion": "batch/v1", "kind": "Job",
                  "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                      {"name": "training-container", "image": "docker.io/kubeflowkatib/mxnet-mnist:latest",
                       "command": ["python3", "/opt/mxnet-mnist/mnist.py", "--lr=${trialParameters.learningRate}"]}]}}}}
    return models.V1beta1Experiment(
        api_version="kubeflow.org/v1beta1", kind="Experiment",
        metadata=k8s.V1ObjectMeta(name=name, labels={"made-by": "sdk-model"}),
        spec=models.V1beta1ExperimentSpec(
            max_trial_count=3, parallel_trial_count=2, max_failed_trial_count=1,
            algorithm=models.V1beta1AlgorithmSpec(algorithm_name="random"),
            objective=models.V1beta1ObjectiveSpec(type="maximize", goal=0.99, objective_metric_name="Validation-accuracy"),
            parameters=[models.V1beta1ParameterSpec(name="lr", parameter_type="double",
                                                    feasible_space=models.V1beta1FeasibleSpace(min="0.01", max="0.03"))],
            trial_template=models.V1beta1TrialTemplate(
                primary_container_name="training-container",
                trial_parameters=[models.V1beta1TrialParameterSpec(name="learningRate", reference="lr")],
                trial_spec=trial_spec)))


def main() -> None:
    out = {}
    kc = KatibClient()  # reads $KUBECONFIG
    kc.create_experiment(model_experiment("sdk-model"), namespace="default")
    with open(sys.argv[1]) as f:
        doc = yaml.safe_load(f)
    ns = doc["metadata"]["namespace"]
    kc.create_experiment(doc, namespace=ns)
    try:
        kc.create_experiment(doc, namespace=ns)
        out["duplicate"] = "created twice"
    except Exception as exc:  # the SDK turns the 409 into this message
        out["duplicate"] = str(exc)

    exp = kc.get_experiment("sdk-model", namespace="default")
    out["model"] = {"name": exp.metadata.name, "labels": exp.metadata.labels, "uid": bool(exp.metadata.uid),
                    "algorithm": exp.spec.algorithm.algorithm_name, "max_trial_count": exp.spec.max_trial_count,
                    "primary": exp.spec.trial_template.primary_container_name}
    yaml_exp = kc.get_experiment(doc["metadata"]["name"], namespace=ns)
    out["yaml_parameters"] = [p.name for p in yaml_exp.spec.parameters]
    out["listed"] = {n: sorted(e.metadata.name for e in kc.list_experiments(namespace=n)) for n in ("default", ns)}
    out["trials_before"] = [t.metadata.name for t in kc.list_trials("sdk-model", namespace="default")]

    # what Katib's controller would write: a Trial labelled with its Experiment, and the optimum
    custom = kc.custom_api
    for trial, experiment in (("sdk-model-abc", "sdk-model"), ("other-xyz", "other")):
        custom.create_namespaced_custom_object("kubeflow.org", "v1beta1", "default", "trials", {
            "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
            "metadata": {"name": trial, "labels": {"katib.kubeflow.org/experiment": experiment}},
            "spec": {"objective": {"type": "maximize", "objectiveMetricName": "Validation-accuracy"},
                     "parameterAssignments": [{"name": "lr", "value": "0.02"}], "runSpec": {}}})
    # (the experiment controller may have created trials of its own by now: only the hand-made ones are compared)
    out["trials"] = [t.metadata.name for t in kc.list_trials("sdk-model", namespace="default")
                     if t.metadata.name in ("sdk-model-abc", "other-xyz")]
    custom.patch_namespaced_custom_object_status("kubeflow.org", "v1beta1", "default", "experiments", "sdk-model", {
        "status": {"currentOptimalTrial": {"bestTrialName": "sdk-model-abc",
                                           "parameterAssignments": [{"name": "lr", "value": "0.02"}],
                                           "observation": {"metrics": [{"name": "Validation-accuracy", "min": "0.9",
                                                                        "max": "0.97", "latest": "0.97"}]}}}})
    best = kc.get_optimal_hyperparameters("sdk-model", namespace="default")
    out["optimal"] = {"trial": best.best_trial_name, "lr": best.parameter_assignments[0].value,
                      "max": best.observation.metrics[0].max}

    for attempt in range(20):  # the experiment controller writes it too: a stale resourceVersion is a 409, retried
        try:
            kc.edit_experiment_budget("sdk-model", namespace="default", max_trial_count=5)
            break
        except RuntimeError:
            if attempt == 19:
                raise
    out["max_trial_count_after_edit"] = kc.get_experiment("sdk-model", namespace="default").spec.max_trial_count

    kc.delete_experiment("sdk-model", namespace="default")
    kc.delete_experiment(doc["metadata"]["name"], namespace=ns)
    out["listed_after_delete"] = sorted(e.metadata.name for e in kc.list_experiments(namespace="default"))
    try:
        kc.get_experiment("sdk-model", namespace="default")
        out["get_deleted"] = "found"
    except Exception as exc:
        out["get_deleted"] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
