"""Webhook signatures both ways: ours, and MLflow 3.17's as built by MLflow's own code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.domain import Action, Event, Stage
from modelreg.errors import InvalidInputError
from modelreg.webhooks import (
    MLFLOW_DELIVERY_ID_HEADER,
    MLFLOW_SIGNATURE_HEADER,
    MLFLOW_TIMESTAMP_HEADER,
    Subscriber,
    mlflow_delivery,
    mlflow_event,
    payload,
    sign,
    verify_mlflow_signature,
    verify_signature,
)

SECRET = b"subscriber-secret"
BODY = b'{"delivery_id":1,"event":{"action":"transition"},"subscriber":"ci"}'
NOW = 1_767_225_600

# --------------------------------------------------------------------------- ours


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    # The documented recipe, computed independently, so receivers can rely on it.
    expected = hmac.new(SECRET, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"


def test_valid_signature_is_accepted() -> None:
    header = sign(SECRET, NOW, BODY)
    assert verify_signature(SECRET, str(NOW), BODY, header, now=NOW + 10)
    assert verify_signature(SECRET, NOW, BODY, header, now=NOW - 10)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "header"),
    [
        pytest.param(b"wrong-secret", str(NOW), BODY, None, id="other secret"),
        pytest.param(SECRET, str(NOW), BODY + b" ", None, id="body changed"),
        pytest.param(SECRET, str(NOW + 1), BODY, None, id="timestamp changed"),
        pytest.param(SECRET, str(NOW), BODY, "", id="missing"),
        pytest.param(SECRET, str(NOW), BODY, "sha256=" + "0" * 64, id="forged"),
        pytest.param(SECRET, str(NOW), BODY, "SIG", id="stripped prefix"),
        pytest.param(SECRET, "yesterday", BODY, None, id="timestamp not a number"),
        pytest.param(SECRET, "", BODY, None, id="timestamp missing"),
        pytest.param(SECRET, str(NOW), BODY, "sha256=ü", id="non-ascii header"),
    ],
)
def test_forged_or_altered_signatures_are_refused(
    secret: bytes, timestamp: str, body: bytes, header: str | None
) -> None:
    genuine = sign(SECRET, NOW, BODY)
    sent = {None: genuine, "SIG": genuine.removeprefix("sha256=")}.get(header, header)
    assert sent is not None
    assert not verify_signature(secret, timestamp, body, sent, now=NOW)


def test_stale_and_future_timestamps_are_refused() -> None:
    header = sign(SECRET, NOW, BODY)
    assert verify_signature(SECRET, NOW, BODY, header, now=NOW + 300)
    assert not verify_signature(SECRET, NOW, BODY, header, now=NOW + 301)
    assert not verify_signature(SECRET, NOW, BODY, header, now=NOW - 301)
    assert not verify_signature(SECRET, NOW, BODY, header, tolerance=5, now=NOW + 6)


def test_default_clock_is_the_wall_clock() -> None:
    current = int(time.time())
    assert verify_signature(SECRET, current, BODY, sign(SECRET, current, BODY))
    assert not verify_signature(SECRET, NOW - 3600, BODY, sign(SECRET, NOW - 3600, BODY))


@given(secret=st.binary(min_size=1, max_size=64), body=st.binary(max_size=256), flip=st.data())
def test_any_single_byte_change_breaks_the_signature(
    secret: bytes, body: bytes, flip: st.DataObject
) -> None:
    header = sign(secret, NOW, body)
    assert verify_signature(secret, NOW, body, header, now=NOW)
    if body:
        at = flip.draw(st.integers(0, len(body) - 1))
        changed = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
        assert not verify_signature(secret, NOW, changed, header, now=NOW)


# --------------------------------------------------------------------------- payload


def test_payload_carries_actor_versions_semver_and_digest() -> None:
    event = Event(
        id=7,
        model="churn",
        version=4,
        action=Action.TRANSITION,
        actor="alice",
        at=datetime(2026, 1, 1, 12, tzinfo=UTC),
        from_stage=Stage.STAGING,
        to_stage=Stage.PRODUCTION,
        reason="better auc",
        semver="1.3.0",
        digest="sha256:ab",
        details={"previous_version": 3},
    )
    body = payload(event)
    assert body == {
        "event_id": 7,
        "model": "churn",
        "version": 4,
        "action": "transition",
        "actor": "alice",
        "at": "2026-01-01T12:00:00+00:00",
        "from_stage": "Staging",
        "to_stage": "Production",
        "semver": "1.3.0",
        "digest": "sha256:ab",
        "reason": "better auc",
        "previous_version": 3,
        "new_version": 4,
        "details": {"previous_version": 3},
    }
    json.dumps(body)  # JSON-serialisable as stored in the outbox


def test_payload_of_an_event_without_a_stage_change_has_no_new_version() -> None:
    event = Event(
        id=1, model="m", version=2, action=Action.APPROVE, actor="bob", at=datetime.now(UTC)
    )
    assert payload(event)["new_version"] is None
    assert payload(event)["previous_version"] is None


# --------------------------------------------------------------------------- subscribers


def test_subscriber_repr_hides_the_secret() -> None:
    subscriber = Subscriber("ci", "https://ci.example/hook", b"top-secret")
    assert "top-secret" not in repr(subscriber)


@pytest.mark.parametrize(
    ("name", "url", "secret", "actions", "message"),
    [
        ("", "https://h/x", b"s", frozenset(), "subscriber name"),
        ("a b", "https://h/x", b"s", frozenset(), "subscriber name"),
        ("ci", "ftp://h/x", b"s", frozenset(), "http:// or https://"),
        ("ci", "https://", b"s", frozenset(), "https://"),
        ("ci", "https://h/x", b"", frozenset(), "secret is empty"),
        ("ci", "https://h/x", b"s", frozenset({"promote"}), "unknown actions promote"),
        ("ci", "http://169.254.169.254/", b"s", frozenset(), "never contacted"),
        ("ci", "http://127.0.0.1:8080/", b"s", frozenset(), "set allow_private = true"),
    ],
)
def test_bad_subscribers_are_refused_with_a_clear_message(
    name: str, url: str, secret: bytes, actions: frozenset[str], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Subscriber(name, url, secret, actions)


# --------------------------------------------------------------------------- MLflow

MLFLOW_SECRET = "mlflow-webhook-secret"


@dataclass
class _RecordingSession:
    """Stands in for MLflow's requests.Session: keeps what MLflow would have sent."""

    sent: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    def post(self, url: str, data: bytes, headers: dict[str, str], timeout: float) -> None:
        self.sent.append((url, data, dict(headers)))


