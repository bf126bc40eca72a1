"""A stored Pod manifest → the executor's :class:`~localflow.executors.base.PodSpec`, as kubelet
builds a container's runtime config (kubernetes ``pkg/kubelet/kubelet_pods.go``
``makeEnvironmentVariables``, ``pkg/kubelet/container/helpers.go`` ``ExpandContainerCommandAndArgs``).

``$(VAR)`` expansion follows kubernetes ``third_party/forked/golang/expansion/expand.go``; ``env``
``value``/``valueFrom`` (``fieldRef``, ``configMapKeyRef``, ``secretKeyRef``), volumes and mounts
(:mod:`localflow.volumes`), image mapping from ``localflow.yaml`` (an image's local interpreter, its
ENTRYPOINT/CMD when a container sets no command) and the per-instance log files
(:mod:`localflow.logfiles`). Every bad reference is a :class:`SpecError` naming its field path;
the kubelet ends such a Pod ``Failed/CreateContainerConfigError``.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import re

from localflow import logfiles
from localflow.config import ImageMap
from localflow.errors import LocalflowError, SpecError
from localflow.executors.base import ContainerSpec, Executor, ImageMapping, PodSpec, Resources
from localflow.quantity import parse_cpu, parse_memory
from localflow.volumes import check_mount_sources, container_mounts, resolve_volumes

__all__ = ["NODE_NAME", "NETWORK_ANNOTATION", "PYTHON_ANNOTATION", "WORKSPACE_LABEL", "expand_vars", "workspace_id",
           "Resolver", "next_instance"]

NODE_NAME = "localflow"
NETWORK_ANNOTATION = "localflow.dev/network"
#: Pod annotation: the interpreter python/python3 mean in its containers (a packages venv).
PYTHON_ANNOTATION = "localflow.dev/python"
WORKSPACE_LABEL = "localflow.dev/workspace"

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand_vars(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known names are replaced, ``$$`` escapes a ``$``, unknown
    references are left as they are (kubernetes ``third_party/forked/golang/expansion/expand.go``)."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _VAR_REF.sub(sub, value)


def workspace_id(workspace) -> str:
    """Short stable id of a workspace (12 hex digits of the SHA-1 of its root path): labels what the
    executors create for it (``localflow.dev/workspace``) and prefixes its networks, so two
    workspaces never share or clean up each other's containers."""
    return hashlib.sha1(str(workspace.root).encode()).hexdigest()[:12]


def next_instance(spec: PodSpec, logs_dir, instance: int) -> PodSpec:
    """``spec`` with every container logging to the files of instance ``instance`` (its restartCount)."""
    def moved(cs: list[ContainerSpec]) -> list[ContainerSpec]:
        return [dataclasses.replace(c, log_path=logfiles.prepare(logs_dir, spec.uid, c.name, instance)) for c in cs]

    return dataclasses.replace(spec, containers=moved(spec.containers), init_containers=moved(spec.init_containers))


