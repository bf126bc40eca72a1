"""The launcher's side of one executor task: what runs around the user's container.

Functions with explicit inputs and no controller state, called by the pipeline run controller
(:mod:`localflow.controllers.pipelinerun`, the driver's side). They follow kubeflow/pipelines
``backend/src/v2/component/launcher_v2.go`` (output folders, output collection, custom artifact
paths), ``backend/src/v2/component/importer_launcher.go`` (importer URI and metadata) and the
parts of ``backend/src/v2/driver/driver.go`` that shape the task's container (the ExecutorInput it
hands to the launcher, the container's resources):

- :func:`prepare_task_root` / :func:`executor_input`: the attempt's directory and its ExecutorInput;
- :func:`local_lightweight` / :func:`main_container` / :func:`resources` / :func:`task_pod`: the
  task's Pod manifest (its name, labels and annotations come from the controller);
- :func:`collect_outputs`: output parameters and artifacts as data (the controller records them);
- :func:`importer_source`: an importer's URI, metadata and type;
- :func:`log_tail` / :func:`pod_failure`: the message a failed task reports;
- :func:`copy_content`, :func:`public_artifact`, :func:`k8s_name`, :func:`random_suffix`: helpers.

Errors: :class:`~localflow.errors.SpecError` for bad IR or bad outputs,
:class:`~localflow.errors.ExecutorError` when content cannot be copied.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil

from localflow.errors import ExecutorError, SpecError
from localflow.pipelines import bootstrap, placeholders
from localflow.pipelines.platform import PodPatch
from localflow.pipelines.values import cast_parameter, read_output_parameter
from localflow.safepath import encode_component, safe_join, within
from localflow.training.gpus import detect_gpus

__all__ = ["prepare_task_root", "task_dir_parts", "executor_input", "local_lightweight", "main_container", "task_pod", "resources",
           "mount_directories",
           "collect_outputs", "importer_source", "log_tail", "pod_failure", "copy_content", "public_artifact",
           "k8s_name", "random_suffix"]


#: Entries of an attempt's directory that are not artifacts (an artifact of that name is encoded).
_TASK_ROOT_ENTRIES = ("outputs", "executor_output.json")


def task_dir_parts(task_dirs) -> list[str]:
    """The directory names of a task inside its run: each element of ``task_dirs`` (the DAG task
    keys and loop indices from the root to the task, e.g. ``("for-loop-2", 0, "square")``) encoded
    with :func:`localflow.safepath.encode_component`, so any task name stays one directory."""
    return [encode_component(str(d)) for d in task_dirs]


def prepare_task_root(run_root: str, task_dirs, attempt: int) -> str:
    """Create and return the directory of one attempt of a task:
    ``<run_root>/<encoded task keys and loop indices>/attempt-<n>``, with ``outputs/parameters``
    inside it (the launcher's ``prepareOutputFolders`` in ``launcher_v2.go``).
    ``("for-loop-2", 0, "square")`` attempt 1 -> ``<run_root>/for-loop-2/0/square/attempt-1``; a task
    named ``a.b`` is the directory ``a.b``, one named ``../x`` the directory ``%2E.%2Fx``.
    Raises :class:`SpecError` when a symbolic link would lead the directory out of ``run_root``."""
    if isinstance(task_dirs, str):
        task_dirs = [task_dirs]
    task_root = safe_join(run_root, *task_dir_parts(task_dirs), f"attempt-{int(attempt)}", field="task path")
    os.makedirs(task_root / "outputs" / "parameters", exist_ok=True)
    safe_join(run_root, os.path.relpath(task_root / "outputs" / "parameters", run_root), field="task path")
    return str(task_root)


def executor_input(params: dict, artifacts: dict, component: dict, task_root: str) -> dict:
    """The ExecutorInput JSON of one attempt (``pipeline_spec.proto`` ``ExecutorInput``).

    ``params``: resolved input parameter values ``{name: value}``; ``artifacts``: input artifacts
    ``{name: [RuntimeArtifact dict]}`` (an ``id`` key, our metadata id, is dropped); ``component``:
    the task's ComponentSpec (its ``outputDefinitions`` give the outputs); ``task_root``: the
    attempt's directory. Output parameter files are ``<task_root>/outputs/parameters/<name>``, output
    artifact URIs ``<task_root>/<name>`` and the executor output file
    ``<task_root>/executor_output.json``, as the driver provisions them
    (``backend/src/v2/driver/driver.go`` ``provisionOutputs``); names are encoded
    (:func:`localflow.safepath.encode_component`), so every file stays in ``task_root``.
    """
    outs = component.get("outputDefinitions") or {}
    out_params = {k: {"outputFile": os.path.join(task_root, "outputs", "parameters", encode_component(k))}
                  for k in outs.get("parameters") or {}}
    out_arts = {}
    for k, d in (outs.get("artifacts") or {}).items():
        uri = os.path.join(task_root, encode_component(k, reserved=_TASK_ROOT_ENTRIES))
        out_arts[k] = {"artifacts": [{"name": k, "type": d.get("artifactType") or {"schemaTitle": "system.Artifact"},
                                      "uri": uri, "metadata": dict(d.get("metadata") or {})}]}
    return {
        "inputs": {"parameterValues": dict(params),
                   "artifacts": {k: {"artifacts": [public_artifact(a) for a in v]} for k, v in artifacts.items()}},
        "outputs": {"parameters": out_params, "artifacts": out_arts,
                    "outputFile": os.path.join(task_root, "executor_output.json")},
    }


def local_lightweight(container: dict, ctx: placeholders.PlaceholderContext, path: str, image: str,
                      images, default_python: str | None, *, packages=None, task: str = "") -> list[str] | None:
    """A lightweight component's argv without its pip bootstrap and shell, run by the interpreter
    its image maps to; ExecutorError lists requirements that interpreter cannot import.

    ``images``: the :class:`~localflow.config.ImageMap` (consulted only for a lightweight
    component); ``default_python``: the executor's interpreter when the image maps to none.
    ``packages``: a :class:`~localflow.pipelines.packages.PackageInstaller`; when given and
    enabled, the requirements (``packages_to_install``) that interpreter lacks are installed into
    its cached venv, whose python then runs the task (``argv[0]``); ``task`` names the task in its
    progress line. Returns None when the command is not a lightweight component's bootstrap
    (:func:`localflow.pipelines.bootstrap.parse_lightweight`).
    """
    args = placeholders.resolve_command(container.get("args") or [], ctx, f"{path}.args")
    lw = bootstrap.parse_lightweight(container.get("command") or [], args)
    if lw is None:
        return None
    mapping = images.resolve(image)
    if lw.form == "containerized" and not (mapping and (mapping.paths or mapping.workdir)):
        # kfp.dsl.executor_main finds the module through kfp_config.ini in the image's workdir
        raise ExecutorError(
            f"image {image!r} carries the module of function {lw.function_name} (a containerized Python "
            "component), which is not on this machine",
            fix=f"map the image's paths in localflow.yaml (images: {{{image!r}: {{workdir: ..., paths: ...}}}}), "
                "or run with --executor docker with the image present, or build it (`kfp component build`)")
    python = (mapping.python if mapping and mapping.python else None) or default_python
    if packages is not None and packages.enabled and lw.requirements:
        report = bootstrap.requirement_report(tuple(bootstrap.relax_kfp_pin(r) for r in lw.requirements), python)
        if report:
            python = packages.python_for(python, [spec for spec, _, _ in report], index_urls=lw.index_urls,
                                         trusted_hosts=lw.trusted_hosts, task=task,
                                         described=bootstrap.describe_report(report))
    return bootstrap.local_argv(lw, python, image=image)


def main_container(container: dict, argv: list[str], ctx: placeholders.PlaceholderContext, path: str) -> dict:
    """The Pod's ``main`` container for a PipelineContainerSpec: ``{name, image, command, args, env,
    resources}``. ``argv``: the resolved command line (command + args); ``env[].value`` and the
    resource fields may hold input-parameter placeholders, resolved with ``ctx``; ``path``: the
    spec path of the container (``deploymentSpec.executors['exec-x'].container``) for errors. A
    container that sets no ``command`` keeps none (its argv is all ``args``). The caller adds ``volumeMounts`` and the platform config's env."""
    env = [{"name": e["name"], "value": placeholders.resolve_string(str(e.get("value", "")), ctx, f"{path}.env")}
           for e in container.get("env") or []]
    res = resources(container.get("resources") or {}, ctx, f"{path}.resources")
    main = {"name": "main", "image": container.get("image", ""), "command": argv[:1], "args": argv[1:],
            "env": env, "resources": res}
    if not container.get("command"):
        # args only: the image's ENTRYPOINT runs them (resolved by the kubelet from the image map)
        main.pop("command")
        main["args"] = argv
    return main


