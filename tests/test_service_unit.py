"""The service's access rules on synthetic data, without the kernel: the application over a
hub that holds known counts, called in-process with the viewer a listener would have found."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, cast

import anyio
import httpx
import pytest

from aiobpf.service import AccessControl, AccessPolicy, EventHub, HubStats, create_app
from aiobpf.service._access import _peer_uid
from aiobpf.service._hub import Subscriber
from aiobpf.service._limits import ConnectionLimits, owner_of

pytestmark = pytest.mark.anyio

ALICE, BOB = 61081, 61082
TOKEN = "unit-token"


class _KnownHub:
    """What the application asks of a hub, with fixed answers."""

    def __init__(self) -> None:
        self.subscriptions: list[tuple[int | None, str | None]] = []

    kinds = frozenset({"exec", "exit"})

    def top(self) -> dict[int, int]:
        return {0: 5, ALICE: 2, BOB: 3}

    def exits(self) -> dict[int, tuple[int, int]]:
        return {0: (7, 0), ALICE: (4, 1), BOB: (6, 2)}

    @property
    def stats(self) -> HubStats:
        return HubStats(
            received=10,
            kernel_dropped=0,
            user_dropped=1,
            ring_occupancy=0.0,
            clients=2,
            kernel_selection={"uid": [BOB], "comm": None},
            exits_received=17,
            exits_dropped=0,
        )

    @contextlib.contextmanager
    def subscribe(
        self, uid: int | None = None, comm: str | None = None, kinds: Any = None
    ) -> Iterator[Any]:
        self.subscriptions.append((uid, comm))
        send, receive = anyio.create_memory_object_stream[Any](1)
        send.close()  # the stream ends at once: what matters is what was subscribed to

        class Subscription:
            unreported_lost = 0

        subscription = Subscription()
        subscription.receive = receive  # type: ignore[attr-defined]
        with receive:
            yield subscription


def _client(app: Any, policy: AccessPolicy, transport: str) -> httpx.AsyncClient:
    guarded = AccessControl(app, policy, transport)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://x")


@contextlib.contextmanager
def _peer(uid: int) -> Iterator[None]:
    token = _peer_uid.set(uid)
    try:
        yield
    finally:
        _peer_uid.reset(token)


async def test_a_user_over_the_socket_gets_its_own_view() -> None:
    """Alice, connected over the Unix socket, sees her own count only, her stream is forced to
    her uid, another uid's stream is refused, and neither the metrics nor other clients'
    filters are shown to her."""
    hub = _KnownHub()
    app = create_app(cast(EventHub, hub))
    with _peer(ALICE):
        async with _client(app, AccessPolicy(), "unix") as client:
            top = (await client.get("/top")).json()
            stats = (await client.get("/stats")).json()
            metrics = await client.get("/metrics")
            refused = await client.get("/events", params={"uid": BOB})
            streamed = await client.get("/events")
    assert top["counts"] == {str(ALICE): 2}
    assert (top["exits"], top["failures"]) == ({str(ALICE): 4}, {str(ALICE): 1})
    assert stats == {
        "uid": ALICE,
        "kernel_dropped": 0,
        "ring_occupancy": 0.0,
        "exits_dropped": 0,
    }
    assert metrics.status_code == 403
    assert refused.status_code == 403
    assert streamed.status_code == 200
    assert hub.subscriptions == [(ALICE, None)]


async def test_root_and_the_allowed_see_everything() -> None:
    """Root, and a uid the policy names in see_all, see every user's counts and the stats."""
    app = create_app(cast(EventHub, _KnownHub()))
    views = []
    for uid in (0, BOB):
        with _peer(uid):
            async with _client(app, AccessPolicy(see_all=frozenset({BOB})), "unix") as client:
                views.append(((await client.get("/top")).json(), await client.get("/stats")))
    for top, stats in views:
        assert top["counts"] == {"0": 5, str(ALICE): 2, str(BOB): 3}
        assert top["failures"] == {"0": 0, str(ALICE): 1, str(BOB): 2}
        assert stats.json()["kernel_selection"] == {"uid": [BOB], "comm": None}


