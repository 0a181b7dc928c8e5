"""Plots of ring_throughput's NDJSON: drop %, consumer CPU % and latency against one swept knob.

Each series is one consumer (with its event loop and latency budget); each point is the median
of its repetitions. The x axis is the knob that varies in the file: offered load (the rate the
generator actually achieved, so unpaced runs sit where the producer topped out), ring size,
record size or latency budget.

    .venv/bin/python -m benchmarks.plot benchmarks/out/load.ndjson --x offered --out load.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no screen
import matplotlib.pyplot as plt

from benchmarks._common import budget_label
from benchmarks.ring_throughput import BCC_CONSUMERS

AXES = {
    "offered": ("offered load (calls/s, as achieved)", "offered_per_s", "log"),
    "ring": ("ring size (KiB)", "ring_kib", "log"),
    "record": ("record size (bytes)", "record_bytes", "log"),
    "budget": ("latency budget (ms)", "budget_ms", "symlog"),
}
PANELS = [
    ("drop %", "drop_pct", "linear"),
    ("consumer CPU % (one core)", "cpu_pct", "linear"),
    ("latency p50 (µs)", "latency_p50_us", "log"),
    ("latency p99 (µs)", "latency_p99_us", "log"),
]


def series_label(row: dict[str, Any], x: str) -> str:
    """Consumer, loop and (unless it is on the x axis) budget."""
    if row["consumer"] in BCC_CONSUMERS:
        return str(row["consumer"])
    mode = " " + budget_label(row["budget_ms"]) if row["budget_ms"] and x != "budget" else ""
    if row.get("busy_poll_us"):
        mode = f" +poll{row['busy_poll_us']:g}us"
    return f"{row['consumer'].removeprefix('aiobpf-')}{mode} ({row['loop']})"


COLOURS = {
    "bcc-callback": "black",
    "bcc-perf": "grey",
    "aiobpf-batches": "tab:blue",
    "aiobpf-perf": "tab:cyan",
    "aiobpf-records": "tab:orange",
    "aiobpf-operators": "tab:green",
    "aiobpf-route": "tab:purple",
    "aiobpf-route-lossy": "tab:red",
}


def _style(row: dict[str, Any], x: str) -> dict[str, Any]:
    """Colour by consumer, line by loop (BCC dashed, trio dotted), marker by reading mode
    (square: a latency budget, triangle: busy polling)."""
    line = "--" if row["consumer"] in BCC_CONSUMERS else (":" if row["loop"] == "trio" else "-")
    marker = "s" if row["budget_ms"] and x != "budget" else "o"
    if row.get("busy_poll_us"):
        marker = "^"
    return {"color": COLOURS[row["consumer"]], "linestyle": line, "marker": marker}


def plot(rows: list[dict[str, Any]], x: str, title: str, out: Path) -> None:
    x_label, x_key, x_scale = AXES[x]
    # a point is (series, configuration); the configuration is everything but the repetition
    points: dict[str, dict[Any, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if x == "budget" and isinstance(row["budget_ms"], str):
            continue  # the adaptive budget has no place on a budget axis
        configuration = (
            row["rate"],
            row["ring_kib"],
            row["record_bytes"],
            row["budget_ms"],
            row.get("busy_poll_us", 0.0),
        )
        points[series_label(row, x)][configuration].append(row)
    figure, grid = plt.subplots(2, 2, figsize=(13, 8.5))
    axes = grid.flatten()
    for label, configurations in points.items():
        xs: list[float] = []
        ys: dict[str, list[float]] = {key: [] for _, key, _ in PANELS}
        for runs in configurations.values():
            xs.append(statistics.median(r[x_key] for r in runs))
            for _, key, _ in PANELS:
                ys[key].append(statistics.median(r.get(key, float("nan")) for r in runs))
        order = sorted(range(len(xs)), key=xs.__getitem__)
        style = _style(next(iter(configurations.values()))[0], x)
        for axis, (_, key, _) in zip(axes, PANELS, strict=True):
            axis.plot([xs[i] for i in order], [ys[key][i] for i in order], label=label, **style)
    for axis, (y_label, _, y_scale) in zip(axes, PANELS, strict=True):
        axis.set_xlabel(x_label)
        axis.set_ylabel(y_label)
        axis.set_xscale(x_scale)
        axis.set_yscale(y_scale)
        axis.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="center right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 0.8, 1))
    figure.savefig(out, dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ndjson", type=Path)
    parser.add_argument("--x", choices=sorted(AXES), required=True, help="the swept knob")
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.ndjson.read_text().splitlines() if line]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, args.x, args.title or args.ndjson.stem, args.out)
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
