"""The installed `modelreg` command against a stack it started: options where the docs put
them, empty listings that say so, and a stopped stack reported within seconds."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from mlflow import MlflowClient

from modelreg.cli import main
from modelreg.stack import free_port
from services import SERVER_START_TIMEOUT

pytestmark = pytest.mark.e2e

MODELREG = str(Path(sys.executable).with_name("modelreg"))
# Generous: this checks "seconds, not the 10 s of MLflow's retries"; bench/cli.py measures.
DOWN_STACK_SECONDS = 5.0


@dataclass(frozen=True)
class UpStack:
    """A `modelreg up` started through the console script, and where it keeps its state."""

    home: Path
    tracking_uri: str
    closed_uri: str  # what the environment points at, so an ignored option fails loudly
    fresh_models: tuple[str, str] = ("", "")  # `models` and `models --json` before any test


def _closed_uri() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def up_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """`modelreg up --home DIR`, the form the docs use, on free ports."""
    workdir = tmp_path_factory.mktemp("cli-options")
    home, port = workdir / "home", free_port()
    log = workdir / "up.log"
    argv = [
        MODELREG,
        "up",
        "--port",
        str(port),
        "--api-port",
        str(free_port()),
        "--home",
        str(home),
    ]
    with log.open("w") as output:
        process = subprocess.Popen(
            argv, stdout=output, stderr=subprocess.STDOUT, cwd=workdir, env=_env(_closed_uri())
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while "ready" not in log.read_text():
            assert process.poll() is None, f"modelreg up exited: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"modelreg up not ready: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        stack = UpStack(home, f"http://127.0.0.1:{port}", _closed_uri())
        where = ["--tracking-uri", stack.tracking_uri, "--home", str(home)]
        text = _modelreg(stack, "models", *where)
        assert text.returncode == 0, text.stderr
        as_json = _modelreg(stack, "models", "--json", *where)
        yield dataclasses.replace(stack, fresh_models=(text.stdout, as_json.stdout))
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _env(tracking_uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELREG_")}
    return {**env, "MLFLOW_TRACKING_URI": tracking_uri}


def _modelreg(stack: UpStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MODELREG, *args],
        env=_env(stack.closed_uri),
        cwd=stack.home.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_up_took_its_home_after_the_command(up_stack: UpStack) -> None:
    assert (up_stack.home / "logs").is_dir()


def test_a_fresh_stack_has_no_models_yet(up_stack: UpStack) -> None:
    text, as_json = up_stack.fresh_models
    assert text == "no models yet\n"
    assert json.loads(as_json) == []


def test_global_options_after_the_command_in_the_console_script(up_stack: UpStack) -> None:
    home, uri = str(up_stack.home), up_stack.tracking_uri
    name = f"cli-{uuid4().hex[:8]}"
    MlflowClient(uri).create_registered_model(name)

    listed = _modelreg(up_stack, "models", "--tracking-uri", uri, "--home", home)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout
    as_json = _modelreg(up_stack, "models", "--json", f"--tracking-uri={uri}", f"--home={home}")
    assert name in [m["name"] for m in json.loads(as_json.stdout)]
    # Before the command, as always, and both sides at once.
    mixed = _modelreg(up_stack, "--home", home, "versions", name, "--tracking-uri", uri)
    assert (mixed.returncode, mixed.stdout) == (0, "no versions yet\n"), mixed.stderr


def test_home_and_actor_after_a_subcommand_of_a_group(up_stack: UpStack, tmp_path: Path) -> None:
    # Where the home went shows in the policy file, and who was acting in its admin.
    other = tmp_path / "other-home"
    made = _modelreg(up_stack, "policy", "init", "--home", str(other), "--actor=ann")
    assert made.returncode == 0, made.stderr
    assert '"ann" = "admin"' in (other / "policy.toml").read_text()
    where = ["--tracking-uri", up_stack.tracking_uri, "--home", str(other)]
    shown = _modelreg(up_stack, "policy", "show", "--json", *where)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["source"] == str(other / "policy.toml")


def test_global_options_after_the_command_through_main(
    up_stack: UpStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", up_stack.closed_uri)
    monkeypatch.delenv("MODELREG_HOME", raising=False)
    where = ["--tracking-uri", up_stack.tracking_uri, "--home", str(up_stack.home)]
    name = f"cli-{uuid4().hex[:8]}"
    MlflowClient(up_stack.tracking_uri).create_registered_model(name)

    assert main(["models", "--json", *where]) == 0
    assert name in [m["name"] for m in json.loads(capsys.readouterr().out)]
    assert main(["history", name, *where]) == 0
    assert capsys.readouterr().out == "Production: nothing\nno events\n"
    assert main(["webhooks", "list", "--status", "failed", *where]) == 0
    assert capsys.readouterr().out == "no matches\n"
    # The option really applies: after the command, a closed port is what gets used.
    assert (
        main(["models", "--home", str(up_stack.home), "--tracking-uri", up_stack.closed_uri]) == 6
    )
    assert "not reachable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "empty"),
    [
        (["search", "name = '{name}'"], "no matches"),
        (["versions", "{name}"], "no versions yet"),
        (["sync", "{name}"], "no versions to adopt"),
        (["webhooks", "list", "--subscriber", "{name}"], "no matches"),
    ],
)
def test_empty_listings_say_so_and_json_prints_an_empty_list(
    up_stack: UpStack, command: list[str], empty: str
) -> None:
    name = f"cli-{uuid4().hex[:8]}"
    MlflowClient(up_stack.tracking_uri).create_registered_model(name)
    args = [word.format(name=name) for word in command]
    where = ["--tracking-uri", up_stack.tracking_uri, "--home", str(up_stack.home)]
    text = _modelreg(up_stack, *args, *where)
    assert (text.returncode, text.stdout) == (0, f"{empty}\n"), text.stderr
    as_json = _modelreg(up_stack, *args, "--json", *where)
    assert (as_json.returncode, json.loads(as_json.stdout)) == (0, [])


def test_a_stopped_stack_is_reported_within_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = UpStack(tmp_path / "home", _closed_uri(), _closed_uri())
    started = time.monotonic()
    result = _modelreg(stack, "versions", "churn", "--home", str(stack.home))
    took = time.monotonic() - started
    assert result.returncode == 6, result.stderr
    assert "not reachable" in result.stderr
    assert "modelreg up" in result.stderr
    assert took < DOWN_STACK_SECONDS, f"{took:.1f} s"

    started = time.monotonic()
    assert (
        main(["history", "churn", "--tracking-uri", stack.tracking_uri, "--home", str(stack.home)])
        == 6
    )
    assert time.monotonic() - started < DOWN_STACK_SECONDS
    assert "not reachable" in capsys.readouterr().err
