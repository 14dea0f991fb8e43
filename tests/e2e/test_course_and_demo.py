"""The README's promises, end to end: the course code against `modelreg up`, and the demo."""

from __future__ import annotations

import json
import os
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
            # the course code logs no dataset, and modelreg says so rather than guessing
            assert "data fingerprint" in lineage["missing"]
        table = _cli(env, "show", "fraud-detection", "3")
        assert "1.2.0" in table.stdout
        assert "sha256:" in table.stdout
        # no ./mlflow.db appeared: every client call went to the server
        assert not (tmp_path / "mlflow.db").exists()


def test_demo_walkthrough_completes(tmp_path: Path) -> None:
    env = {**os.environ, "MODELREG_HOME": str(tmp_path / "home"), "COLUMNS": "120"}
    env.pop("MLFLOW_TRACKING_URI", None)
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]
    done = _cli(env, "demo", "--no-keep-running", *ports, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for marker in (
        "adopted v3 as 1.2.0",
        "was archived in the same operation",
        "rollback",
        "no drift",
        "metric test_auc",  # the course's models fail the course's own gate
        "separation of duties",  # the author may not approve the challenger
        "promoted, approved by reviewer",
        "done",
    ):
        assert marker in done.stdout, marker
    assert "TAMPERED" not in done.stdout
