"""The ``localflow`` command as tests call it: a real subprocess (``python -m localflow``)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lf(*args, check: int | None = None, cwd=None, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``localflow ARGS`` (each arg ``str()``-ed) in ``cwd`` (default: this process's) with output
    captured; assert its exit code when ``check`` is given, and always that no traceback or internal
    error reached stderr (every bad input is one line). ``kwargs`` go to :func:`subprocess.run`."""
    p = subprocess.run([sys.executable, "-m", "localflow", *map(str, args)], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout, **kwargs)
    if check is not None:
        assert p.returncode == check, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    return p
