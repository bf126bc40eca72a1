"""Compile every bundled scenario pipeline into the YAML kept next to it.

Convention: each ``scenarios/pipelines/<name>.py`` (other than this file) defines a module-level
``pipeline`` (a ``@dsl.pipeline`` function) and optionally ``EXPECTED`` (see README.md). Running

    python scenarios/pipelines/compile_all.py [NAME ...]

compiles ``pipeline`` with the real kfp compiler (``kfp.compiler.Compiler``) into ``<name>.yaml`` in
the same directory, for every module or only for the NAMEs given. A YAML file whose parsed content
is unchanged is not rewritten. ``tests/test_scenarios_compiled.py``
checks that the committed YAML equals a fresh compilation.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def scenario_paths() -> list[Path]:
    """Every scenario module in this directory, sorted by name (this script excluded)."""
    return sorted(
        p for p in HERE.glob("*.py") if p.name != Path(__file__).name and not p.name.startswith("_")
    )


def load_scenario(path: Path) -> ModuleType:
    """Import a scenario module from its file path (the directory is not a package).

    Raises AttributeError when the module defines no ``pipeline`` object.
    """
    spec = importlib.util.spec_from_file_location(f"localflow_scenario_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "pipeline"):
        raise AttributeError(f"{path}: defines no module-level `pipeline` (the @dsl.pipeline function)")
    return module


def compile_scenario(path: Path, out: Path | None = None) -> Path:
    """Compile the module at ``path`` to ``out`` (default: same basename, ``.yaml``).

    Returns the output path. Raises whatever the kfp compiler raises for an invalid pipeline.
    """
    from kfp import compiler

    out = out or path.with_suffix(".yaml")
    compiler.Compiler().compile(pipeline_func=load_scenario(path).pipeline, package_path=str(out))
    return out


def _documents(path: Path) -> list:
    import yaml

    with open(path) as f:
        return list(yaml.safe_load_all(f))


def refresh_scenario(path: Path) -> bool:
    """Recompile ``path`` into its ``.yaml``; returns True when the file changed.

    An existing file whose parsed documents equal the fresh compilation is left untouched: the
    compiler's ``# Inputs:`` header prints dict defaults in protobuf map order, which varies from one
    process to the next, and rewriting it would only churn the diff.
    """
    out = path.with_suffix(".yaml")
    with tempfile.TemporaryDirectory() as tmp:
        fresh = compile_scenario(path, Path(tmp) / out.name)
        if out.exists() and _documents(out) == _documents(fresh):
            return False
        shutil.copyfile(fresh, out)
    return True


def main(argv: list[str]) -> int:
    """Compile the named scenarios (all when none are named); prints one line per file."""
    paths = scenario_paths()
    if argv:
        wanted = {Path(a).stem for a in argv}
        unknown = wanted - {p.stem for p in paths}
        if unknown:
            print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        paths = [p for p in paths if p.stem in wanted]
    for path in paths:
        changed = refresh_scenario(path)
        state = "written" if changed else "unchanged"
        print(f"compiled {path.name} -> {path.with_suffix('.yaml').name} ({state})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
