"""A/B experiments through the API and the CLI: statuses, exit codes, JSON, bad input.

The adapters only translate; what they call is covered on both backends by
test_experiments, so these run on SQLite alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.domain import Stage
from modelreg.registry import Registry
from services import Backend, cli_argv

pytestmark = pytest.mark.integration
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

Versions = Callable[[str, int], list[int]]


@pytest.fixture
def api(registry: Registry) -> Iterator[TestClient]:
    """The API service over the registry, without authentication."""
    with TestClient(create_app(registry.settings, registry)) as client:
        yield client


def _two(registry: Registry, versions: Versions, name: str) -> tuple[int, int]:
    control, treatment = versions(name, 2)
    registry.promote(name, control, Stage.PRODUCTION)
    return control, treatment


@on_sqlite
def test_api_runs_an_experiment_and_refuses_bad_input_with_4xx(
    api: TestClient, registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    _control, treatment = _two(registry, quick_versions, model_name)
    base = f"/api/v1/models/{model_name}/experiment"
    assert api.get(base).status_code == 404
    for body in (
        {"treatments": [treatment], "traffic": 0},
        {"treatments": [treatment], "traffic": 1.5},
        {"treatments": [], "traffic": 0.1},
        {"treatments": [treatment], "traffic": 0.1, "surprise": 1},
        {"treatments": [treatment], "traffic": 0.1, "metrics": ["vibes"]},
        {"treatments": [treatment], "traffic": 0.1, "guardrails": ["latency>1"]},
        {"treatments": [treatment], "traffic": "lots"},
    ):
        answer = api.post(base, json=body)
        # 422: the body's shape (pydantic); 400: a well-formed body the registry refuses.
        assert answer.status_code in {400, 422}, (body, answer.text)
    assert api.post(base, json={"treatments": [99], "traffic": 0.1}).status_code == 404
    huge = api.post(base, json={"treatments": [10**23], "traffic": 0.1})
    assert huge.status_code == 400 and "invalid version" in huge.json()["message"]
    assert api.post("/api/v1/models/nosuch-ab/experiment/stop").status_code == 404
    assert api.get("/api/v1/experiments", params={"model": model_name}).json() == []

    started = api.post(base, json={"treatments": [str(treatment)], "traffic": 0.1})
    assert started.status_code == 200, started.text
    assert started.json()["treatments"][0]["version"] == treatment
    assert api.post(base, json={"treatments": [treatment], "traffic": 0.1}).status_code == 409
    assert api.post(f"{base}/ramp", json={"traffic": 0.5}).json()["traffic"] == 0.5
    status = api.get(base).json()
    assert status["state"] == "running" and status["report"]["decision"] == "inconclusive"
    assert api.post("/api/v1/feedback", json={"request_id": "nope", "label": 1}).status_code == 404
    assert api.post("/api/v1/feedback", json={"request_id": "nope"}).status_code == 400
    nan = '{"request_id": "nope", "value": NaN}'
    assert api.post("/api/v1/feedback", content=nan).status_code in {400, 422}
    assert api.post(f"{base}/stop", json={"reason": "done"}).json()["state"] == "stopped"
    assert api.post(f"{base}/ramp", json={"traffic": 0.2}).status_code == 409
    concluded = api.post(f"{base}/conclude", json={"promote": True})
    assert concluded.status_code == 409  # no winner without data
    assert "no winner" in concluded.json()["message"]
    assert api.post(f"{base}/conclude").json()["state"] == "concluded"
    listed = api.get("/api/v1/experiments", params={"model": model_name, "state": "concluded"})
    assert [e["state"] for e in listed.json()] == ["concluded"]
    assert api.get("/api/v1/experiments", params={"state": "sideways"}).status_code == 400


@on_sqlite
def test_cli_ab_commands_print_json_and_exit_by_the_error_table(
    backend: Backend,
    registry: Registry,
    quick_versions: Versions,
    model_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _control, treatment = _two(registry, quick_versions, model_name)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(cli_argv(backend, tmp_path, "ab", *args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert run("start", model_name, "--treatment", str(treatment), "--traffic", "2")[0] == 2
    code, _, err = run("start", model_name, "--treatment", "77", "--traffic", "0.1")
    assert code == 3 and "no version" in err
    code, out, _ = run(
        "start", model_name, "--treatment", str(treatment), "--traffic", "0.1",
        "--key-header", "X-Customer", "--metric", "conversion", "--guardrail", "error_rate<0.02",
        "--json",
    )  # fmt: skip
    assert code == 0
    started = json.loads(out)
    assert (started["key_header"], started["metrics"], started["guardrails"]) == (
        "X-Customer",
        ["conversion"],
        ["error_rate<0.02"],
    )
    code, _, err = run("start", model_name, "--treatment", str(treatment), "--traffic", "0.1")
    assert code == 4 and "already has experiment" in err
    code, out, _ = run("status", model_name)
    assert code == 0 and "decision:" in out and "treatment" in out
    assert json.loads(run("ramp", model_name, "--traffic", "0.5", "--json")[1])["traffic"] == 0.5
    listed = json.loads(run("list", "--model", model_name, "--json")[1])
    assert [e["id"] for e in listed] == [started["id"]]
    assert run("stop", model_name)[0] == 0
    assert run("conclude", model_name, "--promote")[0] == 4
    assert run("conclude", model_name)[0] == 0
    assert run("status", "no-such-model-xyz")[0] == 3
