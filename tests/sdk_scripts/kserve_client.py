"""Run inside the kserve 0.21.0 venv (kubernetes 36.0.3; tests/sdk_envs.py) against a ``localflow
serve`` named by ``$KUBECONFIG``: KServeClient create (model objects, ``watch=False``, and
``watch=True`` ending once Ready is True with ``status.observedGeneration`` set), get, list, delete of
InferenceServices. No KServe controller runs: a thread here writes the Ready status KServe's would.
Prints one JSON line.
"""
import json
import threading

from kserve import (KServeClient, V1beta1InferenceService, V1beta1InferenceServiceSpec, V1beta1ModelFormat,
                    V1beta1ModelSpec, V1beta1PredictorSpec, constants)
from kubernetes import client as k8s


def isvc(name: str) -> V1beta1InferenceService:
    """The sklearn-iris InferenceService of KServe's getting-started guide, as model objects."""
    return V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1, kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=k8s.V1ObjectMeta(name=name, namespace="default", annotations={"sidecar.istio.io/inject": "false"}),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(model=V1beta1ModelSpec(
            model_format=V1beta1ModelFormat(name="sklearn"), storage_uri="gs://kfserving-examples/models/sklearn/1.0/model"))))


def mark_ready(custom: k8s.CustomObjectsApi, name: str) -> None:
    """What KServe's controller writes once the predictor serves: Ready True, observedGeneration, url.
    Waits on a watch (not a sleep) until the object exists."""
    from kubernetes import watch

    for ev in watch.Watch().stream(custom.list_namespaced_custom_object, "serving.kserve.io", "v1beta1", "default",
                                   "inferenceservices", field_selector=f"metadata.name={name}", timeout_seconds=60):
        gen = ev["object"]["metadata"].get("generation", 1)
        custom.patch_namespaced_custom_object_status("serving.kserve.io", "v1beta1", "default", "inferenceservices", name, {
            "status": {"observedGeneration": gen, "url": f"http://{name}.default.example.com",
                       "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T00:00:00Z"}],
                       "components": {"predictor": {"traffic": [{"latestRevision": True, "percent": 100}]}}}})
        return


def main() -> None:
    out = {}
    ks = KServeClient()  # reads $KUBECONFIG
    created = ks.create(isvc("sklearn-iris"), watch=False)
    out["created"] = {"name": created["metadata"]["name"], "uid": bool(created["metadata"].get("uid")),
                      "format": created["spec"]["predictor"]["model"]["modelFormat"]["name"]}
    got = ks.get("sklearn-iris", namespace="default")
    out["got_storage_uri"] = got["spec"]["predictor"]["model"]["storageUri"]
    out["ready_before"] = ks.is_isvc_ready("sklearn-iris", namespace="default")

    writer = threading.Thread(target=mark_ready, args=(ks.api_instance, "sklearn-watched"), daemon=True)
    writer.start()
    ks.create(isvc("sklearn-watched"), watch=True, timeout_seconds=60)  # returns once Ready is True
    writer.join(timeout=60)
    out["watched_ready"] = ks.is_isvc_ready("sklearn-watched", namespace="default")
    out["listed"] = sorted(i["metadata"]["name"] for i in ks.get(namespace="default")["items"])

    ks.delete("sklearn-iris", namespace="default")
    ks.delete("sklearn-watched", namespace="default")
    out["listed_after_delete"] = [i["metadata"]["name"] for i in ks.get(namespace="default")["items"]]
    try:
        ks.get("sklearn-iris", namespace="default")
        out["get_deleted"] = "found"
    except RuntimeError as exc:
        out["get_deleted"] = "404" if "(404)" in str(exc) else str(exc)
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
