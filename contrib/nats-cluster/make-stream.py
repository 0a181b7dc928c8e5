"""Makes the fleet's stream once, as the engine's administrator: AIOBPF over ``aiobpf.>``, with
3 replicas, as aiobpf's nodes would make it if their users were allowed to (they are not: see
accounts.conf). Run where aiobpf is installed:

    python3 make-stream.py tls://nats-a:4222,tls://nats-b:4222,tls://nats-c:4222 \\
        --credentials admin.secret --ca ca.pem

``admin.secret`` holds ``admin:<password>`` (mode 0600). Prints the stream's replicas.
"""

from __future__ import annotations

import argparse

import anyio

from aiobpf.fleet import JetStreamSink, Node


async def main(url: str, credentials: str, ca: str | None) -> None:
    sink = JetStreamSink(url, credentials=credentials, tls_ca=ca, node=Node("admin"), replicas=3)
    async with sink:
        print(f"stream {sink.stream}: {sink.replicas} replicas", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the engine's servers, comma-separated")
    parser.add_argument("--credentials", required=True, help="admin:password, in a 0600 file")
    parser.add_argument("--ca", help="the authority that signed the servers' certificates")
    args = parser.parse_args()
    anyio.run(main, args.url, args.credentials, args.ca)
