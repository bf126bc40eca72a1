"""Benchmark: job start latency (apply -> all replicas Running) of a 4-replica TFJob on this machine.

Usage: ``python tests/benchmarks/bench_training_start.py [--repeats 5] [--executor subprocess]``.
Prints one JSON line: per-run latencies in seconds, median and max. Each replica is a Python
process that waits for a release file, so "Running" is measured before any replica can finish.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from localflow.api import open_runtime
from localflow.controllers.trainingjob import TrainingJobController


def tfjob(name: str, gate: Path) -> dict:
    code = f"import os, time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    rs = lambda n: {"replicas": n, "restartPolicy": "Never", "template": {"spec": {"containers": [  # noqa: E731
        {"name": "tensorflow", "image": "python:3.11", "command": [sys.executable, "-c", code],
         "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": name},
            "spec": {"tfReplicaSpecs": {"Chief": rs(1), "PS": rs(1), "Worker": rs(2)}}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--executor", default="subprocess")
    args = ap.parse_args()
    latencies = []
    with tempfile.TemporaryDirectory() as tmp, open_runtime(Path(tmp) / "ws", args.executor) as rt:
        ctl = TrainingJobController(rt.store, rt.scheduler, rt.clock)
        for i in range(args.repeats):
            gate = Path(tmp) / f"go-{i}"
            name = f"bench-{i}"
            t0 = time.perf_counter()
            ctl.apply(tfjob(name, gate))
            while True:
                pods = rt.store.list("Pod", "default", label_selector={"training.kubeflow.org/job-name": name})
                if len(pods) == 4 and all(p["status"].get("phase") == "Running" for p in pods):
                    break
                time.sleep(0.005)
            latencies.append(time.perf_counter() - t0)
            gate.write_text("")
            ctl.run_until_done(name, timeout=60)
    print(json.dumps({"benchmark": "training_job_start_latency", "replicas": 4, "executor": args.executor,
                      "latencies_s": [round(x, 4) for x in latencies],
                      "median_s": round(statistics.median(latencies), 4), "max_s": round(max(latencies), 4)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
