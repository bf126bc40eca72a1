"""The Kubernetes API of a workspace as an ASGI app (Starlette), and the thread that serves it (uvicorn).

``make_app(db_path)`` answers what kubectl, the ``kubernetes`` client and the Kubeflow SDKs send
(``../shared/reference/apiserver.md`` lists it with upstream sources): discovery (:mod:`.discovery`),
the REST verbs (:mod:`.resources`), ``Table`` for ``kubectl get`` (:mod:`.tables`), watches as
newline-delimited JSON (``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/watch.go``), ``pods/log``,
``/version``, ``/healthz``, ``/readyz``, ``/livez`` and a minimal ``/openapi/v3`` (:mod:`.openapi`).
Handlers are plain functions run in Starlette's thread pool over one :class:`ObjectStore`; a watch
streams from a store watch, so it sees writes of every process on the workspace.

:class:`ApiServer` runs it on ``127.0.0.1:<port>`` (``0``: a free port) in a daemon thread.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from localflow import kinds as kind_table
from localflow.apiserver import discovery, kfp, openapi, resources, tables
from localflow.apiserver.status import ApiError, from_error, status
from localflow.errors import Gone, LocalflowError, SpecError

__all__ = ["make_app", "ApiServer", "KUBERNETES_VERSION"]

#: What ``/version`` reports: the Kubernetes minor whose API this follows (client-go checks nothing more).
KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0+localflow", "gitCommit": "localflow",
                      "gitTreeState": "clean", "buildDate": "2026-12-01T00:00:00Z", "goVersion": "python",
                      "compiler": "localflow", "platform": "linux/amd64"}
_BOOKMARK_EVERY = 10.0  # seconds between BOOKMARKs on an idle watch that allows them


def _json(body, code: int = 200, content_type: str = "application/json") -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=code, media_type=content_type)


def _error(exc: ApiError) -> Response:
    return _json(exc.body(), exc.code)


async def _body(request: Request):
    ctype = request.headers.get("content-type", "")
    if "protobuf" in ctype or "cbor" in ctype:
        # protobuf (kubectl's generators for built-in kinds) is not decoded here: 415, as for any unknown type
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                                                    "media types include: application/json, application/yaml")
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        try:  # apply-patch+yaml may really be YAML
            import yaml

            return yaml.safe_load(raw)
        except Exception:
            raise ApiError(400, "BadRequest", "the request body is not valid JSON") from None


def make_app(db_path: str | os.PathLike, *, logs_dir: str | os.PathLike | None = None, store=None) -> Starlette:
    """The ASGI app serving the store at ``db_path`` (or the given ``store``); ``logs_dir``: where
    Pod logs are (default: the workspace's ``logs`` beside the database)."""
    from localflow.fakes import ObjectStore

    store = store or ObjectStore(db_path)
    stopping = threading.Event()  # set by ApiServer.stop: open watches and log follows end cleanly
    logs_dir = Path(logs_dir) if logs_dir else Path(db_path).parent / "logs"
    from starlette.concurrency import run_in_threadpool

    async def api_root(request: Request) -> Response:
        if discovery.wants_aggregated(request.headers.get("accept")):
            return _json(discovery.aggregated(core=True), content_type=discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_versions(f"{request.url.hostname}:{request.url.port}"))

    async def apis_root(request: Request) -> Response:
        if discovery.wants_aggregated(request.headers.get("accept")):
            return _json(discovery.aggregated(core=False), content_type=discovery.AGGREGATED_CONTENT_TYPE)
        return _json(discovery.api_group_list())

    async def group(request: Request) -> Response:
        g = request.path_params["group"]
        versions = discovery.group_versions().get(g)
        if not versions or not g:
            return _error(ApiError(404, "NotFound", "the server could not find the requested resource"))
        gvs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
        return _json({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": gvs, "preferredVersion": gvs[0]})

    async def core(request: Request) -> Response:
        return await _resource(request, "", "v1", request.path_params.get("rest", ""))

    async def named(request: Request) -> Response:
        p = request.path_params
        return await _resource(request, p["group"], p["version"], p.get("rest", ""))

    async def _resource(request: Request, g: str, v: str, rest: str) -> Response:
        parts = [s for s in rest.split("/") if s]
        try:
            if not parts:
                doc = discovery.api_resource_list(g, v)
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                return _json(doc)
            if g == "" and parts[0] == "namespaces" and len(parts) <= 2:
                return await run_in_threadpool(_namespaces, request, parts)
            t = resources.parse_path(g, v, parts)
            body = await _body(request) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
            return await _dispatch(request, t, body)
        except ApiError as exc:
            return _error(exc)
        except LocalflowError as exc:
            return _error(from_error(exc))

    async def _dispatch(request: Request, t: resources.Target, body) -> Response:
        q, m = request.query_params, request.method
        accept = request.headers.get("accept")
        dry = q.get("dryRun") or (m == "DELETE" and isinstance(body, dict) and body.get("dryRun"))  # DeleteOptions.dryRun
        if dry and t.subresource is None and (m == "POST" or m in ("PUT", "PATCH", "DELETE") and t.name is not None):
            obj, code = await run_in_threadpool(resources.dry_run, store, t, m, body, request.headers.get("content-type", ""))
            return _json(obj, code)
        if t.name is None:
            if m == "GET":
                if resources.parse_bool(q.get("watch")):
                    return _watch(request, t, t.kind)
                items, rv, nxt = await run_in_threadpool(
                    resources.list_objects, store, t, label_selector=q.get("labelSelector"),
                    field_selector=q.get("fieldSelector"), limit=int(q.get("limit") or 0) or None,
                    continue_token=q.get("continue"))
                if tables.wants_table(accept):
                    return _json(tables.table(items, t.kind, resource_version=rv, include=q.get("includeObject") or "Metadata",
                                              continue_token=nxt), content_type=tables.TABLE_CONTENT_TYPE)
                meta = {"resourceVersion": rv, **({"continue": nxt} if nxt else {})}
                return _json({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version, "metadata": meta, "items": items})
            if m == "POST":
                if t.namespace is None and t.kind.namespaced:
                    raise ApiError(405, "MethodNotAllowed", "create a namespaced object under /namespaces/{namespace}/")
                obj = await run_in_threadpool(resources.create_object, store, t, body)
                return _json(obj, 201)
            if m == "DELETE":
                items, rv = await run_in_threadpool(resources.delete_collection, store, t, body,
                                                    label_selector=q.get("labelSelector"), field_selector=q.get("fieldSelector"))
                return _json({"kind": f"{t.kind.kind}List", "apiVersion": t.kind.api_version,
                              "metadata": {"resourceVersion": rv}, "items": items})
            raise ApiError(405, "MethodNotAllowed", f"{m} is not allowed on a collection")
        if t.subresource == "log":
            if m != "GET":
                raise ApiError(405, "MethodNotAllowed", "pods/log is read-only")
            return await _log(request, t)
        if m == "GET":
            obj = await run_in_threadpool(resources.get_object, store, t)
            if tables.wants_table(accept):
                return _json(tables.table([obj], t.kind, resource_version=obj["metadata"].get("resourceVersion", ""),
                                          include=q.get("includeObject") or "Metadata"), content_type=tables.TABLE_CONTENT_TYPE)
            return _json(obj)
        if m == "PUT":
            return _json(await run_in_threadpool(resources.replace_object, store, t, body))
        if m == "PATCH":
            obj, created = await run_in_threadpool(resources.patch_object, store, t, request.headers.get("content-type", ""), body)
            return _json(obj, 201 if created else 200)
        if m == "DELETE":
            return _json(await run_in_threadpool(resources.delete_object, store, t, body))
        raise ApiError(405, "MethodNotAllowed", f"{m} is not allowed here")

    def _namespaces(request: Request, parts: list[str]) -> Response:
        """Namespaces are not stored objects here: every namespace an object uses exists (Active),
        ``default`` always; enough for clients that read one before writing into it."""
        names = {"default"} | {o["metadata"].get("namespace") for o in store.list(None, None) if o["metadata"].get("namespace")}

        def ns(name: str) -> dict:
            return {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}, "spec": {"finalizers": ["kubernetes"]},
                    "status": {"phase": "Active"}}

        if len(parts) == 2:
            if request.method != "GET":
                return _json(ns(parts[1]))  # create/delete of a namespace is accepted and changes nothing
            return _json(ns(parts[1])) if parts[1] in names else _error(
                ApiError(404, "NotFound", f'namespaces "{parts[1]}" not found', {"name": parts[1], "kind": "namespaces"}))
        if request.method == "POST":
            return _json(ns("default"), 201)
        return _json({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {"resourceVersion": store.resource_version},
                      "items": [ns(n) for n in sorted(names)]})

    def _watch(request: Request, t: resources.Target, k: kind_table.Kind) -> Response:
        q = request.query_params
        rv = q.get("resourceVersion")
        timeout = float(q.get("timeoutSeconds") or 1800)
        bookmarks = resources.parse_bool(q.get("allowWatchBookmarks"))
        as_table = tables.wants_table(request.headers.get("accept"))
        match = resources.field_matcher(q.get("fieldSelector"))
        label = q.get("labelSelector") or None
        include = q.get("includeObject") or "Metadata"

        def line(type_: str, obj: dict, first: list) -> bytes:
            obj = resources.present(obj)
            if as_table and type_ != "ERROR" and type_ != "BOOKMARK":
                obj = tables.table([obj], k, resource_version=obj["metadata"].get("resourceVersion", ""),
                                   include=include, definitions=not first)
                first.append(True)
            return (json.dumps({"type": type_, "object": obj}, separators=(",", ":")) + "\n").encode()

        def stream():
            first: list = []
            try:
                if rv in (None, "", "0"):  # a watch from "now" starts with the current state as ADDED
                    items, since = store.list_with_rv(resources._kind_ref(t), t.namespace, label)
                    for obj in items:
                        if match is None or match(obj):
                            yield line("ADDED", obj, first)
                else:
                    since = rv
                w = store.watch(resources._kind_ref(t), t.namespace, label, since=since)
            except Gone as exc:
                yield line("ERROR", status(410, "Expired", exc.message), first)
                return
            except LocalflowError as exc:
                yield line("ERROR", from_error(exc).body(), first)
                return
            deadline = time.monotonic() + timeout
            last_sent = time.monotonic()
            try:
                while not stopping.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    try:
                        ev = w.get(timeout=min(left, 1.0))
                    except Gone as exc:
                        yield line("ERROR", status(410, "Expired", exc.message), first)
                        return
                    if ev is None:
                        if w.closed:
                            return
                        if bookmarks and time.monotonic() - last_sent >= _BOOKMARK_EVERY:
                            last_sent = time.monotonic()
                            yield line("BOOKMARK", {"kind": k.kind, "apiVersion": k.api_version,
                                                    "metadata": {"resourceVersion": w.resource_version}}, first)
                        continue
                    if match is not None and not match(ev.object):
                        continue
                    last_sent = time.monotonic()
                    yield line(ev.type, ev.object, first)
            finally:
                w.close()

        return StreamingResponse(stream(), media_type="application/json")

    async def _log(request: Request, t: resources.Target) -> Response:
        from localflow import api
        from localflow.workspace import resolve_workspace

        q = request.query_params
        ws = resolve_workspace(Path(db_path).parent) if db_path else None
        try:
            path = await run_in_threadpool(api.log_file, ws, t.name, q.get("container"), t.namespace or "default",
                                           previous=resources.parse_bool(q.get("previous")))
        except LocalflowError as exc:
            err = from_error(exc, kind="pods", name=t.name or "")
            if err.code == 422:  # several containers and none named: the API server's 400
                err = ApiError(400, "BadRequest", str(exc))
            raise err from None
        tail = int(q["tailLines"]) if q.get("tailLines") else None
        limit = int(q["limitBytes"]) if q.get("limitBytes") else None
        if not resources.parse_bool(q.get("follow")):
            text = path.read_text(errors="replace")
            if tail is not None:
                text = "".join(text.splitlines(keepends=True)[-tail:] if tail else [])
            data = text.encode()
            return PlainTextResponse(data[:limit] if limit else data)

        def follow():
            with open(path, "rb") as f:
                data = f.read()
                if tail is not None:
                    data = b"".join(data.splitlines(keepends=True)[-tail:] if tail else [])
                yield data
                while not stopping.is_set():
                    chunk = f.read()
                    if chunk:
                        yield chunk
                        continue
                    try:
                        pod = store.get("pods", t.name, t.namespace or "default")
                    except LocalflowError:
                        return
                    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        rest = f.read()
                        if rest:
                            yield rest
                        return
                    time.sleep(0.1)  # the log file has no change notification; a short poll bounds latency

        return StreamingResponse(follow(), media_type="text/plain")

    async def version(request: Request) -> Response:
        return _json(KUBERNETES_VERSION)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def openapi_index(request: Request) -> Response:
        return _json(openapi.index())

    async def openapi_doc(request: Request) -> Response:
        doc = openapi.document(request.path_params["rest"])
        if doc is None:
            return _error(ApiError(404, "NotFound", "no OpenAPI document at this path"))
        return _json(doc)

    async def openapi_v2(request: Request) -> Response:
        return _error(ApiError(404, "NotFound", "/openapi/v2 is not served: use /openapi/v3"))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes = [
        Route("/version", version), Route("/healthz", health), Route("/readyz", health), Route("/livez", health),
        Route("/openapi/v3", openapi_index), Route("/openapi/v3/{rest:path}", openapi_doc),
        Route("/openapi/v2", openapi_v2),
        Route("/api", api_root), Route("/apis", apis_root),
        Route("/api/v1", core, methods=methods), Route("/api/v1/{rest:path}", core, methods=methods),
        *kfp.routes(store, db_path),  # /apis/v2beta1/...: the KFP API, before it parses as group "v2beta1"
        Route("/apis/{group}", group),
        Route("/apis/{group}/{version}", named, methods=methods),
        Route("/apis/{group}/{version}/{rest:path}", named, methods=methods),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.stopping = stopping
    return app


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ApiServer:
    """Serve :func:`make_app` for the workspace database ``db_path`` on ``host:port`` in a daemon
    thread. ``start()`` returns the URL once the socket listens; ``stop()`` shuts it down. Raises
    :class:`localflow.errors.LocalflowError` when the port is taken (one line, naming it)."""

    def __init__(self, db_path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 0, logs_dir=None):
        self.db_path, self.host, self.port, self.logs_dir = db_path, host, port, logs_dir
        self._server = None
        self._thread: threading.Thread | None = None
        self._app = None
        self.url: str | None = None

    def start(self, timeout: float = 10.0) -> str:
        """Start serving; returns ``http://host:port``."""
        import uvicorn

        port = self.port or _free_port(self.host)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, port))
        except OSError as exc:
            sock.close()
            raise SpecError("--port", f"the Kubernetes API cannot listen on {self.host}:{port}: {exc.strerror}",
                            fix="choose another port (0 picks a free one) or stop what uses it") from None
        app = self._app = make_app(self.db_path, logs_dir=self.logs_dir)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="localflow-apiserver", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise LocalflowError(f"the Kubernetes API did not start on {self.host}:{port}")
            time.sleep(0.01)  # uvicorn sets `started` from its own thread; a bounded wait for it
        self.port = port
        self.url = f"http://{self.host}:{port}"
        return self.url

    def stop(self) -> None:
        """Stop serving and join the thread (open watches end)."""
        if self._app is not None:
            self._app.state.stopping.set()  # streams end within their 1 s poll, before uvicorn cancels them
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._app is not None:
            self._app.state.store.close()
        self._server = self._thread = self._app = None
