"""The distribution: a wheel ships executors/ and fakes/ as localflow.executors and localflow.fakes,
every source package is listed in pyproject.toml, and the entry points are registered."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = {"localflow": ROOT / "localflow", "localflow.executors": ROOT / "executors",
               "localflow.fakes": ROOT / "fakes"}


def source_modules() -> set[str]:
    mods = set()
    for pkg, base in SOURCE_DIRS.items():
        for f in base.rglob("*.py"):
            rel = f.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            if pkg == "localflow" and parts and parts[0] in ("executors", "fakes"):
                continue
            mods.add(".".join([pkg, *parts]))
    return mods


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("localflow-*.whl")
    return whl


def test_wheel_contains_every_source_module_under_localflow(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n[:-3].replace("/", ".").removesuffix(".__init__") for n in names if n.endswith(".py")}
    missing = source_modules() - shipped
    assert not missing, f"not in the wheel (add the package to pyproject.toml [tool.setuptools] packages): {sorted(missing)}"
    assert not any(n.startswith(("executors/", "fakes/")) for n in names), "executors/fakes must not ship top-level"


def test_wheel_install_imports_executors_and_fakes(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    code = ("import localflow.executors.subprocess, localflow.fakes, localflow.executors.base as b;"
            "import localflow; print(localflow.fakes.__file__)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                         check=True, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.stdout.strip().startswith(str(target))


def test_editable_install_maps_executors_and_fakes_to_the_repo():
    import localflow.executors
    import localflow.fakes

    assert Path(localflow.executors.__file__).resolve().parent == ROOT / "executors"
    assert Path(localflow.fakes.__file__).resolve().parent == ROOT / "fakes"


def test_entry_points_console_script_and_pytest_plugin():
    eps = metadata.entry_points()
    assert any(e.name == "localflow" and e.value == "localflow.cli:main" for e in eps.select(group="console_scripts"))
    assert any(e.value == "localflow.pytest_plugin" for e in eps.select(group="pytest11"))


def test_python_dash_m_localflow_shows_help():
    out = subprocess.run([sys.executable, "-m", "localflow", "--help"], capture_output=True, text=True, check=True)
    assert "run" in out.stdout and "get" in out.stdout


def test_executors_and_fakes_do_not_import_each_other_or_the_cli():
    for pkg, other in (("executors", ("fakes", "cli", "api", "scheduler", "controllers")),
                       ("fakes", ("executors", "cli", "api", "scheduler", "controllers"))):
        for f in (ROOT / pkg).rglob("*.py"):
            text = f.read_text()
            for o in other:
                pattern = rf"^\s*(from|import)\s+(localflow\.{o}\b|\.\.{o}\b)"
                assert not re.search(pattern, text, re.M), f"{f} imports {o}"
