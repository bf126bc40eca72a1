"""Long fuzz run over the scenario and corpus specs (issue 7 §3); not collected by pytest.

Uses the mutations and checks of ``tests/test_fuzz_specs.py`` with many more examples and a
random seed (``--seed`` to repeat one)::

    python tests/benchmarks/fuzz_specs_long.py [--examples 2000] [--runs 100] [--timeout 60] [--seed N]

``--examples`` mutants go through the loader and validation in-process (scenarios and corpus);
``--runs`` of them through ``localflow run`` in a subprocess with the per-example timeout (then
Ctrl-C). Prints how many mutants were tried, how they ended (accepted, refused with exit 2, ...)
and every failure (internal error, traceback, hang, a file written outside the workspace) with the
mutation that caused it; the mutant files of failures are kept in ``--keep`` (default a temp dir).
Exit status 1 when anything failed.
"""
from __future__ import annotations

import argparse
import collections
import random
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import test_fuzz_specs as F  # noqa: E402

from localflow.errors import LocalflowError  # noqa: E402


def fuzz_pool(name, pool, examples, run_seed, outcomes, record) -> None:
    """``examples`` mutants of ``pool`` through the in-process loader and validation."""
    @seed(run_seed)
    @settings(F.FUZZ, derandomize=False, max_examples=examples, phases=[Phase.generate])
    @given(st.data())
    def in_process(data):
        seed_file, text, how = F.draw_mutant(data, pool)
        with tempfile.TemporaryDirectory(prefix="lf-fuzz-") as d:
            spec = Path(d) / "mutant.yaml"
            spec.write_text(text)
            try:
                F.validate_in_process(spec)
                outcomes[f"{name}: valid"] += 1
            except LocalflowError as exc:
                outcomes[f"{name}: refused ({type(exc).__name__})"] += 1
            except Exception as exc:  # noqa: BLE001 - every other exception is the bug being hunted
                outcomes[f"{name}: INTERNAL ERROR"] += 1
                record("in-process", seed_file, how, text, f"{type(exc).__name__}: {exc}")
    in_process()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", default=None, help="directory for the mutants that failed")
    args = ap.parse_args()
    run_seed = args.seed if args.seed is not None else random.randrange(2**32)
    keep = Path(args.keep or tempfile.mkdtemp(prefix="lf-fuzz-failures-"))
    keep.mkdir(parents=True, exist_ok=True)
    outcomes: collections.Counter = collections.Counter()
    failures: list[str] = []

    def record(kind: str, seed_file: Path, how: str, text: str, detail: str) -> None:
        n = len(failures)
        (keep / f"{n:04d}-{seed_file.name}").write_text(text)
        failures.append(f"[{kind}] {seed_file.name}: {how}\n    {detail[-600:]}")

    pools = [("scenarios", F.SCENARIO_SEEDS)] + ([("corpus", F.CORPUS_SEEDS)] if F.CORPUS_SEEDS else [])
    t0 = time.monotonic()
    for name, pool in pools:
        fuzz_pool(name, pool, args.examples // len(pools), run_seed, outcomes, record)


    if args.runs:
        @seed(run_seed)
        @settings(F.FUZZ, derandomize=False, max_examples=args.runs, phases=[Phase.generate])
        @given(st.data())
        def run(data):
            seed_file, text, how = F.draw_mutant(data, F.RUN_SEEDS)
            try:
                F.check_mutant_run(text, how, seed_file, timeout=args.timeout)
                outcomes["localflow run: clean exit"] += 1
            except AssertionError as exc:
                outcomes["localflow run: FAILED"] += 1
                record("run", seed_file, how, text, str(exc))
        run()

    total = sum(outcomes.values())
    print(f"fuzz seed {run_seed}: {total} mutants in {time.monotonic() - t0:.0f} s")
    for k, v in sorted(outcomes.items()):
        print(f"  {v:6d}  {k}")
    for f in failures:
        print(f)
    if failures:
        print(f"{len(failures)} failures; mutants kept in {keep}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
