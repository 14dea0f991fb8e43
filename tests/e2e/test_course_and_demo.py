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

from modelreg.cli.demo_narration import CRITERIA, expect
from modelreg.errors import ModelregError
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
    """Demo output without what legitimately differs between runs, as a list of words.

    Digests, clock times and numbers differ: measured seconds, the experiment's
    split of the users (salted by its id) and its statistics. Version numbers
    (``v6``) and request numbers (``#18``) stay. Words rather than lines, since
    a number one digit longer may wrap a line elsewhere.
    """
    output = re.sub(r"[0-9a-f]{8,}", "<hex>", output)
    output = re.sub(r"\d\d:\d\d:\d\d", "<time>", output)
    return re.sub(r"(?<![v#\w])\d+(?:\.\d+)*(?:e[-+]\d+)?", "<n>", output).split()


def _flat(output: str) -> str:
    """The output as if no line had wrapped."""
    return " ".join(output.split())


def _seconds(flat: str, version: int, after: str) -> float:
    found = re.search(rf"answered with v{version} within (\d+\.\d) s of {after}", flat)
    assert found, f"no reload of v{version} after {after}"
    return float(found.group(1))


def _check_steps(flat: str) -> None:
    """Each step's own claim, as the demo printed it (versions as a fresh home numbers them)."""
    # 2-3: the course's three RandomForests, adopted
    assert flat.count("registered fraud-detection with") == 3
    assert "adopted v3 as 1.2.0" in flat
    # 4: the gate refuses the course's best with the observed value
    assert "refused: the course's best, v2, does not pass its policy" in flat
    assert "metric test_auc failed: required test_auc >= 0.85, observed 0.83" in flat
    # 5: four more versions with lineage
    assert "v7 1.6.0 test_auc=" in flat
    # 6: request and approval by someone else
    assert "separation of duties" in flat
    assert "v4 (1.3.0) promoted, approved by reviewer" in flat
    # 7-8: serving, auto-promotion declined and granted, the server follows within seconds
    assert "/invocations answers with v4 (default)" in flat
    assert re.search(
        r"v5: test_auc \S+ vs Production v4 \S+ \(\+0\.0\d+, needs > \+0\.02\): declined", flat
    )
    assert re.search(
        r"v6: test_auc \S+ vs Production v4 \S+ \(\+0\.0\d+, needs > \+0\.02\): promoted", flat
    )
    assert _seconds(flat, 6, "the promotion") <= 60
    assert "v4 was archived in the same operation" in flat
    # 9: the 90/10 experiment: a tenth of the users on the treatment, which wins
    split = re.search(
        r"answered: (\d+) by control v6, (\d+) by treatment v7; feedback: 4000 recorded", flat
    )
    assert split, "the users' answers"
    assert int(split.group(1)) + int(split.group(2)) == 4000
    assert 300 <= int(split.group(2)) <= 500  # 10% of 4000, give or take the hash's spread
    assert "sample ratio: ok" in flat
    assert "decision: treatment_wins" in flat
    # 10-11: concluded through the policy's approval, rolled back; the server follows both
    assert "a request for v7 is open" in flat
    assert "v7 is in Production, approved by reviewer" in flat
    assert _seconds(flat, 7, "the approval") <= 60
    assert "Production is v6 again" in flat
    assert _seconds(flat, 6, "the rollback") <= 60
    # 12: audit
    assert "7 versions verified against their sha256 manifests" in flat
    assert "no drift" in flat
    # the summary names every criterion
    summary = flat.split("what each step demonstrated", 1)[1]
    for criterion in CRITERIA:
        assert criterion in summary, criterion
    assert "not here: the demo uses the embedded SQLite" in summary
    assert "treatment_wins" in summary


def test_the_demo_runs_twice_with_the_same_outcome_at_80_columns(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "80"}
    for variable in ("MLFLOW_TRACKING_URI", "MODELREG_HOME"):
        env.pop(variable, None)
    # The same ports for both runs, so that the output can be compared.
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]
    ports += ["--serve-port", str(free_port())]
    runs = [_cli(env, "demo", "--no-keep-running", *ports, cwd=tmp_path) for _ in range(2)]

    for done in runs:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        flat = _flat(done.stdout)
        # A path longer than the 80 columns is folded mid-word (under pytest-xdist it is):
        # compare paths with every whitespace taken out.
        joined = "".join(done.stdout.split())
        home = tmp_path / ".modelreg-demo"
        assert f"demohome:{home}(" in joined
        _check_steps(flat)
        for marker in (
            "was archived in the same operation",
            "rollback",
            "metric test_auc",  # the course's models fail the course's own gate
            "approved by reviewer",
            "The stack is stopped",
        ):
            assert marker in done.stdout, marker
        assert "TAMPERED" not in done.stdout
        # The hint starts the stack again rather than pointing at the one just stopped.
        assert f"--home{home}up--port" in joined
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


def test_a_step_that_does_not_behave_as_stated_exits_non_zero_naming_it(tmp_path: Path) -> None:
    # A policy of one's own in the demo's home, kept by --keep-home, whose metric gate is
    # looser than the course's: the gate no longer refuses the course's best model.
    home = tmp_path / ".modelreg-demo"
    home.mkdir()
    (home / "policy.toml").write_text(
        '[default.gates]\nmetrics = ["test_auc >= 0.5"]\n\n[access]\ndefault_role = "admin"\n'
    )
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]
    ports += ["--serve-port", str(free_port())]

    done = _cli(dict(os.environ), "demo", "--no-keep-running", "--keep-home", *ports, cwd=tmp_path)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    message = _flat(done.stderr)
    assert (
        "demo step 4 (The course's policy: the gate refuses a weak model) did not behave" in message
    )
    assert "the request was accepted" in message
    assert "Traceback" not in done.stderr
    assert "5. The team trains" not in done.stdout  # nothing ran after the failing step


def test_expect_names_the_step_and_what_happened() -> None:
    expect(True, "8 (auto-promotion)", "only a better model is promoted", "v5 declined")
    with pytest.raises(ModelregError) as raised:
        expect(False, "8 (auto-promotion)", "only a better model is promoted", "v5 promoted")
    assert raised.value.message == (
        "demo step 8 (auto-promotion) did not behave as stated: "
        "only a better model is promoted; observed: v5 promoted"
    )


def test_the_demo_does_not_clear_a_directory_it_did_not_create(tmp_path: Path) -> None:
    home = tmp_path / ".modelreg-demo"
    home.mkdir()
    (home / "ledger.db").write_text("someone else's")
    ports = ["--port", str(free_port()), "--api-port", str(free_port())]
    ports += ["--serve-port", str(free_port())]

    done = _cli(dict(os.environ), "demo", "--no-keep-running", *ports, cwd=tmp_path)

    assert done.returncode != 0
    assert "was not created by `modelreg demo`" in done.stderr
    assert "Traceback" not in done.stderr
    assert (home / "ledger.db").read_text() == "someone else's"


def test_a_taken_serve_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    import socket

    from modelreg.cli.demo import run_demo
    from modelreg.errors import ConflictError
    from modelreg.settings import Settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConflictError, match="--serve-port"):
            run_demo(
                Settings(home=tmp_path),
                port=free_port(),
                api_port=free_port(),
                serve_port=port,
                home=tmp_path / "demo",
            )
    assert not (tmp_path / "demo").exists()  # nothing was created, let alone started
