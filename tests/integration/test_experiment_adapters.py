"""A/B experiments through the API and the CLI: statuses, exit codes, JSON, bad input.

The adapters only translate; what they call is covered on both backends by
test_experiments, so these run on SQLite alone.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelreg.api.app import create_app
from modelreg.cli import main
from modelreg.domain import ReplicaReport, ServedSlot, Stage
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


AbCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def ab_cli(backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> AbCli:
    """``modelreg ab ARGS`` in this process: its exit code, stdout and stderr."""

    def run(*args: str) -> tuple[int, str, str]:
        code = main(cli_argv(backend, tmp_path, "ab", *args))
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@on_sqlite
def test_cli_ab_commands_print_json_and_exit_by_the_error_table(
    registry: Registry, quick_versions: Versions, model_name: str, ab_cli: AbCli
) -> None:
    _control, treatment = _two(registry, quick_versions, model_name)
    run = ab_cli
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


@on_sqlite
def test_ab_commands_wait_for_every_replica_to_follow_each_change(
    registry: Registry, quick_versions: Versions, model_name: str, ab_cli: AbCli
) -> None:
    control, treatment = _two(registry, quick_versions, model_name)

    def report(replica: str, *slots: tuple[str, int | None], routes: bool = True) -> None:
        """Report ``slots`` as ``replica`` does, routing by the experiment as it is now."""
        now = datetime.now(UTC)
        current = registry.ab_status(model_name) if routes else None
        served = tuple(
            ServedSlot(
                model_name,
                variant,
                None,
                version,
                None,
                None,
                now,
                experiment=current.id if current else None,
                experiment_revision=current.revision if current else None,
            )
            for variant, version in slots
        )
        registry.record_replica(ReplicaReport(replica, served, ()))

    def meanwhile(*reports: Callable[[], None], after_change: bool = True) -> threading.Thread:
        """Send ``reports`` while the command that runs next waits, as replicas do.

        With ``after_change`` they follow the revision that command makes: they wait
        until it is written (a loaded machine may take seconds to get there).
        """
        before = registry.ab_status(model_name).revision

        def send() -> None:
            deadline = time.monotonic() + 15
            while after_change and registry.ab_status(model_name).revision == before:
                assert time.monotonic() < deadline, "the command never changed the experiment"
                time.sleep(0.1)
            time.sleep(0.5)
            for sent in reports:
                sent()

        thread = threading.Thread(target=send)
        thread.start()
        return thread

    # No replica reports the model: nothing to wait for, and it says so.
    code, out, _ = ab_cli(
        "start", model_name, "--treatment", str(treatment), "--traffic", "0.1", "--wait", "5"
    )
    assert code == 0 and f"no serving replica of {model_name} is reporting" in out

    # Two replicas route the start; a ramp: host/a switches, host/b switches but has not
    # loaded the treatment.
    report("host/a", ("default", control), ("treatment", treatment))
    report("host/b", ("default", control), ("treatment", treatment))
    thread = meanwhile(
        lambda: report("host/a", ("default", control), ("treatment", treatment)),
        lambda: report("host/b", ("default", control), ("treatment", None)),
    )
    started = time.monotonic()
    code, out, err = ab_cli("ramp", model_name, "--traffic", "0.2", "--wait", "3", "--json")
    thread.join()
    assert code == 1 and time.monotonic() - started >= 3
    assert "1 of 2 serving replica(s)" in err and "host/b" in err and "host/a" not in err
    assert "do not yet route by experiment" in err and "revision 2" in err
    assert "Traceback" not in err
    assert json.loads(out)["traffic"] == 0.2  # ramped all the same; the wait only reports

    # The next ramp: both switch while the command waits.
    thread = meanwhile(
        lambda: report("host/a", ("default", control), ("treatment", treatment)),
        lambda: report("host/b", ("default", control), ("treatment", treatment)),
    )
    code, out, _ = ab_cli("ramp", model_name, "--traffic", "0.3", "--wait", "20")
    thread.join()
    assert code == 0 and "routed by 2 serving replica(s)" in out

    # A stop: everyone to control, so the treatments need not stay loaded.
    thread = meanwhile(
        lambda: report("host/a", ("default", control)),
        lambda: report("host/b", ("default", control)),
    )
    code, out, _ = ab_cli("stop", model_name, "--wait", "20")
    thread.join()
    assert code == 0 and "routed by 2 serving replica(s)" in out

    # Concluded: followed once a replica no longer routes by it.
    thread = meanwhile(
        lambda: report("host/a", ("default", control), routes=False),
        lambda: report("host/b", ("default", control), routes=False),
        after_change=False,  # reports without the experiment: the conclusion needs no revision
    )
    code, out, _ = ab_cli("conclude", model_name, "--wait", "20")
    thread.join()
    assert code == 0 and "let go by 2 serving replica(s)" in out
    code, _, err = ab_cli("ramp", model_name, "--traffic", "0.1", "--wait", "-1")
    assert code == 2 and "--wait" in err


@on_sqlite
def test_api_serves_the_timeline_and_what_replicas_report(
    api: TestClient, registry: Registry, quick_versions: Versions, model_name: str
) -> None:
    from modelreg.domain import ReloadEvent, ReloadOutcome
    from modelreg.experiments.definition import LATENCY_BOUNDS_S, VariantCounts

    control, treatment = _two(registry, quick_versions, model_name)
    base = f"/api/v1/models/{model_name}/experiment"
    assert api.get(f"{base}/timeline").status_code == 404  # no experiment yet
    started = api.post(base, json={"treatments": [treatment], "traffic": 0.5}).json()
    latency = [0] * len(LATENCY_BOUNDS_S)
    latency[2] = 40
    registry.record_variant_counts(
        "r1",
        [
            VariantCounts(started["id"], "control", control, 40, 2, 0, tuple(latency), 0, 0, 0),
            VariantCounts(started["id"], "treatment", treatment, 40, 0, 0, tuple(latency), 0, 0, 0),
        ],
    )
    timeline = api.get(f"{base}/timeline", params={"points": 5})
    assert timeline.status_code == 200, timeline.text
    body = timeline.json()
    assert body["interval_minutes"] >= 1 and 1 <= len(body["ends"]) <= 5
    series = {v["variant"]: v for v in body["variants"]}
    assert set(series) == {"control", "treatment"}
    # Every request so far falls in the intervals: their per-minute rates add back up.
    total = sum(series["control"]["requests_per_minute"]) * body["interval_minutes"]
    assert total == 40
    assert max(r for r in series["control"]["error_rate"] if r is not None) == 2 / 40
    for points, status in ((0, 400), (501, 400), ("many", 422)):
        answer = api.get(f"{base}/timeline", params={"points": points})
        assert answer.status_code == status, answer.text

    # The ledger may be shared with other tests: ask about this model only.
    assert api.get("/api/v1/serving/replicas", params={"model": model_name}).json() == []
    now = datetime.now(UTC)
    slot = ServedSlot(model_name, "default", "production", control, "1.0.0", "sha256:x", now)
    refused = ReloadEvent(
        model_name, "default", treatment, ReloadOutcome.REFUSED, "integrity", "bad digest", now
    )
    registry.record_replica(ReplicaReport("host/1", (slot,), (refused,)))
    replicas = api.get("/api/v1/serving/replicas", params={"model": model_name}).json()
    assert [(r["replica"], r["variant"], r["version"]) for r in replicas] == [
        ("host/1", "default", control)
    ]
    assert api.get("/api/v1/serving/replicas", params={"model": "other"}).json() == []
    reloads = api.get("/api/v1/serving/reloads", params={"limit": 1, "model": model_name}).json()
    assert reloads["total"] == 1
    assert reloads["reloads"][0]["outcome"] == "refused"
    assert reloads["reloads"][0]["reason"] == "integrity"
    for params in ({"limit": 0}, {"offset": -1}, {"limit": 501}):
        assert api.get("/api/v1/serving/reloads", params=params).status_code == 400
    assert api.get("/api/v1/serving/reloads", params={"limit": "all"}).status_code == 422
    assert api.get("/api/v1/serving/replicas", params={"model": "a/b"}).status_code == 400
