"""`modelreg serve --config` on a real port: formats, headers, health, metrics, bad input."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse
from uuid import UUID

import mlflow.pyfunc
import pandas as pd
import pytest
from serving_helpers import (
    RELOAD_TOKEN,
    Server,
    register_trees,
    serving,
    to_production,
    unique_name,
)

from integration.registry_helpers import COLUMNS, create_versions, training_frame
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Setup:
    """The server of this module and what it serves."""

    server: Server
    tree: str  # default model: a tree following @production (v1)
    pinned: str  # a logistic regression pinned to version 1, batching off
    frame: pd.DataFrame
    expected: list[Any]  # local pyfunc predictions of the tree on ``frame``


@pytest.fixture(scope="module")
def setup(
    backend: Backend, module_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    tree, pinned = unique_name("tree"), unique_name("pinned")
    register_trees(module_registry, backend, tree, [2, 4])
    to_production(module_registry, tree, 1)
    create_versions(backend, module_registry, pinned, 1)

    home = tmp_path_factory.mktemp("serve-home")
    config = home / "serving.toml"
    config.write_text(
        f"max_body_bytes = {MAX_BODY}\n"
        f'reload_token = "{RELOAD_TOKEN}"\n'
        f"[[models]]\nname = {json.dumps(tree)}\npoll_interval = 0.5\n"
        f"[[models]]\nname = {json.dumps(pinned)}\nversion = 1\nmax_batch_size = 1\n"
    )
    frame = training_frame(7, rows=6)
    local_dir = module_registry.download(tree, 1, home / "local")
    expected = mlflow.pyfunc.load_model(str(local_dir)).predict(frame).tolist()
    with serving(backend, home, "--config", str(config)) as server:
        yield Setup(server, tree, pinned, frame, expected)


def _bodies(frame: pd.DataFrame) -> dict[str, tuple[bytes, str]]:
    records = frame.to_dict(orient="records")
    split = json.loads(frame.to_json(orient="split", index=False))
    columns = {c: frame[c].tolist() for c in frame.columns}
    as_json = "application/json"
    return {
        "dataframe_split": (json.dumps({"dataframe_split": split}).encode(), as_json),
        "dataframe_records": (json.dumps({"dataframe_records": records}).encode(), as_json),
        "instances": (json.dumps({"instances": records}).encode(), as_json),
        "inputs": (json.dumps({"inputs": columns}).encode(), as_json),
        "csv": (frame.to_csv(index=False).encode(), "text/csv"),
    }


def test_every_format_scores_like_pyfunc_locally(setup: Setup) -> None:
    for fmt, (body, content_type) in _bodies(setup.frame).items():
        response = setup.server.http.post(
            "/invocations", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 200, (fmt, response.text)
        assert response.json() == {"predictions": setup.expected}, fmt


def test_answers_name_the_model_version_and_request(setup: Setup) -> None:
    body = {"dataframe_records": setup.frame.to_dict(orient="records")}
    response = setup.server.score(body, headers={"X-Request-ID": "req-42"})
    assert response.headers["X-Model-Name"] == setup.tree
    assert response.headers["X-Model-Version"] == "1"
    assert response.headers["X-Model-Semver"] == "1.0.0"
    assert response.headers["X-Variant"] == "default"
    assert response.headers["X-Request-ID"] == "req-42"

    generated = setup.server.score(body).headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    hostile = setup.server.score(body, headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["X-Request-ID"] != "x" * 500


def test_named_models_are_scored_by_their_own_slot(setup: Setup) -> None:
    body = {"dataframe_split": json.loads(setup.frame.to_json(orient="split", index=False))}
    response = setup.server.score(body, path=f"/models/{setup.pinned}/invocations")
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Name"] == setup.pinned
    assert response.headers["X-Model-Version"] == "1"
    assert len(response.json()["predictions"]) == len(setup.frame)

    missing = setup.server.score(body, path="/models/no-such-model/invocations")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert setup.tree in missing.json()["message"]


def test_health_endpoints(setup: Setup) -> None:
    http = setup.server.http
    assert http.get("/ping").status_code == 200
    assert http.get("/health").status_code == 200
    assert http.get("/v2/health/live").json() == {"live": True}
    ready = http.get("/v2/health/ready")
    assert ready.status_code == 200
    assert ready.json()["ready"] is True
    assert ready.json()["degraded"] is False
    one = http.get(f"/v2/models/{setup.pinned}/ready")
    assert one.status_code == 200
    assert one.json()["version"] == 1
    assert http.get("/v2/models/nope/ready").status_code == 404


def test_version_names_what_each_slot_serves(setup: Setup, module_registry: Registry) -> None:
    body = setup.server.http.get("/version").json()
    assert body["replica"] == f"{socket.gethostname()}/{UUID(body['replica'].split('/')[1])}"
    assert body["default_model"] == setup.tree
    assert body["degraded"] is False
    tree, pinned = body["models"]
    assert tree["model"] == setup.tree
    assert tree["alias"] == "production"
    assert tree["version"] == 1
    assert tree["semver"] == "1.0.0"
    assert tree["digest"] == module_registry.show(setup.tree, 1).digest
    assert tree["loaded_at"] and tree["last_check"]
    assert 0 < tree["load_seconds"] < 120  # fetch, verify, load and warm-up
    assert tree["last_error"] is None
    assert pinned["pinned_version"] == 1
    assert pinned["alias"] is None


def test_concurrent_requests_each_get_their_own_predictions(setup: Setup) -> None:
    rows = [setup.frame.iloc[[i]] for i in range(len(setup.frame))] * 5
    results: list[Any] = [None] * len(rows)

    def call(i: int) -> None:
        body = {"dataframe_records": rows[i].to_dict(orient="records")}
        results[i] = setup.server.score(body).json()["predictions"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(rows))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    n = len(setup.frame)
    assert results == [[setup.expected[i % n]] for i in range(len(rows))]


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith(name):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def test_metrics_expose_the_serving_series(setup: Setup) -> None:
    setup.server.score({"dataframe_records": setup.frame.to_dict(orient="records")})
    setup.server.http.post(
        "/invocations", content=b"{", headers={"Content-Type": "application/json"}
    )
    text = setup.server.http.get("/metrics").text
    tree = f'model="{setup.tree}"'
    ok = _samples(text, "modelreg_serving_requests_total")
    labels = f'{tree},variant="default",version="1"'
    assert ok[f'modelreg_serving_requests_total{{code="200",{labels}}}'] >= 1
    assert ok[f'modelreg_serving_requests_total{{code="400",{labels}}}'] >= 1
    errors = _samples(text, "modelreg_serving_errors_total")
    assert errors[f'modelreg_serving_errors_total{{error_code="BAD_REQUEST",{labels}}}'] >= 1
    assert _samples(text, "modelreg_serving_request_seconds_count")
    assert _samples(text, "modelreg_serving_batch_size_count")
    reloads = _samples(text, "modelreg_serving_reloads_total")
    assert (
        reloads[f'modelreg_serving_reloads_total{{{tree},result="success",variant="default"}}'] == 1
    )
    loads = _samples(text, "modelreg_serving_model_load_seconds_count")
    assert loads[f'modelreg_serving_model_load_seconds_count{{{tree},variant="default"}}'] == 1
    info = _samples(text, "modelreg_serving_model_info")
    [series] = [s for s in info if tree in s]
    assert 'version="1"' in series and 'semver="1.0.0"' in series and "sha256:" in series
    assert "modelreg_serving_load_failures_total" in text


def _raw_post(url: str, head: str, body: bytes = b"") -> tuple[int, str]:
    """Send a hand-made request (a Content-Length that lies) and read the status line."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        header, _, text = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", header)[1])  # type: ignore[index]
        while len(text) < length:
            text += sock.recv(65536)
    return int(header.split(b" ", 2)[1]), text.decode()


