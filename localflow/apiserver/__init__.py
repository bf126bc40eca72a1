"""localflow's Kubernetes API: kubectl, the ``kubernetes`` client and the Kubeflow SDKs talk to a
workspace over HTTP, through the same store and admission as ``localflow run`` (issue: real clients).

- :mod:`.app`: the ASGI app and :class:`ApiServer` (uvicorn in a thread), which ``localflow serve`` starts;
- :mod:`.discovery`, :mod:`.resources`, :mod:`.tables`, :mod:`.patches`, :mod:`.openapi`,
  :mod:`.status`: discovery, the REST verbs, Tables, PATCH types, OpenAPI and errors.
"""
from localflow.apiserver.app import ApiServer, make_app

__all__ = ["ApiServer", "make_app"]