def task_pod(main: dict, *, name: str, namespace: str, labels: dict, annotations: dict, owner: dict,
             artifacts_root: str, patch: PodPatch | None = None) -> dict:
    """The task's v1 Pod manifest around its ``main`` container (:func:`main_container`).

    ``labels``/``annotations``/``owner`` (one ownerReference) come from the controller; the
    workspace's artifact directory ``artifacts_root`` is mounted at the same path (``hostPath``) so
    artifact URIs are paths inside the container too; ``patch`` is the kfp-kubernetes platform
    config (:func:`localflow.pipelines.platform.apply_executor_config`): its env, volumes, mounts,
    labels, annotations and Pod spec fields are added. ``restartPolicy: Never``: retries are the
    driver's. ``main``, ``labels`` and ``annotations`` are updated in place.
    """
    volumes = [{"name": "localflow-artifacts", "hostPath": {"path": artifacts_root}}]
    mounts = [{"name": "localflow-artifacts", "mountPath": artifacts_root}]
    spec: dict = {"restartPolicy": "Never"}
    if patch is not None:
        main["env"].extend(patch.env)
        volumes.extend(patch.volumes)
        mounts.extend(patch.mounts)
        labels.update(patch.labels)
        annotations.update(patch.annotations)
        spec.update(patch.spec)
    main["volumeMounts"] = mounts
    spec.update({"containers": [main], "volumes": volumes})
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "annotations": annotations,
                         "ownerReferences": [owner]},
            "spec": spec}


