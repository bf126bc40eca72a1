"""Benchmark: per-task container overhead of the docker executor beside kfp.local's DockerRunner.

    python tests/benchmarks/bench_docker.py [--repeat 3] [--tasks 10]

A chain of ``--tasks`` sequential busybox container components (``echo``), run by localflow with
``--executor docker`` and by ``kfp.local.DockerRunner`` in this process; figure = median wall
time / tasks. Target: localflow no slower than kfp.local (~0.34 s per busybox task on a 2-core
machine). Needs a Docker engine and ``localflow/busybox:latest`` (``bash .ci/docker-setup.sh``);
it is tagged ``busybox:latest`` locally because kfp.local would otherwise try to pull it.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time

import docker
from kfp import dsl

import localflow


@dsl.container_component
def hello(i: int):
    return dsl.ContainerSpec(image="busybox:latest", command=["echo"], args=["hello", i])


def make_pipeline(n: int):
    @dsl.pipeline(name="docker-chain")
    def chain():
        t = hello(i=0).set_caching_options(False)
        for i in range(1, n):
            t = hello(i=i).set_caching_options(False).after(t)
    return chain


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--skip-kfp-local", action="store_true")
    args = ap.parse_args(argv)
    client = docker.from_env()
    client.images.get("localflow/busybox:latest").tag("busybox", "latest")
    pipeline = make_pipeline(args.tasks)
    lf = []
    for _ in range(args.repeat):
        ws = tempfile.mkdtemp(prefix="lf-docker-bench-")
        t = time.perf_counter()
        run = localflow.run(pipeline, executor="docker", workspace=ws, cache=False)
        lf.append(time.perf_counter() - t)
        assert run.state == "SUCCEEDED", run.error
    row = {"tasks": args.tasks, "localflow_runs_s": [round(x, 3) for x in lf],
           "localflow_per_task_s": round(statistics.median(lf) / args.tasks, 3)}
    if not args.skip_kfp_local:
        from kfp import local

        kl = []
        for _ in range(args.repeat):
            local.init(runner=local.DockerRunner(), pipeline_root=tempfile.mkdtemp(prefix="kfp-docker-bench-"))
            t = time.perf_counter()
            pipeline()
            kl.append(time.perf_counter() - t)
        row.update({"kfp_local_runs_s": [round(x, 3) for x in kl],
                    "kfp_local_per_task_s": round(statistics.median(kl) / args.tasks, 3)})
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
