"""``localflow.yaml``: what the images named in specs mean on this machine.

Shape (every key optional)::

    images:
      "python:3.*": {}                      # run on the host interpreter (the default anyway)
      "docker.io/kubeflowkatib/pytorch-mnist:*":
        python: /opt/venvs/torch/bin/python # what python/python3 resolve to (subprocess executor)
        workdir: /opt/app                   # working directory when the container sets none
        paths: {/opt/app: scenarios/training}  # container path -> host path (relative to this file)
        env: {OMP_NUM_THREADS: "1"}
        docker: localflow/python:3.11       # local image tag for the docker executor
        entrypoint: [python, /opt/app/train.py] # the image's ENTRYPOINT, for containers that set no command
        args: [--epochs, "1"]               # the image's CMD, for containers that set no args
        shell: busybox                      # the program a bare `sh` means (subprocess executor)
    storage:                                # remote URI prefix -> local directory (relative to this file)
      gs://my-bucket/data: ./data
    packages:                               # packages_to_install of lightweight components
      install: true                         # false (or --no-install): never install, report what is missing
      cache: ~/.cache/localflow/venvs       # where the venvs live (default: <workspace>/venvs)
      installer: auto                       # auto (uv when installed, else pip) | uv | pip
    hostPaths:
      allow: [/data/shared]                 # host directories hostPath volumes may name (and below)
    node:
      maxPods: 110                          # kubelet's maxPods: Pods running at once; more wait Pending

Image keys are exact references or shell-style patterns (``fnmatch``); the first exact match
wins, then the longest matching pattern. An image with no entry runs its command on the host as
it is (subprocess) or as that local image (docker). ``command`` is the older name of
``entrypoint``. Well-known images (busybox, alpine, debian, ubuntu, python, bash) get their
``shell`` and ``entrypoint`` from :mod:`localflow.image_profiles` unless the entry sets them. Read by :func:`load_config`; passed down
explicitly (no global config), as kfp.local's ``local.init`` recommends against singletons.

``hostPaths.allow`` lists the host directories a spec's ``hostPath`` volumes may name (the
directory itself or anything below it, symbolic links resolved); without it every ``hostPath``
volume is refused. Relative entries are taken relative to this file.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localflow import image_profiles
from localflow.errors import SpecError
from localflow.executors.base import ImageMapping
from localflow.pipelines.packages import PackageSettings
from localflow.pipelines.storage import StorageMap

DEFAULT_CONFIG_NAME = "localflow.yaml"
_MAPPING_KEYS = {"python", "workdir", "paths", "env", "docker", "command", "entrypoint", "args", "shell"}
_PACKAGE_KEYS = {"install", "cache", "installer"}


@dataclass
class ImageMap:
    """Image reference -> :class:`ImageMapping`. ``resolve(image)`` returns ``None`` when unmapped."""

    entries: dict[str, ImageMapping] = field(default_factory=dict)

    def resolve(self, image: str) -> ImageMapping | None:
        """The entry for ``image`` (exact, else the longest matching pattern) with the built-in
        profile's ``shell``/``entrypoint`` filling what it leaves unset; None when neither exists."""
        return _with_profile(image, self._configured(image))

    def _configured(self, image: str) -> ImageMapping | None:
        if image in self.entries:
            return self.entries[image]
        best = None
        for pattern, m in self.entries.items():
            if fnmatch.fnmatchcase(image, pattern) and (best is None or len(pattern) > len(best[0])):
                best = (pattern, m)
        if best is None:
            return None
        m = best[1]
        return ImageMapping(image=image, python=m.python, workdir=m.workdir, paths=dict(m.paths),
                            env=dict(m.env), docker_image=m.docker_image,
                            command=list(m.command) if m.command is not None else None,
                            args=list(m.args) if m.args is not None else None, shell=m.shell)


def _with_profile(image: str, m: ImageMapping | None) -> ImageMapping | None:
    """``m`` completed by :func:`localflow.image_profiles.profile_for` (shell, entrypoint)."""
    profile = image_profiles.profile_for(image)
    if profile is None:
        return m
    if m is None:
        m = ImageMapping(image=image)
    else:
        m = ImageMapping(**{**m.__dict__, "paths": dict(m.paths), "env": dict(m.env)})
    if m.shell is None:
        m.shell = profile.shell
    if m.command is None and profile.entrypoint is not None:
        m.command = list(profile.entrypoint)
    return m


@dataclass
class Config:
    """Parsed ``localflow.yaml``: ``images`` (:class:`ImageMap`), ``host_paths`` (resolved absolute
    directories ``hostPath`` volumes may use, from ``hostPaths.allow`` and the ``storage:`` directories),
    ``path`` it came from (or None), ``storage`` (:class:`~localflow.pipelines.storage.StorageMap`) and
    ``packages`` (:class:`~localflow.pipelines.packages.PackageSettings`)."""

    images: ImageMap = field(default_factory=ImageMap)
    path: str | None = None
    host_paths: tuple[str, ...] = ()
    max_pods: int = 110  # node: {maxPods: N}: kubelet's maxPods, Pods that may run at once
    gpus: int | None = None  # node: {gpus: N}: the node's nvidia.com/gpu devices (None: detect them)
    storage: StorageMap = field(default_factory=StorageMap)
    packages: PackageSettings = field(default_factory=PackageSettings)


