"""The demo's A/B test: simulated users score held-out rows and report what really happened.

Treatment gets 10% of the users, control (Production) the other 90%. Each
simulated user (``X-User-ID``) sends one held-out transaction of the course's
data to the serving replica and later reports whether it really was fraud:
feedback with the true label for the request id, so the primary metric,
accuracy, is the share of the replica's answers that were right. Fraud is
oversampled to half of the users' transactions (it is 6% of the data), so a
few thousand users carry as much evidence as a long stretch of real traffic;
the models' accuracies on these rows are computed offline first, so the demo
knows the treatment is truly better before it asks the statistics.

Everything random is seeded (which rows, in which order); only the split
between the arms depends on the experiment's id, its salt. On these rows
control is right 56% of the time and treatment 75%; with ~400 treated users
the always-valid test needs an observed effect of about 8 points, 5 standard
errors below the true 19, so the verdict is "treatment wins" in every run (a
simulation of 20,000 random splits found no exception; with 3,000 users one
run in 300 would have been inconclusive).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.progress import Progress

from modelreg.cli.demo_governance import MODEL, REVIEWER, Contenders, production
from modelreg.cli.demo_narration import Narrator
from modelreg.cli.demo_serving import Answer, Replica, scoring_body
from modelreg.cli.tables import CompactTable, key
from modelreg.examples.course_register import fraud_data
from modelreg.registry import Registry

#: Simulated users; each sends one transaction and its feedback.
USERS = 4000
#: Treatment's share of the users (control gets the rest: the course's 10/90 split).
TREATMENT_SHARE = 0.10
#: Share of the users' transactions that are fraud.
FRAUD_SHARE = 0.5
#: Seed of the rows the users send.
SEED = 2026
#: Concurrent simulated users (the replica batches their requests).
CONCURRENCY = 8
#: How long the replica's counts may take to reach the ledger (it flushes every 2 s).
COUNTS_TIMEOUT = 60.0


@dataclass(frozen=True)
class Traffic:
    """The users' transactions: a JSON body and the true label of each."""

    bodies: list[bytes]
    labels: list[int]

    @classmethod
    def simulated(cls, users: int = USERS, seed: int = SEED) -> tuple[Traffic, Any]:
        """``users`` held-out rows, ``FRAUD_SHARE`` of them fraud; also the rows as a frame."""
        _x_train, x_test, _y_train, y_test = fraud_data()
        labels = y_test.to_numpy()
        rng = np.random.default_rng(seed)
        fraud, legit = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
        picks = np.where(
            rng.random(users) < FRAUD_SHARE, rng.choice(fraud, users), rng.choice(legit, users)
        )
        rows = x_test.iloc[picks]
        bodies = [scoring_body(row) for row in rows.to_dict(orient="records")]
        return cls(bodies, [int(labels[i]) for i in picks]), rows

    def accuracy(self, model: Any, rows: Any) -> float:
        """The share of these transactions ``model`` classifies right."""
        return float(np.mean(model.predict(rows) == np.asarray(self.labels)))


def _one_user(replica: Replica, traffic: Traffic, user: int) -> tuple[Answer, str]:
    answer = replica.score(traffic.bodies[user], user=f"user-{user}", request_id=f"demo-ab-{user}")
    return answer, replica.feedback(answer.request_id, traffic.labels[user])


def send(narrator: Narrator, replica: Replica, traffic: Traffic) -> list[tuple[Answer, str]]:
    """Every user scores their transaction and posts its true label, ``CONCURRENCY`` at a time."""
    results: list[tuple[Answer, str]] = []
    with (
        Progress(console=narrator.console, transient=True, disable=not narrator.live) as progress,
        ThreadPoolExecutor(CONCURRENCY) as pool,
    ):
        task = progress.add_task("users scoring and reporting", total=len(traffic.bodies))
        for result in pool.map(
            lambda u: _one_user(replica, traffic, u), range(len(traffic.bodies))
        ):
            results.append(result)
            progress.advance(task)
    return results


def _counted(registry: Registry, users: int) -> dict[str, Any]:
    """The experiment's report once the replica's counts of all ``users`` reached the ledger."""
    deadline = time.monotonic() + COUNTS_TIMEOUT
    while True:
        report = registry.ab_status(MODEL).report or {}
        requests = sum(v.get("requests") or 0 for v in report.get("variants", []))
        if requests >= users or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(narrator: Narrator, report: dict[str, Any]) -> None:
    """Per-variant requests, feedback and accuracy; the comparison and the verdict."""
    table = CompactTable(
        key("variant"), key("version"), key("share"), key("requests"), key("feedback"),
        key("accuracy"), key("p99 ms"),
    )  # fmt: skip
    for v in report.get("variants", []):
        accuracy = (v.get("metrics") or {}).get("accuracy") or {}
        table.add_row(
            str(v.get("variant")),
            f"v{v.get('version')}",
            f"{v.get('expected_share', 0):.0%}",
            str(v.get("requests")),
            str(v.get("feedback")),
            _fmt(accuracy.get("value")),
            _fmt(v.get("p99_latency_ms"), 0),
        )
    narrator.console.print(table)
    for c in report.get("comparisons", []):
        p_value = c.get("p_value")
        narrator.say(
            f"{c.get('treatment')} - control on {c.get('metric')}: {_fmt(c.get('effect'))} "
            f"[{_fmt(c.get('ci_low'))}, {_fmt(c.get('ci_high'))}], always-valid "
            f"p = {'-' if p_value is None else f'{p_value:.2g}'}"
        )
    srm = report.get("srm") or {}
    narrator.say(f"sample ratio: {'MISMATCH' if srm.get('flagged') else 'ok'}")
    narrator.say(f"decision: {report.get('decision')} ({report.get('reason', '')})")


