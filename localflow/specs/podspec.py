"""Shape and name checks of Pod templates, as the API server's Pod validation does them.

Every training job (each replica's ``template``), training runtime (each replicated job's Pod
template) and runtime patch carries a Pod template; the scheduler, the kubelet and the executors
read its fields and build host paths from some of them, so they are checked before anything runs.
Follows kubernetes ``pkg/apis/core/validation/validation.go`` (``ValidatePodSpec``,
``validateContainers``, ``ValidateVolumes``, ``validateVolumeMounts``, ``validateKeyToPath``,
``validateDownwardAPIVolumeFile``, ``validateContainerPorts``, ``ValidateResourceRequirements``),
for the fields localflow reads; a field that ``PodTemplateSpec``, ``PodSpec`` or ``Container`` does
not have (kubernetes ``staging/src/k8s.io/api/core/v1/types.go``) is refused as strict field
validation refuses it (``containers[0].argz: unknown field (did you mean 'args'?)``).

:func:`pod_template_errors` / :func:`pod_spec_errors` return ``[]`` or a list with the first
problem as a :class:`~localflow.errors.SpecError` whose path continues the caller's
(``TFJob.spec.tfReplicaSpecs.Worker.template.spec.containers[0].ports[0].containerPort``).
:func:`metadata_errors` checks ``metadata.name``/``namespace``/``labels``/``annotations``.
"""
from __future__ import annotations

from typing import Any, Callable

from localflow.errors import SpecError
from localflow.quantity import parse_quantity
from localflow.validation import (
    check_config_key, check_dns1123_label, check_known_fields, check_dns1123_subdomain, check_int32, check_list, check_local_path,
    check_mapping, check_port_name, check_port_number, check_string,
)

__all__ = ["pod_template_errors", "pod_spec_errors", "metadata_errors", "check_pod_spec", "check_metadata",
           "VOLUME_SOURCES"]

#: Volume sources localflow gives a Pod (others are refused by the scheduler with their own reason).
VOLUME_SOURCES = ("emptyDir", "configMap", "secret", "persistentVolumeClaim", "hostPath", "downwardAPI",
                  "projected", "ephemeral", "csi", "nfs", "image")
_PROTOCOLS = ("TCP", "UDP", "SCTP")
_RESTART = ("Always", "OnFailure", "Never")
_MODE_MAX = 0o777
# The fields of core/v1 PodTemplateSpec, PodSpec and Container (k8s.io/api core/v1 types.go, 1.31).
# A template that also says apiVersion/kind (upstream examples copy a whole Pod) is accepted: a CRD's
# structural schema prunes the two, it does not refuse them.
_TEMPLATE_FIELDS = frozenset({"metadata", "spec", "apiVersion", "kind"})
_POD_SPEC_FIELDS = frozenset({
    "volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
    "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector", "serviceAccountName",
    "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork", "hostPID", "hostIPC",
    "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname", "subdomain", "affinity",
    "schedulerName", "tolerations", "hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates",
    "runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead", "topologySpreadConstraints",
    "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates", "resourceClaims", "resources"})
_CONTAINER_FIELDS = frozenset({
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources", "resizePolicy",
    "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe", "readinessProbe", "startupProbe",
    "lifecycle", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext",
    "stdin", "stdinOnce", "tty"})


def _first(fn: Callable[[], Any]) -> list[SpecError]:
    try:
        fn()
    except SpecError as err:
        return [err]
    return []


def pod_template_errors(path: str, template: Any, *, require_containers: bool = True) -> list[SpecError]:
    """Problems of a PodTemplateSpec at ``path`` (``...Worker.template``): a mapping whose
    ``metadata`` and ``spec`` are mappings, then :func:`pod_spec_errors` of its spec."""
    return _first(lambda: check_pod_template(path, template, require_containers=require_containers))


