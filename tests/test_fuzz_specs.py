"""Hypothesis fuzzing of real specs (issue 7 §3): no mutant may end in an internal error.

Seeds are the bundled scenarios (``scenarios/pipelines/*.yaml``, ``scenarios/training/*.yaml``) and,
when ``../shared/corpus`` exists, the upstream corpus specs. Each mutant changes shapes (a mapping
becomes a scalar, a key goes missing), types, names (empty, 300 characters, ``../``, control
characters) and numbers (outside int32, NaN, negative), then goes through the real loader and
validation in-process, and for a bounded subset through ``localflow run`` in a subprocess (cwd and
workspace in a temporary directory) with a per-example timeout that presses Ctrl-C.

Asserted: exit code in {0, 1, 2, 130}, no ``internal error``, no ``Traceback``, and nothing
written outside the workspace (the temporary directory's parent, ``/`` and ``/tmp`` gain no entry
named by the mutants' escape token). Seeds are fixed (``derandomize=True``) so CI sees the same
mutants every time; ``tests/benchmarks/fuzz_specs_long.py`` runs many more.
"""
from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localflow.errors import LocalflowError

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
TRAINING_CONFIG = ROOT / "scenarios" / "training" / "localflow.yaml"
TOKEN = f"lf-fuzz-escape-{os.getpid()}"
OK_EXIT_CODES = {0, 1, 2, 130}

NASTY_STRINGS = [
    "", "a" * 300, "Upper_Case.Name", "../../../../../../../../" + TOKEN, "/tmp/" + TOKEN, "..", ".", "a/b",
    "x\x1b[31mred\x1b[0m\nnext", "nul\x00byte", "名前", "-", "1", "true", "${HOME}", "$(touch /tmp/" + TOKEN + ")",
    "{{$.inputs.parameters['x']}}", "%s%n", " ", "a" * 64, "\u202eevil",
]
NASTY_NUMBERS = [0, -1, 2**31, 2**63, -(2**63), 10**30, 1.5, float("nan"), float("inf"), True]
OTHER_VALUES = [None, [], {}, [1, "x"], {"a": 1}, "scalar"]
KEYS = ["name", "mountPath", "subPath", "path", "claimName", "items", "volumes", "volumeMounts", "ports",
        "containerPort", "replicas", "numNodes", "template", "spec", "resources", "requests", "image", "command"]


def _seed_files(corpus: bool) -> list[Path]:
    if corpus:
        return sorted(CORPUS.rglob("*.yaml")) if CORPUS.is_dir() else []
    return sorted((ROOT / "scenarios" / "pipelines").glob("*.yaml")) + sorted((ROOT / "scenarios" / "training").glob("*.yaml"))


def _load_seeds(files: list[Path]) -> list[tuple[Path, list]]:
    from localflow.specs.loader import load_documents

    out = []
    for f in files:
        if f.name == "localflow.yaml":
            continue
        try:
            out.append((f, load_documents(f)))
        except LocalflowError:
            continue  # a corpus file that is a template ({username}/...) is not a seed
    return out


SCENARIO_SEEDS = _load_seeds(_seed_files(corpus=False))
CORPUS_SEEDS = _load_seeds(_seed_files(corpus=True))


# ------------------------------------------------------------------ mutations

def _paths(node, prefix=(), out=None, limit=4000):
    """Every (container path, key) in the tree, breadth-first up to ``limit`` entries."""
    out = [] if out is None else out
    queue = [(node, prefix)]
    while queue and len(out) < limit:
        cur, p = queue.pop(0)
        items = cur.items() if isinstance(cur, dict) else enumerate(cur) if isinstance(cur, list) else ()
        for k, v in items:
            out.append(p + (k,))
            if isinstance(v, (dict, list)):
                queue.append((v, p + (k,)))
    return out


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


