"""The end-to-end walkthrough behind ``modelreg demo``.

Starts the embedded stack, runs the course's plain-MLflow registration code,
lets modelreg adopt the versions, promotes, rolls back, audits and verifies,
then governs Production: the course's policy refuses the course models, a
challenger registered with complete lineage passes, and is promoted once
someone other than its author approves it — printing each step and the
command that does the same by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from rich.console import Console
from rich.table import Table
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import roc_auc_score

from modelreg import policy
from modelreg.cli.tables import events_table
from modelreg.domain import Stage
from modelreg.errors import PermissionDeniedError
from modelreg.examples.course_register import fraud_data
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import Stack, StackConfig
from modelreg.views import DecisionView

MODEL = "fraud-detection"


def _step(console: Console, title: str, command: str) -> None:
    console.rule(f"[bold]{title}")
    console.print(f"[dim]$ {command}[/dim]")


def _versions(console: Console, registry: Registry) -> None:
    table = Table("version", "semver", "stage", "aliases", "test_auc", "digest", "lineage")
    for view in registry.versions(MODEL):
        full = registry.show(MODEL, view.version)
        auc = full.metrics.get("test_auc")
        table.add_row(
            str(view.version),
            view.semver or "-",
            view.stage.value,
            ",".join(view.aliases) or "-",
            f"{auc:.4f}" if auc is not None else "-",
            (view.digest or "-")[:19] + "…",
            "complete" if view.lineage_complete else "missing " + ", ".join(view.lineage_missing),
        )
    console.print(table)


def _gates(console: Console, view: DecisionView) -> None:
    table = Table("gate", "result", "required", "observed")
    for gate in view.gates:
        verdict = "[green]pass[/green]" if gate.passed else "[red]FAIL[/red]"
        table.add_row(gate.gate, verdict, gate.required, gate.observed)
    console.print(table)


def _govern(console: Console, registry: Registry, tracking_uri: str, course_best: int) -> None:
    """Step 8: a policy decides what may enter Production, and someone else must approve."""
    _step(
        console,
        "8. Govern Production: the course's policy, a challenger, a request and an approval",
        "modelreg policy init && modelreg validate fraud-detection N",
    )
    path = registry.settings.resolved_policy_file()
    if not path.exists():
        policy.write_starter(path, [registry.settings.actor])
    console.print(f"policy: {path} (test_auc >= 0.85, data_version, description, lineage ...)")
    course = registry.validate(MODEL, course_best)
    console.print(f"the course's best, v{course_best}, is {course.outcome}:")
    _gates(console, course)

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
    _gates(console, checked)
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


def run_demo(
    settings: Settings,
    *,
    port: int = 5000,
    api_port: int = 8000,
    keep_running: bool = True,
    console: Console | None = None,
) -> int:
    """Run the walkthrough on a fresh embedded stack; return the process exit code."""
    console = console or Console()
    config = StackConfig(home=settings.home, port=port, api_port=api_port)
    stack = Stack(config)
    _step(console, "1. Start MLflow (SQLite + local artifacts) and the modelreg API", "modelreg up")
    stack.start()
    try:
        console.print(f"MLflow UI: {config.tracking_uri}   modelreg API: {config.api_url}/docs")
        registry = Registry(
            settings.model_copy(
                update={
                    "tracking_uri": config.tracking_uri,
                    "ledger_uri": config.resolved_ledger_uri(),
                }
            )
        )
        env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri}
        _step(
            console,
            "2. The course's training code registers three versions with plain MLflow",
            "python -m modelreg.examples.course_register",
        )
        subprocess.run(
            [sys.executable, "-m", "modelreg.examples.course_register"], env=env, check=True
        )
        _step(
            console,
            "3. modelreg adopts them: semver, sha256 manifest, lineage record",
            "modelreg sync",
        )
        for view in registry.sync(MODEL):
            console.print(f"adopted v{view.version} as {view.semver} digest {view.digest}")
        _versions(console, registry)

        _step(
            console,
            "4. Promote the best version through Staging to Production",
            f"modelreg promote {MODEL} N --stage staging && "
            f"modelreg promote {MODEL} N --stage production",
        )
        ranked = sorted(
            (registry.show(MODEL, v.version) for v in registry.versions(MODEL)),
            key=lambda v: v.metrics.get("test_auc", 0.0),
            reverse=True,
        )
        best, runner_up = ranked[0].version, ranked[1].version
        registry.promote(MODEL, best, Stage.STAGING, reason="best test_auc of the sweep")
        registry.promote(MODEL, best, Stage.PRODUCTION, reason="validated on the holdout set")
        before_rollout = datetime.now(UTC)
        registry.promote(MODEL, runner_up, Stage.STAGING, reason="smaller, cheaper to serve")
        registry.promote(MODEL, runner_up, Stage.PRODUCTION, reason="cost experiment")
        console.print(
            f"v{runner_up} is now in Production; v{best} was archived in the same operation"
        )
        _versions(console, registry)

        _step(
            console,
            "5. Roll back: Production returns to the previous version",
            f"modelreg rollback {MODEL} --reason 'latency regression'",
        )
        registry.rollback(MODEL, reason="latency regression")
        then = registry.history(MODEL, before_rollout)
        when = f"{before_rollout:%H:%M:%S}"
        console.print(f"Production at {when}: v{then.production} ({then.production_semver})")
        history = registry.history(MODEL)
        table = events_table(history.events, with_time=False)
        console.print(table)

        _step(
            console,
            "6. Verify artifacts against the manifests recorded at registration",
            f"modelreg verify {MODEL}",
        )
        for result in registry.verify(MODEL):
            console.print(f"v{result.version} {result.semver}: {'ok' if result.ok else 'TAMPERED'}")
        _step(console, "7. Check that MLflow shows what the ledger says", "modelreg doctor")
        drifts = registry.doctor()
        console.print("no drift" if not drifts else f"{len(drifts)} difference(s)")
        _govern(console, registry, config.tracking_uri, best)
        registry.close()
        console.rule("[bold green]done")
        console.print(
            f"Try: export MLFLOW_TRACKING_URI={config.tracking_uri} "
            f"MODELREG_HOME={config.resolved_home()}; modelreg versions {MODEL}; "
            f"modelreg lineage {MODEL} {best}; modelreg history {MODEL}; "
            f"modelreg policy show {MODEL}"
        )
        if keep_running:
            console.print("The stack keeps running; press Ctrl-C to stop it.")
            return stack.run_until_signal()
        return 0
    finally:
        stack.stop()