def pod_spec_errors(path: str, spec: Any, *, require_containers: bool = True, patch: bool = False) -> list[SpecError]:
    """Problems of a PodSpec at ``path`` (``...template.spec``); see :func:`check_pod_spec`."""
    return _first(lambda: check_pod_spec(path, spec, require_containers=require_containers, patch=patch))


def metadata_errors(path: str, meta: Any, *, name: str | None = "subdomain") -> list[SpecError]:
    """Problems of an ObjectMeta at ``path``; see :func:`check_metadata`."""
    return _first(lambda: check_metadata(path, meta, name=name))


def check_pod_template(path: str, template: Any, *, require_containers: bool = True) -> None:
    """Raise the first problem of a PodTemplateSpec."""
    check_mapping(path, template, required=True, what="a Pod template (a mapping with metadata and spec)")
    check_known_fields(path, template, _TEMPLATE_FIELDS, "a Pod template")
    if template.get("metadata") is not None:
        check_metadata(f"{path}.metadata", template["metadata"], name=None)
    check_mapping(f"{path}.spec", template.get("spec"), required=True,
                  what="a Pod spec (a mapping with containers)")
    check_pod_spec(f"{path}.spec", template["spec"], require_containers=require_containers)


def _string_map(path: str, value: Any) -> None:
    for k, v in (check_mapping(path, value) or {}).items():
        check_string(f"{path}['{k}']", v, required=False)


def check_metadata(path: str, meta: Any, *, name: str | None = "subdomain") -> None:
    """Raise the first problem of an ObjectMeta: a mapping; ``name`` a DNS-1123 subdomain (or
    label, with ``name="label"``; not checked with ``None``); ``namespace`` a DNS-1123 label;
    ``labels``/``annotations`` mappings of strings."""
    check_mapping(path, meta, required=name is not None)
    if meta is None:
        return
    if name == "subdomain":
        check_dns1123_subdomain(f"{path}.name", meta.get("name"))
    elif name == "label":
        check_dns1123_label(f"{path}.name", meta.get("name"))
    elif meta.get("name") is not None:
        check_string(f"{path}.name", meta["name"])
    if meta.get("namespace") is not None:
        check_dns1123_label(f"{path}.namespace", meta["namespace"])
    _string_map(f"{path}.labels", meta.get("labels"))
    _string_map(f"{path}.annotations", meta.get("annotations"))


def check_pod_spec(path: str, spec: Any, *, require_containers: bool = True, patch: bool = False) -> None:
    """Raise the first problem of a PodSpec: volumes (names, one source each, keys and item paths),
    containers and initContainers (names unique DNS-1123 labels, strings where strings belong, env,
    ports, resources, volumeMounts naming a volume with a relative ``subPath``), and the Pod-level
    ``restartPolicy``, ``hostname``/``subdomain``, ``activeDeadlineSeconds``, ``nodeSelector``.
    ``patch``: a runtime patch's Pod spec (mounts may name volumes of the spec it patches)."""
    check_mapping(path, spec, required=True, what="a Pod spec (a mapping with containers)")
    check_known_fields(path, spec, _POD_SPEC_FIELDS, "a Pod spec")
    volumes = _check_volumes(f"{path}.volumes", spec.get("volumes"))
    names: set[str] = set()
    for key in ("initContainers", "containers"):
        items = check_list(f"{path}.{key}", spec.get(key), required=key == "containers" and require_containers)
        if key == "containers" and require_containers and not items:
            raise SpecError(f"{path}.containers", "Required value: must have at least one container",
                            fix="add a container with a name, an image and a command")
        for i, c in enumerate(items or []):
            _check_container(f"{path}.{key}[{i}]", c, None if patch else volumes, names)
    rp = spec.get("restartPolicy")
    if rp is not None and rp not in _RESTART:
        raise SpecError(f"{path}.restartPolicy", f"Unsupported value: {rp!r}", fix="use one of: " + ", ".join(_RESTART))
    for key in ("hostname", "subdomain"):
        check_dns1123_label(f"{path}.{key}", spec.get(key), required=False)
    check_int32(f"{path}.activeDeadlineSeconds", spec.get("activeDeadlineSeconds"), lo=1, hi=2**63 - 1)
    check_int32(f"{path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds"), lo=0, hi=2**63 - 1)
    _string_map(f"{path}.nodeSelector", spec.get("nodeSelector"))
    for key in ("serviceAccountName", "schedulerName", "priorityClassName"):
        check_string(f"{path}.{key}", spec.get(key), required=False)
    for i, s in enumerate(check_list(f"{path}.imagePullSecrets", spec.get("imagePullSecrets")) or []):
        check_mapping(f"{path}.imagePullSecrets[{i}]", s, required=True)


