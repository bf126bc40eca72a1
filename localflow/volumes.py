"""Pod volumes on this node: checked as the API server checks them, placed as kubelet places them.

:func:`validate_pod_volumes` runs when a Pod is submitted, before anything is created or runs, and
refuses (:class:`~localflow.errors.SpecError` naming the field) what kubernetes
``pkg/apis/core/validation/validation.go`` refuses — ``items[].path`` of ConfigMap, Secret,
downwardAPI and projected volumes and every ``volumeMounts[].subPath``/``subPathExpr`` must be
relative without a ``..`` element (``validateLocalDescendingPath``; item paths must not start with
``..`` either, ``validateLocalNonReservedPath``), ``hostPath.path`` must not step back
(``validatePathNoBacksteps``) — plus what this node refuses: a ``hostPath`` volume outside the
directories ``localflow.yaml`` allows (``hostPaths.allow``), a claim name that is not one directory
name.

:func:`resolve_volumes` then maps each volume to a host directory, always inside the workspace
(``pods/<uid>/volumes/<encoded name>`` for emptyDir, ConfigMap and Secret volumes, whose keys are
written as files; ``pvc/<claim>`` for claims) or inside an allowed host directory, and
:func:`container_mounts` turns a container's ``volumeMounts`` into executor
:class:`~localflow.executors.base.Mount` s, ``subPath`` and expanded ``subPathExpr`` joined safely
(:func:`localflow.safepath.safe_join`: no symbolic link out of the volume either, as kubelet's
``pkg/volume/util/subpath`` checks). :func:`check_mount_sources` is the last guard: every bind
source is in the workspace or an allowed host directory.
"""
from __future__ import annotations

import base64
import binascii
import os

from localflow.errors import LocalflowError, SpecError
from localflow.executors.base import Mount
from localflow.safepath import check_relative, encode_component, safe_join, within, write_file

__all__ = ["validate_pod_volumes", "validate_documents", "resolve_volumes", "container_mounts", "check_mount_sources", "HOST_PATH_FIX"]

HOST_PATH_FIX = ("allow the directory in localflow.yaml (hostPaths: {allow: [/data/shared]}), "
                 "or use an emptyDir or persistentVolumeClaim volume")
_HAS_KIND = "kind" in getattr(Mount, "__dataclass_fields__", {})
_ITEM_SOURCES = ("configMap", "secret", "downwardAPI")


def _mount(host: str, container_path: str, read_only: bool, kind: str) -> Mount:
    # Mount.kind ("volume" | "hostPath" | "image") tells executors which sources may lie outside
    # the workspace; older executors.base has no such field
    if _HAS_KIND:
        return Mount(host, container_path, read_only, kind=kind)  # type: ignore[call-arg]
    return Mount(host, container_path, read_only)


def _items(ref: dict, path: str) -> None:
    for j, it in enumerate((ref or {}).get("items") or []):
        p = f"{path}.items[{j}].path"
        if not isinstance(it, dict):
            raise SpecError(f"{path}.items[{j}]", "must be a mapping with key and path")
        value = it.get("path")
        if not check_relative(value, p):
            raise SpecError(p, f"{value!r} names the volume itself, not a file in it", fix="name a file")
        if value.startswith(".."):  # validateLocalNonReservedPath: kubelet's own ..data entries
            raise SpecError(p, f"the path {value!r} must not start with '..'", fix="rename the file")