def ab_test(
    narrator: Narrator, registry: Registry, replica: Replica, contenders: Contenders, api_url: str
) -> None:
    """Run the 90/10 experiment of the bolder model against Production (the auto-promoted one)."""
    control, treatment = production(registry), contenders.number("bolder")
    narrator.begin(
        "A 90/10 A/B test with simulated users and their feedback",
        f"modelreg ab start {MODEL} --treatment {treatment} --traffic {TREATMENT_SHARE} --wait 120",
    )
    narrator.expect(
        control == contenders.number("better"),
        "control is Production, the auto-promoted model",
        f"Production is v{control}",
    )
    traffic, rows = Traffic.simulated()
    truth_control = traffic.accuracy(contenders.better.model, rows)
    truth_treatment = traffic.accuracy(contenders.bolder.model, rows)
    narrator.say(
        f"{USERS} users each send one held-out transaction (half of them fraud) and report "
        f"the truth; offline, on these rows, v{control} is right {truth_control:.1%} of the "
        f"time and v{treatment} {truth_treatment:.1%}"
    )
    narrator.expect(
        truth_treatment > truth_control + 0.1,
        "the treatment is truly better than control on the users' transactions",
        f"control {truth_control:.3f}, treatment {truth_treatment:.3f}",
    )
    started = registry.ab_start(
        MODEL,
        [treatment],
        traffic=TREATMENT_SHARE,
        metrics=["accuracy"],
        reason="flags more fraud at the same threshold",
    )
    # Every worker process of the server is a replica with its own clock: a request
    # to one that does not route the experiment yet is answered by the default variant,
    # whose predictions take no feedback.
    routing = registry.wait_for_routing(started, 120)
    narrator.expect(
        bool(routing.routed_by) and not routing.waiting,
        "every serving replica routes the experiment within two minutes",
        f"routed by {routing.routed_by or 'none'}, not yet by {routing.waiting or 'none'}",
    )
    results = send(narrator, replica, traffic)
    by_variant = Counter((a.variant, a.version) for a, _ in results)
    recorded = Counter(result for _, result in results)
    narrator.say(
        "answered: "
        + ", ".join(
            f"{n} by {variant} v{version}" for (variant, version), n in sorted(by_variant.items())
        )
        + f"; feedback: {', '.join(f'{n} {r}' for r, n in recorded.items())}"
    )
    narrator.expect(
        recorded == Counter({"recorded": USERS}),
        "every user's feedback is recorded",
        str(dict(recorded)),
    )
    narrator.command(f"modelreg ab status {MODEL}")
    report = _counted(registry, USERS)
    print_report(narrator, report)
    narrator.expect(
        report.get("decision") == "treatment_wins" and report.get("winner") == "treatment",
        "the verdict is that the treatment wins, significantly",
        f"{report.get('decision')}: {report.get('reason')}",
    )
    shares = {v["variant"]: v.get("requests") or 0 for v in report["variants"]}
    narrator.found(
        "10/90 A/B test",
        f"{USERS} users: {shares.get('control')} control v{control}, "
        f"{shares.get('treatment')} treatment v{treatment}; treatment_wins",
    )
    narrator.found("metrics dashboard per variant", f"{api_url}/ui/models/{MODEL}/experiment")


def conclude(narrator: Narrator, registry: Registry, treatment: int) -> tuple[float, bool]:
    """Conclude with promotion through the policy (and its approval, if it wants one).

    Returns ``time.monotonic()`` taken just before the call that promoted,
    and whether that call was an approval.
    """
    narrator.begin(
        "Conclude: the winner goes to Production through the policy",
        f"modelreg ab conclude {MODEL} --promote --reason 'treatment wins'",
    )
    promoting = time.monotonic()
    registry.ab_conclude(MODEL, promote=True, reason="treatment wins on accuracy")
    approved = production(registry) != treatment
    if approved:
        narrator.say(
            f"the policy wants one approval: a request for v{treatment} is open, "
            "carrying the experiment's verdict"
        )
        narrator.command(f"modelreg --actor {REVIEWER} approve {MODEL} {treatment}")
        promoting = time.monotonic()
        registry.approve(MODEL, treatment, comment="the A/B test's winner", actor=REVIEWER)
    held = production(registry)
    narrator.expect(
        held == treatment, f"the winner, v{treatment}, holds Production", f"Production is v{held}"
    )
    how = f"approved by {REVIEWER}" if approved else "the policy needs no approval"
    narrator.say(f"v{treatment} is in Production, {how}")
    return promoting, approved
