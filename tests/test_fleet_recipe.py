"""The engine cluster recipe (contrib/nats-cluster) as it is written: certificates from its
make-certs.sh, its nats-server.conf and accounts.conf on three real servers (only paths and
ports changed for the loopback), its make-stream.py as the administrator; then a node publishes
through aiobpf with its own credentials over TLS, may not write in another node's name nor
make streams, a reader reads every event, and one server's loss changes nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from benchmarks._nats_server import NatsServer

from aiobpf.fleet import JetStreamSink, Node, fleet_events

RECIPE = Path(__file__).resolve().parent.parent / "contrib" / "nats-cluster"
NAMES = ("nats-a", "nats-b", "nats-c")
#: the fleet's parts run on asyncio only (nats-py)
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def _passwords() -> dict[str, str]:
    """The users of accounts.conf and their passwords, as the recipe ships them."""
    import re

    text = (RECIPE / "accounts.conf").read_text()
    return dict(re.findall(r'user: (\w+), password: "([^"]+)"', text))


class Cluster:
    """The recipe's three servers on the loopback, with their certificates and the users'
    credential files (mode 0600) in ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.certs = directory / "certs"
        subprocess.run([RECIPE / "make-certs.sh", self.certs, "127.0.0.1"], check=True)
        clients, routes = _free_ports(3), _free_ports(3)
        config = (RECIPE / "nats-server.conf").read_text()
        for old, new in (
            ("/etc/nats/server.pem", f"{self.certs}/127.0.0.1.pem"),
            ("/etc/nats/server-key.pem", f"{self.certs}/127.0.0.1-key.pem"),
            ("/etc/nats/ca.pem", f"{self.certs}/ca.pem"),
            ('store_dir: "/var/lib/nats/jetstream"', ""),  # each server's store: -sd
            *((f"nats-route://{name}:6222", f"nats-route://127.0.0.1:{port}")
              for name, port in zip(NAMES, routes, strict=True)),
        ):  # fmt: skip
            assert old in config, old
            config = config.replace(old, new)
        self.servers: dict[str, NatsServer] = {}
        for name, client, route in zip(NAMES, clients, routes, strict=True):
            home = directory / name
            home.mkdir()
            shutil.copy(RECIPE / "accounts.conf", home / "accounts.conf")
            mine = config.replace("0.0.0.0:6222", f"127.0.0.1:{route}")
            (home / "nats-server.conf").write_text(mine)
            server = NatsServer(
                home / "store", ["-c", str(home / "nats-server.conf"), "--name", name]
            )
            server.port = client
            self.servers[name] = server
        self.urls = ",".join(f"tls://127.0.0.1:{port}" for port in clients)
        self.ca = self.certs / "ca.pem"
        self.credentials: dict[str, Path] = {}
        for user, password in _passwords().items():
            path = directory / f"{user}.secret"  # user:password (a .creds file is a NATS JWT)
            path.write_text(f"{user}:{password}\n")
            path.chmod(0o600)
            self.credentials[user] = path

    def start(self) -> None:
        for server in self.servers.values():
            server.start()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    if shutil.which("nats-server") is None or shutil.which("openssl") is None:
        pytest.skip("nats-server and openssl are installed by scripts/setup.sh test")
    running = Cluster(tmp_path)
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _make_stream(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, RECIPE / "make-stream.py", cluster.urls,
         "--credentials", cluster.credentials["admin"], "--ca", cluster.ca],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def _refused(cluster: Cluster, user: str, subject: str) -> str:
    """What the engine says when ``user`` publishes to ``subject``: its error, or "" when it
    took the message."""
    import nats

    said: list[str] = []

    async def error(exc: Exception) -> None:
        said.append(str(exc))

    user_name, password = cluster.credentials[user].read_text().strip().split(":", 1)
    ssl = __import__("ssl").create_default_context(cafile=str(cluster.ca))
    client = await nats.connect(
        cluster.urls.split(","), user=user_name, password=password, tls=ssl, error_cb=error
    )
    try:
        try:
            await client.jetstream().publish(subject, b"{}", timeout=3)
        except Exception as exc:  # a refused publish has no responder: it times out
            said.append(type(exc).__name__)
        await client.flush()
    finally:
        await client.close()
    return " ".join(said)


@pytest.mark.anyio
@asyncio_only
async def test_the_cluster_recipe_as_written(cluster: Cluster) -> None:
    made = await anyio.to_thread.run_sync(_make_stream, cluster)
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == "stream AIOBPF: 3 replicas"

    web1, ca = cluster.credentials["web1"], cluster.ca
    with anyio.fail_after(120):
        async with JetStreamSink(
            cluster.urls, node=Node("web1"), credentials=web1, tls_ca=ca
        ) as sink:
            assert sink.replicas == 3
            assert sink.notices == []
            await sink.send([{"uid": 1000, "comm": "first"}, {"uid": 1001, "comm": "second"}])
        assert sink.stats.published == 2

        # a node writes in no other name, and makes no stream; a reader publishes nothing
        assert "ermissions" in await _refused(cluster, "web1", "aiobpf.web2.events")
        assert "ermissions" in await _refused(cluster, "web1", "$JS.API.STREAM.CREATE.OTHER")
        assert "ermissions" in await _refused(cluster, "reader", "aiobpf.reader.exec")

        # one server lost for good: the node publishes on, the reader reads everything
        cluster.servers["nats-a"].stop()
        async with JetStreamSink(
            cluster.urls, node=Node("web1"), credentials=web1, tls_ca=ca
        ) as sink:
            await sink.send([{"uid": 1002, "comm": "third"}])
        assert sink.stats.published == 1
        reader = cluster.credentials["reader"]
        async with fleet_events(
            cluster.urls, durable="recipe", credentials=reader, tls_ca=ca
        ) as events:
            got = [await events.receive() for _ in range(3)]
    assert [(e.node, e.uid, e.comm) for e in got] == [
        ("web1", 1000, "first"),
        ("web1", 1001, "second"),
        ("web1", 1002, "third"),
    ]


def test_the_certificates_are_for_their_servers(tmp_path: Path) -> None:
    """make-certs.sh: each server's certificate names it and verifies against the authority,
    for servers and clients alike; keys are the owner's alone."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is installed by scripts/setup.sh test")
    certs = tmp_path / "certs"
    subprocess.run([RECIPE / "make-certs.sh", certs, "nats-a", "10.0.0.2"], check=True)
    for server, san in (("nats-a", "DNS:nats-a"), ("10.0.0.2", "IP Address:10.0.0.2")):
        shown = subprocess.run(
            ["openssl", "x509", "-in", certs / f"{server}.pem", "-noout", "-text"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert san in shown
        assert "TLS Web Server Authentication, TLS Web Client Authentication" in shown
        subprocess.run(
            ["openssl", "verify", "-CAfile", certs / "ca.pem", certs / f"{server}.pem"],
            check=True, capture_output=True,
        )  # fmt: skip
        assert os.stat(certs / f"{server}-key.pem").st_mode & 0o077 == 0
    assert os.stat(certs / "ca-key.pem").st_mode & 0o077 == 0