def _mutate(data, docs: list) -> str:
    """Apply 1-3 mutations to ``docs`` in place; returns a description."""
    said = []
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        di = data.draw(st.integers(0, len(docs) - 1), label="doc")
        paths = _paths(docs[di])
        if not paths:
            continue
        path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
        parent = _parent(docs[di], path)
        key = path[-1]
        old = parent[key]
        op = data.draw(st.sampled_from(["string", "number", "other", "delete", "rename", "wrap", "unwrap",
                                        "duplicate", "deep", "insert", "tweak"]), label="op")
        if op == "string":
            parent[key] = data.draw(st.sampled_from(NASTY_STRINGS))
        elif op == "number":
            parent[key] = data.draw(st.sampled_from(NASTY_NUMBERS))
        elif op == "other":
            parent[key] = copy.deepcopy(data.draw(st.sampled_from(OTHER_VALUES)))
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            parent[data.draw(st.sampled_from(NASTY_STRINGS + KEYS))] = parent.pop(key)
        elif op == "wrap":
            parent[key] = [old] if data.draw(st.booleans()) else {"x": old}
        elif op == "unwrap" and isinstance(old, (dict, list)) and old:
            parent[key] = next(iter(old.values())) if isinstance(old, dict) else old[0]
        elif op == "duplicate" and isinstance(old, list) and old:
            old.append(copy.deepcopy(old[0]))
        elif op == "deep":
            for _ in range(150):
                old = [old]
            parent[key] = old
        elif op == "insert" and isinstance(old, dict):
            old[data.draw(st.sampled_from(KEYS))] = copy.deepcopy(
                data.draw(st.sampled_from(NASTY_STRINGS + NASTY_NUMBERS + OTHER_VALUES)))
        elif op == "tweak":
            if isinstance(old, bool):
                parent[key] = not old
            elif isinstance(old, int):
                parent[key] = old + data.draw(st.sampled_from([-(2**32), -1, 1, 2**31]))
            elif isinstance(old, str):
                parent[key] = data.draw(st.sampled_from([old.upper(), old + "/../..", "/" + old, old * 40, old + "\x07"]))
        said.append(f"{op}@{'/'.join(map(str, path))[:80]}")
    return "; ".join(said)


def _text(data, docs: list) -> str:
    text = yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)
    extra = data.draw(st.sampled_from(["none"] * 12 + ["truncate", "bomb", "tab"]), label="text")
    if extra == "truncate":
        text = text[: data.draw(st.integers(0, len(text)))]
    elif extra == "bomb":
        text += "---\n" + "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    elif extra == "tab":
        text = text.replace("  ", "\t", 1)
    return text


def draw_mutant(data, seeds) -> tuple[Path, str, str]:
    """(seed file, mutant YAML text, description) for one example."""
    seed, docs = seeds[data.draw(st.integers(0, len(seeds) - 1), label="seed")]
    docs = copy.deepcopy(docs)
    how = _mutate(data, docs)
    return seed, _text(data, docs), how


# ------------------------------------------------------------------ what runs each mutant

def validate_in_process(path: Path) -> None:
    """The real loader and validation of every kind, as ``localflow run`` does before anything runs.

    Raises only :class:`LocalflowError`; anything else is a bug the fuzzer reports."""
    from localflow import runners  # noqa: F401  (registers the kinds)
    from localflow.api import load_spec
    from localflow.controllers.sideobjects import SIDE_KINDS, check_side_object
    from localflow.pipelines.preflight import check_pipeline
    from localflow.specs.pipeline import load_pipeline
    from localflow.specs.training import load_job, validate_runtime, validate_trainjob
    from localflow.training.kinds import KINDS
    from localflow.training.pods import replica_pods
    from localflow.training.runtimes import resolve_runtime, trainjob_plan

    kind, docs, source = load_spec(str(path))
    if kind == "PipelineSpec":
        doc = load_pipeline(docs, source)
        check_pipeline(doc.spec)
        return
    runtimes = {}
    for d in docs:
        if d.get("kind") in SIDE_KINDS:
            check_side_object(d)
        if d.get("kind") in ("TrainingRuntime", "ClusterTrainingRuntime"):
            validate_runtime(d, gpus=0)
            runtimes[(d["kind"], d["metadata"]["name"])] = d
    for d in docs:
        if d.get("kind") in KINDS:
            job = load_job(d, gpus=0)
            job.setdefault("metadata", {}).setdefault("namespace", "default")
            replica_pods(job)
            return
        if d.get("kind") == "TrainJob":
            rt = resolve_runtime(d, lambda k, n, ns: runtimes.get((k, n)))
            validate_trainjob(d, rt, gpus=0)
            tj = copy.deepcopy(d)
            tj["metadata"].setdefault("namespace", "default")
            trainjob_plan(tj, rt)
            return


