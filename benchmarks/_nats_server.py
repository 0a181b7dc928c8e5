"""A real NATS server with JetStream (Debian's nats-server), started on loopback for the
fleet benchmark and the fleet tests."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

__all__ = ["NatsCluster", "NatsServer", "ready"]

_LISTENING = re.compile(r"Listening for client connections on [\d.]+:(\d+)")


class NatsServer:
    """``nats-server -js`` on loopback, with its store in ``directory``. :meth:`stop` kills it as
    a crash would; :meth:`start` brings it back on the same port and store."""

    def __init__(self, directory: Path, options: Sequence[str] = ()) -> None:
        self.directory = directory
        self.options = list(options)  # more of nats-server's flags (--auth, --tls...)
        self.port = -1  # the first start picks a free port
        self._process: subprocess.Popen[str] | None = None
        self._reader = threading.Thread()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Starts the server and returns once it says it is ready (its log, not a sleep)."""
        command = ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        command += ["-sd", str(self.directory), *self.options]
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        said = []
        for line in process.stderr:
            said.append(line)
            if listening := _LISTENING.search(line):
                self.port = int(listening.group(1))
            if "Server is ready" in line:
                break
        else:
            process.wait()
            process.stderr.close()
            raise RuntimeError(f"nats-server did not start: {''.join(said)}")
        # it keeps logging: read on, so that a full pipe never blocks it (nor a closed one
        # kills it: Go exits on a broken stderr)
        self._reader = threading.Thread(target=process.stderr.read, daemon=True)
        self._reader.start()
        self._process = process

    def pause(self) -> None:
        """Stops the server (SIGSTOP): it holds its connections and answers nothing, as a
        server that hangs would."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        """Kills the server (SIGKILL, as a crash) and waits for it to be gone."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._reader.join()  # the pipe's end reached: nothing reads it any more
            assert self._process.stderr is not None
            self._process.stderr.close()
            self._process = None


class NatsCluster:
    """Three ``nats-server`` processes on loopback forming one JetStream cluster (routes to one
    another), each with its store in ``directory/<name>``: the engine as it is run in
    production, for the fleet's failover tests and benchmarks. :meth:`kill` ends one as a crash
    would, for good."""

    def __init__(self, directory: Path, size: int = 3) -> None:
        self.directory = directory
        ports = _free_ports(2 * size)
        self.client_ports, route_ports = ports[:size], ports[size:]
        routes = ", ".join(f"nats-route://127.0.0.1:{port}" for port in route_ports)
        self.servers: dict[str, NatsServer] = {}
        for index, (client, route) in enumerate(zip(self.client_ports, route_ports, strict=True)):
            name = f"n{index + 1}"
            store = directory / name
            store.mkdir(parents=True, exist_ok=True)
            config = directory / f"{name}.conf"
            config.write_text(
                f"server_name: {name}\n"
                "jetstream {}\n"
                f"cluster {{ name: aiobpf, listen: 127.0.0.1:{route}, routes: [{routes}] }}\n"
            )
            server = NatsServer(store, ["-c", str(config)])
            server.port = client
            self.servers[name] = server

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers.values()]

    def start(self) -> None:
        for server in self.servers.values():
            server.start()

    def kill(self, name: str) -> None:
        self.servers[name].stop()

    def name_of(self, url: str) -> str:
        """The server (n1, n2...) that listens at ``url``."""
        return next(name for name, server in self.servers.items() if server.url == url)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def _free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (each bound once and let go)."""
    import socket

    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


async def ready(urls: list[str]) -> None:
    """Returns once a cluster answers JetStream requests (its metadata leader elected): asked
    again every 0.1 s, the engine's own state, not a guess at how long it takes."""
    import anyio
    import nats

    client = await nats.connect(servers=urls)
    try:
        while True:
            try:
                await client.jetstream().account_info()
                return
            except nats.errors.Error:
                await anyio.sleep(0.1)
    finally:
        await client.close()
