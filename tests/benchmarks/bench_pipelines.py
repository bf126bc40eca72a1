"""Benchmark: localflow beside kfp.local on the same pipelines, in one process.

Run separately from the test suite (it is not collected by pytest)::

    python tests/benchmarks/bench_pipelines.py [--repeat 3] [--skip-kfp-local] [--json out.json]

(a) per-task overhead: ``scenarios/pipelines/noop_chain.py``, 20 sequential no-op default
    lightweight components (their pip bootstrap included); figure = median wall time / 20.
    Target: at least 8x lower than kfp.local (``SubprocessRunner(use_venv=False)``).
(b) ``scenarios/pipelines/sleep_fanout.py``, 10 independent tasks that each sleep 1 s; figure =
    median wall time. Target: <= 1.5 s (kfp.local runs them one after another: ~10.7 s).

Wall time is ``perf_counter`` around the pipeline call only (imports and compilation excluded);
each configuration runs ``--repeat`` times in this process, caching off, fresh workspaces.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scenarios" / "pipelines" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_localflow(yaml_path: Path, repeat: int) -> list[float]:
    import localflow

    out = []
    for _ in range(repeat):
        ws = tempfile.mkdtemp(prefix="lf-bench-")
        t = time.perf_counter()
        run = localflow.run(str(yaml_path), workspace=ws, cache=False)
        out.append(time.perf_counter() - t)
        assert run.state == "SUCCEEDED", run.error
    return out


def time_kfp_local(pipeline, repeat: int) -> list[float]:
    from kfp import local

    out = []
    for _ in range(repeat):
        root = tempfile.mkdtemp(prefix="kfp-local-bench-")
        local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)
        t = time.perf_counter()
        pipeline()
        out.append(time.perf_counter() - t)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-kfp-local", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    results = {}
    for key, name, n in (("a_noop_chain_20", "noop_chain", 20), ("b_sleep_fanout_10x1s", "sleep_fanout", 10)):
        mod = load(name)
        lf = time_localflow(ROOT / "scenarios" / "pipelines" / f"{name}.yaml", args.repeat)
        row = {"localflow_runs_s": [round(x, 3) for x in lf], "localflow_median_s": round(statistics.median(lf), 3)}
        if not args.skip_kfp_local:
            kl = time_kfp_local(mod.pipeline, args.repeat)
            row.update({"kfp_local_runs_s": [round(x, 3) for x in kl], "kfp_local_median_s": round(statistics.median(kl), 3)})
            row["speedup"] = round(row["kfp_local_median_s"] / row["localflow_median_s"], 2)
        if key.startswith("a_"):
            row["localflow_per_task_s"] = round(row["localflow_median_s"] / n, 4)
            if "kfp_local_median_s" in row:
                row["kfp_local_per_task_s"] = round(row["kfp_local_median_s"] / n, 4)
        results[key] = row
        print(key, json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
