"""Benchmark: what ``packages_to_install`` costs on localflow, first task and cached task.

Run separately from the test suite (it is not collected by pytest)::

    python tests/benchmarks/bench_packages.py [--package inflection] [--repeat 3] [--json out.json]

One lightweight component with ``packages_to_install=[PACKAGE]`` (a package localflow's
interpreter lacks), run as a one-task pipeline, caching off:

- ``first``: a fresh workspace, so the task creates the venv and installs the package (uv when
  installed, else pip; the machine's pip configuration and index apply);
- ``cached``: the same workspace again, the venv reused (no installation; warm start on the venv);
- ``plain``: the same component without packages, for the per-task floor.

Figures are medians of ``--repeat`` runs of ``perf_counter`` around ``localflow.run`` (compilation
excluded). Needs the package index the machine's pip uses.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time


def _pipelines(package: str):
    from kfp import dsl

    @dsl.component(base_image="python:3.11", packages_to_install=[package])
    def with_package() -> str:
        import sys

        return sys.prefix

    @dsl.component(base_image="python:3.11")
    def without_package() -> str:
        import sys

        return sys.prefix

    @dsl.pipeline(name="bench-packages")
    def with_p() -> str:
        return with_package().set_caching_options(False).output

    @dsl.pipeline(name="bench-no-packages")
    def without_p() -> str:
        return without_package().set_caching_options(False).output

    return with_p, without_p


def _time(pipeline, workspace: str) -> float:
    import localflow

    t = time.perf_counter()
    run = localflow.run(pipeline, workspace=workspace, cache=False)
    elapsed = time.perf_counter() - t
    assert run.state == "SUCCEEDED", run.error
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="inflection", help="a small package NOT installed here")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if subprocess.run([sys.executable, "-c", f"import {args.package.replace('-', '_')}"],
                      capture_output=True).returncode == 0:
        parser.error(f"{args.package} is installed in {sys.executable}: pick a package it lacks")
    with_p, without_p = _pipelines(args.package)
    figures = {"first": [], "cached": [], "plain": []}
    for _ in range(args.repeat):
        ws = tempfile.mkdtemp(prefix="lf-bench-packages-")
        figures["first"].append(_time(with_p, ws))
        figures["cached"].append(_time(with_p, ws))
        figures["plain"].append(_time(without_p, ws))
    result = {k: round(statistics.median(v), 3) for k, v in figures.items()}
    for key, label in (("first", "first task (venv created, package installed)"),
                       ("cached", "cached task (venv reused)"), ("plain", "task without packages")):
        print(f"{label:48s} {result[key]:7.3f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"package": args.package, "median_s": result, "runs_s": figures}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