def _mlflow_request(
    monkeypatch: pytest.MonkeyPatch,
    entity: str,
    action: str,
    data: dict[str, Any],
    secret: str = MLFLOW_SECRET,
) -> tuple[dict[str, str], bytes]:
    """Headers and body exactly as MLflow 3.17's delivery code builds them."""
    from mlflow.entities.webhook import Webhook, WebhookEvent
    from mlflow.webhooks.delivery import _send_webhook_request

    # The receiver is local; MLflow would refuse private addresses otherwise.
    monkeypatch.setenv("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS", "true")
    event = WebhookEvent(entity, action)
    webhook = Webhook(
        webhook_id="wh-1",
        name="modelreg-sync",
        url="https://127.0.0.1/webhooks/mlflow",
        events=[event],
        creation_timestamp=0,
        last_updated_timestamp=0,
        secret=secret,
    )
    session = _RecordingSession()
    _send_webhook_request(webhook, data, event, session)  # type: ignore[arg-type]
    [(_url, body, headers)] = session.sent
    return headers, body


@pytest.fixture
def alias_created(monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, str], bytes]:
    """An MLflow ``model_version_alias.created`` request for model churn."""
    return _mlflow_request(
        monkeypatch,
        "model_version_alias",
        "created",
        {"name": "churn", "alias": "production", "version": "3"},
    )