def _check_volumes(path: str, value: Any) -> set[str]:
    names: set[str] = set()
    for i, v in enumerate(check_list(path, value) or []):
        vp = f"{path}[{i}]"
        check_mapping(vp, v, required=True, what="a volume (a mapping with name and a source)")
        name = check_dns1123_label(f"{vp}.name", v.get("name"))
        if name in names:
            raise SpecError(f"{vp}.name", f"Duplicate value: {name!r}", fix="give every volume its own name")
        names.add(name)
        sources = [s for s in VOLUME_SOURCES if v.get(s) is not None]
        if len(sources) > 1:
            raise SpecError(vp, f"may not specify more than 1 volume type (got {', '.join(sources)})",
                            fix="keep one source per volume")
        for s in sources:
            if s != "emptyDir" or v[s] != {}:
                check_mapping(f"{vp}.{s}", v[s], what=f"a {s} volume source (a mapping)")
        src = v.get(sources[0]) if sources else None
        kind = sources[0] if sources else None
        if kind == "configMap":
            check_dns1123_subdomain(f"{vp}.configMap.name", src.get("name"))
            _check_key_paths(f"{vp}.configMap", src)
        elif kind == "secret":
            check_dns1123_subdomain(f"{vp}.secret.secretName", src.get("secretName"))
            _check_key_paths(f"{vp}.secret", src)
        elif kind == "persistentVolumeClaim":
            check_dns1123_subdomain(f"{vp}.persistentVolumeClaim.claimName", src.get("claimName"))
            if src.get("readOnly") is not None and not isinstance(src["readOnly"], bool):
                raise SpecError(f"{vp}.persistentVolumeClaim.readOnly", f"must be true or false (got {src['readOnly']!r})")
        elif kind == "hostPath":
            check_string(f"{vp}.hostPath.path", src.get("path"), what="an absolute host path")
            if "\x00" in src["path"]:
                raise SpecError(f"{vp}.hostPath.path", "must not contain a NUL character")
        elif kind == "emptyDir":
            if src and src.get("sizeLimit") is not None:
                parse_quantity(src["sizeLimit"], f"{vp}.emptyDir.sizeLimit")
            if src and src.get("medium") not in (None, "", "Memory"):
                raise SpecError(f"{vp}.emptyDir.medium", f"Unsupported value: {src.get('medium')!r}",
                                fix="use \"\" (disk) or Memory")
        elif kind == "downwardAPI":
            _check_downward_items(f"{vp}.downwardAPI.items", src.get("items"))
            _check_mode(f"{vp}.downwardAPI.defaultMode", src.get("defaultMode"))
        elif kind == "projected":
            _check_mode(f"{vp}.projected.defaultMode", src.get("defaultMode"))
            for j, ps in enumerate(check_list(f"{vp}.projected.sources", src.get("sources")) or []):
                pp = f"{vp}.projected.sources[{j}]"
                check_mapping(pp, ps, required=True)
                for sk in ("configMap", "secret"):
                    if ps.get(sk) is not None:
                        check_mapping(f"{pp}.{sk}", ps[sk], required=True)
                        check_dns1123_subdomain(f"{pp}.{sk}.name", ps[sk].get("name"))
                        _check_key_paths(f"{pp}.{sk}", ps[sk])
                if ps.get("downwardAPI") is not None:
                    check_mapping(f"{pp}.downwardAPI", ps["downwardAPI"], required=True)
                    _check_downward_items(f"{pp}.downwardAPI.items", ps["downwardAPI"].get("items"))
                if ps.get("serviceAccountToken") is not None:
                    check_mapping(f"{pp}.serviceAccountToken", ps["serviceAccountToken"], required=True)
                    check_local_path(f"{pp}.serviceAccountToken.path", ps["serviceAccountToken"].get("path"),
                                     required=True, non_reserved=True)
    return names