async def test_tcp_without_the_token_is_401_and_with_it_sees_everything() -> None:
    """Over TCP the token decides: none or a wrong one is 401, the right one in a header or in
    the query sees everything; the token is compared whole."""
    app = create_app(cast(EventHub, _KnownHub()))
    async with _client(app, AccessPolicy(token=TOKEN), "tcp") as client:
        bare = await client.get("/top")
        prefix = await client.get("/top", params={"token": TOKEN[:-1]})
        header = await client.get("/top", headers={"Authorization": f"Bearer {TOKEN}"})
        query = await client.get("/stats", params={"token": TOKEN})
    assert [bare.status_code, prefix.status_code] == [401, 401]
    assert header.json()["counts"] == {"0": 5, str(ALICE): 2, str(BOB): 3}
    assert "kernel_selection" in query.json()


async def test_an_application_not_behind_access_control_serves_nothing() -> None:
    """create_app alone, served by some other server, answers 403: no viewer, no data."""
    app = create_app(cast(EventHub, _KnownHub()))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x"
    ) as client:
        statuses = [(await client.get(path)).status_code for path in ("/top", "/stats", "/")]
    assert statuses == [403, 403, 403]


def test_a_tcp_listener_without_a_token_is_refused() -> None:
    """AccessControl over TCP needs a token: a server without one must not start."""
    with pytest.raises(ValueError, match="needs a token"):
        AccessControl(create_app(cast(EventHub, _KnownHub())), AccessPolicy(), "tcp")


async def test_a_finished_subscriber_delivers_what_it_holds_then_takes_nothing() -> None:
    """A shutdown finishes every subscription while the kernel source still runs: events that
    come after are not part of the ended stream, neither queued nor counted as lost (offering
    them used to raise, which ended the hub's fan-out with an error)."""
    subscriber = Subscriber(None, None, 4)
    first, later = cast(Any, object()), cast(Any, object())
    try:
        assert subscriber.offer(first)
        subscriber.finish()
        assert subscriber.offer(later)
        assert [event async for event in subscriber.receive] == [first]
        assert subscriber.lost == 0
    finally:
        subscriber.close()


def test_subordinate_ids_belong_to_their_owner(tmp_path: Any) -> None:
    """/etc/subuid's ranges, by uid or by name; comments, malformed lines, unknown users and
    bytes that are not UTF-8 map nothing, and a missing file maps nothing."""
    subuid = tmp_path / "subuid"
    subuid.write_bytes(
        b"# a comment\n"
        b"root:100000:65536\n"
        b"61081:400000:65536\n"
        b"no-such-user-here:500000:10\n"
        b"61082:600000\n"
        b"\xff\xfe:700000:10\n"
        b"61082:x:10\n"
    )
    path = str(subuid)
    assert owner_of(100000, path) == 0
    assert owner_of(165535, path) == 0
    assert owner_of(165536, path) == 165536
    assert owner_of(400007, path) == ALICE
    assert owner_of(500001, path) == 500001
    assert owner_of(600001, path) == 600001
    assert owner_of(700001, path) == 700001
    assert owner_of(ALICE, path) == ALICE
    assert owner_of(400007, str(tmp_path / "missing")) == 400007
    assert owner_of(400007, None) == 400007


def test_connection_limits_count_per_owner_and_in_all_and_exempt_root(tmp_path: Any) -> None:
    """Two per user, Alice's subordinate ids as hers; four in all; root not counted, and root's
    subordinate ids counted as any user's; releasing makes room again."""
    subuid = tmp_path / "subuid"
    subuid.write_text(f"root:100000:65536\n{ALICE}:400000:65536\n")
    limits = ConnectionLimits(4, 2, exempt=lambda uid: uid == 0, subuid=str(subuid))
    alice = [limits.admit(ALICE), limits.admit(400001)]
    assert limits.admit(400002) is None  # Alice's third, through a subordinate id
    assert limits.admit(0) is not None  # root is not counted
    assert limits.open == 2
    in_a_namespace = limits.admit(100000)  # root's subordinate id: counted
    assert limits.open == 3
    bob = limits.admit(BOB)
    assert limits.admit(BOB + 1) is None  # four in all
    assert limits.admit(None) is None
    assert (limits.open, limits.refused) == (4, 3)
    for release in [*alice, in_a_namespace, bob]:
        assert release is not None
        release()
    assert limits.open == 0
    assert limits.admit(ALICE) is not None
