"""The demo's registry steps: the course's versions, the policy's gates, approvals, automation.

Each function is one numbered step of ``modelreg demo`` against the running
stack. It prints what happens and the command that does the same by hand,
checks that the step behaved as stated (:meth:`Narrator.expect`), and
records what it demonstrated for the closing summary.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from rich.progress import Progress

from modelreg.cli.demo_narration import Narrator
from modelreg.cli.tables import events_table, gates_table, short_digest, versions_table
from modelreg.errors import (
    GateFailedError,
    ModelNotFoundError,
    ModelregError,
    PermissionDeniedError,
)
from modelreg.examples import challengers
from modelreg.examples.challengers import Trained
from modelreg.examples.course_register import MODEL_NAME, fraud_data
from modelreg.registry import Registry
from modelreg.views import VersionView

MODEL = MODEL_NAME
#: The course's gate the demo shows refusing a model, and the auto-promotion margin.
AUC_FLOOR = 0.85
AUTO_MARGIN = 0.02
#: The second person the policy needs: an approver (the starter policy's default role).
REVIEWER = "reviewer"


@dataclass(frozen=True)
class Contenders:
    """The versions the later steps use, by the role they play."""

    good: Trained
    close: Trained
    better: Trained
    bolder: Trained

    def number(self, role: str) -> int:
        """The version number of the challenger playing ``role``."""
        view: VersionView | None = getattr(self, role).version
        if view is None:
            raise ModelregError(f"the {role} model was never registered")
        return view.version


def show_versions(narrator: Narrator, registry: Registry) -> None:
    """Print the model's versions with their test_auc."""
    shown = [registry.show(MODEL, view.version) for view in registry.versions(MODEL)]
    narrator.console.print(versions_table(shown, with_model=False, metric="test_auc"))


def production(registry: Registry) -> int | None:
    """The version holding Production according to the ledger, or None."""
    return registry.history(MODEL).production


def course_code(narrator: Narrator, registry: Registry, env: Mapping[str, str]) -> list[int]:
    """Run the course's plain-MLflow training script, let modelreg adopt; return its versions."""
    try:
        earlier = {view.version for view in registry.versions(MODEL)}  # with --keep-home
    except ModelNotFoundError:
        earlier = set()
    narrator.begin(
        "The course's code trains three RandomForests with plain MLflow",
        "python -m modelreg.examples.course_register",
    )
    with Progress(console=narrator.console, transient=True, disable=not narrator.live) as progress:
        progress.add_task("training and registering 3 RandomForests ...", total=None)
        done = subprocess.run(
            [sys.executable, "-m", "modelreg.examples.course_register"],
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
    for line in done.stdout.splitlines():
        narrator.say(line)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-20:])
        raise ModelregError(f"the course's training code exited with {done.returncode}:\n{tail}")

    narrator.begin("modelreg adopts them: semver, sha256 manifest, lineage", "modelreg sync")
    # The API service adopts in the background too; whichever comes first, the result is one.
    registry.sync(MODEL)
    course = [
        registry.show(MODEL, view.version)
        for view in registry.versions(MODEL)
        if view.version not in earlier
    ]
    narrator.expect(
        len(course) == 3 and all(v.semver and v.digest for v in course),
        "three new versions, each with a semver and a sha256 manifest",
        ", ".join(f"v{v.version} {v.semver} {v.digest}" for v in course) or "none",
    )
    for view in course:
        narrator.say(
            f"adopted v{view.version} as {view.semver}, sha256 {short_digest(view.digest)}…"
        )
    show_versions(narrator, registry)
    narrator.found(
        "versioning and lineage",
        f"course's v{course[0].version}-v{course[-1].version} adopted with semver, sha256 "
        "manifest, declared lineage",
    )
    return [view.version for view in course]


def gate_refuses(narrator: Narrator, registry: Registry, course: list[int]) -> None:
    """Write the course's policy, and show its metric gate refusing the course's best model."""
    best = max(course, key=lambda n: registry.show(MODEL, n).metrics.get("test_auc", 0.0))
    narrator.begin(
        "The course's policy: the gate refuses a weak model",
        "modelreg policy init",
        f"modelreg request {MODEL} {best} --stage production",
    )
    path = registry.settings.resolved_policy_file()
    if not path.exists():
        registry.init_policy()
    narrator.say(f"policy: {path} (test_auc >= {AUC_FLOOR}, data_version, description, ...)")
    try:
        registry.request(MODEL, best, comment="the best of the course's sweep")
    except GateFailedError as refused:
        failures = refused.failures
    else:
        failures = []
    narrator.say(f"refused: the course's best, v{best}, does not pass its policy")
    narrator.console.print(gates_table(registry.validate(MODEL, best)))
    metric = next((f for f in failures if f.startswith("metric test_auc")), "")
    auc = registry.show(MODEL, best).metrics.get("test_auc", 1.0)
    narrator.expect(
        bool(metric) and auc < AUC_FLOOR,
        f"the request is refused because test_auc < {AUC_FLOOR}, naming the observed value",
        "; ".join(failures) or "the request was accepted",
    )
    narrator.say(metric)
    narrator.found("gates", f"v{best} refused: test_auc {auc:.4f} < {AUC_FLOOR}")


