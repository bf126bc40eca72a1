"""GPUs: how many a container asks for, and how many this machine has.

A container requests GPUs through an extended resource whose name contains ``gpu``
(``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915``), the test kubeflow/trainer's torch
plugin applies (``pkg/runtime/framework/plugins/torch/torch.go``, ``shouldUseCPU``).
"""
from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["gpu_resources", "detect_gpus"]


def gpu_resources(resources: dict | None) -> dict[str, int]:
    """``{resource name: count}`` for every GPU resource in ``resources`` (limits win over requests).

    ``resources`` is a container's ``resources`` mapping (``{limits: {...}, requests: {...}}``);
    counts are integers (a GPU quantity is a whole number); zero counts are left out.
    """
    out: dict[str, int] = {}
    if not isinstance(resources, dict):
        return out
    for section in ("requests", "limits"):
        values = resources.get(section) or {}
        if not isinstance(values, dict):
            continue
        for name, qty in values.items():
            if "gpu" not in str(name).lower():
                continue
            try:
                n = int(float(str(qty)))
            except ValueError:
                n = 1
            if n > 0:
                out[str(name)] = n
            else:
                out.pop(str(name), None)
    return out


def detect_gpus() -> int:
    """Number of GPUs on this machine.

    ``LOCALFLOW_GPUS`` (an integer) overrides detection; otherwise NVIDIA GPUs are counted from
    ``/proc/driver/nvidia/gpus`` or ``nvidia-smi -L``; 0 when neither exists.
    """
    override = os.environ.get("LOCALFLOW_GPUS")
    if override is not None and override.strip().isdigit():
        return int(override)
    proc = "/proc/driver/nvidia/gpus"
    if os.path.isdir(proc):
        return len(os.listdir(proc))
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10).stdout
            return sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            return 0
    return 0