def mount_directories(pod: dict, directories: list[str]) -> None:
    """Mount each host directory into the Pod's ``main`` container at the same path (``hostPath``),
    as the artifact root is: the directories ``storage:`` maps remote URIs to, for containers."""
    spec = pod["spec"]
    mounts = spec["containers"][0].setdefault("volumeMounts", [])
    taken = {m["mountPath"] for m in mounts}
    for i, d in enumerate(directories):
        if d in taken:
            continue
        spec.setdefault("volumes", []).append({"name": f"localflow-storage-{i}", "hostPath": {"path": d}})
        mounts.append({"name": f"localflow-storage-{i}", "mountPath": d})


def resources(res: dict, ctx: placeholders.PlaceholderContext, path: str) -> dict:
    """A container's Kubernetes ``resources`` (``{requests: {cpu, memory}, limits: {...}}``, empty
    sections left out) from the IR's ``PipelineContainerSpec.ResourceSpec``, as the driver sets them
    (``backend/src/v2/driver/driver.go`` ``initPodSpecPatch``): the string fields
    (``resourceCpuLimit``, ``resourceMemoryRequest``, ...; placeholders resolved) win over their
    deprecated numeric twins (``cpuLimit``; memory in G). ``accelerator.resourceCount`` must be a whole
    number no larger than the GPUs this machine has (:func:`localflow.training.gpus.detect_gpus`),
    else SpecError; accelerators are not added to the resources."""
    out: dict = {"requests": {}, "limits": {}}
    for field_name, (kind, key) in {"resourceCpuRequest": ("requests", "cpu"), "resourceCpuLimit": ("limits", "cpu"),
                                    "resourceMemoryRequest": ("requests", "memory"),
                                    "resourceMemoryLimit": ("limits", "memory")}.items():
        if res.get(field_name):
            out[kind][key] = placeholders.resolve_string(str(res[field_name]), ctx, f"{path}.{field_name}")
    for field_name, (kind, key, unit) in {"cpuRequest": ("requests", "cpu", ""), "cpuLimit": ("limits", "cpu", ""),
                                          "memoryRequest": ("requests", "memory", "G"),
                                          "memoryLimit": ("limits", "memory", "G")}.items():
        if res.get(field_name) and key not in out[kind]:
            out[kind][key] = f"{res[field_name]}{unit}"
    acc = res.get("accelerator") or {}
    count = placeholders.resolve_string(str(acc.get("resourceCount") or acc.get("count") or ""), ctx,
                                        f"{path}.accelerator.resourceCount").strip()
    kind = placeholders.resolve_string(str(acc.get("resourceType") or acc.get("type") or "accelerator"), ctx,
                                       f"{path}.accelerator.resourceType")
    if count not in ("0", "0.0", ""):
        try:
            wanted = int(float(count))
        except ValueError:
            raise SpecError(f"{path}.accelerator.resourceCount", f"must be a whole number (got {count!r})") from None
        have = detect_gpus()
        if wanted > have:
            raise SpecError(f"{path}.accelerator", f"asks for {count} {kind} and this machine has {have} GPUs",
                            fix="remove set_accelerator_limit/set_gpu_limit for local runs, "
                                "or set LOCALFLOW_GPUS when detection misses a GPU")
    return {k: v for k, v in out.items() if v}


