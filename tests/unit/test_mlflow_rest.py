"""The REST reader's error translation and fail-fast behaviour, against a real local HTTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from modelreg.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotFoundError,
    VersionNotFoundError,
)
from modelreg.mlflow_gateway.rest import MlflowRest


class _Handler(BaseHTTPRequestHandler):
    # path -> list of (status, body) answered in turn (the last one repeats)
    answers: ClassVar[dict[str, list[tuple[int, object]]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].removeprefix("/api/2.0/mlflow/")
        self.seen.append(self.path)
        queue = self.answers.get(path, [(404, {"error_code": "ENDPOINT_NOT_FOUND"})])
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.answers, _Handler.seen = {}, []
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
        started = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="not reachable"):
            rest.get("registered-models/search", {"max_results": 1})
    assert time.monotonic() - started < 1


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
