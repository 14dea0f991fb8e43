"""The README's promises, end to end: the course code against `modelreg up`, and the demo."""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelreg.stack import Stack, StackConfig, free_port

pytestmark = pytest.mark.e2e


def _cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from modelreg.cli import run; run()", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_course_code_runs_unchanged_against_modelreg_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The API service adopts plain-MLflow versions in the background; make it quick.
    monkeypatch.setenv("MODELREG_SYNC_INTERVAL_SECONDS", "1")
    config = StackConfig(home=tmp_path / "home", port=free_port(), api_port=free_port())
    with Stack(config):
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": config.tracking_uri,
            "MODELREG_HOME": str(config.resolved_home()),
        }
        course = subprocess.run(
            [sys.executable, "-m", "modelreg.examples.course_register"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert course.returncode == 0, course.stderr[-2000:]
        assert course.stdout.count("registered fraud-detection") == 3

        deadline = time.monotonic() + 60
        semvers: list[str | None] = []
        while time.monotonic() < deadline and semvers != ["1.0.0", "1.1.0", "1.2.0"]:
            time.sleep(1)
            listed = _cli(env, "versions", "fraud-detection", "--json")
            assert listed.returncode == 0, listed.stderr
            semvers = [v["semver"] for v in json.loads(listed.stdout)]
        assert semvers == ["1.0.0", "1.1.0", "1.2.0"], "the API service did not adopt them"
        assert json.loads(_cli(env, "sync", "--json").stdout) == []
        for number in ("1", "2", "3"):
            shown = _cli(env, "show", "fraud-detection", number, "--json")
            assert shown.returncode == 0, shown.stderr
            view = json.loads(shown.stdout)
            assert view["digest"].startswith("sha256:")
            assert view["semver"].startswith("1.")
            assert view["params"]["n_estimators"] in {"50", "100", "200"}
            assert "test_auc" in view["metrics"]
            lineage = json.loads(_cli(env, "lineage", "fraud-detection", number, "--json").stdout)
            assert lineage["record"]["run_id"] == view["run_id"]
            assert lineage["record"]["params"] == view["params"]
            # the course declares a data version but logs no dataset: declared, not fingerprinted
            data = lineage["record"]["data"]
            assert data
            assert {d["kind"] for d in data} == {"declared"}
        table = _cli(env, "show", "fraud-detection", "3")
        assert "1.2.0" in table.stdout
        assert "sha256:" in table.stdout
        # no ./mlflow.db appeared: every client call went to the server
        assert not (tmp_path / "mlflow.db").exists()


def _normalised(output: str) -> list[str]:
    """Demo output without what legitimately differs between runs: digests and clock times."""
    output = re.sub(r"[0-9a-f]{8,}", "<hex>", output)
    return re.sub(r"\d\d:\d\d:\d\d", "<time>", output).splitlines()


def test_the_demo_runs_twice_with_the_same_outcome_at_80_columns(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    for variable in ("MLFLOW_TRACKING_URI", "MODELREG_HOME"):
        env.pop(variable, None)
    # The same ports for both runs, so that the output can be compared line by line.
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]
    runs = [_cli(env, "demo", "--no-keep-running", *ports, cwd=tmp_path) for _ in range(2)]

    for done in runs:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        flat = " ".join(done.stdout.split())  # as if no line had wrapped
        assert f"demo home: {tmp_path / '.modelreg-demo'}" in flat
        for marker in (
            "adopted v3 as",
            "was archived in the same operation",
            "rollback",
            "no drift",
            "metric test_auc",  # the course's models fail the course's own gate
            "separation of duties",  # the author may not approve the challenger
            "approved by reviewer",
            "The stack is stopped",
        ):
            assert marker in done.stdout, marker
        assert "TAMPERED" not in done.stdout
        # The hint starts the stack again rather than pointing at the one just stopped.
        assert f"--home {tmp_path / '.modelreg-demo'} up --port " in flat
        assert "keeps running" not in done.stdout
        lines = done.stdout.splitlines()
        assert [line for line in lines if len(line) > 80] == []
        commands = [line for line in lines if line.startswith("$ ")]
        assert [c for c in commands if re.search(r"\bN\b", c)] == [], "a placeholder version"
        assert "Producti…" not in done.stdout
        # MLflow's own run links, emoji and INFO logs stay out of the demo's output.
        for noise in ("View run", "View experiment", "🏃", "🧪", " INFO "):
            assert noise not in done.stdout + done.stderr, noise
        assert "Successfully registered model" not in done.stderr
    first, second = (_normalised(done.stdout) for done in runs)
    assert first == second, "\n".join(difflib.unified_diff(first, second, lineterm=""))
    assert sorted(p.name for p in (tmp_path / ".modelreg-demo" / "artifacts").iterdir()), (
        "the demo's data stays after --no-keep-running"
    )


def test_the_demo_does_not_clear_a_directory_it_did_not_create(tmp_path: Path) -> None:
    home = tmp_path / ".modelreg-demo"
    home.mkdir()
    (home / "ledger.db").write_text("someone else's")
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]

    done = _cli(dict(os.environ), "demo", "--no-keep-running", *ports, cwd=tmp_path)

    assert done.returncode != 0
    assert "was not created by `modelreg demo`" in done.stderr
    assert "Traceback" not in done.stderr
    assert (home / "ledger.db").read_text() == "someone else's"