def _check_mode(path: str, value: Any) -> None:
    if value is not None:
        check_int32(path, value, lo=0, hi=_MODE_MAX)


def _check_key_paths(path: str, src: dict) -> None:
    """``validateKeyToPath``: each item has a key and a relative ``path`` without ``..``."""
    _check_mode(f"{path}.defaultMode", src.get("defaultMode"))
    if src.get("optional") is not None and not isinstance(src["optional"], bool):
        raise SpecError(f"{path}.optional", f"must be true or false (got {src['optional']!r})")
    for i, item in enumerate(check_list(f"{path}.items", src.get("items")) or []):
        ip = f"{path}.items[{i}]"
        check_mapping(ip, item, required=True, what="an item (a mapping with key and path)")
        check_config_key(f"{ip}.key", item.get("key"))
        check_local_path(f"{ip}.path", item.get("path"), required=True, non_reserved=True)
        _check_mode(f"{ip}.mode", item.get("mode"))


def _check_downward_items(path: str, items: Any) -> None:
    """``validateDownwardAPIVolumeFile``: a relative ``path`` and exactly one of fieldRef/resourceFieldRef."""
    for i, item in enumerate(check_list(path, items) or []):
        ip = f"{path}[{i}]"
        check_mapping(ip, item, required=True, what="an item (a mapping with path and fieldRef)")
        check_local_path(f"{ip}.path", item.get("path"), required=True, non_reserved=True)
        refs = [r for r in ("fieldRef", "resourceFieldRef") if item.get(r) is not None]
        if len(refs) != 1:
            raise SpecError(ip, "must specify exactly one of fieldRef and resourceFieldRef",
                            fix="e.g. fieldRef: {fieldPath: metadata.name}")
        ref = check_mapping(f"{ip}.{refs[0]}", item[refs[0]], required=True)
        key = "fieldPath" if refs[0] == "fieldRef" else "resource"
        check_string(f"{ip}.{refs[0]}.{key}", ref.get(key))
        _check_mode(f"{ip}.mode", item.get("mode"))