def collect_outputs(executor_input: dict, component: dict, where: str, root: str | None = None) -> tuple[dict, dict]:
    """launcher_v2.go output rules: executor output JSON, then parameter files, then artifacts.

    ``executor_input``: the attempt's ExecutorInput (:func:`executor_input`); ``component``: its
    ComponentSpec; ``where``: the prefix of error paths (``task for-loop-2[0].square``). Returns
    ``(parameters, artifacts)``: ``{name: value}`` cast to the declared types, and
    ``{name: [RuntimeArtifact dict]}`` (the pre-assigned artifact with the executor output's ``uri``
    and ``metadata`` merged in; content left at a ``customPath`` is copied to the URI). Nothing is
    recorded: the caller records the artifacts in metadata. Raises SpecError for an executor output
    that is not JSON or a declared parameter that was not written, ExecutorError when custom-path
    content cannot be copied or would be copied outside ``root`` (the run's directory; default:
    the attempt's directory).
    """
    ei = executor_input
    out_file = ei["outputs"]["outputFile"]
    path = where
    executor_output: dict = {}
    if os.path.exists(out_file):
        try:
            with open(out_file) as f:
                executor_output = json.load(f) or {}
        except ValueError as e:
            raise SpecError(f"{path}: {out_file}", f"executor output is not valid JSON: {e}") from None
    defs = component.get("outputDefinitions") or {}
    params = {}
    given = executor_output.get("parameterValues") or {}
    for k, d in (defs.get("parameters") or {}).items():
        ptype = d.get("parameterType", "STRING")
        p = f"{path}: output parameter '{k}'"
        if k in given:
            params[k] = cast_parameter(given[k], ptype, p)
            continue
        fpath = ei["outputs"]["parameters"][k]["outputFile"]
        if not os.path.exists(fpath):
            raise SpecError(p, f"was not written (expected the file {fpath} or parameterValues['{k}'] in {out_file})",
                            fix="write the value to the output file the command was given")
        with open(fpath) as f:
            params[k] = read_output_parameter(f.read(), ptype, p)
    arts = {}
    written = executor_output.get("artifacts") or {}
    for k, d in (defs.get("artifacts") or {}).items():
        base = ei["outputs"]["artifacts"][k]["artifacts"][0]
        entries = (written.get(k) or {}).get("artifacts") or []
        result = []
        for e in entries or [{}]:
            a = dict(base)
            a["metadata"] = dict(base.get("metadata") or {})
            if e.get("uri"):
                a["uri"] = e["uri"]
            a["metadata"].update(e.get("metadata") or {})
            custom = e.get("customPath") or e.get("custom_path")
            if custom:
                # the launcher uploads what the task left at its custom path to the artifact's URI
                # (launcher_v2.go retrieveArtifactPath); consumers then read it from the URI
                copy_content(custom, placeholders.uri_to_path(a["uri"]), f"{path}: output artifact '{k}'",
                             root=root or os.path.dirname(out_file))
            if e.get("name") and len(entries) > 1:
                a["name"] = e["name"]
            result.append(a)
        arts[k] = result
    return params, arts