def train_challengers(narrator: Narrator, registry: Registry, tracking_uri: str) -> Contenders:
    """Train the team's four models and register them through modelreg with full lineage."""
    narrator.begin(
        "The team trains four models and registers them with full lineage",
        "python -m modelreg.examples.challengers",
    )
    data = fraud_data()
    trained: list[Trained] = []
    with Progress(console=narrator.console, transient=True, disable=not narrator.live) as progress:
        task = progress.add_task("training and registering", total=len(challengers.CHALLENGERS))
        for challenger in challengers.CHALLENGERS:
            progress.update(task, description=f"{challenger.role}: {challenger.estimator}")
            one = challengers.train(challenger, data)
            view = challengers.register(registry, one, data[0], tracking_uri=tracking_uri)
            narrator.say(
                f"v{view.version} {view.semver} test_auc={one.test_auc:.4f} "
                f"{challenger.description}"
            )
            trained.append(one)
            progress.advance(task)
    contenders = Contenders(*trained)
    views: list[VersionView] = [t.version for t in trained if t.version is not None]
    narrator.expect(
        len(views) == 4 and all(v.lineage_complete for v in views),
        "four new versions with complete lineage",
        ", ".join(f"v{v.version} lineage complete={v.lineage_complete}" for v in views),
    )
    show_versions(narrator, registry)
    narrator.found(
        "versioning and lineage",
        f"v{views[0].version}-v{views[-1].version} registered with fingerprinted training data",
    )
    return contenders


def request_and_approve(narrator: Narrator, registry: Registry, contenders: Contenders) -> None:
    """Promote the good model through a request and someone else's approval."""
    number = contenders.number("good")
    narrator.begin(
        "Request and approval: someone other than the author approves",
        f"modelreg request {MODEL} {number} --stage production",
    )
    checked = registry.validate(MODEL, number)
    narrator.expect(checked.passed, f"v{number} passes every gate", checked.outcome)
    registry.request(MODEL, number, comment="passes every gate of the course's policy")
    narrator.command(f"modelreg approve {MODEL} {number}")
    try:
        registry.approve(MODEL, number)
    except PermissionDeniedError as exc:
        refused = exc.message
        narrator.say(f"refused: {refused}")
    else:
        refused = ""
    narrator.expect(
        "separation of duties" in refused,
        "the author may not approve their own version",
        refused or "the author's approval was accepted",
    )
    narrator.command(f"modelreg --actor {REVIEWER} approve {MODEL} {number}")
    approved = registry.approve(MODEL, number, comment="checked the evaluation", actor=REVIEWER)
    narrator.say(
        f"v{number} ({approved.semver}) {approved.outcome}, approved by "
        f"{', '.join(approved.approvers)}; MLflow tags show approved_by and approved_at"
    )
    held = production(registry)
    narrator.expect(held == number, f"v{number} holds Production", f"Production is v{held}")
    narrator.found("approvals", f"v{number}: author refused, approved by {REVIEWER}")


def auto_promote(narrator: Narrator, registry: Registry, role: str, contenders: Contenders) -> bool:
    """Run auto-promotion on the challenger playing ``role``; print the decision with numbers."""
    number = contenders.number(role)
    before = production(registry)
    champion = registry.show(MODEL, before).metrics["test_auc"] if before else 0.0
    auc: float = getattr(contenders, role).test_auc
    narrator.command(f"modelreg auto-promote {MODEL} {number}")
    decision = registry.auto_promote(MODEL, number)
    narrator.say(
        f"v{number}: test_auc {auc:.4f} vs Production v{before} {champion:.4f} "
        f"({auc - champion:+.4f}, needs > +{AUTO_MARGIN}): {decision.outcome}"
    )
    if decision.message:
        narrator.say(f"  {decision.message}")
    should = auc - champion > AUTO_MARGIN
    narrator.expect(
        decision.promoted == should,
        f"auto-promotion promotes only a model beating Production by more than {AUTO_MARGIN}",
        f"v{number} ({auc - champion:+.4f}) {decision.outcome}",
    )
    return decision.promoted


def rollback(narrator: Narrator, registry: Registry, expected: int) -> None:
    """Roll Production back to the previous Production version, ``expected``."""
    narrator.command(f"modelreg rollback {MODEL} --reason 'back to the champion'")
    registry.rollback(MODEL, reason="back to the champion before the experiment")
    held = production(registry)
    narrator.expect(
        held == expected, f"Production returns to v{expected}", f"Production is v{held}"
    )
    narrator.say(f"Production is v{held} again; the rolled-back version was archived")


def audit(narrator: Narrator, registry: Registry, shown: int = 8) -> None:
    """Verify the artifacts, compare MLflow with the ledger, print the history's last events."""
    narrator.begin(
        "Audit: artifacts, MLflow against the ledger, history",
        f"modelreg verify {MODEL}",
        "modelreg doctor",
        f"modelreg history {MODEL}",
    )
    results = registry.verify(MODEL)
    tampered = [f"v{r.version}" for r in results if not r.ok]
    narrator.say(f"{len(results)} versions verified against their sha256 manifests")
    narrator.expect(not tampered, "every version matches its manifest", ", ".join(tampered))
    drifts = registry.doctor()
    narrator.say("no drift" if not drifts else f"{len(drifts)} difference(s)")
    narrator.expect(not drifts, "MLflow shows what the ledger says", f"{len(drifts)} drift(s)")
    events = registry.history(MODEL).events
    narrator.say(f"the ledger holds {len(events)} events for {MODEL}; the last {shown}:")
    narrator.console.print(events_table(events[-shown:], with_time=False))
    narrator.found("audit", f"{len(events)} ledger events, 0 drift, digests verified; /ui/audit")
