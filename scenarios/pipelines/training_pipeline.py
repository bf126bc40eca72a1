"""Realistic training pipeline: load -> preprocess -> train -> evaluate -> deploy if good enough.

Data comes from scikit-learn's bundled datasets (no network). Components that need scikit-learn and
numpy list them, unpinned, in ``packages_to_install``; a runner whose interpreter already has them
installed needs no pip.

Tasks (names as compiled):

- ``load-dataset``: ``dataset_name`` in {"iris", "wine", "breast_cancer"} -> Output[Dataset] ``data``
  (CSV with a header of feature names plus ``target``), metadata ``{"dataset": name, "rows": n,
  "features": f, "classes": c}``; NamedTuple outputs ``n_rows`` and ``n_classes``. An unknown name
  raises ``ValueError`` (the task fails). Retries up to 2 times.
- ``preprocess``: stratified train/test split (``test_size``, ``seed``) and standardisation fitted on the
  train part -> Output[Dataset] ``train`` and ``test``; NamedTuple outputs ``n_train`` and ``n_test``.
  Memory request 256M, limit 1G.
- ``train``: ``model_type`` "random_forest" (``n_estimators`` trees) or "logistic_regression" ->
  Output[Model] ``model`` (a pickle of the fitted estimator), metadata ``{"framework": "scikit-learn",
  "model_type": ..., "omp_num_threads": value of env OMP_NUM_THREADS}``. cpu request and limit 500m;
  env ``OMP_NUM_THREADS=1`` set with ``set_env_variable``.
- ``evaluate``: Output[Metrics] ``metrics`` (``accuracy``, ``n_test``), Output[ClassificationMetrics]
  ``confusion`` (confusion matrix over the class labels as strings), returns the accuracy (float,
  ``Output``).
- ``condition-branches-1`` holds the If/Else. ``condition-2`` (``accuracy >= min_accuracy``) holds
  ``deploy``: copies the model file to Output[Model] ``deployed`` (metadata: the input model's
  metadata plus ``endpoint``) and returns the endpoint string
  ``"local://models/<dataset_name>-<model_type>"``. Caching disabled; retries up to 2 times, 1s backoff.
- ``condition-3`` (the Else, ``!(accuracy >= min_accuracy)``) holds ``report-low-accuracy``: returns
  ``"rejected: accuracy <acc:.3f> < <min:.3f>"``.

Pipeline outputs: ``accuracy`` (float, from evaluate) and ``decision`` (str, ``dsl.OneOf`` of the deploy
endpoint and the rejection message).

A correct run with default parameters (wine, test_size 0.25, seed 42, random_forest, 50 trees,
min_accuracy 0.8): state SUCCEEDED; every task SUCCEEDED except ``report-low-accuracy`` SKIPPED;
``load-dataset`` n_rows == 178, n_classes == 3; ``preprocess`` n_train == 133, n_test == 45;
accuracy >= 0.9 (1.0 with scikit-learn 1.9.1); ``decision == "local://models/wine-random_forest"``;
``deployed`` holds the same bytes as ``model``.

With ``min_accuracy=1.01``: ``deploy`` SKIPPED, ``report-low-accuracy`` SUCCEEDED and
``decision == "rejected: accuracy 1.000 < 1.010"`` (for accuracy 1.0).
With ``dataset_name="iris"``: n_rows == 150, n_classes == 3, n_train == 112, n_test == 38, accuracy
0.921 (35/38, scikit-learn 1.9.1), deployed.
With ``dataset_name="breast_cancer", model_type="logistic_regression"``: n_rows == 569, n_classes == 2,
n_train == 426, n_test == 143, accuracy 0.986 (scikit-learn 1.9.1), deployed.
With ``dataset_name="nope"``: ``load-dataset`` FAILED (after its 2 retries), run FAILED, nothing downstream runs.
"""
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Metrics, Model, Output

SKLEARN = ["scikit-learn", "numpy"]