class Resolver:
    """Turns stored Pods into :class:`PodSpec` for one node.

    ``store``: the object store (ConfigMaps, Secrets, PVCs); ``executor``: asked for an image's
    entrypoint when it can read images (docker); ``workspace``: pod directories and logs;
    ``images``: the image map of ``localflow.yaml``; ``host_paths``: allowed ``hostPath`` roots;
    ``addressing``: ``"loopback"`` (``status.podIP`` is 127.0.0.1) or ``"dns"`` (the Pod's hostname).
    """

    def __init__(self, store, executor: Executor, workspace, images: ImageMap | None, host_paths, addressing: str):
        self.store = store
        self.executor = executor
        self.workspace = workspace
        self.images = images or ImageMap()
        self.host_paths = tuple(host_paths)
        self.addressing = addressing
        self.workspace_id = workspace_id(workspace)

    def _image_entrypoint(self, c: dict, image: str, mapping, args, path: str):
        """``(command, args)`` of a container that sets no ``command``: the image's ENTRYPOINT (and
        its CMD when ``args`` is empty) from ``entrypoint:``/``args:`` in localflow.yaml, else from
        the local image when the executor can read it (docker). SpecError when neither knows it."""
        if mapping is not None and mapping.command is not None and (mapping.command or args or mapping.args):
            return mapping.command, args or mapping.args or []
        read = getattr(self.executor, "image_entrypoint", None)
        found = read(image, mapping) if read is not None else None
        if found is not None and (found[0] or found[1] or args):
            return found[0], args or found[1]
        if read is not None and found is None and args:
            return [], args  # the engine lacks the image: starting the container says so
        what = "sets no command, so the image's ENTRYPOINT would run" if args else "sets neither command nor args"
        raise SpecError(path, f"container {c.get('name')!r} {what}; localflow does not know it for image {image!r}",
                        fix=f"set command in the component, or add entrypoint: [...] for {image!r} under images: in "
                            "localflow.yaml, or run with --executor docker with the image present")

    def resolve(self, pod: dict) -> PodSpec:
        """The executor's :class:`PodSpec` of the stored Pod ``pod``: creates its pod directory, volumes
        and log files. Raises :class:`SpecError` naming the field path (a missing ConfigMap key, an
        unknown image entrypoint, a mount outside the allowed paths)."""
        meta = pod["metadata"]
        spec = pod.get("spec") or {}
        ns = meta.get("namespace", "default")
        uid = meta["uid"]
        pod_dir = str(self.workspace.pod_dir(uid))
        os.makedirs(pod_dir, exist_ok=True)
        volumes = resolve_volumes(spec, pod_dir, ns, store=self.store, workspace=self.workspace,
                                  host_paths=self.host_paths, path=f"Pod({meta['name']}).spec")
        logfiles.write_index(self.workspace.logs_dir, pod)
        path = f"Pod({meta['name']}).spec"

        def container(c: dict, kind: str, i: int) -> ContainerSpec:
            p = f"{path}.{kind}[{i}]"
            env = self._env(c, pod, f"{p}.env")
            image = c.get("image") or ""
            mapping = self.images.resolve(image)
            python = (meta.get("annotations") or {}).get(PYTHON_ANNOTATION)
            if python and kind == "containers":  # a packages venv (localflow/pipelines/packages.py)
                mapping = dataclasses.replace(mapping or ImageMapping(image=image), python=python)
            command, args = c.get("command"), c.get("args")
            if not command:
                command, args = self._image_entrypoint(c, image, mapping, args, f"{p}.command")
            command = [expand_vars(str(a), env) for a in (command or [])]
            args = [expand_vars(str(a), env) for a in (args or [])]
            mounts = container_mounts(c, volumes, env, p, expand_vars)
            check_mount_sources(mounts, self.workspace, self.host_paths, f"{p}.volumeMounts")
            res = c.get("resources") or {}
            req, lim = res.get("requests") or {}, res.get("limits") or {}
            resources = Resources(
                cpu_request=parse_cpu(req.get("cpu", lim.get("cpu", 0)), f"{p}.resources.requests.cpu"),
                memory_request=parse_memory(req.get("memory", lim.get("memory", 0)), f"{p}.resources.requests.memory"),
                cpu_limit=parse_cpu(lim["cpu"], f"{p}.resources.limits.cpu") if "cpu" in lim else None,
                memory_limit=parse_memory(lim["memory"], f"{p}.resources.limits.memory") if "memory" in lim else None)
            return ContainerSpec(
                name=c["name"], image=image, argv=command + args, env=env, working_dir=c.get("workingDir"),
                mounts=mounts, resources=resources,
                ports=[int(pp["containerPort"]) for pp in c.get("ports") or [] if "containerPort" in pp],
                log_path=logfiles.prepare(self.workspace.logs_dir, uid, c["name"]), mapping=mapping)

        labels = {**(meta.get("labels") or {}), WORKSPACE_LABEL: self.workspace_id}
        network = (meta.get("annotations") or {}).get(NETWORK_ANNOTATION)
        return PodSpec(
            uid=uid, namespace=ns, name=meta["name"],
            containers=[container(c, "containers", i) for i, c in enumerate(spec.get("containers") or [])],
            init_containers=[container(c, "initContainers", i) for i, c in enumerate(spec.get("initContainers") or [])],
            labels=labels, hostname=spec.get("hostname"), subdomain=spec.get("subdomain"),
            network=f"{self.workspace_id}-{network}" if network else None, workdir=pod_dir,
            workspace_root=str(self.workspace.root))

    def _env(self, c: dict, pod: dict, path: str) -> dict[str, str]:
        env: dict[str, str] = {}
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        for i, item in enumerate(c.get("env") or []):
            name = item.get("name")
            if "value" in item:
                env[name] = expand_vars(str(item["value"]), env)
            elif "valueFrom" in item:
                env[name] = self._value_from(item["valueFrom"], pod, ns, f"{path}[{i}].valueFrom")
            else:
                env[name] = ""
        return env

    def _value_from(self, ref: dict, pod: dict, ns: str, path: str) -> str:
        if "fieldRef" in ref:
            field = ref["fieldRef"].get("fieldPath", "")
            meta = pod["metadata"]
            # Under dns addressing (docker) the Pod's IP is assigned when its container starts, after
            # its env is fixed: its hostname, which resolves to that IP on the Pod's network, stands in.
            pod_ip = "127.0.0.1" if self.addressing == "loopback" else ((pod.get("spec") or {}).get("hostname") or meta["name"])
            values = {"metadata.name": meta["name"], "metadata.namespace": ns, "metadata.uid": meta["uid"],
                      "status.podIP": pod_ip, "status.hostIP": "127.0.0.1", "spec.nodeName": NODE_NAME}
            m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", field)
            if m:
                return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
            if field not in values:
                raise SpecError(f"{path}.fieldRef.fieldPath", f"unsupported field {field!r}",
                                fix=f"use one of {', '.join(values)}")
            return values[field]
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in ref:
                r = ref[key]
                try:
                    obj = self.store.get(kind, r["name"], ns)
                except LocalflowError:
                    if r.get("optional"):
                        return ""
                    raise SpecError(f"{path}.{key}", f"{kind} {r['name']!r} does not exist in namespace {ns!r}",
                                    fix=f"create it with `localflow apply -f {kind.lower()}.yaml` (or put it in the job's YAML)") from None
                data = dict(obj.get("data") or {})
                if kind == "Secret":
                    data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                    data.update(obj.get("stringData") or {})
                if r["key"] not in data:
                    if r.get("optional"):
                        return ""
                    raise SpecError(f"{path}.{key}.key", f"{kind} {r['name']!r} has no key {r['key']!r}")
                return str(data[r["key"]])
        raise SpecError(path, "unsupported valueFrom", fix="use fieldRef, configMapKeyRef or secretKeyRef")