def load_config(path: str | os.PathLike | None = None, *, cwd: str | os.PathLike | None = None) -> Config:
    """Load the config at ``path``, else ``localflow.yaml`` in ``cwd`` (default: the working directory) if present.

    Raises :class:`SpecError` naming the key (``localflow.yaml: images['x'].paths``) for bad shapes,
    and for an explicit ``path`` that does not exist.
    """
    if path is None:
        candidate = Path(cwd or os.getcwd()) / DEFAULT_CONFIG_NAME
        if not candidate.is_file():
            return Config()
        path = candidate
    p = Path(path)
    if not p.is_file():
        raise SpecError("--config", f"no such file {str(p)!r}", fix="pass the path of a localflow.yaml")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise SpecError(str(p), f"not valid YAML: {e}") from None
    return parse_config(doc, source=str(p), base_dir=p.parent)


def parse_config(doc: dict, *, source: str = DEFAULT_CONFIG_NAME, base_dir: str | os.PathLike = ".") -> Config:
    """Validate a config mapping; relative host paths are taken relative to ``base_dir``."""
    if not isinstance(doc, dict):
        raise SpecError(source, "must be a mapping with an 'images' key")
    unknown = set(doc) - {"images", "hostPaths", "node", "storage", "packages"}
    if unknown:
        raise SpecError(f"{source}: {sorted(unknown)[0]}", "unknown key",
                        fix="the known keys are 'images', 'hostPaths', 'node', 'storage' and 'packages'")
    allowed = _host_paths(doc.get("hostPaths"), f"{source}: hostPaths", base_dir)
    max_pods = _node_max_pods(doc.get("node"), source)
    gpus = _node_gpus(doc.get("node"), source)
    images = doc.get("images") or {}
    if not isinstance(images, dict):
        raise SpecError(f"{source}: images", "must map image references to settings")
    entries = {}
    for ref, settings in images.items():
        path = f"{source}: images[{ref!r}]"
        settings = settings or {}
        if not isinstance(settings, dict):
            raise SpecError(path, "must be a mapping", fix=f"keys: {', '.join(sorted(_MAPPING_KEYS))}")
        bad = set(settings) - _MAPPING_KEYS
        if bad:
            raise SpecError(f"{path}.{sorted(bad)[0]}", "unknown key", fix=f"known keys: {', '.join(sorted(_MAPPING_KEYS))}")
        paths = settings.get("paths") or {}
        env = settings.get("env") or {}
        if not isinstance(paths, dict):
            raise SpecError(f"{path}.paths", "must map container paths to host paths")
        if not isinstance(env, dict):
            raise SpecError(f"{path}.env", "must map names to values")
        host_paths = {str(k): str((Path(base_dir) / os.path.expanduser(str(v))).resolve()) for k, v in paths.items()}
        if "command" in settings and "entrypoint" in settings:
            raise SpecError(f"{path}.command", "is the older name of entrypoint; both are set", fix="keep entrypoint")
        settings = dict(settings)
        if "entrypoint" in settings:
            settings["command"] = settings.pop("entrypoint")
        argv = {}
        for key in ("command", "args"):
            value = settings.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(a, (str, int, float)) for a in value)):
                raise SpecError(f"{path}.{key}", "must be a list of strings", fix=f'e.g. {key}: ["python", "/opt/app/main.py"]')
            argv[key] = [str(a) for a in value] if value is not None else None
        python = settings.get("python")
        if python and os.sep in str(python):
            python = str((Path(base_dir) / os.path.expanduser(str(python))).absolute())
        entries[str(ref)] = ImageMapping(image=str(ref), python=python, workdir=settings.get("workdir"),
                                         paths=host_paths, env={str(k): str(v) for k, v in env.items()},
                                         docker_image=settings.get("docker"),
                                         shell=_parse_shell(settings.get("shell"), f"{path}.shell", base_dir), **argv)
    storage = _parse_storage(doc.get("storage"), f"{source}: storage", base_dir)
    # the directories storage: maps are host paths the user allowed (mounted for mapped URIs)
    allowed += tuple(d for d in storage.directories() if d not in allowed)
    return Config(images=ImageMap(entries), path=source, host_paths=allowed, storage=storage,
                  packages=_parse_packages(doc.get("packages"), f"{source}: packages", base_dir),
                  max_pods=max_pods, gpus=gpus)


