"""Benchmark: how localflow's pipeline controller scales with the number of tasks (issue 8, Performance).

Run separately from the test suite (it is not collected by pytest)::

    python tests/benchmarks/bench_scale.py [--n 50 200 1000 5000] [--only loop|dag|chain|first] [--json out.json]

(a) ``loop``: a ``dsl.ParallelFor`` over N no-op items (one lightweight component per item).
(b) ``dag``: N independent no-op lightweight components in the root DAG.
(c) ``chain``: 20 sequential no-op lightweight components; figure = median wall / 20, i.e. localflow's
    overhead per sequential task (the component itself returns its input: its own run time is ~1 ms).
(d) ``first``: from calling ``localflow.run`` (spec path given) to the first task's Pod Running.

All pipelines are compiled by the real kfp compiler (``kfp.compiler.Compiler``) to YAML first
(compilation excluded from the figures; the ``dag`` pipeline's N tasks are copies of one compiled
task, as kfp's own task naming is quadratic); caching off; a fresh workspace per run; the subprocess
executor with its warm fork server, as ``localflow run`` uses. Each figure is the wall time around
``localflow.run`` in this process, divided by N for "per task"; ``rss_mb`` is this process's peak
resident set (``ru_maxrss``) after the run, i.e. localflow's own memory (task processes excluded).
Targets: loop N=1,000 <= 10 s, dag N=5,000 <= 45 s with time per task flat (+-25 %) from N=50,
RSS <= 300 MB, chain overhead <= 8 ms per task, first task <= 0.4 s.
"""


import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _compile(pipeline, out: Path) -> Path:
    from kfp import compiler

    compiler.Compiler().compile(pipeline, str(out))
    return out


def build(kind: str, n: int, out_dir: Path) -> Path:
    """Compile the ``kind`` pipeline (``loop``, ``dag`` or ``chain``) for ``n`` tasks; returns its YAML path."""
    from kfp import dsl

    @dsl.component(base_image="python:3.11")
    def noop(x: int) -> int:
        return x

    if kind == "loop":
        @dsl.pipeline(name=f"bench-loop-{n}")
        def pipeline():
            with dsl.ParallelFor(list(range(n))) as item:
                noop(x=item).set_caching_options(False)
    elif kind == "dag":
        # kfp's compiler names tasks in O(N^2) (kfp/dsl/utils.py make_name_unique_by_adding_index: 5,000
        # tasks take > 10 min): compile 2 tasks, then give the root DAG N copies of the compiled task
        @dsl.pipeline(name=f"bench-dag-{n}")
        def pipeline():
            for i in range(min(n, 2)):
                noop(x=i).set_caching_options(False)
        path = _compile(pipeline, out_dir / f"{kind}-{n}.yaml")
        import yaml

        doc = yaml.safe_load(path.read_text())
        tasks = doc["root"]["dag"]["tasks"]
        first = tasks["noop"]
        for i in range(n):
            t = json.loads(json.dumps(first))
            t["taskInfo"]["name"] = key = "noop" if i == 0 else f"noop-{i + 1}"
            t["inputs"]["parameters"]["x"]["runtimeValue"]["constant"] = i
            tasks[key] = t
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path
    else:
        @dsl.pipeline(name=f"bench-chain-{n}")
        def pipeline() -> int:
            t = noop(x=0).set_caching_options(False)
            for _ in range(n - 1):
                t = noop(x=t.output).set_caching_options(False)
            return t.output
    return _compile(pipeline, out_dir / f"{kind}-{n}.yaml")


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def time_run(path: Path, on_task=None):
    import localflow

    ws = tempfile.mkdtemp(prefix="lf-scale-")
    t = time.perf_counter()
    run = localflow.run(str(path), workspace=ws, cache=False, on_task=on_task)
    wall = time.perf_counter() - t
    assert run.state == "SUCCEEDED", run.error
    return wall, run


def first_task(path: Path, repeat: int) -> list[float]:
    """Seconds from ``localflow.run`` to the first task RUNNING (its on_task progress line)."""
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        seen: list[float] = []

        def on_task(rec):
            if rec.state == "RUNNING" and not seen:
                seen.append(time.perf_counter() - t0)
        time_run(path, on_task)
        out.append(seen[0])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[50, 200, 1000, 5000])
    ap.add_argument("--only", choices=["loop", "dag", "chain", "first"], action="append")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the chain and first-task figures")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    only = set(args.only or ["loop", "dag", "chain", "first"])
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="lf-scale-specs-") as d:
        out_dir = Path(d)
        for kind in ("loop", "dag"):
            if kind not in only:
                continue
            for n in args.n:
                wall, _ = time_run(build(kind, n, out_dir))
                row = {"n": n, "wall_s": round(wall, 2), "per_task_ms": round(1000 * wall / n, 2), "rss_mb": rss_mb()}
                results[f"{kind}_{n}"] = row
                print(kind, json.dumps(row), flush=True)
        if "chain" in only:
            path = build("chain", 20, out_dir)
            walls = [time_run(path)[0] for _ in range(args.repeat)]
            row = {"n": 20, "per_task_ms": round(1000 * statistics.median(walls) / 20, 2)}
            results["chain_20"] = row
            print("chain", json.dumps(row), flush=True)
        if "first" in only:
            firsts = first_task(build("chain", 1, out_dir), args.repeat)
            row = {"first_task_s": round(statistics.median(firsts), 3), "runs_s": [round(x, 3) for x in firsts]}
            results["first_task"] = row
            print("first", json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