def host_path_source(src, field: str, workspace, host_paths) -> tuple[str, str]:
    """The resolved host directory of a ``hostPath`` volume source and its mount kind.

    ``field`` names the source (``Pod(x).spec.volumes[0].hostPath``). The workspace's own
    ``artifacts/`` directory (pipeline tasks mount it to see artifact URIs) is kind ``"volume"``;
    a path inside one of ``host_paths`` (resolved directories from ``hostPaths.allow``, symbolic
    links of the path resolved first) is kind ``"hostPath"``. Anything else, a relative path or one
    with a ``..`` element is a SpecError at ``<field>.path``.
    """
    p = f"{field}.path"
    path = (src or {}).get("path") if isinstance(src, dict) else None
    if not isinstance(path, str) or not path or "\0" in path:
        raise SpecError(p, f"must be a non-empty host path (got {path!r})")
    if not os.path.isabs(path):
        raise SpecError(p, f"{path!r} must be an absolute path")
    if ".." in path.split("/"):
        raise SpecError(p, f"{path!r} must not contain '..'")
    real = os.path.realpath(path)
    if within(real, workspace.artifacts_dir):
        return real, "volume"
    if not host_paths:
        raise SpecError(p, f"hostPath volumes are not allowed on this machine ({path!r})", fix=HOST_PATH_FIX)
    if not any(within(real, d) for d in host_paths):
        how = f" (it resolves to {real})" if real != os.path.normpath(path) else ""
        raise SpecError(p, f"{path!r}{how} is outside the allowed host directories {', '.join(host_paths)}",
                        fix=HOST_PATH_FIX)
    return real, "hostPath"


def validate_pod_volumes(pod: dict, path: str, workspace, host_paths=()) -> None:
    """Refuse a Pod whose volumes or mounts could reach outside the workspace (see the module doc).

    ``pod``: the manifest; ``path``: its spec's field path (``Pod(x).spec``); ``host_paths``:
    allowed host directories. Nothing is created. Raises :class:`SpecError` naming the field.
    """
    spec = pod.get("spec") or {}
    for i, v in enumerate(spec.get("volumes") or []):
        p = f"{path}.volumes[{i}]"
        if not isinstance(v, dict):
            raise SpecError(p, "must be a mapping with a name and a volume source")
        if not isinstance(v.get("name"), str) or not v.get("name"):
            raise SpecError(f"{p}.name", "required: a volume needs a name")
        if "hostPath" in v:
            host_path_source(v["hostPath"], f"{p}.hostPath", workspace, host_paths)
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]
            workspace.pvc_dir(claim.get("claimName") if isinstance(claim, dict) else None,
                              f"{p}.persistentVolumeClaim.claimName")
        for key in _ITEM_SOURCES:
            if isinstance(v.get(key), dict):
                _items(v[key], f"{p}.{key}")
        if isinstance(v.get("projected"), dict):
            for k, s in enumerate(v["projected"].get("sources") or []):
                for key in _ITEM_SOURCES:
                    if isinstance((s or {}).get(key), dict):
                        _items(s[key], f"{p}.projected.sources[{k}].{key}")
    for kind in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(kind) or []):
            for j, vm in enumerate((c or {}).get("volumeMounts") or []):
                p = f"{path}.{kind}[{i}].volumeMounts[{j}]"
                if not isinstance(vm, dict):
                    raise SpecError(p, "must be a mapping with name and mountPath")
                sub, expr = vm.get("subPath"), vm.get("subPathExpr")
                if sub and expr:
                    raise SpecError(f"{p}.subPathExpr", "subPathExpr and subPath are mutually exclusive",
                                    fix="set one of them")
                if sub:
                    check_relative(sub, f"{p}.subPath", what="subPath")
                if expr:
                    check_relative(expr, f"{p}.subPathExpr", what="subPathExpr")


def validate_documents(docs: list, workspace, host_paths=(), max_depth: int = 32) -> None:
    """:func:`validate_pod_volumes` for every Pod template in a file's documents (training job
    replica templates, TrainingRuntime and JobSet templates, bare Pods), before anything is
    stored or runs. A Pod template is any mapping with a ``containers`` list; its field path
    starts with the document's kind (``TFJob.spec.tfReplicaSpecs.Worker.template.spec``). The walk
    stops ``max_depth`` levels down (a deeper document is some other check's business)."""

    def walk(node, path: str, depth: int) -> None:
        if depth > max_depth:
            return
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                validate_pod_volumes({"spec": node}, path, workspace, host_paths)
            for k, v in node.items():
                if isinstance(v, (dict, list)):
                    walk(v, f"{path}.{k}", depth + 1)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    walk(v, f"{path}[{i}]", depth + 1)

    for d in docs:
        if isinstance(d, dict) and isinstance(d.get("spec"), dict):
            walk(d["spec"], f"{d.get('kind') or 'spec'}.spec", 0)