def test_mlflows_own_signature_is_accepted(alias_created: tuple[dict[str, str], bytes]) -> None:
    headers, body = alias_created
    assert verify_mlflow_signature(MLFLOW_SECRET, headers, body)


def test_mlflow_signature_matches_mlflows_signing_helper() -> None:
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = '{"entity": "model_version", "action": "created", "data": {"name": "m"}}'
    headers = {
        MLFLOW_DELIVERY_ID_HEADER: "d-1",
        MLFLOW_TIMESTAMP_HEADER: str(NOW),
        MLFLOW_SIGNATURE_HEADER: _generate_hmac_signature(MLFLOW_SECRET, "d-1", str(NOW), body),
    }
    assert verify_mlflow_signature(MLFLOW_SECRET, headers, body.encode(), now=NOW)


def test_mlflow_headers_are_matched_case_insensitively(
    alias_created: tuple[dict[str, str], bytes],
) -> None:
    headers, body = alias_created
    lowered = {key.lower(): value for key, value in headers.items()}
    assert verify_mlflow_signature(MLFLOW_SECRET, lowered, body)


def test_one_matching_signature_among_several_is_enough(
    alias_created: tuple[dict[str, str], bytes],
) -> None:
    headers, body = alias_created
    rotated = {**headers, MLFLOW_SIGNATURE_HEADER: f"v1,AAAA {headers[MLFLOW_SIGNATURE_HEADER]}"}
    assert verify_mlflow_signature(MLFLOW_SECRET, rotated, body)


def _without(headers: dict[str, str], name: str) -> dict[str, str]:
    return {key: value for key, value in headers.items() if key != name}


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda h, b: ("other-secret", h, b), id="other secret"),
        pytest.param(lambda h, b: ("", h, b), id="no secret configured"),
        pytest.param(lambda h, b: (MLFLOW_SECRET, h, b.replace(b"churn", b"fraud")), id="body"),
        pytest.param(
            lambda h, b: (MLFLOW_SECRET, {**h, MLFLOW_DELIVERY_ID_HEADER: "other"}, b),
            id="delivery id",
        ),
        pytest.param(
            lambda h, b: (
                MLFLOW_SECRET,
                {**h, MLFLOW_TIMESTAMP_HEADER: str(int(h[MLFLOW_TIMESTAMP_HEADER]) - 1)},
                b,
            ),
            id="timestamp",
        ),
        pytest.param(
            lambda h, b: (MLFLOW_SECRET, {**h, MLFLOW_SIGNATURE_HEADER: "v1,Zm9yZ2Vk"}, b),
            id="forged",
        ),
        pytest.param(
            lambda h, b: (
                MLFLOW_SECRET,
                {**h, MLFLOW_SIGNATURE_HEADER: "v2," + h[MLFLOW_SIGNATURE_HEADER][3:]},
                b,
            ),
            id="unknown version",
        ),
        pytest.param(
            lambda h, b: (MLFLOW_SECRET, _without(h, MLFLOW_SIGNATURE_HEADER), b),
            id="unsigned",
        ),
        pytest.param(
            lambda h, b: (MLFLOW_SECRET, _without(h, MLFLOW_TIMESTAMP_HEADER), b),
            id="no timestamp",
        ),
        pytest.param(
            lambda h, b: (MLFLOW_SECRET, _without(h, MLFLOW_DELIVERY_ID_HEADER), b),
            id="no delivery id",
        ),
    ],
)
def test_forged_mlflow_requests_are_refused(
    alias_created: tuple[dict[str, str], bytes], forge: Any
) -> None:
    headers, body = alias_created
    assert verify_mlflow_signature(MLFLOW_SECRET, headers, body)  # the genuine one passes
    secret, forged_headers, forged_body = forge(headers, body)
    assert not verify_mlflow_signature(secret, forged_headers, forged_body)