def _host_paths(section, path: str, base_dir) -> tuple[str, ...]:
    """``hostPaths: {allow: [dir, ...]}`` as resolved absolute paths (relative to ``base_dir``)."""
    if section is None:
        return ()
    if not isinstance(section, dict) or set(section) - {"allow"}:
        raise SpecError(path, "must be a mapping with the key 'allow'", fix="hostPaths: {allow: [/data/shared]}")
    allow = section.get("allow") or []
    if not isinstance(allow, list):
        raise SpecError(f"{path}.allow", "must be a list of host directories", fix="allow: [/data/shared]")
    out = []
    for i, d in enumerate(allow):
        if not isinstance(d, str) or not d or "\0" in d:
            raise SpecError(f"{path}.allow[{i}]", f"must be a directory path (got {d!r})")
        resolved = os.path.realpath(Path(base_dir) / os.path.expanduser(d))
        if resolved == os.sep:
            raise SpecError(f"{path}.allow[{i}]", "allows the whole filesystem",
                            fix="list the directories Pods may mount, e.g. /data/shared")
        out.append(resolved)
    return tuple(out)


def _node_max_pods(node, source: str) -> int:
    """``node: {maxPods: N}`` (kubelet's ``--max-pods``, default 110): a positive int32."""
    if node is None:
        return 110
    if not isinstance(node, dict):
        raise SpecError(f"{source}: node", "must be a mapping", fix="e.g. node: {maxPods: 20}")
    bad = set(node) - {"maxPods", "gpus"}
    if bad:
        raise SpecError(f"{source}: node.{sorted(bad)[0]}", "unknown key", fix="the known keys are 'maxPods' and 'gpus'")
    value = node.get("maxPods", 110)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31 - 1:
        raise SpecError(f"{source}: node.maxPods", f"must be a whole number from 1 to {2**31 - 1} (got {value!r})",
                        fix="e.g. maxPods: 110 (kubelet's default)")
    return value


def _node_gpus(node, source: str) -> int | None:
    """``node: {gpus: N}``: the ``nvidia.com/gpu`` devices the node advertises (default: detected)."""
    if not isinstance(node, dict) or "gpus" not in node:
        return None
    value = node["gpus"]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1024:
        raise SpecError(f"{source}: node.gpus", f"must be a whole number from 0 to 1024 (got {value!r})",
                        fix="e.g. gpus: 1, or leave it out to detect GPUs with nvidia-smi")
    return value


def _parse_shell(value, path: str, base_dir) -> str | None:
    """``shell:``: a program name found on PATH (``busybox``, ``bash``) or a path (relative to the file)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise SpecError(path, "must be a program name or path", fix="e.g. shell: busybox  (or bash, dash, /usr/bin/busybox)")
    if os.sep in value:
        found = str((Path(base_dir) / os.path.expanduser(value)).absolute())
        found = found if os.access(found, os.X_OK) else None
    else:
        found = shutil.which(value)
    if found is None:
        hint = "apt-get install busybox-static" if "busybox" in value else f"install {value}"
        raise SpecError(path, f"{value!r} is not an executable program on this machine", fix=f"{hint}, or give its path")
    return found


def _parse_storage(section, path: str, base_dir) -> StorageMap:
    """``storage:``: remote URI prefix -> local directory (relative to the file's directory)."""
    if section is None:
        return StorageMap()
    if not isinstance(section, dict):
        raise SpecError(path, "must map URI prefixes to local directories", fix="e.g. storage: {gs://my-bucket/data: ./data}")
    entries = {}
    for prefix, directory in section.items():
        p = f"{path}[{str(prefix)!r}]"
        if not isinstance(prefix, str) or "://" not in prefix:
            raise SpecError(p, "must be a URI prefix with a scheme", fix="e.g. gs://my-bucket, s3://bucket/path, https://host/path")
        if not isinstance(directory, str) or not directory:
            raise SpecError(p, "must be a local directory", fix=f"e.g. {prefix}: ./data")
        entries[prefix] = str((Path(base_dir) / os.path.expanduser(directory)).resolve())
    return StorageMap(entries)


def _parse_packages(section, path: str, base_dir) -> PackageSettings:
    """``packages:``: ``install`` (bool), ``cache`` (directory), ``installer`` (auto | uv | pip)."""
    if section is None:
        return PackageSettings()
    if not isinstance(section, dict):
        raise SpecError(path, "must be a mapping", fix=f"keys: {', '.join(sorted(_PACKAGE_KEYS))}")
    bad = set(section) - _PACKAGE_KEYS
    if bad:
        raise SpecError(f"{path}.{sorted(bad)[0]}", "unknown key", fix=f"known keys: {', '.join(sorted(_PACKAGE_KEYS))}")
    install = section.get("install", True)
    if not isinstance(install, bool):
        raise SpecError(f"{path}.install", f"must be true or false (got {install!r})")
    installer = section.get("installer", "auto")
    if installer not in ("auto", "uv", "pip"):
        raise SpecError(f"{path}.installer", f"must be auto, uv or pip (got {installer!r})")
    cache = section.get("cache")
    if cache is not None and (not isinstance(cache, str) or not cache):
        raise SpecError(f"{path}.cache", "must be a directory", fix="e.g. cache: ~/.cache/localflow/venvs")
    return PackageSettings(install=install, installer=installer,
                           cache_dir=str((Path(base_dir) / os.path.expanduser(cache)).resolve()) if cache else None)
