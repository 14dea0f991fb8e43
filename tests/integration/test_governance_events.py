"""Governance events out (signed webhooks) and MLflow's registry webhooks in (a sync trigger)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import mlflow
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from registry_helpers import labels, training_frame, write_policy
from sklearn.linear_model import LogisticRegression
from webhook_helpers import SECRET, FakeClock, Receiver

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.domain import Action, Event
from modelreg.ledger import Ledger
from modelreg.policy import write_starter
from modelreg.registry import Registry
from modelreg.stack import ServiceProcess, api_server_argv, free_port
from modelreg.webhooks import EVENT_HEADER
from services import MLFLOW_WEBHOOK_ENV, start_mlflow

pytestmark = pytest.mark.integration

HOOK_ENV = "MODELREG_TEST_HOOK_SECRET"
MLFLOW_SECRET = "mlflow-webhook-secret"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver that verifies our signatures."""
    server = Receiver(FakeClock())
    yield server
    server.close()


@pytest.fixture
def subscribed(governed: Registry, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The governed registry with one webhook subscriber, already fanned out to the present."""
    monkeypatch.setenv(HOOK_ENV, SECRET.decode())
    write_policy(
        governed,
        f'\n[[webhooks]]\nname = "ops"\nurl = "{receiver.url}"\nsecret_env = "{HOOK_ENV}"\n'
        "allow_private = true\n",  # the receiver is on loopback
    )
    governed.deliver_webhooks(actor="ann")  # a new subscriber starts from now
    return governed


def test_governance_events_reach_subscribers_signed(
    subscribed: Registry,
    receiver: Receiver,
    register_auc: Callable[..., int],
    model_name: str,
) -> None:
    first = register_auc(0.86, seed=1)
    subscribed.request(model_name, first)
    subscribed.approve(model_name, first, actor="bob")
    second = register_auc(0.9, seed=2)
    subscribed.auto_promote(model_name, second)
    assert subscribed.deliver_webhooks(actor="ann") > 0

    assert receiver.received
    assert all(r.verified for r in receiver.received)
    # The ledger is shared by the session's tests: keep this model's events.
    mine = [r for r in receiver.received if r.json["event"]["model"] == model_name]
    events = [r.json["event"] for r in mine]
    expected = [e.id for e in subscribed.history(model_name).events]
    assert [e["event_id"] for e in events] == expected  # every event, in order, once
    assert [r.headers[EVENT_HEADER] for r in mine] == [e["action"] for e in events]
    [approval] = [e for e in events if e["action"] == Action.APPROVE]
    assert approval["actor"] == "bob"
    promoted = [e for e in events if e["to_stage"] == "Production"]
    assert [(e["new_version"], e["previous_version"]) for e in promoted] == [
        (first, None),
        (second, first),
    ]
    last = promoted[-1]
    assert last["actor"] == subscribed.settings.automation_actor
    assert last["semver"] == subscribed.show(model_name, second).semver
    assert last["digest"] == subscribed.show(model_name, second).digest


def test_undeliverable_webhook_is_kept_and_retried(
    subscribed: Registry,
    receiver: Receiver,
    register_auc: Callable[..., int],
    model_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.fail_next = 1000
    version = register_auc(0.9)
    subscribed.deliver_webhooks(actor="ann")
    # The ledger is shared by the session's tests: look at this model's deliveries only.
    [pending] = [d for d in subscribed.deliveries(status="pending") if d.model == model_name]
    assert pending.attempts == 1
    assert pending.last_status_code == 500
    assert pending.last_error == "HTTP 500 Internal Server Error"  # not the receiver's answer
    assert [e.version for e in subscribed.history(model_name).events] == [version]

    settings = subscribed.settings
    base = ["--tracking-uri", str(settings.tracking_uri), "--ledger-uri", str(settings.ledger_uri)]
    home = ["--home", str(settings.home)]
    capsys.readouterr()
    assert main([*base, *home, "webhooks", "list", "--status", "pending", "--json"]) == 0
    [listed] = [d for d in json.loads(capsys.readouterr().out) if d["model"] == model_name]
    assert (listed["status"], listed["attempts"]) == ("pending", 1)
    assert main([*base, *home, "--actor", "victor", "webhooks", "deliver"]) == 7  # admins only

    with TestClient(create_app(settings, subscribed)) as api:
        listed_api = api.get("/api/v1/webhooks/deliveries", params={"status": "pending"}).json()
        assert pending.id in [d["id"] for d in listed_api]
        assert api.get("/api/v1/webhooks/deliveries", params={"status": "lost"}).status_code == 400
        retry = f"/api/v1/webhooks/deliveries/{pending.id}/retry"
        assert api.post(retry, headers={"X-Modelreg-Actor": "victor"}).status_code == 403
        retried = api.post(retry, headers={"X-Modelreg-Actor": "ann"})
        assert retried.status_code == 200
        assert retried.json()["status"] == "pending"


# -- MLflow's webhooks in ------------------------------------------------------------


@pytest.fixture(scope="module")
def hooked_mlflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MLflow server of its own that may call webhooks on loopback over http."""
    workdir = tmp_path_factory.mktemp("mlflow-hooks")
    process, uri = start_mlflow(
        "mlflow-hooks",
        workdir,
        backend_store_uri=f"sqlite:///{workdir / 'mlflow.db'}",
        artifacts_destination=str(workdir / "artifacts"),
        env=MLFLOW_WEBHOOK_ENV,
    )
    yield uri
    process.stop()


@pytest.fixture
def api_service(hooked_mlflow: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The modelreg API on a real port under the starter policy; its periodic sync is 1 h."""
    port = free_port()
    ledger_uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    write_starter(tmp_path / "policy.toml", ["ann"])
    process = ServiceProcess(
        "api",
        api_server_argv(host="127.0.0.1", port=port),
        health_url=f"http://127.0.0.1:{port}/health",
        env={
            "MODELREG_HOME": str(tmp_path),
            "MODELREG_TRACKING_URI": hooked_mlflow,
            "MODELREG_LEDGER_URI": ledger_uri,
            "MODELREG_SYNC_INTERVAL_SECONDS": "3600",
            "MODELREG_MLFLOW_WEBHOOK_SECRET": MLFLOW_SECRET,
        },
        log_path=tmp_path / "api.log",
        cwd=tmp_path,
    )
    process.start()
    try:
        process.wait_ready(120)
        yield f"http://127.0.0.1:{port}", ledger_uri
    finally:
        process.stop()


def _wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_mlflow_webhooks_trigger_adoption_and_undo_bypasses(
    hooked_mlflow: str, api_service: tuple[str, str], model_name: str
) -> None:
    api, ledger_uri = api_service
    client = MlflowClient(hooked_mlflow)
    client.create_webhook(
        name=f"modelreg-{model_name}",
        url=f"{api}/api/v1/mlflow-webhook",
        events=[
            "model_version.created",
            "model_version_alias.created",
            "model_version_alias.deleted",
        ],
        secret=MLFLOW_SECRET,
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(hooked_mlflow)
    frame = training_frame()
    try:
        with mlflow.start_run() as run:
            logged = mlflow.sklearn.log_model(
                LogisticRegression().fit(frame, labels(frame)), name="model", input_example=frame
            )
    finally:
        mlflow.set_tracking_uri(previous)
    client.create_registered_model(model_name)
    client.create_model_version(
        model_name,
        logged.model_uri,
        run_id=run.info.run_id,
        model_id=logged.model_uri.removeprefix("models:/"),
    )
    ledger = Ledger(ledger_uri)
    try:
        # Only MLflow's webhook can make the API adopt it this soon (periodic sync: 1 h).
        assert _wait_for(lambda: (model_name, 1) in ledger.known_versions())

        # Someone with MLflow edit rights declares version 1 Production, skipping the gates:
        client.set_registered_model_alias(model_name, "production", "1")
        assert _wait_for(
            lambda: "production" not in client.get_registered_model(model_name).aliases
        )
        # The alias moves back before the repair's ledger transaction commits.

        def repairs() -> list[Event]:
            return [e for e in ledger.events(model_name) if e.action is Action.REPAIR]

        assert _wait_for(lambda: bool(repairs()))
        assert repairs()[0].details["drift"][0]["kind"] == "alias production"
    finally:
        ledger.dispose()


def test_forged_mlflow_webhooks_are_refused(registry: Registry, model_name: str) -> None:
    settings = registry.settings.model_copy(update={"mlflow_webhook_secret": MLFLOW_SECRET})
    body = json.dumps(
        {"entity": "model_version", "action": "created", "timestamp": "x", "data": {"name": "m"}}
    ).encode()
    now = str(int(time.time()))
    forged = {
        "X-MLflow-Delivery-Id": "d1",
        "X-MLflow-Timestamp": now,
        "X-MLflow-Signature": "v1,bm90LWEtc2lnbmF0dXJl",
        "Content-Type": "application/json",
    }
    reg = Registry(settings)
    with TestClient(create_app(settings, reg)) as api:
        assert api.post("/api/v1/mlflow-webhook", content=body, headers=forged).status_code == 401
        unsigned = {"Content-Type": "application/json"}
        assert api.post("/api/v1/mlflow-webhook", content=body, headers=unsigned).status_code == 401
    without = create_app(registry.settings, registry)
    with TestClient(without) as api:  # no secret configured: the endpoint is off
        assert api.post("/api/v1/mlflow-webhook", content=body, headers=forged).status_code == 404


def _signed(body: bytes, delivery_id: str, *, secret: str = MLFLOW_SECRET) -> dict[str, str]:
    """Headers of an MLflow webhook request, signed the way MLflow 3.17 signs them."""
    timestamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": timestamp,
        "X-MLflow-Signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def test_replayed_mlflow_webhook_is_acted_on_once(api_service: tuple[str, str]) -> None:
    api, _ledger_uri = api_service
    body = json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": "replayed"}}
    ).encode()
    headers = _signed(body, "d-replay-1")
    answers = [
        httpx.post(f"{api}/api/v1/mlflow-webhook", content=body, headers=headers) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [202, 200, 200]
    assert answers[0].json()["sync"] is True
    # 2xx, so MLflow does not retry it; nothing is synced for a repeat.
    assert all(
        a.json() == {"delivery": "d-replay-1", "duplicate": True, "sync": False}
        for a in answers[1:]
    )
    # Another delivery of the same event (a new id) is acted on.
    again = httpx.post(
        f"{api}/api/v1/mlflow-webhook", content=body, headers=_signed(body, "d-replay-2")
    )
    assert again.status_code == 202


def _raw(url: str, head: bytes, chunks: Sequence[bytes] = ()) -> bytes:
    """Send ``head`` and then ``chunks`` over a socket until the server answers; its first bytes."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=10) as conn:
        conn.sendall(head)
        conn.settimeout(0.01)
        for chunk in chunks:
            try:
                answer = conn.recv(64)
            except TimeoutError:
                answer = b""
            if answer:
                return answer  # answered before the whole body was sent
            try:
                conn.sendall(chunk)
            except OSError:
                break  # the server closed the connection on us: read its answer
        conn.settimeout(10)
        return conn.recv(64)


@pytest.mark.parametrize(
    ("path", "unread"),
    [
        ("/api/v1/mlflow-webhook", 413),
        ("/api/v1/models/m/versions/1/promote", 413),
        ("/api/v1/no-such-route", 404),  # answered without reading the body at all
    ],
)
def test_oversized_bodies_are_refused_before_they_are_read(
    api_service: tuple[str, str], path: str, unread: int
) -> None:
    api, _ledger_uri = api_service
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # A declared 2 GiB body is refused from the header alone, with no byte of it sent.
    declared = _raw(api, f"{request}Content-Length: 2147483648\r\n\r\n".encode())
    assert declared.startswith(b"HTTP/1.1 413"), declared
    # Without a length (chunked), reading stops past 1 MiB: answered long before 64 MiB arrive.
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    streamed = _raw(api, f"{request}Transfer-Encoding: chunked\r\n\r\n".encode(), [chunk] * 1024)
    assert streamed.startswith(b"HTTP/1.1 %d" % unread), streamed