def _check_container(cp: str, c: Any, volumes: set[str] | None, names: set[str]) -> None:
    check_mapping(cp, c, required=True, what="a container (a mapping with name, image and command)")
    check_known_fields(cp, c, _CONTAINER_FIELDS, "a container")
    name = check_dns1123_label(f"{cp}.name", c.get("name"))
    if name in names:
        raise SpecError(f"{cp}.name", f"Duplicate value: {name!r}", fix="give every container its own name")
    names.add(name)
    for key in ("image", "workingDir", "imagePullPolicy"):
        check_string(f"{cp}.{key}", c.get(key), required=False)
    for key in ("command", "args"):
        for i, a in enumerate(check_list(f"{cp}.{key}", c.get(key)) or []):
            check_string(f"{cp}.{key}[{i}]", a, required=False)
            if a is None:
                raise SpecError(f"{cp}.{key}[{i}]", "must be a string (got null)", fix="quote the value, e.g. ''")
    for i, e in enumerate(check_list(f"{cp}.env", c.get("env")) or []):
        ep = f"{cp}.env[{i}]"
        check_mapping(ep, e, required=True, what="an env var (a mapping with name and value)")
        ename = check_string(f"{ep}.name", e.get("name"), what="a variable name")
        if "=" in ename or "\x00" in ename:
            raise SpecError(f"{ep}.name", f"Invalid value {ename!r}: must not contain '=' or NUL",
                            fix="use letters, digits and '_'")
        check_string(f"{ep}.value", e.get("value"), required=False)
        vf = check_mapping(f"{ep}.valueFrom", e.get("valueFrom"))
        for rk, rv in (vf or {}).items():
            ref = check_mapping(f"{ep}.valueFrom.{rk}", rv, required=True)
            for sk, sv in ref.items():
                if sk in ("name", "key", "fieldPath", "resource", "containerName", "apiVersion"):
                    check_string(f"{ep}.valueFrom.{rk}.{sk}", sv, required=False)
    for i, e in enumerate(check_list(f"{cp}.envFrom", c.get("envFrom")) or []):
        ep = f"{cp}.envFrom[{i}]"
        check_mapping(ep, e, required=True, what="a mapping with configMapRef or secretRef")
        check_string(f"{ep}.prefix", e.get("prefix"), required=False)
        for rk in ("configMapRef", "secretRef"):
            if e.get(rk) is not None:
                check_mapping(f"{ep}.{rk}", e[rk], required=True)
                check_dns1123_subdomain(f"{ep}.{rk}.name", e[rk].get("name"))
    port_names: set[str] = set()
    for i, p in enumerate(check_list(f"{cp}.ports", c.get("ports")) or []):
        pp = f"{cp}.ports[{i}]"
        check_mapping(pp, p, required=True, what="a port (a mapping with containerPort)")
        pname = check_port_name(f"{pp}.name", p.get("name"))
        if pname and pname in port_names:
            raise SpecError(f"{pp}.name", f"Duplicate value: {pname!r}", fix="give every port its own name")
        port_names.add(pname)
        check_port_number(f"{pp}.containerPort", p.get("containerPort"))
        check_port_number(f"{pp}.hostPort", p.get("hostPort"), required=False, allow_zero=True)
        if p.get("protocol") is not None and p["protocol"] not in _PROTOCOLS:
            raise SpecError(f"{pp}.protocol", f"Unsupported value: {p['protocol']!r}", fix="use TCP, UDP or SCTP")
    res = check_mapping(f"{cp}.resources", c.get("resources"))
    for section in ("limits", "requests"):
        for rname, q in (check_mapping(f"{cp}.resources.{section}", (res or {}).get(section)) or {}).items():
            parse_quantity(q, f"{cp}.resources.{section}['{rname}']")
    mounts: set[str] = set()
    for i, m in enumerate(check_list(f"{cp}.volumeMounts", c.get("volumeMounts")) or []):
        mp = f"{cp}.volumeMounts[{i}]"
        check_mapping(mp, m, required=True, what="a volume mount (a mapping with name and mountPath)")
        vname = check_string(f"{mp}.name", m.get("name"), what="the name of one of the Pod's volumes")
        if volumes is not None and vname not in volumes:
            raise SpecError(f"{mp}.name", f"Not found: {vname!r}",
                            fix=f"mount one of the Pod's volumes ({', '.join(sorted(volumes)) or 'none declared'})")
        mpath = check_string(f"{mp}.mountPath", m.get("mountPath"), what="an absolute path in the container")
        if "\x00" in mpath:
            raise SpecError(f"{mp}.mountPath", "must not contain a NUL character")
        if mpath in mounts:
            raise SpecError(f"{mp}.mountPath", f"Duplicate value: {mpath!r}", fix="mount each path once")
        mounts.add(mpath)
        if m.get("subPath") and m.get("subPathExpr"):
            raise SpecError(f"{mp}.subPathExpr", "subPathExpr and subPath are mutually exclusive",
                            fix="keep one of them")
        check_local_path(f"{mp}.subPath", m.get("subPath"))
        check_local_path(f"{mp}.subPathExpr", m.get("subPathExpr"))
        if m.get("readOnly") is not None and not isinstance(m["readOnly"], bool):
            raise SpecError(f"{mp}.readOnly", f"must be true or false (got {m['readOnly']!r})")
