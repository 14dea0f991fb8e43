"""The hostile-input corpus against every CLI command and HTTP route that takes one.

Every answer must be a clear refusal (4xx, or a non-zero exit below 70 with a
one-line message) or, for inputs that are merely odd, a normal answer; never a
5xx, exit 70 (internal error) or a traceback. The ledger and MLflow's registry
must be unchanged afterwards. The figures (inputs tried per surface, refused,
server errors) are printed at the end; docs/security.md quotes them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from corpus import (
    API_BODIES,
    AT_TIMES,
    FILTERS,
    HEADERS,
    LOOKALIKE_NAMES,
    NAMES,
    REFS,
    SERVER_BODIES,
)
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from security_helpers import FIGURES, Stack, Surface

from modelreg.api.app import create_app
from modelreg.cli import main
from serving.serving_helpers import Server

pytestmark = pytest.mark.integration


def _surface(name: str) -> Surface:
    return FIGURES.setdefault(name, Surface())


def snapshot(stack: Stack) -> tuple[str, str]:
    """The ledger's rows and MLflow's models and versions, as text to compare."""
    path = stack.backend.ledger_uri.removeprefix("sqlite:///")
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [
            row[0] for row in con.execute("select name from sqlite_master where type = 'table'")
        ]
        ledger = {
            table: sorted(map(repr, con.execute(f"select * from {table}")))  # noqa: S608 - our tables
            for table in sorted(tables)
            if table != "webhook_deliveries"  # attempts change with time, by design
        }
    finally:
        con.close()
    client = MlflowClient(stack.backend.tracking_uri)
    models = [
        (m.name, m.description, sorted(m.tags.items()), sorted(m.aliases.items()))
        for m in client.search_registered_models(max_results=1000)
    ]
    versions = [
        (v.name, v.version, v.current_stage, v.source, sorted(v.tags.items()), sorted(v.aliases))
        for v in client.search_model_versions(max_results=10_000)
    ]
    return json.dumps(ledger, sort_keys=True), repr((sorted(models), sorted(versions)))


def files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size, but logs and download caches (they churn)."""
    return {
        str(path.relative_to(root)): path.stat().st_size
        for path in root.rglob("*")
        if path.is_file()
        and not {"logs", "cache", "serving-cache"} & set(path.parts)
        and not path.name.endswith(".log")
    }