def _snapshot(dirs: list[Path]) -> dict[Path, set[str]]:
    return {d: set(os.listdir(d)) if d.is_dir() else set() for d in dirs}


def run_cli(spec: Path, work: Path, timeout: float, *, training: bool = False) -> tuple[int, str]:
    """``localflow run spec`` in ``work`` (workspace ``work/ws``); Ctrl-C after ``timeout`` seconds.
    ``training``: use the training scenarios' image map (``--config``)."""
    args = [sys.executable, "-m", "localflow", "run", str(spec), "-W", str(work / "ws")]
    if training:
        args += ["--config", str(TRAINING_CONFIG)]
    env = {k: v for k, v in os.environ.items() if k != "LOCALFLOW_DEBUG"}
    proc = subprocess.Popen(args, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # what a user does; localflow must cancel, record and exit 130
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            return -9, "HANG: did not exit 30 s after Ctrl-C\n" + err
    return proc.returncode, err


def check_mutant_in_process(text: str, how: str, tmp: Path) -> None:
    spec = tmp / "mutant.yaml"
    spec.write_text(text)
    try:
        validate_in_process(spec)
    except LocalflowError as exc:
        assert "\x1b" not in str(exc) and "\n" not in str(exc), (how, str(exc))
    except RecursionError as exc:  # pragma: no cover - reported with the mutant
        raise AssertionError(f"RecursionError for mutant ({how})") from exc


def check_mutant_run(text: str, how: str, seed: Path, timeout: float = 90) -> None:
    with tempfile.TemporaryDirectory(prefix="lf-fuzz-") as d:
        outer = Path(d)
        work = outer / "work"
        work.mkdir()
        spec = work / seed.name
        spec.write_text(text)
        watched = [outer, Path("/"), Path("/tmp")]
        before = _snapshot(watched)
        rc, err = run_cli(spec, work, timeout, training=seed.parent.name == "training")
        after = _snapshot(watched)
        assert rc in OK_EXIT_CODES, (how, rc, err[-2000:])
        assert "internal error" not in err and "Traceback" not in err, (how, err[-3000:])
        assert after[outer] == before[outer], (how, after[outer] - before[outer])
        for root in watched[1:]:
            leaked = {n for n in after[root] - before[root] if TOKEN in n}
            assert not leaked, (how, root, leaked)


# ------------------------------------------------------------------ the tests

FUZZ = settings(derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])


def fuzz(env: str, default: int) -> settings:
    """The fixed-seed settings with ``max_examples`` from ``$env`` (the long run raises it)."""
    return settings(FUZZ, max_examples=int(os.environ.get(env, default)))


@fuzz("LOCALFLOW_FUZZ_EXAMPLES", 300)
@given(st.data())
def test_scenario_mutants_validate_or_refuse_cleanly(data):
    seed, text, how = draw_mutant(data, SCENARIO_SEEDS)
    with tempfile.TemporaryDirectory(prefix="lf-fuzz-") as d:
        check_mutant_in_process(text, f"{seed.name}: {how}", Path(d))


@pytest.mark.corpus
@fuzz("LOCALFLOW_FUZZ_EXAMPLES", 200)
@given(st.data())
def test_corpus_mutants_validate_or_refuse_cleanly(data):
    if not CORPUS_SEEDS:
        pytest.skip(f"no corpus at {CORPUS} (../shared is absent)")
    seed, text, how = draw_mutant(data, CORPUS_SEEDS)
    with tempfile.TemporaryDirectory(prefix="lf-fuzz-") as d:
        check_mutant_in_process(text, f"{seed.name}: {how}", Path(d))


# Seeds cheap enough to run: small pipelines and the TFJob scenario (plain python, no torch).
RUN_SEEDS = [s for s in SCENARIO_SEEDS if s[0].name in
             ("params.yaml", "condition.yaml", "placeholders.yaml", "container_components.yaml", "tfjob.yaml",
              "exit_handler.yaml", "parallel_for.yaml")]


@pytest.mark.slow
@fuzz("LOCALFLOW_FUZZ_RUNS", 8)
@given(st.data())
def test_scenario_mutants_run_without_internal_errors_or_escapes(data):
    seed, text, how = draw_mutant(data, RUN_SEEDS)
    check_mutant_run(text, f"{seed.name}: {how}", seed, timeout=float(os.environ.get("LOCALFLOW_FUZZ_TIMEOUT", "60")))
