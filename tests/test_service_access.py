"""Who may see what of `aiobpf serve`, tried as the people it must keep apart would try it: an
unprivileged local user over the Unix socket (with curl, run as that user), a client without
the token over TCP, a web page's foreign Host header, a crowd of idle connections."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.streams.text
import anyio.to_thread
import httpx
import pytest

import aiobpf
from aiobpf.service import AccessPolicy

from . import kernel
from .serving import running_service

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("bpf")]

ALICE, BOB = 61081, 61082  # two unprivileged local users
TOKEN = "test-token-not-secret"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A directory every user may reach, for a socket whose own mode decides who connects."""
    with tempfile.TemporaryDirectory(prefix="aiobpf-sock-", dir="/tmp") as directory:
        Path(directory).chmod(0o755)
        yield Path(directory)


def _curl(path: str, socket_path: Path, uid: int | None = None) -> list[str]:
    """curl over the Unix socket, as ``uid`` (root when None)."""
    command = ["curl", "-sS", "-N", "--unix-socket", str(socket_path), f"http://localhost{path}"]
    return command if uid is None else [*kernel.setpriv_command(uid, command[0]), *command[1:]]


async def _get(path: str, socket_path: Path, uid: int | None = None) -> tuple[int, Any]:
    """Status and JSON body of a GET over the Unix socket as ``uid``."""
    done = await anyio.run_process(
        [*_curl(path, socket_path, uid), "-w", "\n%{http_code}"], check=False
    )
    *body, status = done.stdout.decode().splitlines()
    return int(status), json.loads("\n".join(body)) if body and body[0] else None


