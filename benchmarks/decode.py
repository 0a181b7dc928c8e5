"""CPU per exec event of turning ring records into typed ``ExecveEvent``s (``decode``).

A batch of synthetic records (``ls --color=auto -la /var/log`` run by bash; 64 of them, or
``--batch`` N: at a thousand execs a second a read takes about four) is decoded over and over;
the figure is process CPU time per event. ``--previous SRC`` times another
checkout's decoder (its ``src`` first on PYTHONPATH) in turns with this one, each trial in a
fresh process, so the two are measured side by side in one run.

    .venv/bin/python -m benchmarks.decode [--repeat 7] [--batch 64] [--previous OTHER_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

from ._common import ROOT, machine

EVENTS = 128_000  # decoded per trial, in batches of --batch


def trial(batch: int) -> float:
    """CPU µs per event, decoding a synthetic batch of ``batch`` records over and over."""
    import numpy as np

    from aiobpf.lowlevel import EXECVE_RECORD
    from aiobpf.programs import ExecveEvent

    records = np.zeros(batch, dtype=EXECVE_RECORD)
    argv = b"ls\0--color=auto\0-la\0/var/log\0"
    records["pid"], records["uid"], records["timestamp_ns"] = 4242, 1000, 10**12
    records["comm"], records["filename"], records["message"] = b"ls", b"/usr/bin/ls", b"hello"
    records["args"], records["argc"] = argv, 4
    if "args_size" in (records.dtype.names or ()):
        records["args_size"] = len(argv)
    assert ExecveEvent.decode(records)[0].argv == ("ls", "--color=auto", "-la", "/var/log")
    rounds = EVENTS // batch
    start = time.process_time()
    for _ in range(rounds):
        ExecveEvent.decode(records)
    return (time.process_time() - start) / (rounds * batch) * 1e6


def _run(src: str, batch: int) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.decode", "--trial", "--batch", str(batch)],
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
    parser.add_argument("--batch", type=int, default=64, help="records per decoded batch")
    parser.add_argument("--previous", help="another checkout's src, timed in turns")
    parser.add_argument("--trial", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.trial:
        print(trial(args.batch))
        return
    sources = {"this checkout": str(ROOT / "src")}
    if args.previous:
        sources[args.previous] = args.previous
    times: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(args.repeat):
        for name, src in sources.items():
            times[name].append(_run(src, args.batch))
    print(f"Machine: {machine()}")
    previous = f" --previous {args.previous}" if args.previous else ""
    print(
        f"Command: .venv/bin/python -m benchmarks.decode --repeat {args.repeat} "
        f"--batch {args.batch}{previous}"
    )
    print(f"Medians of {args.repeat} trials each, in turns; {args.batch}-record batches.\n")
    print("| decoder | CPU µs per event | min - max |")
    print("|---|---|---|")
    for name, values in times.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} - {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