@pytest.fixture
def unchanged(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail the test when the ledger, MLflow, the home or the working directory changed."""
    monkeypatch.chdir(tmp_path)  # anything written relative to the cwd would land here
    before = snapshot(stack), files(stack.home)
    yield
    assert snapshot(stack)[0] == before[0][0], "the ledger changed"
    assert snapshot(stack)[1] == before[0][1], "MLflow's registry changed"
    assert files(stack.home) == before[1], "files under the home changed"
    assert not list(tmp_path.iterdir()), "files were written to the working directory"


def _assert_clean(surface: Surface) -> None:
    assert not surface.faults, "\n".join(surface.faults[:40])


# -- the API -------------------------------------------------------------------------------


def _api_requests(model: str) -> Iterator[tuple[str, str, str, bytes | None, bool]]:
    """(label, method, url, body, must_refuse) for every API route taking hostile input."""
    body = json.dumps({"stage": "Archived", "reason": "corpus"}).encode()
    comment = json.dumps({"comment": "corpus"}).encode()
    for label, raw in NAMES + LOOKALIKE_NAMES:
        n = quote(raw, safe="")
        for sub in ("versions", "versions/1", "versions/1/lineage", "versions/1/verify"):
            yield f"name:{label}:GET {sub}", "GET", f"/api/v1/models/{n}/{sub}", None, True
        yield f"name:{label}:history", "GET", f"/api/v1/models/{n}/history", None, True
        yield f"name:{label}:validate", "GET", f"/api/v1/models/{n}/versions/1/validate", None, True
        yield f"name:{label}:promote", "POST", f"/api/v1/models/{n}/versions/1/promote", body, True
        yield f"name:{label}:rollback", "POST", f"/api/v1/models/{n}/rollback", b"{}", True
        for action in ("request", "approve", "reject"):
            url = f"/api/v1/models/{n}/versions/1/{action}"
            yield f"name:{label}:{action}", "POST", url, comment, True
    # The policy that would apply to a model: any valid name has one, an invalid one is refused.
    for label, raw in NAMES:
        url = f"/api/v1/policy?model={quote(raw, safe='')}"
        yield f"name:{label}:policy", "GET", url, None, True
    for label, raw in LOOKALIKE_NAMES:
        url = f"/api/v1/policy?model={quote(raw, safe='')}"
        yield f"name:{label}:policy", "GET", url, None, False
    for label, raw in REFS:
        r = quote(raw, safe="")
        for sub in ("", "/lineage", "/verify", "/validate"):
            url = f"/api/v1/models/{model}/versions/{r}{sub}"
            yield f"ref:{label}:GET{sub or ' show'}", "GET", url, None, True
        for action, payload in (("promote", body), ("request", comment), ("reject", comment)):
            url = f"/api/v1/models/{model}/versions/{r}/{action}"
            yield f"ref:{label}:{action}", "POST", url, payload, True
        to = json.dumps({"to": raw}).encode()
        yield f"ref:{label}:rollback-to", "POST", f"/api/v1/models/{model}/rollback", to, True
        url = f"/api/v1/webhooks/deliveries/{r}/retry"
        yield f"ref:{label}:delivery-retry", "POST", url, b"{}", True
    for label, text, refuse in FILTERS:
        url = "/api/v1/search?filter=" + quote(text, safe="")
        yield f"filter:{label}", "GET", url, None, refuse
    for label, text, refuse in AT_TIMES:
        url = f"/api/v1/models/{model}/history?at=" + quote(text, safe="")
        yield f"at:{label}", "GET", url, None, refuse
    for label, raw_body in API_BODIES:
        url = f"/api/v1/models/{model}/versions/2/promote"
        yield f"body:{label}:promote", "POST", url, raw_body, True
        yield f"body:{label}:rollback", "POST", f"/api/v1/models/{model}/rollback", raw_body, True
        yield (
            f"body:{label}:reject",
            "POST",
            f"/api/v1/models/{model}/versions/2/reject",
            raw_body,
            True,
        )
    for label, value in (("limit-huge", "9" * 30), ("limit-nan", "nan"), ("limit-negative", "-1")):
        yield f"query:{label}", "GET", f"/api/v1/webhooks/deliveries?limit={value}", None, True


def test_api_refuses_the_corpus(stack: Stack, unchanged: None) -> None:
    surface = _surface("API (in-process)")
    api = TestClient(
        create_app(stack.registry.settings, stack.registry), raise_server_exceptions=False
    )
    for label, method, url, body, refuse in _api_requests(stack.model):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        answer = api.request(method, url, content=body, headers=headers)
        surface.record(label, answer.status_code, answer.text, refuse=refuse, http=True)
    mutating = f"/api/v1/models/{stack.model}/versions/2/promote"
    for label, name, value in HEADERS:
        answer = api.post(
            mutating,
            content=b'{"stage": "Live"}',
            headers=[("Content-Type", "application/json"), (name, value)],  # type: ignore[arg-type]
        )
        surface.record(f"header:{label}", answer.status_code, answer.text, refuse=True, http=True)
    _assert_clean(surface)


# -- the CLI -------------------------------------------------------------------------------


def _cli_commands(model: str) -> Iterator[tuple[str, list[str], bool]]:
    """(label, argv, must_refuse) for every CLI command taking hostile input."""
    for label, raw in NAMES + LOOKALIKE_NAMES:
        if raw.startswith("-") or not raw:
            continue  # an option or nothing, not a name: click's usage errors cover these
        yield f"name:{label}:versions", ["versions", raw], True
        yield f"name:{label}:show", ["show", raw, "1"], True
        yield f"name:{label}:history", ["history", raw], True
        yield f"name:{label}:verify", ["verify", raw, "1"], True
        yield f"name:{label}:promote", ["promote", raw, "1", "--stage", "Archived"], True
        yield f"name:{label}:rollback", ["rollback", raw], True
        yield f"name:{label}:validate", ["validate", raw, "1"], True
        yield f"name:{label}:reject", ["reject", raw, "1", "--comment", "corpus"], True
    for label, raw in REFS:
        yield f"ref:{label}:show", ["show", model, "--", raw], True
        yield f"ref:{label}:lineage", ["lineage", model, "--", raw], True
        yield f"ref:{label}:promote", ["promote", model, "--stage", "Archived", "--", raw], True
        yield f"ref:{label}:rollback-to", ["rollback", model, f"--to={raw}"], True
        yield f"ref:{label}:webhooks-retry", ["webhooks", "retry", "--", raw], True
    # Integers past what they name (a port, a count): refused while parsing, before anything
    # starts (`up --port 70000` crashed in bind() with exit 70).
    huge = "9" * 30
    for label, argv in (
        ("up-port", ["up", "--port", "70000"]),
        ("up-api-port", ["up", "--api-port", huge]),
        ("demo-port", ["demo", "--port", "0"]),
        ("serve-port", ["serve", model, "--port", huge]),
        ("serve-workers", ["serve", model, "--workers", huge]),
        ("webhooks-limit", ["webhooks", "list", "--limit", huge]),
    ):
        yield f"integer:{label}", argv, True
    for label, text, refuse in FILTERS:
        yield f"filter:{label}", ["search", "--", text], refuse
    for label, text, refuse in AT_TIMES:
        yield f"at:{label}", ["history", model, f"--at={text}"], refuse


def test_cli_refuses_the_corpus(
    stack: Stack, unchanged: None, capsys: pytest.CaptureFixture[str]
) -> None:
    surface = _surface("CLI (modelreg)")
    base = [
        "--tracking-uri",
        stack.backend.tracking_uri,
        "--ledger-uri",
        stack.backend.ledger_uri,
        "--home",
        str(stack.home),
    ]
    for label, argv, refuse in _cli_commands(stack.model):
        code = main([*base, *argv])
        captured = capsys.readouterr()
        surface.record(label, code, captured.err, refuse=refuse, http=False)
        if code and len(captured.err.strip().splitlines()) > 3:
            surface.faults.append(f"{label}: more than a one-line error: {captured.err[:300]!r}")
    _assert_clean(surface)


# -- the model server ----------------------------------------------------------------------


def test_model_server_refuses_the_corpus(
    stack: Stack, model_server: Server, unchanged: None
) -> None:
    surface = _surface("model server (modelreg serve)")
    http: httpx.Client = model_server.http
    json_type = {"Content-Type": "application/json"}
    for label, body in SERVER_BODIES:
        for path in ("/invocations", f"/models/{stack.model}/invocations"):
            answer = http.post(path, content=body, headers=json_type)
            surface.record(
                f"body:{label}:{path}", answer.status_code, answer.text, refuse=True, http=True
            )
    for label, raw in NAMES + LOOKALIKE_NAMES:
        answer = http.post(
            f"/models/{quote(raw, safe='')}/invocations",
            content=b'{"inputs": [[1, 2, 3]]}',
            headers=json_type,
        )
        surface.record(f"name:{label}", answer.status_code, answer.text, refuse=True, http=True)
        answer = http.get(f"/v2/models/{quote(raw, safe='')}/ready")
        surface.record(f"ready:{label}", answer.status_code, answer.text, refuse=True, http=True)
    # Odd header values next to a valid body: the answer may be 200, never a crash.
    valid = b'{"dataframe_records": [{"amount": 1.0, "age": 2.0, "score": 3.0}]}'
    for label, name, value in HEADERS:
        try:
            answer = http.post(
                "/invocations",
                content=valid,
                headers=[("Content-Type", "application/json"), (name, value)],  # type: ignore[arg-type]
            )
        except httpx.LocalProtocolError:
            continue  # not even sendable (h11 refuses it before the server could)
        surface.record(f"header:{label}", answer.status_code, answer.text, refuse=False, http=True)
    oversized = b'{"inputs": [' + b"1.0, " * 4_000_000 + b"1.0]}"
    answer = http.post("/invocations", content=oversized, headers=json_type)
    surface.record("body:oversized-20MB", answer.status_code, answer.text, refuse=True, http=True)
    for label, content_type in (
        ("content-type-missing", None),
        ("content-type-xml", "application/xml"),
        ("content-type-charset-latin1", "application/json; charset=latin-1"),
        ("content-type-crlf", "application/json\r\nX-Injected: 1"),
    ):
        headers = {} if content_type is None else {"Content-Type": content_type}
        try:
            answer = http.post("/invocations", content=b'{"inputs": [[1, 2, 3]]}', headers=headers)
        except httpx.LocalProtocolError:
            surface.record(label, 400, "refused by the client library", refuse=True, http=True)
            continue
        surface.record(label, answer.status_code, answer.text, refuse=True, http=True)
    for label, token in (
        ("reload-no-token", b""),
        ("reload-huge-token", b"Bearer " + b"x" * 20_000),
    ):
        answer = http.post("/-/reload", headers=[("Authorization", token)] if token else [])  # type: ignore[arg-type]
        surface.record(label, answer.status_code, answer.text, refuse=True, http=True)
    _assert_clean(surface)
