"""What every benchmark shares: where things are, which core does what, what machine it was."""

from __future__ import annotations

import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONSUMER_CPU, GENERATOR_CPU = 0, 1


def machine() -> str:
    """CPU count and model, kernel and Python: the line each result table starts with."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    models = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
    model = models[0] if models else platform.machine()
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )
