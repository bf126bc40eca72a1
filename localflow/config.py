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
        command: [python, /opt/app/train.py] # the image's ENTRYPOINT, for containers that set no command
        args: [--epochs, "1"]               # the image's CMD, for containers that set no args

Image keys are exact references or shell-style patterns (``fnmatch``); the first exact match
wins, then the longest matching pattern. An image with no entry runs its command on the host as
it is (subprocess) or as that local image (docker). Read by :func:`load_config`; passed down
explicitly (no global config), as kfp.local's ``local.init`` recommends against singletons.
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from localflow.errors import SpecError
from localflow.executors.base import ImageMapping

DEFAULT_CONFIG_NAME = "localflow.yaml"
_MAPPING_KEYS = {"python", "workdir", "paths", "env", "docker", "command", "args"}


@dataclass
class ImageMap:
    """Image reference -> :class:`ImageMapping`. ``resolve(image)`` returns ``None`` when unmapped."""

    entries: dict[str, ImageMapping] = field(default_factory=dict)

    def resolve(self, image: str) -> ImageMapping | None:
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
                            args=list(m.args) if m.args is not None else None)


@dataclass
class Config:
    """Parsed ``localflow.yaml``: ``images`` (:class:`ImageMap`) and ``path`` it came from (or None)."""

    images: ImageMap = field(default_factory=ImageMap)
    path: str | None = None


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
    unknown = set(doc) - {"images"}
    if unknown:
        raise SpecError(f"{source}: {sorted(unknown)[0]}", "unknown key", fix="the known key is 'images'")
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
                                         docker_image=settings.get("docker"), **argv)
    return Config(images=ImageMap(entries), path=source)