def importer_source(imp: dict, params: dict, ctx: placeholders.PlaceholderContext, path: str) -> tuple[str, dict, dict]:
    """An importer's ``(uri, metadata, typeSchema)`` (``backend/src/v2/component/importer_launcher.go``).

    ``imp``: the executor's ``importer`` spec; ``params``: the task's resolved input parameters
    (``artifactUri.runtimeParameter`` names one); ``ctx``: placeholders for ``metadata``; ``path``:
    the spec path of the importer for errors. Raises SpecError when the URI has no value or is not a
    non-empty string.
    """
    src = imp.get("artifactUri") or {}
    if "constant" in src:
        uri = src["constant"]
    else:
        name = src.get("runtimeParameter")
        if name not in params:
            raise SpecError(f"{path}.artifactUri.runtimeParameter", f"input {name!r} has no value")
        uri = params[name]
    if not isinstance(uri, str) or not uri:
        raise SpecError(f"{path}.artifactUri", f"must be a non-empty string (got {uri!r})")
    meta = placeholders.resolve_json_placeholders(imp.get("metadata") or {}, ctx, f"{path}.metadata")
    type_schema = imp.get("typeSchema") or {"schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}
    return uri, meta, type_schema


def log_tail(logs_dir: str, pod: dict) -> str:
    """The last non-blank line of a Pod's ``main`` container log (:func:`localflow.logfiles.pod_log`,
    its last 4 KiB read), or ``""`` when the log is missing or ends with a line of punctuation only
    (the closing brace of the executor input kfp prints)."""
    from localflow.logfiles import pod_log

    try:
        path = pod_log(logs_dir, pod, "main")
        if path is None:
            return ""
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines or not re.search(r"[A-Za-z0-9]", lines[-1]):
        return ""  # ends with the closing brace of the executor input kfp printed: nothing to show
    return lines[-1]


def pod_failure(pod: dict, log_tail: str) -> str:
    """A failed Pod's error message: the first non-zero container exit code with its reason and
    message (else ``status.message``/``status.reason``), then ``log_tail`` (cut to 300 characters)
    or a pointer to ``localflow logs <pod>``."""
    status = pod.get("status") or {}
    msg = status.get("message") or status.get("reason") or "pod failed"
    for cs in status.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        if term and term.get("exitCode") not in (0, None):
            msg = f"exit code {term['exitCode']} ({term.get('reason', 'Error')})"
            if term.get("message"):
                msg += f": {term['message']}"
            break
    if log_tail:
        msg += f"; last log line: {log_tail[:300]}"
    else:
        msg += f" (see `localflow logs {pod['metadata']['name']}`)"
    return msg


def copy_content(src: str, dst: str, where: str, root: str | None = None) -> None:
    """Copy a file or directory tree from ``src`` to ``dst`` (nothing when they are the same or
    ``src`` is missing: an artifact with no content is allowed). With ``root``, ``dst`` must lie
    inside it (symbolic links resolved), else ExecutorError: localflow writes only into the run."""
    if not os.path.exists(src) or os.path.abspath(src) == os.path.abspath(dst):
        return
    if root is not None and not within(dst, root):
        raise ExecutorError(f"{where}: refusing to copy {src} to {dst}, outside the run's directory {root}")
    try:
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)  # links are copied, not followed
        else:
            shutil.copy2(src, dst)
    except OSError as e:
        raise ExecutorError(f"{where}: could not copy {src} to {dst}: {e}") from None


def public_artifact(a: dict) -> dict:
    """A RuntimeArtifact dict as a task sees it: without our metadata ``id``."""
    return {k: v for k, v in a.items() if k != "id"}


def k8s_name(text: str, limit: int) -> str:
    """``text`` as a Kubernetes name part: lower case, runs of other characters as ``-``, at most
    ``limit`` characters, no leading/trailing ``-``; ``"x"`` when nothing is left."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    return (s[:limit].rstrip("-")) or "x"


def random_suffix(n: int = 5) -> str:
    """``n`` random characters from Kubernetes' generateName alphabet (no vowels, no 0/1/3)."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(n))
