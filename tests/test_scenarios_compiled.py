"""The bundled scenario pipelines: committed YAML == fresh compilation, and EXPECTED matches the IR.

Each ``scenarios/pipelines/<name>.py`` defines ``pipeline`` and keeps ``<name>.yaml`` (compiled by
``scenarios/pipelines/compile_all.py``) next to it. Recompiling with the installed kfp compiler must
give the same documents as the committed file, compared as parsed YAML (comments such as the
``# PIPELINE DEFINITION`` header are ignored).

Version policy: the committed YAML records the compiler in ``sdkVersion`` (``kfp-2.17.3``). The
comparison always ignores ``sdkVersion``. When the installed kfp differs from that version, the
version pin the SDK writes into every lightweight component's pip bootstrap (``'kfp==<version>'``)
is also normalised; any other difference fails, and the fix is to rerun compile_all.py (and commit
the YAML) with the kfp version the project pins.
"""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

import pytest
import yaml

kfp = pytest.importorskip("kfp")

PIPELINES_DIR = Path(__file__).resolve().parent.parent / "scenarios" / "pipelines"


def _load_compile_all():
    spec = importlib.util.spec_from_file_location("scenarios_compile_all", PIPELINES_DIR / "compile_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compile_all = _load_compile_all()
SCENARIOS = compile_all.scenario_paths()
IDS = [p.stem for p in SCENARIOS]


def _load_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def _replace_strings(node, old: str, new: str):
    if isinstance(node, str):
        return node.replace(old, new)
    if isinstance(node, list):
        return [_replace_strings(v, old, new) for v in node]
    if isinstance(node, dict):
        return {k: _replace_strings(v, old, new) for k, v in node.items()}
    return node


def _normalise(docs: list[dict], committed_version: str, installed_version: str) -> list[dict]:
    out = []
    for doc in docs:
        doc = {k: v for k, v in doc.items() if k != "sdkVersion"}
        if committed_version != installed_version:
            doc = _replace_strings(doc, f"kfp=={committed_version}", f"kfp=={installed_version}")
        out.append(doc)
    return out


def _pipeline_spec(path: Path) -> dict:
    return _load_docs(path)[0]


def _task_names(spec: dict) -> set[str]:
    """Every DAG task key in the root and in every DAG component."""
    dags = [spec["root"]["dag"]] + [c["dag"] for c in spec.get("components", {}).values() if "dag" in c]
    return {name for dag in dags for name in dag.get("tasks", {})}


def test_every_scenario_has_its_compiled_yaml_and_no_yaml_is_orphaned():
    py = {p.stem for p in SCENARIOS}
    yml = {p.stem for p in PIPELINES_DIR.glob("*.yaml")}
    assert py, f"no scenario modules found in {PIPELINES_DIR}"
    assert py == yml, f"missing YAML: {sorted(py - yml)}; YAML without a .py: {sorted(yml - py)}"


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_recompiling_scenario_gives_the_committed_ir(path: Path, tmp_path: Path):
    committed_path = path.with_suffix(".yaml")
    fresh_path = compile_all.compile_scenario(path, tmp_path / committed_path.name)
    committed = _load_docs(committed_path)
    fresh = _load_docs(fresh_path)
    committed_version = str(committed[0].get("sdkVersion", "")).removeprefix("kfp-")
    installed_version = kfp.__version__
    committed_n = _normalise(committed, committed_version, installed_version)
    fresh_n = _normalise(fresh, installed_version, installed_version)
    if committed_n != fresh_n:
        diff = "\n".join(
            difflib.unified_diff(
                yaml.safe_dump_all(committed_n, sort_keys=True).splitlines(),
                yaml.safe_dump_all(fresh_n, sort_keys=True).splitlines(),
                fromfile=f"committed {committed_path.name} (kfp {committed_version})",
                tofile=f"fresh compilation (kfp {installed_version})",
                lineterm="",
                n=2,
            )
        )
        pytest.fail(
            f"{committed_path.name} is stale; run `python scenarios/pipelines/compile_all.py {path.stem}`"
            f" and commit it.\n{diff[:6000]}"
        )


@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_scenario_expectations_name_only_tasks_inputs_and_outputs_of_its_ir(path: Path):
    module = compile_all.load_scenario(path)
    assert (module.__doc__ or "").strip(), f"{path.name}: the module docstring must state the expected results"
    expected = getattr(module, "EXPECTED", None)
    assert isinstance(expected, list) and expected, f"{path.name}: EXPECTED must be a non-empty list of cases"
    spec = _pipeline_spec(path.with_suffix(".yaml"))
    inputs = set(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    outputs = set(spec["root"].get("outputDefinitions", {}).get("parameters", {})) | set(
        spec["root"].get("outputDefinitions", {}).get("artifacts", {})
    )
    tasks = _task_names(spec)
    for i, case in enumerate(expected):
        where = f"{path.name} EXPECTED[{i}]"
        assert case["state"] in {"SUCCEEDED", "FAILED"}, where
        assert set(case.get("params", {})) <= inputs, f"{where}: params {set(case['params']) - inputs} not inputs"
        named = (
            set(case.get("tasks", {}))
            | set(case.get("task_outputs", {}))
            | set(case.get("not_run", []))
            | set(case.get("attempts", {}))
            | set(case.get("cache_hits", []))
            | set(case.get("artifact_contents", {}))
        )
        assert named <= tasks, f"{where}: unknown task names {sorted(named - tasks)}; IR has {sorted(tasks)}"
        assert set(case.get("tasks", {}).values()) <= {"SUCCEEDED", "FAILED", "SKIPPED"}, where
        assert set(case.get("outputs", {})) <= outputs, f"{where}: outputs {set(case['outputs']) - outputs}"
