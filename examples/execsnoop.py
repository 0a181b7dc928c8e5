"""Live execve events, one line each, until Ctrl-C (or --duration seconds).

sudo .venv/bin/python examples/execsnoop.py [--duration 10] [--backend trio]
"""

from __future__ import annotations

import argparse
import math
import time

import anyio

import aiobpf


async def snoop(duration: float) -> None:
    async with aiobpf.execve_events() as events:
        # attached: from this line on, every exec is shown
        print(
            f"{'TIME':<8} {'UID':>6} {'PID':>7} {'PPID':>7} {'RET':>4} {'COMM':<16} FILENAME",
            flush=True,
        )
        with anyio.move_on_after(duration):
            async for ev in events:
                clock = time.strftime("%H:%M:%S")
                print(
                    f"{clock:<8} {ev.uid:>6} {ev.pid:>7} {ev.ppid:>7} {ev.retval:>4} "
                    f"{ev.comm:<16} {ev.filename}",
                    flush=True,
                )
        stats = events.stats
    print(f"-- {stats.received} events received, {stats.dropped} dropped by the kernel ring")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=math.inf, help="seconds to run")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    try:
        anyio.run(snoop, args.duration, backend=args.backend)
    except KeyboardInterrupt:
        pass  # Ctrl-C: the source was closed on the way out
    except aiobpf.AiobpfError as exc:
        raise SystemExit(f"execsnoop: {exc}") from None


if __name__ == "__main__":
    main()
