"""CPU per exec event of turning ring records into typed ``ExecveEvent``s (``decode``).

A batch of 64 synthetic records (``ls --color=auto -la /var/log`` run by bash) is decoded over
and over; the figure is process CPU time per event. ``--previous SRC`` times another
checkout's decoder (its ``src`` first on PYTHONPATH) in turns with this one, each trial in a
fresh process, so the two are measured side by side in one run.

    .venv/bin/python -m benchmarks.decode [--repeat 7] [--previous OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from ._common import ROOT, machine

BATCH, ROUNDS = 64, 2000


def trial() -> float:
    """CPU µs per event, decoding the synthetic batch ROUNDS times in this process."""
    import numpy as np

    from aiobpf.lowlevel import EXECVE_RECORD
    from aiobpf.programs import ExecveEvent

    records = np.zeros(BATCH, dtype=EXECVE_RECORD)
    argv = b"ls\0--color=auto\0-la\0/var/log\0"
    records["pid"], records["uid"], records["timestamp_ns"] = 4242, 1000, 10**12
    records["comm"], records["filename"], records["message"] = b"ls", b"/usr/bin/ls", b"hello"
    records["args"], records["argc"] = argv, 4
    if "args_size" in (records.dtype.names or ()):
        records["args_size"] = len(argv)
    assert ExecveEvent.decode(records)[0].argv == ("ls", "--color=auto", "-la", "/var/log")
    start = time.process_time()
    for _ in range(ROUNDS):
        ExecveEvent.decode(records)
    return (time.process_time() - start) / (ROUNDS * BATCH) * 1e6


def _run(src: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.decode", "--trial"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return float(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--previous", help="another checkout's src, timed in turns")
    parser.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        print(trial())
        return
    sources = {"this checkout": str(ROOT / "src")}
    if args.previous:
        sources[args.previous] = args.previous
    times: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(args.repeat):
        for name, src in sources.items():
            times[name].append(_run(src))
    print(f"Machine: {machine()}")
    previous = f" --previous {args.previous}" if args.previous else ""
    print(f"Command: .venv/bin/python -m benchmarks.decode --repeat {args.repeat}{previous}")
    print(f"Medians of {args.repeat} trials each, in turns; {BATCH}-record batches.\n")
    print("| decoder | CPU µs per event | min - max |")
    print("|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} - {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
