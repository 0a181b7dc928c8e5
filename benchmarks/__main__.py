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

PLANS: dict[str, list[list[str]]] = {
    "quick": [
        ["ring_throughput", "--calls", "500000", "--repeat", "1", "--rates", "0,1000000"],
        ["dispatch_overhead", "--calls", "500000", "--repeat", "3"],
        ["window_pushdown", "--execs", "3000", "--repeat", "1"],
        ["soak", "--duration", "30"],
    ],
    "full": [
        ["ring_throughput", "--calls", "2000000", "--repeat", "3"],
        [
            "ring_throughput",
            "--calls",
            "50000",
            "--repeat",
            "3",
            "--rates",
            "10000",
            "--out",
            "benchmarks/out/latency.ndjson",
        ],
        ["dispatch_overhead", "--calls", "2000000", "--repeat", "5"],
        ["window_pushdown", "--execs", "10000", "--repeat", "3"],
        ["soak", "--duration", "600"],
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
