"""Pieces shared by the benchmark scripts: fresh-interpreter runs and the environment record.

Scripts run as ``python benchmarks/<script>.py``, so this folder is on ``sys.path``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib.metadata import version
from typing import Any

import numpy as np
import torch

__all__ = ["environment", "spawn"]


def spawn(script: str, mode: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``script --<mode> <spec as JSON>`` in a fresh interpreter; its last line as JSON.

    A fresh interpreter per variant keeps each variant's peak memory and warm-up its own.
    """
    command = [sys.executable, os.path.abspath(script), f"--{mode}", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{mode} failed for {spec}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def environment(threads: int) -> dict[str, Any]:
    """Versions and machine facts recorded next to every benchmark result."""
    return {
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "SALib": version("SALib"),
        "numpy": np.__version__,
        "threads": threads,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
    }
