"""The end-to-end walkthrough behind ``modelreg demo``.

Starts the embedded stack, runs the course's plain-MLflow registration code,
lets modelreg adopt the versions, promotes, rolls back, audits and verifies,
then governs Production: the course's policy refuses the course models, a
challenger registered with complete lineage passes, and is promoted once
someone other than its author approves it — printing each step and the
command that does the same by hand.

Every run starts from an empty demo home of its own (``./.modelreg-demo``),
so running it twice shows the same thing twice; the home is cleared only if
an earlier demo created it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from rich.console import Console
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import roc_auc_score

from modelreg.cli.tables import events_table, gates_table, short_digest, versions_table
from modelreg.domain import Stage
from modelreg.errors import (
    ConflictError,
    ModelNotFoundError,
    ModelregError,
    PermissionDeniedError,
)
from modelreg.examples.course_register import fraud_data
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import Stack, StackConfig

MODEL = "fraud-detection"
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


def _step(console: Console, title: str, *commands: str) -> None:
    console.rule(f"[bold]{title}")
    for command in commands:
        console.print(f"[dim]$ {command}[/dim]")


def _versions(console: Console, registry: Registry) -> None:
    shown = [registry.show(MODEL, view.version) for view in registry.versions(MODEL)]
    console.print(versions_table(shown, with_model=False, metric="test_auc"))


def _course_code(console: Console, env: dict[str, str]) -> None:
    """Run the course's registration script, printing its own lines and hiding MLflow's."""
    done = subprocess.run(
        [sys.executable, "-m", "modelreg.examples.course_register"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stdout.splitlines():
        console.print(line, markup=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise ModelregError(f"the course's training code exited with {done.returncode}:\n{tail}")


def _govern(console: Console, registry: Registry, tracking_uri: str, course_best: int) -> None:
    """Steps 8 and 9: a policy decides what may enter Production; someone else approves."""
    _step(
        console,
        "8. Govern Production: the course's policy",
        "modelreg policy init",
        f"modelreg validate {MODEL} {course_best}",
    )
    path = registry.settings.resolved_policy_file()
    if not path.exists():
        registry.init_policy()
    console.print(f"policy: {path} (test_auc >= 0.85, data_version, description, lineage ...)")
    course = registry.validate(MODEL, course_best)
    console.print(f"the course's best, v{course_best}, is {course.outcome}:")
    console.print(gates_table(course))

    console.print("training a challenger (ExtraTrees) with complete lineage ...")
    x_train, x_test, y_train, y_test = fraud_data()
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(MODEL)
    with mlflow.start_run():
        model = ExtraTreesClassifier(n_estimators=300, random_state=42, n_jobs=1)
        model.fit(x_train, y_train)
        mlflow.log_metric("test_auc", roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))
        challenger = registry.register(
            model,
            name=MODEL,
            training_data=x_train,
            data_version="fraud-2026-11",
            description="ExtraTrees, 300 trees: the challenger",
            code_path=Path(__file__).parent,  # this module is the training code
        )
    number = challenger.version
    _step(console, "9. Validate, request and approve", f"modelreg validate {MODEL} {number}")
    checked = registry.validate(MODEL, number)
    console.print(gates_table(checked))
    if not checked.passed:
        console.print("the challenger does not pass; fix what failed and register again")
        return
    console.print(f"[dim]$ modelreg request {MODEL} {number} --stage production[/dim]")
    registry.request(MODEL, number, comment="beats the course models on holdout AUC")
    console.print(f"[dim]$ modelreg approve {MODEL} {number}[/dim]")
    try:
        registry.approve(MODEL, number)
    except PermissionDeniedError as exc:
        console.print(f"refused: {exc.message}", markup=False)
    console.print(f"[dim]$ modelreg --actor reviewer approve {MODEL} {number}[/dim]")
    approved = registry.approve(MODEL, number, comment="checked the evaluation", actor="reviewer")
    console.print(
        f"v{number} ({approved.semver}) {approved.outcome}, approved by "
        f"{', '.join(approved.approvers)}; MLflow tags show approved_by and approved_at"
    )
    _versions(console, registry)


def _walkthrough(console: Console, registry: Registry, config: StackConfig) -> None:
    """Steps 2 to 9 against the running stack."""
    try:
        earlier = {view.version for view in registry.versions(MODEL)}  # with --keep-home
    except ModelNotFoundError:
        earlier = set()
    _step(
        console,
        "2. The course's code registers three versions with plain MLflow",
        "python -m modelreg.examples.course_register",
    )
    _course_code(console, {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri})
    _step(console, "3. modelreg adopts them: semver, sha256 manifest, lineage", "modelreg sync")
    # The API service adopts in the background too; whichever comes first, the result is one.
    registry.sync(MODEL)
    course = [
        registry.show(MODEL, view.version)
        for view in registry.versions(MODEL)
        if view.version not in earlier
    ]
    for view in course:
        console.print(
            f"adopted v{view.version} as {view.semver}, sha256 {short_digest(view.digest)}…"
        )
    _versions(console, registry)

    ranked = sorted(course, key=lambda v: v.metrics.get("test_auc", 0.0), reverse=True)
    best, runner_up = ranked[0].version, ranked[1].version
    _step(
        console,
        "4. Promote the best version through Staging to Production",
        f"modelreg promote {MODEL} {best} --stage staging --reason 'best test_auc of the sweep'",
        f"modelreg promote {MODEL} {best} --stage production "
        "--reason 'validated on the holdout set'",
    )
    registry.promote(MODEL, best, Stage.STAGING, reason="best test_auc of the sweep")
    registry.promote(MODEL, best, Stage.PRODUCTION, reason="validated on the holdout set")
    before_rollout = datetime.now(UTC)
    console.print(f"then the runner-up, v{runner_up}, replaces it:")
    console.print(
        f"[dim]$ modelreg promote {MODEL} {runner_up} --stage staging "
        "--reason 'smaller, cheaper to serve'[/dim]"
    )
    registry.promote(MODEL, runner_up, Stage.STAGING, reason="smaller, cheaper to serve")
    console.print(
        f"[dim]$ modelreg promote {MODEL} {runner_up} --stage production "
        "--reason 'cost experiment'[/dim]"
    )
    registry.promote(MODEL, runner_up, Stage.PRODUCTION, reason="cost experiment")
    console.print(f"v{runner_up} is now in Production; v{best} was archived in the same operation")
    _versions(console, registry)

    _step(
        console,
        "5. Roll back: Production returns to the previous version",
        f"modelreg rollback {MODEL} --reason 'latency regression'",
    )
    registry.rollback(MODEL, reason="latency regression")
    then = registry.history(MODEL, before_rollout)
    when = f"{before_rollout:%H:%M:%S}"
    console.print(f"Production at {when} UTC: v{then.production} ({then.production_semver})")
    console.print(events_table(registry.history(MODEL).events, with_time=False))

    _step(console, "6. Verify artifacts against their manifests", f"modelreg verify {MODEL}")
    for result in registry.verify(MODEL):
        console.print(f"v{result.version} {result.semver}: {'ok' if result.ok else 'TAMPERED'}")
    _step(console, "7. Check that MLflow shows what the ledger says", "modelreg doctor")
    drifts = registry.doctor()
    console.print("no drift" if not drifts else f"{len(drifts)} difference(s)")
    _govern(console, registry, config.tracking_uri, best)


def _closing_hint(console: Console, config: StackConfig, *, running: bool) -> None:
    """What to type next: against the running stack, or how to start it again first."""
    modelreg = _modelreg_command()
    home = config.resolved_home()
    if running:
        console.print(f"The stack keeps running: MLflow UI {config.tracking_uri},")
        console.print(f"API docs {config.api_url}/docs. In another shell:")
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
    keep_running: bool = True,
    keep_home: bool = False,
    home: Path = DEMO_HOME,
    console: Console | None = None,
) -> int:
    """Run the walkthrough on a fresh embedded stack in ``home``; return the exit code.

    ``home`` is emptied first (see :func:`demo_home`) unless ``keep_home``.
    """
    console = console or Console(highlight=False)
    quiet_mlflow()
    # Taken ports are found before the last run's home is emptied for nothing.
    Stack(StackConfig(home=home, port=port, api_port=api_port)).check_ports()
    with demo_home(home, keep=keep_home) as resolved:
        config = StackConfig(home=resolved, port=port, api_port=api_port)
        stack = Stack(config)
        _step(console, "1. Start MLflow (SQLite + local artifacts) and the API", "modelreg up")
        state = "kept as it was" if keep_home else "emptied first; --keep-home keeps it"
        console.print(f"demo home: {resolved} ({state})")
        stack.start()
        try:
            console.print(f"MLflow UI: {config.tracking_uri}   API: {config.api_url}/docs")
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
                _walkthrough(console, registry, config)
            finally:
                registry.close()
            console.rule("[bold green]done")
            _closing_hint(console, config, running=keep_running)
            return stack.run_until_signal() if keep_running else 0
        finally:
            stack.stop()
