"""The end-to-end walkthrough behind ``modelreg demo``: the whole course in a few minutes.

Starts the embedded stack (MLflow, the API with the dashboard), runs the
course's plain-MLflow training code and lets modelreg adopt its versions,
shows the course's policy refusing a weak model, trains the team's models
with complete lineage, promotes one through request and approval, lets
auto-promotion decline one and promote another, serves the model and times
how fast the server follows a promotion, runs a 90/10 A/B test with
simulated users and feedback, concludes it with the winner's promotion,
rolls back and audits. Each step prints the command that does the same by
hand and checks that it behaved as stated (any that does not ends the demo
with exit code 1 and a message naming it); a closing table says which of
the course's acceptance criteria each step demonstrated.

The steps live by concept: :mod:`~modelreg.cli.demo_governance` (registry
steps), :mod:`~modelreg.cli.demo_serving` (the model server),
:mod:`~modelreg.cli.demo_ab` (the experiment) and
:mod:`~modelreg.cli.demo_narration` (steps, checks, summary).

Every run starts from an empty demo home of its own (``./.modelreg-demo``),
so running it twice shows the same thing twice; the home is cleared only if
an earlier demo created it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from modelreg.cli import demo_ab, demo_governance
from modelreg.cli.demo_governance import MODEL, REVIEWER
from modelreg.cli.demo_narration import Narrator, summary_table
from modelreg.cli.demo_serving import Replica, check_serve_port, scoring_body
from modelreg.domain import Stage
from modelreg.errors import ConflictError, ModelregError
from modelreg.examples.course_register import fraud_data
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import Stack, StackConfig

#: The course's limit on how long the service may take to follow a promotion.
RELOAD_LIMIT_SECONDS = 60.0
#: Where the demo keeps its stack, relative to the working directory.
DEMO_HOME = Path(".modelreg-demo")
#: The file that marks a directory as created by the demo, and so safe to clear.
MARKER = ".created-by-modelreg-demo"
#: MLflow's own chatter (INFO logs, "🏃 View run ... at:" links) would bury the
#: demo's steps; warnings and errors still show.
QUIET_MLFLOW_ENV = {
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
#: Loggers that report routine work at INFO; urllib3 warns on every retry MLflow's client
#: makes on its own, and a retry that ends in failure surfaces as our error anyway.
_NOISY_LOGGERS = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "urllib3": logging.ERROR}


@contextmanager
def demo_home(path: Path, *, keep: bool) -> Iterator[Path]:
    """Hold ``path`` as the demo's home for the duration: emptied first unless ``keep``.

    Only a directory carrying the demo's marker file is emptied; any other
    non-empty directory is refused (it may be someone's real home) unless
    ``keep`` asks to run on it as it is. A second demo on the same home while
    the first still runs is refused rather than clearing files under it.
    """
    home = path.expanduser().resolve()
    marker = home / MARKER
    if home.exists() and not marker.exists() and (not home.is_dir() or any(home.iterdir())):
        if not keep:
            raise ConflictError(
                f"{home} exists and was not created by `modelreg demo`, so the demo will not "
                "clear it; move it away, or pass --keep-home to run the demo on it as it is"
            )
        yield home
        return
    home.mkdir(parents=True, exist_ok=True)
    with marker.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConflictError(
                f"another `modelreg demo` is running on {home}; stop it (Ctrl-C) first"
            ) from None
        if not keep:
            _clear(home, keep=marker)
        if not marker.stat().st_size:
            lock.write("Created by `modelreg demo`, which empties this directory on every run.\n")
            lock.flush()
        yield home


def _clear(home: Path, *, keep: Path) -> None:
    for entry in home.iterdir():
        if entry == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def quiet_mlflow() -> None:
    """Silence MLflow's logging and run links here and in the processes started from here."""
    for name, level in _NOISY_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    # Read by MLflow at the end of each run, and inherited by every process the demo starts.
    os.environ.update(QUIET_MLFLOW_ENV)


def _modelreg_command() -> str:
    """How the user runs this CLI: ``modelreg`` when on PATH, else the venv's script."""
    script = Path(sys.executable).parent / "modelreg"
    if not script.exists() or shutil.which("modelreg") == str(script):
        return "modelreg"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _probe_body() -> bytes:
    """One held-out row: what the reload probe scores."""
    _x_train, x_test, _y_train, _y_test = fraud_data()
    return scoring_body(x_test.iloc[0].to_dict())


def _follows(narrator: Narrator, replica: Replica, version: int, what: str, since: float) -> float:
    """Seconds from ``since`` until the replica answers with ``version``; at most 60."""
    seconds = replica.seconds_until_serving(
        version, _probe_body(), since=since, timeout=RELOAD_LIMIT_SECONDS
    )
    narrator.expect(
        seconds <= RELOAD_LIMIT_SECONDS,
        f"the model server answers with v{version} within {RELOAD_LIMIT_SECONDS:.0f} s of {what}",
        f"no answer from v{version} after {RELOAD_LIMIT_SECONDS:.0f} s; log {replica.log_path}",
    )
    narrator.say(f"the model server answered with v{version} within {seconds:.1f} s of {what}")
    return seconds


def _serve_and_automate(
    narrator: Narrator,
    registry: Registry,
    replica: Replica,
    contenders: demo_governance.Contenders,
) -> None:
    """Start the model server on Production, then let auto-promotion decline one and promote one."""
    good = contenders.number("good")
    narrator.begin(
        "Serve Production: the model server follows the production alias",
        f"modelreg serve {MODEL} --port {replica.port}",
    )
    replica.start()
    answer = replica.score(_probe_body())
    narrator.say(f"{replica.url}/invocations answers with v{answer.version} ({answer.variant})")
    narrator.expect(answer.version == good, f"it serves v{good}", f"v{answer.version}")

    narrator.begin("Auto-promotion: only a model beating Production by more than 0.02")
    demo_governance.auto_promote(narrator, registry, "close", contenders)
    promoting = time.monotonic()
    demo_governance.auto_promote(narrator, registry, "better", contenders)
    better = contenders.number("better")
    seconds = _follows(narrator, replica, better, "the promotion", promoting)
    archived = registry.show(MODEL, good).stage
    narrator.expect(
        archived is Stage.ARCHIVED, f"v{good} leaves Production, archived", archived.value
    )
    narrator.say(f"v{good} was archived in the same operation")
    narrator.found(
        "auto-promotion",
        f"v{contenders.number('close')} declined (< +0.02), v{better} promoted (> +0.02)",
    )
    narrator.found(
        "FastAPI service reloads within 60 s",
        f"v{better} served within {seconds:.1f} s of its promotion",
    )


def _walkthrough(
    narrator: Narrator, registry: Registry, config: StackConfig, replica: Replica
) -> None:
    """Steps 2 to 12 against the running stack."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri}
    course = demo_governance.course_code(narrator, registry, env)
    demo_governance.gate_refuses(narrator, registry, course)
    contenders = demo_governance.train_challengers(narrator, registry, config.tracking_uri)
    demo_governance.request_and_approve(narrator, registry, contenders)
    _serve_and_automate(narrator, registry, replica, contenders)
    demo_ab.ab_test(narrator, registry, replica, contenders, config.api_url)
    winner, champion = contenders.number("bolder"), contenders.number("better")
    promoting, approved = demo_ab.conclude(narrator, registry, winner)
    what = "the approval" if approved else "the conclusion"
    seconds = _follows(narrator, replica, winner, what, promoting)
    if approved:
        narrator.found("approvals", f"the A/B winner v{winner} approved by {REVIEWER}")
    narrator.found(
        "FastAPI service reloads within 60 s",
        f"v{winner} served within {seconds:.1f} s of {what}",
    )

    narrator.begin("Roll back: Production returns to the previous version")
    rolling_back = time.monotonic()
    demo_governance.rollback(narrator, registry, champion)
    seconds = _follows(narrator, replica, champion, "the rollback", rolling_back)
    narrator.found("rollback", f"Production back to v{champion}, served within {seconds:.1f} s")
    demo_governance.audit(narrator, registry)


def _closing_hint(
    console: Console, config: StackConfig, serving_url: str, actor: str, *, running: bool
) -> None:
    """What to look at and type next: the running stack, or how to start it again first."""
    modelreg = _modelreg_command()
    home = config.resolved_home()
    if running:
        console.print(f"The stack keeps running. Dashboard: {config.api_url}/ui")
        console.print(
            f"  log in as {REVIEWER} (an approver) or {actor} (the policy's admin); the "
            "embedded default asks for no password",
            highlight=False,
        )
        console.print(f"  the experiment's page: {config.api_url}/ui/models/{MODEL}/experiment")
        console.print(f"MLflow UI {config.tracking_uri}, API docs {config.api_url}/docs,")
        console.print(f"the model server {serving_url}/invocations. In another shell:")
    else:
        console.print(f"The stack is stopped; what it stored stays in {home}.")
        console.print("To look around, start it again on that home:")
        usual = StackConfig(home=home)  # `up` listens on its default ports unless told
        ports = "" if config.port == usual.port else f" --port {config.port}"
        ports += "" if config.api_port == usual.api_port else f" --api-port {config.api_port}"
        console.print(f"  {modelreg} --home {home} up{ports}")
        console.print("and in another shell:")
    console.print(f"  export MLFLOW_TRACKING_URI={config.tracking_uri}")
    console.print(f"  export MODELREG_HOME={home}")
    console.print(f"  {modelreg} versions {MODEL}")
    console.print(f"  {modelreg} history {MODEL}")
    if running:
        console.print("Press Ctrl-C to stop it.")


def run_demo(
    settings: Settings,
    *,
    port: int = 5000,
    api_port: int = 8000,
    serve_port: int = 8080,
    keep_running: bool = True,
    keep_home: bool = False,
    home: Path = DEMO_HOME,
    console: Console | None = None,
) -> int:
    """Run the walkthrough on a fresh embedded stack in ``home``; return the exit code.

    ``home`` is emptied first (see :func:`demo_home`) unless ``keep_home``.
    Raises ConflictError naming the option when a port is taken (checked
    before anything starts), and ModelregError naming the step when a step
    does not behave as stated.
    """
    console = console or Console(highlight=False)
    quiet_mlflow()
    # Taken ports are found before the last run's home is emptied for nothing.
    Stack(StackConfig(home=home, port=port, api_port=api_port)).check_ports()
    check_serve_port(StackConfig(home=home).host, serve_port)
    with demo_home(home, keep=keep_home) as resolved:
        config = StackConfig(home=resolved, port=port, api_port=api_port)
        stack = Stack(config)
        narrator = Narrator(console)
        narrator.begin("Start MLflow (SQLite + local artifacts) and the API", "modelreg up")
        state = "kept as it was" if keep_home else "emptied first; --keep-home keeps it"
        narrator.say(f"demo home: {resolved} ({state})")
        stack.start()
        replica = Replica(MODEL, config, serve_port)
        try:
            narrator.say(f"MLflow UI: {config.tracking_uri}   API: {config.api_url}/docs")
            narrator.found(
                "Docker Compose deployment",
                "not run here: deploy/compose.yaml runs the same services",
                step="-",
            )
            narrator.found(
                "PostgreSQL + MinIO backend",
                "not here: the demo uses the embedded SQLite and local artifacts; "
                "`modelreg up --postgres URL --s3 ENDPOINT` and deploy/compose.yaml use "
                "PostgreSQL and S3 (MinIO, SeaweedFS)",
                step="-",
            )
            registry = Registry(
                settings.model_copy(
                    update={
                        "home": resolved,
                        "tracking_uri": config.tracking_uri,
                        "ledger_uri": config.resolved_ledger_uri(),
                        "policy_file": None,
                        "download_dir": None,
                    }
                )
            )
            try:
                _walkthrough(narrator, registry, config, replica)
                actor = registry.actor()
            except ModelregError as exc:
                if exc.message.startswith("demo step"):
                    raise
                raise ModelregError(f"demo step {narrator.step} failed: {exc.message}") from exc
            finally:
                registry.close()
            console.rule("[bold green]done: what each step demonstrated")
            console.print(summary_table(narrator.findings))
            _closing_hint(console, config, replica.url, actor, running=keep_running)
            return stack.run_until_signal() if keep_running else 0
        finally:
            replica.stop()
            stack.stop()
