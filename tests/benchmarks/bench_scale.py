"""Benchmark: how localflow's pipeline controller scales with the number of tasks (issue 8, Performance).

Run separately from the test suite (it is not collected by pytest)::

    python tests/benchmarks/bench_scale.py [--n 50 200 1000 5000] [--only loop|dag|chain|first] [--json out.json]

(a) ``loop``: a ``dsl.ParallelFor`` over N no-op items (one lightweight component per item).
(b) ``dag``: N independent no-op lightweight components in the root DAG.
(c) ``chain``: 20 sequential no-op lightweight components; figure = median wall / 20 (the first task
    includes starting the run's warm fork server, ~0.1 s). ``floor_ms`` is what the task's own process
    costs without localflow: this process, having imported ``kfp.dsl.executor_main``, forks a child
    that runs the same ``kfp.dsl.executor_main`` command line and waits for it (median of 10);
    ``overhead_ms`` = ``per_task_ms`` - ``floor_ms`` is localflow's share.
(d) ``first``: from calling ``localflow.run`` (spec path given) to the first task's Pod Running.
(e) ``cli``: from starting ``localflow run SPEC`` (a new process, an existing workspace) to the
    first task's RUNNING progress line, the figure a user sees (interpreter start and imports included).

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

    import shutil

    ws = tempfile.mkdtemp(prefix="lf-scale-")
    try:
        t = time.perf_counter()
        run = localflow.run(str(path), workspace=ws, cache=False, on_task=on_task)
        wall = time.perf_counter() - t
    finally:
        shutil.rmtree(ws, ignore_errors=True)
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


_FLOOR = r"""
import atexit, json, os, statistics, sys, time
os.environ["_KFP_RUNTIME"] = "true"
import kfp.dsl.executor_main, runpy, locale  # what the fork server imports before forking
import gc
gc.collect()
gc.freeze()
argv, outs = json.loads(sys.stdin.read())
times = []
for out in outs:
    args = list(argv[3:])
    i = args.index("--executor_input")
    ei = json.loads(args[i + 1])
    ei["outputs"]["outputFile"] = os.path.join(out, "executor_output.json")
    for k, v in ei["outputs"].get("parameters", {}).items():
        v["outputFile"] = os.path.join(out, k)
    args[i + 1] = json.dumps(ei)
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # as the fork server's child: stdio on /dev/null, a fresh __main__, atexit, exit
        try:
            fd = os.open(os.devnull, os.O_RDWR)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            sys.modules.pop("kfp.dsl.executor_main", None)
            sys.argv = ["-c", *args]  # the launcher's module source, then the executor's arguments
            exec(compile(argv[2], "<string>", "exec"), {"__name__": "__main__"})
            atexit._run_exitfuncs()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    times.append(time.perf_counter() - t)
print(1000 * statistics.median(times))
"""


def task_floor(path: Path, repeat: int = 10) -> float:
    """Median ms of the compiled task's own command (its ``kfp.dsl.executor_main`` launcher, as
    localflow's warm start runs it) forked from a fresh interpreter that imported what the fork
    server imports, to its exit: the task's cost without localflow."""
    import shutil
    import subprocess

    import localflow
    from localflow.fakes.store import ObjectStore  # the Pod localflow ran, for its exact command line

    ws = tempfile.mkdtemp(prefix="lf-scale-")
    try:
        run = localflow.run(str(path), workspace=ws, cache=False)
        assert run.state == "SUCCEEDED", run.error
        store = ObjectStore(str(Path(ws) / "localflow.db"))
        pod = store.list("Pod", namespace=None)[0]
        store.close()
        main = pod["spec"]["containers"][0]
        argv = main["command"] + main["args"]
        assert argv[1] == "-c", argv[:2]
        outs = [tempfile.mkdtemp(prefix="floor-", dir=ws) for _ in range(repeat)]
        done = subprocess.run([argv[0], "-c", _FLOOR], input=json.dumps([argv, outs]), capture_output=True,
                              text=True, check=True)
        return float(done.stdout.split()[-1])
    finally:
        shutil.rmtree(ws, ignore_errors=True)


def cli_first(path: Path, repeat: int) -> list[float]:
    """Seconds from starting ``localflow run SPEC`` to its first task's RUNNING line (existing workspace)."""
    import re
    import shutil
    import subprocess

    ws = tempfile.mkdtemp(prefix="lf-scale-cli-")
    out = []
    try:
        for i in range(repeat + 1):  # the first run creates the workspace: not counted
            t = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-m", "localflow", "run", str(path), "--workspace", ws],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            first = None
            for line in p.stdout:
                if first is None and re.search(r"\bRUNNING\b", line):
                    first = time.perf_counter() - t
            assert p.wait() == 0
            if i:
                out.append(first)
    finally:
        shutil.rmtree(ws, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="*", default=[50, 200, 1000, 5000])
    ap.add_argument("--only", choices=["loop", "dag", "chain", "first", "cli"], action="append")
    ap.add_argument("--repeat", type=int, default=3, help="runs of the chain and first-task figures")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    only = set(args.only or ["loop", "dag", "chain", "first", "cli"])
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
            per_task = 1000 * statistics.median(walls) / 20
            floor = task_floor(build("chain", 1, out_dir))
            row = {"n": 20, "per_task_ms": round(per_task, 2), "floor_ms": round(floor, 2),
                   "overhead_ms": round(per_task - floor, 2)}
            results["chain_20"] = row
            print("chain", json.dumps(row), flush=True)
        if "first" in only:
            firsts = first_task(build("chain", 1, out_dir), args.repeat)
            row = {"first_task_s": round(statistics.median(firsts), 3), "runs_s": [round(x, 3) for x in firsts]}
            results["first_task"] = row
            print("first", json.dumps(row), flush=True)
        if "cli" in only:
            firsts = cli_first(build("chain", 1, out_dir), args.repeat)
            row = {"cli_first_task_s": round(statistics.median(firsts), 3), "runs_s": [round(x, 3) for x in firsts]}
            results["cli_first_task"] = row
            print("cli", json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