@dsl.component(base_image="python:3.11", packages_to_install=SKLEARN)
def load_dataset(
    dataset_name: str, data: Output[Dataset]
) -> NamedTuple("LoadOutputs", [("n_rows", int), ("n_classes", int)]):
    """Write one of scikit-learn's bundled classification datasets as CSV."""
    import csv

    from sklearn import datasets

    loaders = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }
    if dataset_name not in loaders:
        raise ValueError(f"unknown dataset {dataset_name!r}; choose one of {sorted(loaders)}")
    bunch = loaders[dataset_name]()
    names = [str(n).replace(" ", "_") for n in bunch.feature_names]
    with open(data.path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names + ["target"])
        for row, label in zip(bunch.data.tolist(), bunch.target.tolist()):
            writer.writerow(row + [label])
    n_rows, n_features = bunch.data.shape
    n_classes = len(set(bunch.target.tolist()))
    data.metadata.update(
        {"dataset": dataset_name, "rows": n_rows, "features": n_features, "classes": n_classes}
    )
    outputs = NamedTuple("LoadOutputs", [("n_rows", int), ("n_classes", int)])
    return outputs(n_rows, n_classes)


@dsl.component(base_image="python:3.11", packages_to_install=SKLEARN)
def preprocess(
    data: Input[Dataset],
    test_size: float,
    seed: int,
    train: Output[Dataset],
    test: Output[Dataset],
) -> NamedTuple("SplitOutputs", [("n_train", int), ("n_test", int)]):
    """Stratified split, then standardise with statistics of the train part only."""
    import numpy as np
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    with open(data.path) as f:
        header = f.readline().strip()
    table = np.loadtxt(data.path, delimiter=",", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(int)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y
    )
    scaler = StandardScaler().fit(x_train)
    for out, xs, ys in ((train, x_train, y_train), (test, x_test, y_test)):
        rows = np.column_stack([scaler.transform(xs), ys])
        fmt = ["%.10g"] * xs.shape[1] + ["%d"]
        np.savetxt(out.path, rows, delimiter=",", header=header, comments="", fmt=fmt)
        out.metadata["rows"] = int(len(ys))
    outputs = NamedTuple("SplitOutputs", [("n_train", int), ("n_test", int)])
    return outputs(int(len(y_train)), int(len(y_test)))


@dsl.component(base_image="python:3.11", packages_to_install=SKLEARN)
def train(
    train: Input[Dataset],
    model_type: str,
    n_estimators: int,
    seed: int,
    model: Output[Model],
):
    """Fit a RandomForest or LogisticRegression and pickle it."""
    import os
    import pickle

    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    table = np.loadtxt(train.path, delimiter=",", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(int)
    if model_type == "random_forest":
        estimator = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=1)
    elif model_type == "logistic_regression":
        estimator = LogisticRegression(max_iter=1000, random_state=seed)
    else:
        raise ValueError(f"unknown model_type {model_type!r}; use random_forest or logistic_regression")
    estimator.fit(x, y)
    with open(model.path, "wb") as f:
        pickle.dump(estimator, f)
    model.metadata.update(
        {
            "framework": "scikit-learn",
            "model_type": model_type,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        }
    )


@dsl.component(base_image="python:3.11", packages_to_install=SKLEARN)
def evaluate(
    test: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    confusion: Output[ClassificationMetrics],
) -> float:
    """Accuracy and confusion matrix of the model on the test part."""
    import pickle

    import numpy as np
    from sklearn.metrics import accuracy_score, confusion_matrix

    table = np.loadtxt(test.path, delimiter=",", skiprows=1)
    x, y = table[:, :-1], table[:, -1].astype(int)
    with open(model.path, "rb") as f:
        estimator = pickle.load(f)
    predicted = estimator.predict(x)
    accuracy = float(accuracy_score(y, predicted))
    labels = sorted(set(y.tolist()) | set(predicted.tolist()))
    matrix = confusion_matrix(y, predicted, labels=labels).tolist()
    metrics.log_metric("accuracy", accuracy)
    metrics.log_metric("n_test", int(len(y)))
    confusion.log_confusion_matrix([str(label) for label in labels], matrix)
    print(f"accuracy={accuracy:.4f}")
    return accuracy