def resolve_volumes(spec: dict, pod_dir: str, namespace: str, *, store, workspace, host_paths=(),
                    path: str = "Pod.spec") -> dict[str, tuple[str, str]]:
    """Host directory and mount kind of each volume of a Pod ``spec``: ``{name: (dir, kind)}``.

    Directories are created; ConfigMap and Secret keys are written as files (``items`` chosen,
    ``defaultMode``/``mode`` applied; Secret values decoded from base64 and written as bytes).
    Raises :class:`SpecError` (at ``path``) for an unknown volume source, a missing ConfigMap or
    Secret that is not optional, a missing key, or a path leaving its volume.
    """
    out = {}
    for i, v in enumerate(spec.get("volumes") or []):
        name = v.get("name")
        p = f"{path}.volumes[{i}]"
        kind = "volume"
        if "emptyDir" in v:
            host = safe_join(pod_dir, "volumes", encode_component(name), field=f"{p}.name")
        elif "hostPath" in v:
            host, kind = host_path_source(v["hostPath"], f"{p}.hostPath", workspace, host_paths)
            _prepare_host_path(host, (v["hostPath"] or {}).get("type") or "", f"{p}.hostPath")
            out[name] = (str(host), kind)
            continue
        elif "persistentVolumeClaim" in v:
            host = workspace.pvc_dir(v["persistentVolumeClaim"].get("claimName"), f"{p}.persistentVolumeClaim.claimName")
        elif "configMap" in v or "secret" in v:
            host = safe_join(pod_dir, "volumes", encode_component(name), field=f"{p}.name")
            _project_keys(v, str(host), namespace, p, store)
        else:
            raise SpecError(p, f"volume {name!r} has a source localflow cannot map",
                            fix="use emptyDir, hostPath, persistentVolumeClaim, configMap or secret")
        os.makedirs(host, exist_ok=True)
        out[name] = (str(host), kind)
    return out


def _prepare_host_path(host: str, type_: str, field: str) -> None:
    """kubelet's hostPath type checks (``pkg/volume/hostpath/host_path.go``), inside an allowed dir."""
    if type_ in ("", "DirectoryOrCreate"):
        os.makedirs(host, exist_ok=True)
    elif type_ == "FileOrCreate":
        if not os.path.exists(host):
            open(host, "a").close()
    elif type_ == "Directory" and not os.path.isdir(host):
        raise SpecError(f"{field}.type", f"{host} is not a directory", fix="create it or use DirectoryOrCreate")
    elif type_ == "File" and not os.path.isfile(host):
        raise SpecError(f"{field}.type", f"{host} is not a file", fix="create it or use FileOrCreate")
    elif not os.path.exists(host):
        raise SpecError(f"{field}.type", f"{host} does not exist")


