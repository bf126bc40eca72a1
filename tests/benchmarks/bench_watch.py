"""Benchmark: the object store's write throughput and cross-process watch latency.

Usage: ``python tests/benchmarks/bench_watch.py [--writes 2000] [--latency-samples 200] [--events 5000]``.
Prints one JSON line. Run it against another checkout for a before/after comparison, e.g.
``PYTHONPATH=/path/to/old/checkout python tests/benchmarks/bench_watch.py`` (it uses only the
store API that existed before the change log: create, patch, delete, record_event, watch).

(a) write throughput, in one process on a fresh workspace file: ``--writes`` ConfigMap creates,
    as many merge patches, and as many deletes (writes/s each);
(b) Event de-dup: the time of one repeated ``record_event`` once ``--events`` distinct Events
    exist (median of 50 repeats, ms);
(c) cross-process watch latency: a writer process creates ``--latency-samples`` ConfigMaps, one
    per request from this process, each stamped with the writer's wall time just before the
    write; this process's watch measures receipt time minus stamp (median and p95, ms). A store
    whose watches do not see other processes reports ``null`` (no event within 2 s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localflow.fakes import ObjectStore

WRITER = r"""
import sys, time
from localflow.fakes import ObjectStore
s = ObjectStore(sys.argv[1])
for line in sys.stdin:
    s.create({"kind": "ConfigMap", "metadata": {"name": line.strip(), "annotations": {"t": repr(time.time())}}})
    print("ok", flush=True)
s.close()
"""


def cm(i: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "labels": {"app": "bench"}},
            "data": {"payload": "x" * 400, "index": str(i)}}


def throughput(db: Path, n: int) -> dict:
    with ObjectStore(db) as s:
        out = {}
        t = time.perf_counter()
        for i in range(n):
            s.create(cm(i))
        out["create_per_s"] = round(n / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(n):
            s.patch("cm", f"cm-{i}", {"data": {"index": str(-i)}})
        out["patch_per_s"] = round(n / (time.perf_counter() - t))
        t = time.perf_counter()
        for i in range(n):
            s.delete("cm", f"cm-{i}")
        out["delete_per_s"] = round(n / (time.perf_counter() - t))
    return out


def event_dedup(db: Path, n_events: int) -> float:
    with ObjectStore(db) as s:
        pods = [s.create({"kind": "Pod", "metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}) for i in range(20)]
        for i in range(n_events):
            s.record_event(pods[i % 20], "Pulled", f"image {i} present")
        times = []
        for _ in range(50):
            t = time.perf_counter()
            s.record_event(pods[0], "BackOff", "Back-off restarting failed container", type="Warning")
            times.append(time.perf_counter() - t)
    return round(statistics.median(times) * 1000, 3)


def latency(db: Path, samples: int) -> dict | None:
    with ObjectStore(db) as s:
        w = s.watch("cm")
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        lat = []
        try:
            for i in range(samples):
                proc.stdin.write(f"lat-{i}\n")
                proc.stdin.flush()
                proc.stdout.readline()
                ev = w.get(timeout=2)
                if ev is None:
                    return None
                lat.append(time.time() - float(ev.object["metadata"]["annotations"]["t"]))
        finally:
            proc.stdin.close()
            proc.wait(timeout=60)
            w.close()
    lat.sort()
    return {"median_ms": round(statistics.median(lat) * 1000, 2), "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--latency-samples", type=int, default=200)
    ap.add_argument("--events", type=int, default=5000)
    args = ap.parse_args()
    import localflow.fakes as fakes

    with tempfile.TemporaryDirectory() as tmp:
        result = {"store": str(Path(fakes.__file__).parent), **throughput(Path(tmp) / "w.db", args.writes)}
        result["event_repeat_ms_at_%d_events" % args.events] = event_dedup(Path(tmp) / "e.db", args.events)
        result["cross_process_watch"] = latency(Path(tmp) / "l.db", args.latency_samples)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
