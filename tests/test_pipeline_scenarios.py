"""The bundled scenario pipelines (scenarios/pipelines/*.yaml) run through localflow by path and
match the machine-readable ``EXPECTED`` cases their modules declare (see
scenarios/pipelines/README.md for the convention). training_pipeline (scikit-learn) and the two
benchmark pipelines are left to their own tests."""
import importlib.util
import json
from pathlib import Path

import pytest

from localflow.api import Run, run as run_spec

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios" / "pipelines"
SKIP = {"training_pipeline", "noop_chain", "sleep_fanout", "compile_all"}


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"scenario_{name}", SCENARIOS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cases():
    out = []
    for py in sorted(SCENARIOS.glob("*.py")):
        if py.stem in SKIP or not (SCENARIOS / f"{py.stem}.yaml").exists():
            continue
        out.append(pytest.param(py.stem, id=py.stem))
    return out


def _records(run: Run, name: str) -> list:
    recs = [t for t in run.tasks.values() if t.task == name and t.kind != "iteration"]
    return recs or [t for t in run.tasks.values() if t.display_name == name and t.kind != "iteration"]


def _decoded(actual, expected):
    if isinstance(actual, str) and isinstance(expected, (dict, list)):
        return json.loads(actual)
    return actual


def _check(run: Run, case: dict, label: str) -> None:
    assert run.state == case["state"], f"{label}: run {run.state}: {run.error}"
    for name, state in (case.get("tasks") or {}).items():
        recs = _records(run, name)
        assert recs, f"{label}: no task {name!r} (have {sorted(run.tasks)})"
        assert {r.state for r in recs} == {state}, f"{label}: {name}: {[(r.name, r.state, r.error) for r in recs]}"
    for name, outs in (case.get("task_outputs") or {}).items():
        recs = [r for r in _records(run, name) if r.state == "SUCCEEDED"]
        assert recs, f"{label}: {name} did not succeed"
        for key, value in outs.items():
            # a str output holding JSON is compared with the structure it encodes
            assert any(_decoded(r.outputs["parameters"].get(key), value) == value for r in recs), \
                f"{label}: {name}.{key}: {[r.outputs['parameters'].get(key) for r in recs]} != {value!r}"
    for key, value in (case.get("outputs") or {}).items():
        assert run.outputs.get(key) == value, f"{label}: output {key}: {run.outputs.get(key)!r} != {value!r}"
    for name in case.get("not_run") or []:
        assert all(r.state in ("SKIPPED", "PENDING") and r.pod is None for r in _records(run, name)), \
            f"{label}: {name} ran"
    for name, n in (case.get("attempts") or {}).items():
        assert [r.attempts for r in _records(run, name)] == [n], f"{label}: attempts of {name}"
    if "cache_hits" in case:
        hits = sorted(t.task for t in run.tasks.values() if t.cached)
        assert hits == sorted(case["cache_hits"]), f"{label}: cache hits {hits}"
    for name, arts in (case.get("artifact_contents") or {}).items():
        [rec] = _records(run, name)
        for key, text in arts.items():
            assert Path(rec.outputs["artifacts"][key][0]["uri"]).read_text() == text, f"{label}: {name}.{key}"


@pytest.mark.parametrize("name", _cases())
def test_scenario_runs_as_its_module_expects(tmp_path, name):
    expected = _module(name).EXPECTED
    assert expected, f"{name} declares no EXPECTED cases"
    for i, case in enumerate(expected):
        files = {}
        for placeholder, text in (case.get("files") or {}).items():
            f = tmp_path / f"file{i}-{len(files)}.txt"
            f.write_text(text)
            files[placeholder] = str(f)
        params = {k: files.get(v, v) if isinstance(v, str) else v for k, v in (case.get("params") or {}).items()}
        # every case gets a fresh workspace, except caching: its cases build on each other
        workspace = tmp_path / ("ws" if name == "caching" else f"ws{i}")
        run = run_spec(str(SCENARIOS / f"{name}.yaml"), params, workspace=workspace)
        _check(run, case, f"{name} case {i} {params}")