def _project_keys(v: dict, host: str, ns: str, path: str, store) -> None:
    kind, key = ("ConfigMap", "configMap") if "configMap" in v else ("Secret", "secret")
    ref = v[key] or {}
    name = ref.get("name") or ref.get("secretName")
    try:
        obj = store.get(kind, name, ns)
    except LocalflowError:
        if ref.get("optional"):
            return
        raise SpecError(f"{path}.{key}", f"{kind} {name!r} does not exist in namespace {ns!r}",
                        fix=f"create it with `localflow apply -f {kind.lower()}.yaml` (or put it in the job's YAML) "
                            "or mark the volume optional") from None
    os.makedirs(host, exist_ok=True)
    data: dict = {}
    for k, val in (obj.get("data") or {}).items():
        if kind == "Secret":
            try:
                data[k] = base64.b64decode(str(val), validate=True)
            except (binascii.Error, ValueError):
                raise SpecError(f"Secret({name}).data['{k}']", "is not base64",
                                fix="encode the value with base64, or put it under stringData") from None
        else:
            data[k] = str(val)
    if kind == "Secret":
        data.update({k: str(val) for k, val in (obj.get("stringData") or {}).items()})
    items = ref.get("items")
    default_mode = ref.get("defaultMode", 0o644)
    if items:
        chosen = []
        for j, it in enumerate(items):
            if it.get("key") not in data:
                if ref.get("optional"):
                    continue
                raise SpecError(f"{path}.{key}.items[{j}].key", f"{kind} {name!r} has no key {it.get('key')!r}")
            chosen.append((it["path"], f"{path}.{key}.items[{j}].path", data[it["key"]], it.get("mode", default_mode)))
    else:
        chosen = [(k, f"{kind}({name}).data['{k}']", val, default_mode) for k, val in data.items()]
    for rel, field, val, mode in chosen:
        if not check_relative(rel, field, what="file name"):
            raise SpecError(field, f"{rel!r} names the volume itself, not a file in it", fix="name a file")
        target = safe_join(host, rel, field=field)
        os.makedirs(target.parent, exist_ok=True)
        safe_join(host, os.path.relpath(target.parent, host), field=field)  # no link planted meanwhile
        try:
            write_file(target, val, int(mode))
        except OSError as e:
            raise SpecError(field, f"cannot write {rel!r} into the volume: {e.strerror}") from None


def container_mounts(c: dict, volumes: dict[str, tuple[str, str]], env: dict[str, str], path: str,
                     expand) -> list[Mount]:
    """A container's ``volumeMounts`` as executor mounts. ``volumes``: from :func:`resolve_volumes`;
    ``env``: the container's resolved env, for ``subPathExpr`` (``expand(value, env)`` is the
    ``$(VAR)`` expansion); ``path``: the container's field path. SpecError for a mount of an
    unknown volume or a sub path leaving its volume (also after expansion, as kubelet re-checks)."""
    mounts = []
    for j, vm in enumerate(c.get("volumeMounts") or []):
        p = f"{path}.volumeMounts[{j}]"
        entry = volumes.get(vm.get("name"))
        if entry is None:
            raise SpecError(f"{p}.name", f"no volume named {vm.get('name')!r}",
                            fix=f"add it to the Pod's volumes (known: {', '.join(sorted(volumes)) or 'none'})")
        host, kind = entry
        if not vm.get("mountPath"):
            raise SpecError(f"{p}.mountPath", "required: where the volume appears in the container")
        sub = None
        if vm.get("subPath"):
            sub = safe_join(host, vm["subPath"], field=f"{p}.subPath", what="subPath")
        elif vm.get("subPathExpr"):
            sub = safe_join(host, expand(str(vm["subPathExpr"]), env), field=f"{p}.subPathExpr",
                            what="subPathExpr (expanded)")
        if sub is not None:
            if not os.path.lexists(sub):  # kubelet creates a missing sub path as a directory
                os.makedirs(sub, exist_ok=True)
            host = str(sub)
        mounts.append(_mount(host, vm["mountPath"], bool(vm.get("readOnly")), kind))
    return mounts


def check_mount_sources(mounts: list[Mount], workspace, host_paths, path: str) -> None:
    """Every bind source must be inside the workspace (kind ``volume``) or an allowed host directory
    (kind ``hostPath``): the last guard before an executor (``--executor docker``) bind-mounts it.
    SpecError at ``path`` otherwise."""
    for m in mounts:
        ok = within(m.host_path, workspace.root) or any(within(m.host_path, d) for d in host_paths)
        if not ok:
            raise SpecError(path, f"a volume of this Pod maps to {m.host_path}, outside the workspace",
                            fix=HOST_PATH_FIX)
