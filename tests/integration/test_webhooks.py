"""Outbox and webhook delivery on real ledgers (SQLite, PostgreSQL) to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from webhook_helpers import SECRET, FakeClock, Receiver

from modelreg.domain import Action, Event, NewEvent, Stage
from modelreg.errors import ConflictError, InvalidInputError, NotFoundError
from modelreg.ledger import Ledger
from modelreg.ledger.deliveries import DeliveryStore, ReceivedDeliveries
from modelreg.ledger.tables import EventRow, MlflowDeliveryRow, OutboxRow
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import free_port
from modelreg.views import DeliveryView
from modelreg.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryStatus,
    Dispatcher,
    Subscriber,
    payload,
    verify_signature,
)
from modelreg.workers import WebhookWorker

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Ledger]:
    """A fresh, migrated ledger on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        uri = request.getfixturevalue("pg_database")()
    result = Ledger(uri)
    result.migrate()
    yield result
    result.dispose()


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock starting now."""
    return FakeClock()


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    """A running receiver that accepts requests signed with SECRET."""
    server = Receiver(clock)
    yield server
    server.close()


def append(ledger: Ledger, model: str = "churn", version: int = 1, **fields: Any) -> Event:
    """Append and commit one event."""
    values: dict[str, Any] = {"action": Action.TRANSITION, "actor": "alice", **fields}
    with ledger.locked(model) as txn:
        return txn.append(NewEvent(model=model, version=version, **values))


def outbox_rows(ledger: Ledger) -> list[Any]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(select(OutboxRow).order_by(OutboxRow.id)))


def local(name: str, url: str, actions: frozenset[str] = frozenset()) -> Subscriber:
    """A subscriber on loopback, where the receivers of these tests listen: allowed explicitly."""
    return Subscriber(name, url, SECRET, actions, allow_private=True)


def deliveries(
    ledger: Ledger, *, subscriber: str | None = None, status: DeliveryStatus | str | None = None
) -> list[DeliveryView]:
    """The delivery log as the Registry and the CLI read it: the ledger's DeliveryStore."""
    wanted = DeliveryStatus.parse(status) if status is not None else None
    return DeliveryStore(ledger).deliveries(subscriber=subscriber, status=wanted)


def retry(ledger: Ledger, clock: FakeClock, delivery_id: int) -> DeliveryView:
    """Put a failed delivery back to pending, as ``modelreg webhooks retry`` does."""
    return DeliveryStore(ledger).retry(delivery_id, now=clock())


def dispatcher(
    ledger: Ledger, clock: FakeClock, *subscribers: Subscriber, **options: Any
) -> Dispatcher:
    return Dispatcher(ledger, subscribers, clock=clock, timeout=2.0, **options)


def test_outbox_row_commits_with_its_event_and_vanishes_with_a_rollback(ledger: Ledger) -> None:
    def refused_registration() -> None:
        with ledger.locked("churn") as txn:
            txn.append(NewEvent(model="churn", version=1, action=Action.REGISTER, actor="alice"))
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match="refused"):
        refused_registration()
    assert outbox_rows(ledger) == []
    assert ledger.events() == []

    event = append(ledger, semver="1.0.0", digest="sha256:aa", to_stage=Stage.STAGING)
    [row] = outbox_rows(ledger)
    assert (row.event_id, row.model, row.action) == (event.id, "churn", "transition")
    assert row.payload == payload(event)