def test_stale_mlflow_requests_are_refused(alias_created: tuple[dict[str, str], bytes]) -> None:
    headers, body = alias_created
    sent_at = int(headers[MLFLOW_TIMESTAMP_HEADER])
    assert verify_mlflow_signature(MLFLOW_SECRET, headers, body, now=sent_at + 300)
    assert not verify_mlflow_signature(MLFLOW_SECRET, headers, body, now=sent_at + 301)
    assert not verify_mlflow_signature(MLFLOW_SECRET, headers, body, tolerance=10, now=sent_at + 11)


def test_mlflow_event_reads_entity_action_and_model(
    monkeypatch: pytest.MonkeyPatch, alias_created: tuple[dict[str, str], bytes]
) -> None:
    assert mlflow_event(alias_created[1]) == ("model_version_alias.created", "churn")
    _headers, deleted = _mlflow_request(
        monkeypatch, "model_version_alias", "deleted", {"name": "churn", "alias": "staging"}
    )
    assert mlflow_event(deleted) == ("model_version_alias.deleted", "churn")
    _headers, created = _mlflow_request(
        monkeypatch,
        "model_version",
        "created",
        {"name": "fraud", "version": "1", "source": "models:/m-1", "run_id": None, "tags": {}},
    )
    assert mlflow_event(created) == ("model_version.created", "fraud")


def test_mlflow_prompt_events_name_no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    _headers, body = _mlflow_request(
        monkeypatch, "prompt", "created", {"name": "greeting", "tags": {}, "description": None}
    )
    assert mlflow_event(body) == ("prompt.created", None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"action": "created", "data": {}}', "'entity'"),
        (b'{"entity": "model_version", "action": 3, "data": {}}', "'action'"),
        (b'{"entity": "Model Version!", "action": "created", "data": {}}', "'entity'"),
        (b'{"entity": "model_version", "action": "created", "data": []}', "'data'"),
        (b'{"entity": "model_version", "action": "created", "data": {}}', "model 'name'"),
        (b'{"entity": "model_version", "action": "created", "data": {"name": 5}}', "'name'"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b'{"pad": "' + b"x" * (1 << 20) + b'"}', "too large"),
    ],
)
def test_malformed_mlflow_bodies_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        mlflow_event(body)


def test_mlflow_delivery_names_the_id_and_send_time_that_were_signed(
    alias_created: tuple[dict[str, str], bytes],
) -> None:
    headers, _body = alias_created
    delivery_id, sent_at = mlflow_delivery(headers)
    assert delivery_id == headers[MLFLOW_DELIVERY_ID_HEADER]  # MLflow's uuid4, one per delivery
    assert sent_at == int(headers[MLFLOW_TIMESTAMP_HEADER])
    with pytest.raises(InvalidInputError, match="no delivery id"):
        mlflow_delivery(_without(headers, MLFLOW_DELIVERY_ID_HEADER))


def test_mlflow_requests_with_an_overlong_delivery_id_are_refused() -> None:
    def signed(delivery_id: str) -> dict[str, str]:
        timestamp = str(int(time.time()))
        content = f"{delivery_id}.{timestamp}.".encode() + b"{}"
        mac = hmac.new(MLFLOW_SECRET.encode(), content, hashlib.sha256).digest()
        return {
            MLFLOW_DELIVERY_ID_HEADER: delivery_id,
            MLFLOW_TIMESTAMP_HEADER: timestamp,
            MLFLOW_SIGNATURE_HEADER: "v1," + base64.b64encode(mac).decode(),
        }

    # Ids are kept in the ledger to stop replays; MLflow's are 36-character uuids.
    assert verify_mlflow_signature(MLFLOW_SECRET, signed("d" * 128), b"{}")
    assert not verify_mlflow_signature(MLFLOW_SECRET, signed("d" * 129), b"{}")