def test_bad_input_gets_4xx_with_mlflow_error_bodies(setup: Setup) -> None:
    http = setup.server.http

    def post(content: Any, content_type: str = "application/json") -> Any:
        return http.post("/invocations", content=content, headers={"Content-Type": content_type})

    cases = {
        "malformed JSON": (post(b"{not json"), 400, "BAD_REQUEST"),
        "no input field": (post(b'{"rows": []}'), 400, "BAD_REQUEST"),
        "missing column": (
            post(json.dumps({"dataframe_records": [{"amount": 1.0}]}).encode()),
            400,
            "BAD_REQUEST",
        ),
        "wrong type": (
            post(json.dumps({"dataframe_records": [dict.fromkeys(COLUMNS, "x")]}).encode()),
            400,
            "BAD_REQUEST",
        ),
        "media type": (post(b"amount,age,score\n1,2,3\n", "text/plain"), 415, "BAD_REQUEST"),
        "too large": (post(b" " * (MAX_BODY + 1)), 413, "REQUEST_LIMIT_EXCEEDED"),
        "too large, chunked": (
            post(iter([b" " * 40_000, b" " * 40_000])),
            413,
            "REQUEST_LIMIT_EXCEEDED",
        ),
    }
    for case, (response, status, code) in cases.items():
        assert response.status_code == status, (case, response.text)
        body = response.json()
        assert set(body) == {"error_code", "message"}, case
        assert body["error_code"] == code, case
        assert "Traceback" not in body["message"], case
        assert response.headers["X-Model-Name"] == setup.tree, case
        assert response.headers["X-Request-ID"], case

    # A declared length over the limit is refused before any of the body arrives.
    port = urlparse(setup.server.url).port
    status, text = _raw_post(
        setup.server.url,
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "Content-Type: application/json\r\nContent-Length: 500000000\r\n\r\n",
    )
    assert status == 413
    assert "REQUEST_LIMIT_EXCEEDED" in text
    assert http.get("/ping").status_code == 200


def test_reload_needs_the_bearer_token(setup: Setup) -> None:
    http = setup.server.http
    assert http.post("/-/reload").status_code == 401
    wrong = http.post("/-/reload", headers={"Authorization": "Bearer not-the-token-at-all"})
    assert wrong.status_code == 403
    done = http.post("/-/reload", headers={"Authorization": f"Bearer {RELOAD_TOKEN}"})
    assert done.status_code == 200
    assert done.json()["results"] == {setup.tree: "unchanged", setup.pinned: "unchanged"}
