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
    if use_trace_pipe:
        keep = lambda line: line.message == "Hello World!"  # noqa: E731
        # opened first, and fresh: every line of the program, none the buffer held from before
        async with aiobpf.trace_pipe(keep=keep, fresh=True) as pipe, aiobpf.hello_world():
            print("tracing execs (Ctrl-C ends)", flush=True)
            async for line in pipe:
                print(
                    f"{line.task}-{line.pid} [{line.cpu}] {line.timestamp:.6f}: {line.message}",
                    flush=True,
                )
    else:
        async with aiobpf.hello_world() as logs:
            print("tracing execs (Ctrl-C ends)", flush=True)
            async for record in logs:
                print(
                    f"{record.level} {record.comm}-{record.pid} uid={record.uid}: {record.text}",
                    flush=True,
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace-pipe", action="store_true", help="read the shared trace pipe")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: sources close on the way out
        anyio.run(main, args.trace_pipe)