def test_event_is_delivered_signed_with_actor_versions_semver_and_digest(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    with dispatcher(ledger, clock, local("ci", receiver.url)) as hub:
        hub.enqueue()  # the subscriber starts listening before the promotion
        event = append(
            ledger,
            version=4,
            actor="bob",
            from_stage=Stage.STAGING,
            to_stage=Stage.PRODUCTION,
            semver="1.3.0",
            digest="sha256:abc",
            reason="better auc",
            details={"previous_version": 3},
        )
        assert hub.run_once() == 1
        [delivery] = deliveries(ledger)

    [request] = receiver.received
    assert request.verified
    timestamp, signature = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert verify_signature(SECRET, timestamp, request.body, signature)
    assert not verify_signature(b"other-secret", timestamp, request.body, signature)
    assert request.headers[EVENT_HEADER] == "transition"
    assert request.headers[DELIVERY_HEADER] == str(delivery.id)
    assert request.headers["Content-Type"] == "application/json"
    assert request.json["delivery_id"] == delivery.id
    assert request.json["subscriber"] == "ci"
    sent = request.json["event"]
    assert sent["event_id"] == event.id
    assert (sent["actor"], sent["previous_version"], sent["new_version"]) == ("bob", 3, 4)
    assert (sent["semver"], sent["digest"]) == ("1.3.0", "sha256:abc")
    assert (sent["from_stage"], sent["to_stage"]) == ("Staging", "Production")
    assert delivery.status is DeliveryStatus.DELIVERED
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert delivery.delivered_at is not None


def test_undeliverable_webhook_is_retried_with_backoff_then_failed_never_losing_the_event(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    down = local("down", f"http://127.0.0.1:{free_port()}/hook")
    broken = local("broken", receiver.url)
    receiver.fail_next = -1  # answer 500 until told otherwise
    hub = dispatcher(ledger, clock, down, broken, max_attempts=3, base_delay=10, max_delay=15)
    hub.enqueue()
    event = append(ledger)

    start = clock.now
    assert hub.run_once() == 2
    for delivery in deliveries(ledger):
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
        # base_delay * 2**0 plus at most 10% jitter
        assert start + timedelta(seconds=10) <= delivery.next_attempt_at
        assert delivery.next_attempt_at <= start + timedelta(seconds=11)
    assert hub.run_once() == 0  # not due yet: nothing is sent early

    clock.advance(11)
    assert hub.run_once() == 2
    for delivery in deliveries(ledger):
        assert delivery.attempts == 2
        # base_delay * 2**1 = 20 s, capped by max_delay at 15 s
        assert delivery.next_attempt_at == clock.now + timedelta(seconds=15)

    clock.advance(15)
    assert hub.run_once() == 2
    clock.advance(3600)
    assert hub.run_once() == 0  # failed deliveries are not attempted again

    failed = {d.subscriber: d for d in deliveries(ledger, status="failed")}
    assert set(failed) == {"down", "broken"}
    assert failed["down"].attempts == 3
    assert failed["down"].last_status_code is None
    assert "ConnectError" in failed["down"].last_error
    assert failed["broken"].last_status_code == 500
    # The status and its standard phrase, never the receiver's answer (it may hold secrets).
    assert failed["broken"].last_error == "HTTP 500 Internal Server Error"
    assert len(receiver.received) == 3
    assert all(r.verified for r in receiver.received)
    # Nothing is lost: the event, its outbox row and the failed delivery all stay.
    assert [e.id for e in ledger.events()] == [event.id]
    assert [row.event_id for row in outbox_rows(ledger)] == [event.id]

    # An operator retries once the receiver works again.
    receiver.fail_next = 0
    retried = retry(ledger, clock, failed["broken"].id)
    assert (retried.status, retried.attempts) == (DeliveryStatus.PENDING, 0)
    assert hub.run_once() == 1  # the retried one; "down" stays failed
    [delivered] = deliveries(ledger, subscriber="broken")
    assert delivered.status is DeliveryStatus.DELIVERED
    assert receiver.received[-1].json["event"]["event_id"] == event.id
    hub.close()


def test_receiver_failing_twice_gets_the_same_signed_delivery_until_it_accepts(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    receiver.fail_next = 2
    with dispatcher(ledger, clock, local("ci", receiver.url), base_delay=1) as hub:
        hub.enqueue()
        append(ledger)
        for _ in range(3):
            hub.run_once()
            clock.advance(5)
        [delivery] = deliveries(ledger)
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        DeliveryStatus.DELIVERED,
        3,
        "",
    )
    bodies = {r.body for r in receiver.received}
    ids = {r.headers[DELIVERY_HEADER] for r in receiver.received}
    assert len(receiver.received) == 3 and len(bodies) == 1 and ids == {str(delivery.id)}


def test_failing_subscriber_holds_back_only_its_own_queue(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    down = local("down", f"http://127.0.0.1:{free_port()}/hook")
    ok = local("ok", receiver.url)
    with dispatcher(ledger, clock, down, ok) as hub:
        hub.enqueue()
        for version in (1, 2, 3):
            append(ledger, version=version)
        # One connection attempt for "down" this round, not three.
        assert hub.run_once() == 4
        down_rows = deliveries(ledger, subscriber="down")
        assert sorted(d.attempts for d in down_rows) == [0, 0, 1]
        assert all(d.next_attempt_at > clock.now for d in down_rows)
        delivered = deliveries(ledger, subscriber="ok")
        assert all(d.status is DeliveryStatus.DELIVERED for d in delivered)
    assert len(receiver.received) == 3


def test_restarted_dispatcher_sends_what_the_previous_one_left_pending(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    subscriber = local("ci", receiver.url)
    with dispatcher(ledger, clock, subscriber) as first:
        first.enqueue()
        event = append(ledger)
        assert first.enqueue() == 1  # fanned out, then the process stops before sending
    ledger.dispose()

    restarted = Ledger(ledger.uri)
    with dispatcher(restarted, clock, subscriber) as second:
        assert second.run_once() == 1
        [delivery] = deliveries(restarted)
    restarted.dispose()
    assert delivery.status is DeliveryStatus.DELIVERED
    [request] = receiver.received
    assert request.json["event"]["event_id"] == event.id


class Crash(BaseException):
    """The process dies in the middle of a send."""


def test_delivery_leased_by_a_crashed_dispatcher_is_sent_after_the_lease(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    def die(_request: httpx.Request) -> httpx.Response:
        raise Crash

    subscriber = local("ci", receiver.url)
    crashing = dispatcher(ledger, clock, subscriber, transport=httpx.MockTransport(die))
    crashing.enqueue()
    append(ledger)
    with pytest.raises(Crash):
        crashing.run_once()
    crashing.close()

    with dispatcher(ledger, clock, subscriber) as survivor:
        assert survivor.run_once() == 0  # still leased to the crashed one
        clock.advance(4 * 2.0 + 30)  # the lease: four timeouts and a margin
        assert survivor.run_once() == 1
        [delivery] = deliveries(ledger)
    assert delivery.status is DeliveryStatus.DELIVERED
    assert len(receiver.received) == 1


def test_new_subscriber_gets_only_events_after_it_was_added(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    old = [append(ledger, version=v) for v in (1, 2)]
    with dispatcher(ledger, clock, local("late", receiver.url)) as hub:
        assert hub.run_once() == 0
        new = append(ledger, version=3)
        assert hub.run_once() == 1
    assert [r.json["event"]["event_id"] for r in receiver.received] == [new.id]
    assert new.id > max(e.id for e in old)


def test_action_filter_sends_only_wanted_actions(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    wanted = frozenset({"transition", "rollback"})
    with dispatcher(ledger, clock, local("ops", receiver.url, wanted)) as hub:
        hub.enqueue()
        append(ledger, action=Action.REGISTER)
        promotion = append(ledger, to_stage=Stage.STAGING)
        append(ledger, action=Action.APPROVE)
        assert hub.run_once() == 1
        # The cursor moved past the unwanted ones too: nothing is created later.
        assert hub.enqueue() == 0
    assert [r.headers[EVENT_HEADER] for r in receiver.received] == ["transition"]
    assert receiver.received[0].json["event"]["event_id"] == promotion.id


def test_two_replicas_never_send_a_delivery_twice(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    subscriber = local("ci", receiver.url)
    with dispatcher(ledger, clock, subscriber) as first:
        first.enqueue()
    events = [append(ledger, model=f"m{n}") for n in range(20)]
    replicas = [Ledger(ledger.uri) for _ in range(3)]
    hubs = [dispatcher(replica, clock, subscriber, batch=4) for replica in replicas]

    def drain(hub: Dispatcher) -> int:
        return sum(hub.run_once() for _ in range(10))

    with ThreadPoolExecutor(len(hubs)) as pool:
        sent = sum(pool.map(drain, hubs))
    for hub, replica in zip(hubs, replicas, strict=True):
        hub.close()
        replica.dispose()
    delivered = [r.json["event"]["event_id"] for r in receiver.received]
    assert sent == len(events)
    assert sorted(delivered) == sorted(e.id for e in events)


def test_deliveries_listing_and_retry_refuse_bad_requests(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    with dispatcher(ledger, clock, local("ci", receiver.url)) as hub:
        hub.enqueue()
        append(ledger)
        hub.run_once()
        [delivery] = deliveries(ledger, subscriber="ci", status=DeliveryStatus.DELIVERED)
        assert deliveries(ledger, subscriber="other") == []
        assert deliveries(ledger, status="pending") == []
        with pytest.raises(InvalidInputError, match="unknown delivery status"):
            deliveries(ledger, status="lost")
        with pytest.raises(ConflictError, match="already delivered"):
            retry(ledger, clock, delivery.id)
        with pytest.raises(NotFoundError, match="modelreg webhooks"):
            retry(ledger, clock, delivery.id + 1000)


def test_dispatcher_refuses_duplicate_subscriber_names(ledger: Ledger) -> None:
    one = local("ci", "http://127.0.0.1:9/a")
    with pytest.raises(InvalidInputError, match="repeat: ci"):
        Dispatcher(ledger, [one, one])


def test_out_of_order_commits_on_postgresql_lose_no_event(
    pg_database: Any, clock: FakeClock, receiver: Receiver
) -> None:
    # A slow promotion of one model appends first and commits last, while a fast
    # one of another model commits in between and is fanned out.
    ledger = Ledger(pg_database())
    hub = dispatcher(ledger, clock, local("ci", receiver.url))
    hub.enqueue()
    appended, release = threading.Event(), threading.Event()

    def slow() -> Event:
        with ledger.locked("slow") as txn:
            event = txn.append(NewEvent(model="slow", version=1, action=Action.REGISTER, actor="a"))
            appended.set()
            release.wait(10)
            return event

    with ThreadPoolExecutor(1) as pool:
        slow_event = pool.submit(slow)
        assert appended.wait(10)
        fast = append(ledger, model="fast")
        assert hub.run_once() == 1
        release.set()
        slow_id = slow_event.result().id
    assert slow_id < fast.id  # the slow event's id is older...
    assert hub.run_once() == 1  # ...yet it is still delivered
    delivered = {r.json["event"]["event_id"] for r in receiver.received}
    assert delivered == {fast.id, slow_id}
    hub.close()
    ledger.dispose()


def test_dispatch_loop_survives_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A ledger that cannot be opened (the path is a directory) fails every round.
    monkeypatch.setenv("MODELREG_TEST_SECRET", SECRET.decode())
    (tmp_path / "policy.toml").write_text(
        '[[webhooks]]\nname = "ci"\nurl = "http://127.0.0.1:9/hook"\n'
        'secret_env = "MODELREG_TEST_SECRET"\nallow_private = true\n'
    )
    settings = Settings(
        home=tmp_path,
        ledger_uri=f"sqlite:///{tmp_path}",
        tracking_uri="http://x",
        webhook_interval_seconds=0.01,
    )
    registry = Registry(settings)

    async def run_a_while() -> bool:
        task = asyncio.create_task(WebhookWorker(settings, registry).run())
        await asyncio.sleep(0.2)
        alive = not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return alive

    with caplog.at_level(logging.WARNING, logger="modelreg.workers"):
        assert asyncio.run(run_a_while())
    failures = [r for r in caplog.records if "delivery round failed" in r.getMessage()]
    assert len(failures) >= 2
    registry.close()


def test_events_table_is_untouched_by_delivery_state(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    # Deliveries change status; the append-only event log must not change at all.
    with dispatcher(ledger, clock, local("ci", receiver.url)) as hub:
        hub.enqueue()
        event = append(ledger)
        with ledger.engine.connect() as conn:
            before = conn.execute(select(EventRow)).all()
        hub.run_once()
        with ledger.engine.connect() as conn:
            after = conn.execute(select(EventRow)).all()
            count = conn.execute(select(func.count()).select_from(OutboxRow)).scalar_one()
    assert before == after and count == 1 and after[0].id == event.id


def test_private_targets_need_the_policy_to_allow_them_and_metadata_never(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    for url in (receiver.url, "http://localhost:9/", "http://2130706433/", "http://10.0.0.1/"):
        with pytest.raises(InvalidInputError, match="allow_private = true"):
            Subscriber("ci", url, SECRET)
    for url in ("http://169.254.169.254/latest/", "http://[fd00:ec2::254]/", "http://metadata/"):
        with pytest.raises(InvalidInputError, match="never contacted"):
            Subscriber("ci", url, SECRET, allow_private=True)


def test_name_resolving_to_a_refused_address_fails_at_connection_without_sending(
    ledger: Ledger, clock: FakeClock, receiver: Receiver
) -> None:
    # This machine's own host name: no rule refuses it on sight, but it resolves to
    # loopback, which the subscriber does not allow.
    host = socket.gethostname()
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        pytest.skip(f"host name {host} does not resolve to loopback here")
    port = httpx.URL(receiver.url).port
    named = Subscriber("named", f"http://{host}:{port}/hook", SECRET)
    with dispatcher(ledger, clock, named, local("ok", receiver.url)) as hub:
        hub.enqueue()
        append(ledger)
        assert hub.run_once() == 2
        [refused] = deliveries(ledger, subscriber="named")
        [delivered] = deliveries(ledger, subscriber="ok")
    # Failed at once with the reason (retrying would reach the same address).
    assert (refused.status, refused.last_status_code) == (DeliveryStatus.FAILED, None)
    assert refused.last_error.startswith(f"refused: {host}: 127.")
    assert "allow_private" in refused.last_error
    assert delivered.status is DeliveryStatus.DELIVERED
    assert [r.headers.get("Host") for r in receiver.received] == [f"127.0.0.1:{port}"]


def test_a_received_mlflow_delivery_is_acted_on_by_one_replica_once(ledger: Ledger) -> None:
    seen = ReceivedDeliveries(ledger)
    now = datetime.now(UTC)
    fresh_until = now + timedelta(seconds=300)
    with ThreadPoolExecutor(8) as pool:
        firsts = list(
            pool.map(lambda _: seen.first_time("d-1", now=now, expires_at=fresh_until), range(16))
        )
    assert firsts.count(True) == 1
    assert seen.first_time("d-2", now=now, expires_at=fresh_until)
    # Once its signature is stale a replay is refused anyway: the id is forgotten.
    later = fresh_until + timedelta(seconds=1)
    assert seen.first_time("d-3", now=later, expires_at=later + timedelta(seconds=300))
    with ledger.engine.connect() as conn:
        kept = conn.execute(select(MlflowDeliveryRow.delivery_id)).scalars().all()
    assert kept == ["d-3"]
