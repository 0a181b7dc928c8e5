"""Exec calls per user, counted in a kernel hash map, read every 2 s (Learning eBPF, ch. 2).

    sudo .venv/bin/python examples/top_uids.py [--interval 2] [--uid 1000] [--json]

(`aiobpf top-uids` is the same tool with a live table, --top and --duration.)
"""

from __future__ import annotations

import argparse
import contextlib
import json

import anyio

import aiobpf


async def main(interval: float, uids: list[int] | None, as_json: bool) -> None:
    async with aiobpf.execve_counts(interval=interval, uids=uids) as counts:
        async for reading in counts:
            if as_json:
                by_uid = {str(uid): count for uid, count in reading.values.items()}
                line = {"type": "counts", "time": reading.time, "counts": by_uid}
                print(json.dumps(line), flush=True)
            else:
                for uid, count in sorted(reading.values.items(), key=lambda item: -item[1]):
                    print(f"UID {uid} => {count}")
                print(flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--uid", type=int, action="append", help="count only this uid")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: sources close on the way out
        anyio.run(main, args.interval, args.uid, args.json)
