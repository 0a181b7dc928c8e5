"""Hello world: a program on execve logs "Hello World!"; print each line as it comes.

sudo .venv/bin/python examples/hello_world.py              # from the program's own ring
sudo .venv/bin/python examples/hello_world.py --trace-pipe # the classic, shared trace pipe
"""

from __future__ import annotations

import argparse
import contextlib

import anyio

import aiobpf


async def main(use_trace_pipe: bool) -> None:
    async with aiobpf.hello_world() as logs:
        if use_trace_pipe:
            keep = lambda line: line.message == "Hello World!"  # noqa: E731
            async with aiobpf.trace_pipe(keep=keep) as pipe:
                async for line in pipe:
                    print(
                        f"{line.task}-{line.pid} [{line.cpu}] {line.timestamp:.6f}: {line.message}"
                    )
        else:
            async for record in logs:
                print(f"{record.level} {record.comm}-{record.pid} uid={record.uid}: {record.text}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-pipe", action="store_true", help="read the shared trace pipe")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: sources close on the way out
        anyio.run(main, args.trace_pipe)