async def _until_both_of(stream: Any, comm: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``exec`` and ``exit`` events of an SSE stream read from curl's stdout, until both
    the exec and the exit of a process named ``comm`` came: they come from two rings, read
    apart, so either may come first."""
    pending = b""
    event = ""
    seen = []
    while True:
        while b"\n" not in pending:
            pending += await stream.receive()
        line, pending = pending.split(b"\n", 1)
        text = line.decode()
        if text.startswith("event: "):
            event = text.removeprefix("event: ")
        elif text.startswith("data: ") and event in ("exec", "exit"):
            data = dict(json.loads(text.removeprefix("data: ")))
            seen.append((event, data))
            if {"exec", "exit"} <= {kind for kind, got in seen if got["comm"] == comm}:
                return seen


async def test_a_local_user_sees_only_its_own_execs_and_counts(
    socket_dir: Path, tmp_path: Path
) -> None:
    """Over a socket open to every local user (mode 0666), the kernel says who connected: Bob's
    exec and exit, made first, never reach Alice's stream, which gets her own; asking for
    another uid is refused; /top shows her own counts only; /stats shows no other client's
    filter and /metrics is refused; root sees everything, and the kernel passes only Alice's
    execs."""
    program = kernel.uniquely_named_program(tmp_path, "mine-or-yours")
    tmp_path.chmod(0o755)  # noqa: ASYNC240 -- set-up before anything is awaited
    path = socket_dir / "aiobpf.sock"
    with anyio.fail_after(60):
        async with running_service(socket_path=path, socket_mode=0o666) as serving:
            assert path.stat().st_mode & 0o777 == 0o666
            async with await anyio.open_process(_curl("/events", path, ALICE)) as alice:
                assert alice.stdout is not None
                await serving.hub.wait_clients(1)
                root_view = (await _get("/stats", path))[1]
                await anyio.run_process(kernel.setpriv_command(BOB, program))
                await anyio.run_process(kernel.setpriv_command(ALICE, program))
                seen = await _until_both_of(alice.stdout, "mine-or-yours")
                alice.terminate()
            refused = await _get(f"/events?uid={BOB}", path, ALICE)
            alice_top = (await _get("/top", path, ALICE))[1]
            root_top = (await _get("/top", path))[1]  # before Alice's next curl execs
            alice_stats = (await _get("/stats", path, ALICE))[1]
            alice_metrics = (await _get("/metrics", path, ALICE))[0]
    assert ("exec", ALICE, "mine-or-yours") in [(k, e["uid"], e["comm"]) for k, e in seen]
    assert {event["uid"] for _, event in seen} == {ALICE}
    assert refused[0] == 403
    assert set(alice_top["counts"]) == {str(ALICE)}  # her curls' execs count too
    assert alice_top["counts"][str(ALICE)] == root_top["counts"][str(ALICE)]
    assert set(alice_top["exits"]) == set(alice_top["failures"]) == {str(ALICE)}
    assert set(alice_stats) == {"uid", "kernel_dropped", "ring_occupancy", "exits_dropped"}
    assert alice_metrics == 403
    assert root_top["counts"][str(BOB)] == 1  # Bob ran the program, nothing else
    assert (root_top["exits"][str(BOB)], root_top["failures"][str(BOB)]) == (1, 0)
    assert root_view["kernel_selection"] == {"uid": [ALICE], "comm": None}
    assert not path.exists()  # removed at shutdown


async def test_the_default_socket_mode_lets_only_root_in(socket_dir: Path) -> None:
    """Mode 0600 (the default): another user cannot even connect; root can."""
    path = socket_dir / "aiobpf.sock"
    with anyio.fail_after(60):
        async with running_service(socket_path=path):
            assert path.stat().st_mode & 0o777 == 0o600
            alice = await anyio.run_process(_curl("/top", path, ALICE), check=False)
            root = await _get("/top", path)
    assert alice.returncode == 7  # curl: could not connect
    assert root[0] == 200


async def test_tcp_needs_the_token() -> None:
    """Over TCP: no token or a wrong one is 401; the token as a bearer header or as ?token=
    is served; /metrics too needs it, unless it was left open for a scraper."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=AccessPolicy(token=TOKEN)) as serving,
            httpx.AsyncClient(base_url=base) as client,
        ):
            bare = await client.get("/top")
            wrong = await client.get("/top", headers={"Authorization": "Bearer nope"})
            header = await client.get("/top", headers={"Authorization": f"Bearer {TOKEN}"})
            query = await client.get("/top", params={"token": TOKEN})
            metrics = await client.get("/metrics")
        async with (
            running_service(port=port, access=AccessPolicy(token=TOKEN, metrics_public=True)),
            httpx.AsyncClient(base_url=base) as client,
        ):
            open_metrics = await client.get("/metrics")
            still_closed = await client.get("/top")
    assert serving.token == TOKEN
    assert serving.url == f"{base}/"
    assert [bare.status_code, wrong.status_code] == [401, 401]
    assert bare.headers["www-authenticate"] == "Bearer"
    assert [header.status_code, query.status_code, metrics.status_code] == [200, 200, 401]
    assert [open_metrics.status_code, still_closed.status_code] == [200, 401]


async def test_a_generated_token_is_long_and_reported() -> None:
    """Without a token of its own, the TCP service makes one (reported once it listens)."""
    port = _free_port()
    with anyio.fail_after(60):
        async with running_service(port=port) as serving, httpx.AsyncClient() as client:
            served = await client.get(f"{serving.url}top", params={"token": serving.token})
    assert serving.token is not None
    assert len(serving.token) >= 40
    assert served.status_code == 200


async def test_a_foreign_host_header_is_refused() -> None:
    """A request naming a host the server does not answer to (a page that rebound its own
    name to 127.0.0.1) is refused, token or not."""
    port = _free_port()
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(60):
        async with (
            running_service(port=port, access=AccessPolicy(token=TOKEN)),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=authorized) as client,
        ):
            foreign = await client.get("/top", headers={"Host": f"rebound.example:{port}"})
            local = await client.get("/top", headers={"Host": f"localhost:{port}"})
    assert foreign.status_code == 400
    assert local.status_code == 200


