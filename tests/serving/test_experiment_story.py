"""Issue 10 end to end on PostgreSQL + S3, through the CLI users type and a real server.

Start an experiment, drive keyed traffic with feedback where the treatment is
truly more accurate, see the verdict in `modelreg ab status`, conclude with
`--promote`, and find the whole story in `modelreg history`; then a second
experiment whose treatment breaches a guardrail is stopped by a real
`modelreg worker` on its own, and serving sends everyone back to control.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from serving_helpers import Server, register_trees, serving, to_production, unique_name

from integration.registry_helpers import production, training_frame
from modelreg.registry import Registry
from services import Backend, cli_argv

pytestmark = pytest.mark.integration

MODELREG = str(Path(sys.executable).with_name("modelreg"))
REQUESTS = 3000
BODY = {"dataframe_records": training_frame(5, rows=1).to_dict(orient="records")}


def modelreg(backend: Backend, home: Path, *args: str) -> Any:
    """Run a `modelreg ... --json` command; its parsed output (fails the test on exit != 0)."""
    done = subprocess.run(
        [MODELREG, *cli_argv(backend, home, *args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MODELREG_ACTOR": "alice"},
    )
    assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    return json.loads(done.stdout) if "--json" in args else done.stdout


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    """Until ``check()`` is truthy; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def drive(server: Server, *, accuracy: dict[str, float], seed: int = 7) -> dict[str, int]:
    """Send REQUESTS keyed requests and feedback whose accuracy depends on the variant."""
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    for i in range(REQUESTS):
        answer = server.score(BODY, headers={"X-User-ID": f"user-{i}"})
        assert answer.status_code == 200, answer.text
        variant = answer.headers["X-Variant"]
        seen[variant] = seen.get(variant, 0) + 1
        predicted = float(answer.json()["predictions"][0])
        right = rng.random() < accuracy[variant]
        label = predicted if right else 1.0 - predicted
        sent = server.http.post(
            "/feedback", json={"request_id": answer.headers["X-Request-ID"], "label": label}
        )
        assert sent.status_code == 200, sent.text
    return seen


def test_experiment_to_promotion_and_a_guardrail_stop(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    backend = postgres_backend
    registry = Registry.connect(
        backend.tracking_uri, backend.ledger_uri, actor="alice", home=tmp_path
    )
    name = unique_name("ab-story")
    try:
        register_trees(registry, backend, name, [1, 3])
        to_production(registry, name, 1)
        with serving(backend, tmp_path / "serve", name, "--poll-interval", "0.5") as server:
            # --wait returns once the server's report says it routes the experiment.
            started = modelreg(
                backend, tmp_path, "ab", "start", name, "--treatment", "2", "--traffic", "0.5",
                "--metric", "accuracy", "--wait", "60", "--json",
            )  # fmt: skip
            assert server.score(BODY, headers={"X-User-ID": "probe"}).headers["X-Variant"] in {
                "control",
                "treatment",
            }
            seen = drive(server, accuracy={"control": 0.6, "treatment": 0.85})
            assert seen.keys() == {"control", "treatment"}

            def counted() -> Any:
                status = modelreg(backend, tmp_path, "ab", "status", name, "--json")
                requests = sum(v["requests"] for v in status["report"]["variants"])
                return status if requests >= REQUESTS else None

            status = wait_for("the replica's counts in the ledger", counted)
            assert status["id"] == started["id"]
            report = status["report"]
            assert report["winner"] == "treatment", report
            assert report["srm"]["flagged"] is False, report

            concluded = modelreg(
                backend, tmp_path, "ab", "conclude", name, "--promote", "--reason", "v2 wins",
                "--json",
            )  # fmt: skip
            assert concluded["state"] == "concluded"
            assert production(registry, name) == 2
            history = modelreg(backend, tmp_path, "history", name, "--json")
            actions = [e["action"] for e in history["events"]]
            assert actions.index("ab_start") < actions.index("ab_conclude")
            assert "request" in actions[actions.index("ab_start") :]
            conclusion = next(e for e in history["events"] if e["action"] == "ab_conclude")
            assert conclusion["details"]["evidence"]["winner"] == "treatment"
            wait_for(
                "serving back on the default variant",
                lambda: (
                    server.score(BODY, headers={"X-User-ID": "probe"}).headers["X-Variant"]
                    == "default"
                ),
            )

            # A harmful treatment: every answer breaks a latency guardrail no model can meet.
            modelreg(
                backend, tmp_path, "ab", "start", name, "--treatment", "1", "--traffic", "0.5",
                "--guardrail", "p99_latency_ms<0.001", "--json",
            )  # fmt: skip
            with _worker(backend, tmp_path):
                deadline = time.monotonic() + 120
                i = 0
                while time.monotonic() < deadline:
                    server.score(BODY, headers={"X-User-ID": f"late-{i}"})
                    i += 1
                    if i % 50 == 0:
                        state = modelreg(backend, tmp_path, "ab", "status", name, "--json")
                        if state["state"] == "stopped":
                            break
                assert state["state"] == "stopped", state
            history = modelreg(backend, tmp_path, "history", name, "--json")
            auto = [e for e in history["events"] if e["action"] == "ab_auto_stop"]
            assert auto and "p99_latency_ms" in auto[0]["reason"]
            wait_for(
                "everyone on control",
                lambda: all(
                    server.score(BODY, headers={"X-User-ID": f"user-{k}"}).headers["X-Variant"]
                    == "control"
                    for k in range(40)
                ),
            )
            modelreg(backend, tmp_path, "ab", "conclude", name)
    finally:
        registry.close()


@contextmanager
def _worker(backend: Backend, home: Path) -> Iterator[None]:
    """A real `modelreg worker` checking guardrails every half second."""
    env = {
        **os.environ,
        "MODELREG_HOME": str(home / "worker"),
        "MODELREG_TRACKING_URI": backend.tracking_uri,
        "MODELREG_LEDGER_URI": backend.ledger_uri,
        "MODELREG_EXPERIMENT_INTERVAL_SECONDS": "0.5",
        "MODELREG_SYNC_INTERVAL_SECONDS": "3600",
    }
    log = home / "worker.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [MODELREG, "worker", "--metrics-port", "0"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_for(
            "the worker's ready line",
            lambda: re.search(r"/health and /metrics on", log.read_text()),
        )
        yield
    finally:
        process.terminate()
        process.wait(30)
