"""Every benchmark, one after another: ``python -m benchmarks [quick|full]``.

``quick`` (under 5 minutes) runs each with small counts and one repetition where the noise
allows it; ``full`` runs them as measured in RESULTS.md and RELIABILITY.md. Each benchmark's
table goes to standard output and, together, to ``benchmarks/out/<mode>.md``; raw NDJSON per run
stays in ``benchmarks/out/``.

    sudo .venv/bin/python -m benchmarks quick
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def ring(name: str, *args: str, calls: str = "4000000", seconds: str = "3") -> list[str]:
    """A ring_throughput sweep, three repetitions, its rows in benchmarks/out/<name>.ndjson."""
    out = f"benchmarks/out/{name}.ndjson"
    return ["ring_throughput", "--calls", calls, "--seconds", seconds, *args, "--out", out]


def plot(name: str, x: str) -> list[str]:
    """benchmarks/plots/<name>.png from that sweep's rows."""
    return [
        "plot",
        f"benchmarks/out/{name}.ndjson",
        "--x",
        x,
        "--out",
        f"benchmarks/plots/{name}.png",
    ]


BASELINES = ["--consumers", "bcc-callback,bcc-perf,aiobpf-batches", "--loops", "asyncio"]
#: Real arrivals: calls spaced evenly, one at a time, at rates where each wakes the consumer;
#: aiobpf's batch and record paths on every loop, at default settings and reading at once,
#: against BCC's callback and the C floor.
ARRIVALS = [
    *("--pattern", "even", "--rates", "1000,10000,100000", "--budgets", "auto,0"),
    *("--consumers", "bcc-callback,libbpf-c,aiobpf-batches,aiobpf-records"),
    *("--loops", "asyncio,uvloop,trio"),
]
PLANS: dict[str, list[list[str]]] = {
    "quick": [
        ring("quick_load", "--repeat", "1", "--rates", "0,100000", calls="1000000", seconds="1"),
        ring("quick_arrivals", "--repeat", "1", *ARRIVALS, calls="1000000", seconds="2"),
        ["execve_throughput", "--execs", "5000", "--repeat", "1", "--rates", "0"],
        ["dispatch_overhead", "--calls", "500000", "--repeat", "3"],
        ["window_pushdown", "--execs", "3000", "--repeat", "1"],
        ["soak", "--duration", "30"],
        ["fleet_publish", "--events", "20000", "--repeat", "1"],
        ["decode", "--repeat", "3"],
        ["loop_floor", "--repeat", "1", "--seconds", "2"],
        ["close_stall", "--repeat", "1"],
    ],
    "full": [
        # offered load: every consumer, both loops, with and without a 1 ms budget
        ring("load", "--repeat", "3", "--rates", "0,1000000,500000,250000,100000"),
        # arrivals spaced evenly (one wake-up per call at low rates): CPU per record and wake-up
        ring("arrivals", "--repeat", "3", *ARRIVALS),
        plot("load", "offered"),
        # ring size and record size (unpaced), latency budget (at 100 k/s)
        ring(
            "ring_size",
            "--repeat",
            "3",
            "--rates",
            "0",
            "--ring-kib",
            "64,256,1024,4096,16384",
            *BASELINES,
        ),
        plot("ring_size", "ring"),
        ring(
            "record_size",
            "--repeat",
            "3",
            "--rates",
            "0",
            "--record-bytes",
            "32,128,512,2048",
            *BASELINES,
        ),
        plot("record_size", "record"),
        ring(
            "budget",
            "--repeat",
            "3",
            "--rates",
            "100000",
            "--budgets",
            "0,0.1,1,10",
            "--consumers",
            "bcc-callback,aiobpf-batches,aiobpf-records",
        ),
        plot("budget", "budget"),
        # latency at a low rate, where nothing queues
        ring("latency", "--repeat", "3", "--rates", "10000", calls="50000", seconds="5"),
        # the low-latency mode against sleeping readers
        ring(
            "busy_poll",
            "--repeat",
            "3",
            "--rates",
            "10000,100000",
            "--budgets",
            "0",
            "--busy-polls",
            "0,10000",
            "--consumers",
            "bcc-callback,bcc-perf,aiobpf-batches,aiobpf-records",
            calls="50000",
            seconds="5",
        ),
        plot("busy_poll", "offered"),
        [
            "execve_throughput",
            "--execs",
            "20000",
            "--repeat",
            "3",
            "--rates",
            "0,1000",
            "--budgets",
            "auto,0,10",
        ],
        ["dispatch_overhead", "--calls", "2000000", "--repeat", "5"],
        ["window_pushdown", "--execs", "10000", "--repeat", "3"],
        ["soak", "--duration", "600"],
        ["first_event", "--starts", "7"],
        ["fleet_publish", "--events", "100000", "--repeat", "3"],
        ["decode", "--repeat", "7"],
        ["loop_floor", "--repeat", "5", "--seconds", "4"],
        ["close_stall", "--repeat", "5"],
    ],
}


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "quick"
    if mode not in PLANS:
        print(f"usage: python -m benchmarks [{'|'.join(PLANS)}]", file=sys.stderr)
        return 2
    report = ROOT / "benchmarks" / "out" / f"{mode}.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    failed = 0
    with report.open("w") as out:
        for name, *args in PLANS[mode]:
            command = [sys.executable, "-m", f"benchmarks.{name}", *args]
            print(f"## {name} {' '.join(args)}", flush=True)
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            failed += result.returncode != 0
            text = result.stdout if result.returncode == 0 else result.stdout + result.stderr
            print(text, flush=True)
            out.write(f"## {name} {' '.join(args)}\n\n{text}\n")
    print(f"-- written to {report.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