async def test_event_streams_are_capped_per_user_and_in_all(socket_dir: Path) -> None:
    """Beyond max_clients_per_user streams of one user, and beyond max_clients in all, a new
    /events request is refused with 429, except root's; closing a stream makes room again."""
    path = socket_dir / "aiobpf.sock"
    policy = AccessPolicy(max_clients=3, max_clients_per_user=2)
    with anyio.fail_after(60):
        async with running_service(socket_path=path, socket_mode=0o666, access=policy) as serving:

            async def open_stream(uid: int, clients: int) -> anyio.abc.Process:
                process = await anyio.open_process(_curl("/events", path, uid))
                await serving.hub.wait_clients(clients)
                return process

            streams = [await open_stream(ALICE, 1), await open_stream(ALICE, 2)]
            third_of_alice = await _get("/events", path, ALICE)
            streams.append(await open_stream(BOB, 3))
            fourth = await _get("/events", path, BOB)
            # the caps are full: root is held to none of them
            streams.append(await open_stream(0, 4))
            streams.append(await open_stream(0, 5))
            first = streams.pop(0)
            first.terminate()
            await first.aclose()
            await serving.hub.wait_clients(4)
            streams.append(await open_stream(BOB, 5))  # room again
            for process in streams:
                process.terminate()
                await process.aclose()
    assert third_of_alice[0] == 429
    assert "uid 61081 holds 2" in third_of_alice[1]["error"]
    assert fourth[0] == 429
    assert "holds 3 event streams" in fourth[1]["error"]


#: Run as a local user: opens CONNECTIONS connections to the socket one after another, each
#: asking for /top and held open, and prints what each got: a status, or "closed".
HOLD_CONNECTIONS = r"""
import socket, sys
path, count = sys.argv[1], int(sys.argv[2])
held, said = [], []
for _ in range(count):
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    held.append(client)
    try:
        client.sendall(b"GET /top HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = client.recv(12)
    except OSError:
        head = b""
    said.append(head.split()[1].decode() if head else "closed")
print(" ".join(said), flush=True)
sys.stdin.readline()  # held open until the test says
"""


async def test_connections_are_capped_per_user_before_anything_is_read(
    socket_dir: Path, tmp_path: Path
) -> None:
    """A local user who opens 20 connections over a socket open to all, with at most 8 per
    user: the first 8 are served, the other 12 closed as they are accepted. One of its
    subordinate ids (/etc/subuid, here a file of the test's) counts as that user: refused too.
    Another user, and root, are still served meanwhile; /metrics counts every refusal."""
    path = socket_dir / "aiobpf.sock"
    subuid = tmp_path / "subuid"
    subuid.write_text(f"# owner:first:count\n{ALICE}:400000:65536\n")
    policy = AccessPolicy(
        max_connections_per_user=8, max_clients_per_user=8, subordinate_ids=str(subuid)
    )
    with anyio.fail_after(60):
        async with (
            running_service(socket_path=path, socket_mode=0o666, access=policy),
            await anyio.open_process(
                [*kernel.setpriv_command(ALICE, "/usr/bin/python3"), "-c", HOLD_CONNECTIONS,
                 str(path), "20"]
            ) as alice,
        ):  # fmt: skip
            assert alice.stdout is not None
            assert alice.stdin is not None
            said = (await alice.stdout.receive()).decode().split()
            subordinate = await _get("/top", path, 400007)  # Alice's, in a user namespace
            bob = await _get("/top", path, BOB)
            root = await _get("/top", path)
            metrics = (await anyio.run_process(_curl("/metrics", path))).stdout.decode()
            await alice.stdin.send(b"done\n")
            assert await alice.wait() == 0
    assert said == ["200"] * 8 + ["closed"] * 12
    assert subordinate == (0, None)  # curl got no answer: closed before a byte was read
    assert bob[0] == 200
    assert root[0] == 200
    assert "aiobpf_connections_refused_total 13.0" in metrics  # Alice's 12, her subordinate's