@dsl.component(base_image="python:3.11")
def deploy(model: Input[Model], dataset_name: str, model_type: str, deployed: Output[Model]) -> str:
    """'Deploy' = copy the model to a new artifact and name an endpoint for it."""
    import shutil

    endpoint = f"local://models/{dataset_name}-{model_type}"
    shutil.copyfile(model.path, deployed.path)
    deployed.metadata.update(dict(model.metadata))
    deployed.metadata["endpoint"] = endpoint
    print(f"deployed to {endpoint}")
    return endpoint


@dsl.component(base_image="python:3.11")
def report_low_accuracy(accuracy: float, min_accuracy: float) -> str:
    """The Else branch: explain why nothing was deployed."""
    message = f"rejected: accuracy {accuracy:.3f} < {min_accuracy:.3f}"
    print(message)
    return message


@dsl.pipeline(
    name="training-pipeline",
    description="Load a scikit-learn dataset, preprocess, train, evaluate and deploy when accurate enough.",
)
def pipeline(
    dataset_name: str = "wine",
    test_size: float = 0.25,
    seed: int = 42,
    model_type: str = "random_forest",
    n_estimators: int = 50,
    min_accuracy: float = 0.8,
) -> NamedTuple("Outputs", [("accuracy", float), ("decision", str)]):
    load_task = load_dataset(dataset_name=dataset_name)
    load_task.set_caching_options(True)
    load_task.set_retry(num_retries=2)

    prep_task = preprocess(data=load_task.outputs["data"], test_size=test_size, seed=seed)
    prep_task.set_memory_request("256M").set_memory_limit("1G")

    train_task = train(
        train=prep_task.outputs["train"],
        model_type=model_type,
        n_estimators=n_estimators,
        seed=seed,
    )
    train_task.set_cpu_request("500m").set_cpu_limit("500m")
    train_task.set_env_variable(name="OMP_NUM_THREADS", value="1")

    eval_task = evaluate(test=prep_task.outputs["test"], model=train_task.outputs["model"])

    with dsl.If(eval_task.outputs["Output"] >= min_accuracy):
        deploy_task = deploy(
            model=train_task.outputs["model"], dataset_name=dataset_name, model_type=model_type
        )
        deploy_task.set_caching_options(False)
        deploy_task.set_retry(num_retries=2, backoff_duration="1s")
    with dsl.Else():
        report_task = report_low_accuracy(
            accuracy=eval_task.outputs["Output"], min_accuracy=min_accuracy
        )

    outputs = NamedTuple("Outputs", [("accuracy", float), ("decision", str)])
    return outputs(
        accuracy=eval_task.outputs["Output"],
        decision=dsl.OneOf(deploy_task.outputs["Output"], report_task.output),
    )


EXPECTED = [
    {
        "params": {},
        "state": "SUCCEEDED",
        "tasks": {
            "load-dataset": "SUCCEEDED",
            "preprocess": "SUCCEEDED",
            "train": "SUCCEEDED",
            "evaluate": "SUCCEEDED",
            "deploy": "SUCCEEDED",
            "report-low-accuracy": "SKIPPED",
        },
        "task_outputs": {
            "load-dataset": {"n_rows": 178, "n_classes": 3},
            "preprocess": {"n_train": 133, "n_test": 45},
            "deploy": {"Output": "local://models/wine-random_forest"},
        },
        "outputs": {"decision": "local://models/wine-random_forest"},
    },
    {
        "params": {"min_accuracy": 1.01},
        "state": "SUCCEEDED",
        "tasks": {
            "load-dataset": "SUCCEEDED",
            "preprocess": "SUCCEEDED",
            "train": "SUCCEEDED",
            "evaluate": "SUCCEEDED",
            "deploy": "SKIPPED",
            "report-low-accuracy": "SUCCEEDED",
        },
    },
    {
        "params": {"dataset_name": "nope"},
        "state": "FAILED",
        "tasks": {"load-dataset": "FAILED"},
    },
]
