"""What every benchmark shares: where things are, which core does what, what machine it was."""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio

from aiobpf._defaults import BACKENDS

T = TypeVar("T")

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


def run_trial(module: str, spec: Any, src: str | None = None) -> dict[str, Any]:
    """Runs one trial of ``benchmarks.<module>`` in a fresh process (``--trial <spec as JSON>``),
    so that no trial inherits another's memory, threads or loaded programs; with ``src``, that
    checkout's aiobpf (its ``src`` first on PYTHONPATH)."""
    env = None if src is None else {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", "--trial", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(f"trial {spec} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout))


def in_shuffled_order(trials: Sequence[T], turn: int) -> list[T]:
    """The trials of one turn, in an order of their own (the same for turn ``turn`` in every
    run of a command). On a noisy host a trial's place in its turn can weigh as much as what it
    measures: one run timed two copies of the same code at 59 and 101 µs a read, each always in
    the same place."""
    order = list(trials)
    random.Random(turn).shuffle(order)
    return order


def go(generator: subprocess.Popen[bytes]) -> tuple[float, float]:
    """Starts a generator waiting on its stdin; returns the wall and CPU clocks at that moment."""
    assert generator.stdin is not None
    start = time.monotonic(), time.process_time()
    generator.stdin.write(b"g")
    generator.stdin.close()
    return start


def finish(
    generator: subprocess.Popen[bytes],
    start: tuple[float, float],
    counts: dict[str, int],
    cpu: float | None = None,
) -> dict[str, Any]:
    """A trial's figures: what the generator offered, and the consumer's rates, loss and CPU.

    ``counts`` has produced, dropped (the kernel's count: the ring was full), received and, for a
    consumer that can drop in user space, user_dropped; balanced means those add up exactly.
    ``cpu`` is the consumer's CPU seconds when it ran in a process of its own (this process's
    since ``start`` otherwise)."""
    wall = time.monotonic() - start[0]
    if cpu is None:
        cpu = time.process_time() - start[1]
    assert generator.stdout is not None
    offered_calls, offered_seconds = generator.stdout.read().split()
    produced, dropped, received = counts["produced"], counts["dropped"], counts["received"]
    user_dropped = counts.get("user_dropped", 0)
    return {
        **counts,
        "user_dropped": user_dropped,
        "balanced": produced == received + dropped + user_dropped,
        "offered_per_s": int(offered_calls) / float(offered_seconds),
        "received_per_s": received / wall,
        "drop_pct": 100.0 * dropped / produced if produced else 0.0,
        "user_drop_pct": 100.0 * user_dropped / produced if produced else 0.0,
        "cpu_pct": 100.0 * cpu / wall,
        "cpu_us_per_record": 1e6 * cpu / received if received else 0.0,
        "cpu_us_per_wakeup": 1e6 * cpu / counts["wakeups"] if counts.get("wakeups") else 0.0,
        "wakeups_per_s": counts.get("wakeups", 0) / wall,
        "wall_s": wall,
    }


def latency_percentiles(samples: list[int]) -> dict[str, float]:
    """p50/p99/max of end-to-end latency samples (ns), in microseconds."""
    if not samples:
        return {}
    import numpy as np

    p50, p99 = np.percentile(np.array(samples, dtype=np.float64), [50, 99]).tolist()
    return {
        "latency_p50_us": p50 / 1e3,
        "latency_p99_us": p99 / 1e3,
        "latency_max_us": max(samples) / 1e3,
    }


def batch_latencies(batch: Any, before: int, now_ns: int, every: int) -> list[int]:
    """Latency samples (ns) from a batch, of the records a per-record consumer samples: those
    whose number over the whole trial (from 1, ``before`` received earlier) is a multiple of
    ``every``, as the BCC callbacks count. The batch's first record, its oldest, would bias
    the sample, and a numpy call on every batch would cost the batch path more than the
    callback pays to sample."""
    first = -(before + 1) % every
    if first >= len(batch):
        return []
    samples: list[int] = (now_ns - batch["timestamp_ns"][first::every]).tolist()
    return samples


def budgets(text: str) -> list[float | str]:
    """aiobpf latency budgets from the command line: milliseconds, or ``auto`` (the default)."""
    return [item if item == "auto" else float(item) for item in text.split(",")]


def max_latency(budget_ms: float | str) -> Any:
    """The ``max_latency`` argument for a budget in milliseconds (or ``auto``)."""
    return budget_ms if isinstance(budget_ms, str) else budget_ms / 1e3


def budget_label(budget_ms: float | str) -> str:
    """A budget as a series label suffix: ``+auto``, ``+1ms``, or nothing for reading at once."""
    if isinstance(budget_ms, str):
        return f"+{budget_ms}"
    return f"+{budget_ms:g}ms" if budget_ms else ""


#: The event loops a trial runs on: anyio's two backends, and asyncio with uvloop's loop.
LOOPS = tuple(BACKENDS)


def run_on(loop: str, func: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Runs ``func(*args)`` on ``loop`` (one of :data:`LOOPS`), as the command's ``--backend``."""
    backend, options = BACKENDS[loop]
    return anyio.run(func, *args, backend=backend, backend_options=options)