#: Run as a local user: opens COUNT connections that send nothing, then asks for /events on
#: the first STREAMS of them and prints each answer's status; holds them all until told.
IDLE_THEN_STREAMS = r"""
import socket, sys
path, count, streams = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
idle = []
for _ in range(count):
    idle.append(socket.socket(socket.AF_UNIX))
    idle[-1].connect(path)
for client in idle[:streams]:
    client.sendall(b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
said = []
for client in idle[:streams]:
    head = b""
    while b"\r\n" not in head:
        head += client.recv(1)
    said.append(head.split()[1].decode())
print(" ".join(said), flush=True)
sys.stdin.readline()
"""


async def test_a_thousand_idle_connections_do_not_starve_the_service(socket_dir: Path) -> None:
    """A local user's 1,000 connections that send nothing (its connection quota raised to let
    them in), and 100 /events requests on them beyond the stream caps: the requests past the
    caps get 429, the service still answers root, and the kernel ring loses nothing while
    execs go on."""
    path = socket_dir / "aiobpf.sock"
    policy = AccessPolicy(
        max_clients=8, max_clients_per_user=8, max_connections=2000, max_connections_per_user=2000
    )
    with anyio.fail_after(120):
        async with running_service(socket_path=path, socket_mode=0o666, access=policy) as serving:
            command = kernel.setpriv_command(ALICE, "/usr/bin/python3")
            async with await anyio.open_process(
                [*command, "-c", IDLE_THEN_STREAMS, str(path), "1000", "100"]
            ) as alice:
                assert alice.stdout is not None
                assert alice.stdin is not None
                said = b""
                while not said.endswith(b"\n"):
                    said += await alice.stdout.receive()
                for _ in range(20):
                    await anyio.run_process(["/bin/true"])
                top = await _get("/top", path)
                stats = serving.hub.stats
                await alice.stdin.send(b"done\n")
                assert await alice.wait() == 0
    statuses = said.decode().split()
    assert statuses.count("200") == 8
    assert statuses.count("429") == 92
    assert top[0] == 200
    assert stats.kernel_dropped == 0


async def test_a_socket_in_use_is_refused_before_anything_is_attached(socket_dir: Path) -> None:
    """A second service on the same socket gets ListenError, and loaded nothing."""
    path = socket_dir / "aiobpf.sock"
    with anyio.fail_after(60):
        async with running_service(socket_path=path):
            held = kernel.held_program_ids()
            with pytest.raises(ExceptionGroup) as refused:  # from the task group serving it
                async with running_service(socket_path=path):
                    pass
            assert refused.group_contains(aiobpf.ListenError, match="is in use")
            assert kernel.held_program_ids() == held


