"""The REST client's error translation and fail-fast behaviour, against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from modelreg.domain import Stage
from modelreg.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotFoundError,
    PermissionDeniedError,
    VersionNotFoundError,
)
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.mlflow_gateway.rest import MlflowRest


class _Handler(BaseHTTPRequestHandler):
    # path -> list of (status, body) answered in turn (the last one repeats); a str
    # body is sent as text, as MLflow's basic-auth app answers 401 and 403
    answers: ClassVar[dict[str, list[tuple[int, object]]]] = {}
    seen: ClassVar[list[str]] = []
    writes: ClassVar[list[tuple[str, str, object]]] = []  # (method, endpoint, JSON body)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0].removeprefix("/api/2.0/mlflow/")
        self.seen.append(self.path)
        if self.command != "GET":
            length = int(self.headers.get("Content-Length") or 0)
            self.writes.append((self.command, path, json.loads(self.rfile.read(length) or b"null")))
        queue = self.answers.get(path, [(404, {"error_code": "ENDPOINT_NOT_FOUND"})])
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        text = isinstance(body, str)
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain" if text else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.answers, _Handler.seen, _Handler.writes = {}, [], []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_refused_connection_is_reported_at_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        rest = MlflowRest(f"http://127.0.0.1:{closed.getsockname()[1]}")
        with pytest.raises(BackendUnavailableError, match="not reachable"):
            rest.get("registered-models/search", {"max_results": 1})
    assert rest.requests == 1  # reported at once, never retried (a clock would flake)


def test_answers_and_errors_are_translated(server: str) -> None:
    _Handler.answers = {
        "registered-models/get": [(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})],
        "model-versions/get": [(404, {"error_code": "RESOURCE_DOES_NOT_EXIST"})],
        "model-versions/search": [(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "x"})],
        "registered-models/search": [(200, {"registered_models": [{"name": "a b"}]})],
    }
    rest = MlflowRest(server)
    with pytest.raises(ModelNotFoundError):
        rest.get("registered-models/get", {"name": "m"}, name="m")
    with pytest.raises(VersionNotFoundError):
        rest.get("model-versions/get", {"name": "m", "version": "2"}, name="m", version=2)
    with pytest.raises(InvalidInputError, match="MLflow refused"):
        rest.get("model-versions/search", {"filter": "bad"})
    body = rest.get("registered-models/search", {"max_results": 5, "page_token": None})
    assert body == {"registered_models": [{"name": "a b"}]}
    assert "page_token" not in _Handler.seen[-1]  # None parameters are left out
    rest.close()


def test_server_errors_are_retried_then_reported(server: str) -> None:
    _Handler.answers = {
        "runs/get": [(503, {}), (200, {"run": {"info": {"run_id": "r1"}}})],
        "experiments/get": [(500, {"error_code": "INTERNAL_ERROR"})],
    }
    rest = MlflowRest(server)
    assert rest.get("runs/get", {"run_id": "r1"})["run"]["info"]["run_id"] == "r1"
    with pytest.raises(BackendError, match="server errors"):
        rest.get("experiments/get", {"experiment_id": "1"})
    assert sum("experiments/get" in path for path in _Handler.seen) == 3


def test_writes_send_mlflows_endpoints_and_payloads_in_one_request(server: str) -> None:
    ok: list[tuple[int, object]] = [(200, {})]
    _Handler.answers = {
        "registered-models/alias": ok,
        "model-versions/set-tag": ok,
        "model-versions/transition-stage": ok,
        "model-versions/update": ok,
        "model-versions/delete": ok,
    }
    gateway = MlflowGateway(server)
    gateway.set_alias("m", "production", 3)
    gateway.delete_alias("m", "staging")
    gateway.set_version_tags("m", 3, {"a": "1", "b": "2"})
    gateway.set_native_stage("m", 3, Stage.PRODUCTION)
    gateway.set_description("m", 3, "why")
    gateway.delete_version("m", 4)
    gateway.close()
    assert _Handler.writes == [
        ("POST", "registered-models/alias", {"name": "m", "alias": "production", "version": "3"}),
        ("DELETE", "registered-models/alias", {"name": "m", "alias": "staging"}),
        ("POST", "model-versions/set-tag", {"name": "m", "version": "3", "key": "a", "value": "1"}),
        ("POST", "model-versions/set-tag", {"name": "m", "version": "3", "key": "b", "value": "2"}),
        (
            "POST",
            "model-versions/transition-stage",
            {
                "name": "m",
                "version": "3",
                "stage": "Production",
                "archive_existing_versions": False,
            },
        ),
        ("PATCH", "model-versions/update", {"name": "m", "version": "3", "description": "why"}),
        ("DELETE", "model-versions/delete", {"name": "m", "version": "4"}),
    ]
    assert len(_Handler.seen) == 7  # no registered-models/get before any of them


def test_values_the_caller_already_read_are_not_written_again(server: str) -> None:
    _Handler.answers = {"model-versions/set-tag": [(200, {})], "model-versions/update": [(200, {})]}
    gateway = MlflowGateway(server)
    gateway.set_version_tags("m", 1, {"a": "1", "b": "2"}, current={"a": "1", "b": "old"})
    gateway.set_description("m", 1, "same", current="same")
    gateway.close()
    assert [body for _m, _p, body in _Handler.writes] == [
        {"name": "m", "version": "1", "key": "b", "value": "2"}
    ]


def test_write_errors_are_translated(server: str) -> None:
    missing = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no version"}
    _Handler.answers = {
        "model-versions/set-tag": [(404, missing)],
        "model-versions/update": [(403, "Permission denied")],
        "model-versions/delete": [(401, "You are not authenticated.")],
        "model-versions/transition-stage": [(400, {"error_code": "INVALID_PARAMETER_VALUE"})],
        "registered-models/alias": [(404, missing)],
    }
    gateway = MlflowGateway(server)
    with pytest.raises(VersionNotFoundError):
        gateway.set_version_tags("m", 9, {"a": "1"})
    with pytest.raises(PermissionDeniedError, match="model 'm'"):
        gateway.set_description("m", 1, "d")
    with pytest.raises(AuthenticationError, match="HTTP 401"):
        gateway.delete_version("m", 1)
    with pytest.raises(InvalidInputError, match="MLflow refused"):
        gateway.set_native_stage("m", 1, Stage.STAGING)
    with pytest.raises(VersionNotFoundError):
        gateway.set_alias("m", "production", 9)
    gateway.delete_alias("m", "production")  # an unset alias: nothing to remove
    gateway.close()


def test_a_refused_write_for_credentials_stays_a_backend_error_when_reading(server: str) -> None:
    # Health checks and model servers treat a read MLflow refuses as their backend failing.
    _Handler.answers = {"registered-models/search": [(403, "Permission denied")]}
    rest = MlflowRest(server)
    with pytest.raises(BackendError, match="refused modelreg's credentials") as caught:
        rest.get("registered-models/search", {})
    assert not isinstance(caught.value, PermissionDeniedError)
    rest.close()


def test_a_write_to_a_refused_connection_fails_at_once() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        gateway = MlflowGateway(f"http://127.0.0.1:{closed.getsockname()[1]}")
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="not reachable"):
            gateway.set_alias("m", "production", 1)
    # MLflow's own client would retry with back-off for minutes; 5 s leaves room for a
    # loaded CI machine (1 s flaked there) and still tells the two apart.
    assert time.monotonic() - started < 5