def test_a_port_in_use_is_one_line_and_status_1() -> None:
    """`aiobpf serve --port P` with P taken: status 1, one line naming the address, and no
    program was compiled (it fails within the second a compile alone would take)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "aiobpf", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"aiobpf serve: cannot listen on 127.0.0.1:{port}: already in use\n"


async def test_tls_serves_with_the_given_certificate(tmp_path: Path) -> None:
    """With a certificate and key the service speaks TLS only: a client that trusts the
    certificate is served over https, with the token; a plain-HTTP request is not."""
    key, certificate = tmp_path / "key.pem", tmp_path / "cert.pem"
    await anyio.run_process(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(certificate), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ]
    )
    port = _free_port()
    trusted = ssl.create_default_context(cafile=str(certificate))
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(60):
        async with (
            running_service(
                port=port,
                access=AccessPolicy(token=TOKEN),
                certfile=str(certificate),
                keyfile=str(key),
            ) as serving,
            httpx.AsyncClient(verify=trusted, headers=authorized) as client,
        ):
            served = await client.get(f"{serving.url}top")
            with pytest.raises(httpx.HTTPError):
                await client.get(f"http://127.0.0.1:{port}/top")
    assert serving.url == f"https://127.0.0.1:{port}/"
    assert served.status_code == 200


def test_a_non_loopback_address_needs_tls() -> None:
    """Listening beyond this machine without TLS (and without --insecure) is refused at once."""
    result = subprocess.run(
        [sys.executable, "-m", "aiobpf", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("aiobpf serve: 0.0.0.0 is reachable beyond this machine")
    assert result.stderr.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_socket_in_a_missing_directory_is_refused_and_nothing_is_created(
    tmp_path: Path,
) -> None:
    """`aiobpf serve --socket` in a directory that does not exist: status 1, one line naming
    it, and no directory made (it created the whole path as root, and served)."""
    missing = tmp_path / "no" / "such" / "dir"
    result = subprocess.run(
        [sys.executable, "-m", "aiobpf", "serve", "--socket", str(missing / "x.sock")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"aiobpf serve: cannot listen on {missing}/...: {missing} is not a directory that "
        "exists (aiobpf creates only the default socket's directory)\n"
    )
    assert not (tmp_path / "no").exists()


async def test_the_ipv6_loopback_is_served() -> None:
    """--host ::1: a client of [::1] with the token is served (every request was refused with
    400: the Host header carries the address in brackets); a foreign Host is still refused."""
    port = _free_port()
    authorized = {"Authorization": f"Bearer {TOKEN}"}
    with anyio.fail_after(60):
        async with (
            running_service(host="::1", port=port, access=AccessPolicy(token=TOKEN)) as serving,
            httpx.AsyncClient(headers=authorized) as client,
        ):
            served = await client.get(f"http://[::1]:{port}/top")
            foreign = await client.get(f"http://[::1]:{port}/top", headers={"Host": "evil.test"})
    assert serving.url == f"http://[::1]:{port}/"
    assert served.status_code == 200
    assert foreign.status_code == 400


async def test_a_recording_is_served_by_an_ordinary_user() -> None:
    """aiobpf serve --replay, run by uid 65534 (no privileges) on a socket of its own: the
    recording plays once a client subscribes; the client (the same user, who owns what the
    service serves) gets every exec event of it, /top counts them by uid, and /stats says the
    recording's losses as the kernel's."""
    from aiobpf.programs import ExecveEvent
    from aiobpf.schema import exec_record, lost_record, summary_record

    nobody = 65534
    uids = [1000, 1000, 2000, 1000, 2000]
    records = [
        exec_record(
            ExecveEvent(
                pid=100 + n, tid=100 + n, ppid=1, uid=uid, gid=uid, comm="job", filename="/bin/job",
                argv=("job",), retval=0, timestamp_ns=n, time=1_700_000_000 + n / 100,
                syscall="execve", dirfd=-100, flags=0, filename_truncated=False,
                argv_truncated=False, message="", cgroup_id=1,
            )
        )
        for n, uid in enumerate(uids)
    ]  # fmt: skip
    records += [lost_record(4), summary_record(5, 4)]
    with kernel.shared_directory() as shared:
        recording = shared / "run.jsonl"
        recording.write_text("".join(json.dumps(record) + "\n" for record in records))
        recording.chmod(0o644)
        own = shared / "own"
        own.mkdir()
        os.chown(own, nobody, nobody)
        path = own / "replay.sock"
        command = [*kernel.setpriv_command(nobody, sys.executable), "-m", "aiobpf", "serve"]
        command += ["--replay", str(recording), "--socket", str(path), "--replay-speed", "max"]
        environment = {**os.environ, "PYTHONPATH": str(Path(aiobpf.__file__).parent.parent)}
        with anyio.fail_after(60):
            async with await anyio.open_process(command, env=environment, cwd="/") as server:
                assert server.stdout is not None
                said = (await server.stdout.receive()).decode()
                assert said.startswith(f"serving on unix:{path}"), said
                async with await anyio.open_process(_curl("/events", path, nobody)) as client:
                    assert client.stdout is not None
                    stream = anyio.streams.text.TextReceiveStream(client.stdout)
                    text = ""
                    while text.count("event: exec") < len(uids):
                        text += await stream.receive()
                    client.terminate()
                _, top = await _get("/top", path, nobody)
                _, stats = await _get("/stats", path, nobody)
                server.send_signal(signal.SIGINT)
                assert await server.wait() == 0
    assert top["counts"] == {"1000": 3, "2000": 2}
    assert (stats["received"], stats["kernel_dropped"]) == (5, 4)
