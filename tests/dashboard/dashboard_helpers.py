"""A browser-like TestClient for the dashboard: logs in through the form, posts with the token."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from fastapi.testclient import TestClient

from modelreg.domain import ReloadEvent, ReloadOutcome, ReplicaReport, ServedSlot, Stage
from modelreg.experiments.definition import (
    LATENCY_BOUNDS_S,
    Feedback,
    PredictionRecord,
    VariantCounts,
)
from modelreg.ledger.tables import ExperimentRow
from modelreg.registry import Registry

_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a dashboard page carries in its forms."""
    found = _TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Browser:
    """A TestClient that logs in through the dashboard's form and remembers the form token."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.token = ""

    def log_in(self, name: str) -> Browser:
        """Log in as ``name`` (the embedded default: no password) and keep the new token."""
        form = self.client.get("/ui/login")
        assert form.status_code == 200, form.text
        done = self.client.post(
            "/ui/login",
            data={"csrf_token": csrf_of(form.text), "username": name, "next": "/ui/approvals"},
            follow_redirects=False,
        )
        assert done.status_code == 303, done.text
        assert done.headers["location"] == "/ui/approvals"
        self.token = csrf_of(self.client.get("/ui/approvals").text)
        return self

    def post(self, path: str, **fields: str) -> httpx.Response:
        """POST a dashboard form with the session's token (unless a csrf_token is given)."""
        data = {"csrf_token": self.token, **fields}
        return self.client.post(path, data=data, follow_redirects=False)


def seed_requested_experiment(
    registry: Registry, register_auc: Callable[..., int], name: str, *, requests: int
) -> tuple[int, int, str]:
    """v1 in Production, v2 in a running 10% experiment with ``requests`` counted and an open
    promotion request: something for every page to show.

    Returns (control, treatment, experiment id).
    """
    control = register_auc(0.9)
    treatment = register_auc(0.91, seed=1)
    registry.promote(name, control, Stage.PRODUCTION, reason="baseline", actor="ann")
    started = registry.ab_start(name, [treatment], traffic=0.1, actor="connie")
    treated = requests // 10
    counts = [
        VariantCounts(
            started.id, "control", control, requests - treated, 1, 0, (requests - treated,), 0, 0, 0
        ),
        VariantCounts(started.id, "treatment", treatment, treated, 0, 0, (treated,), 0, 0, 0),
    ]
    registry.record_variant_counts("replica-a", counts)
    now = datetime.now(UTC)
    loaded = now - timedelta(minutes=5)
    served = ServedSlot(name, "default", "production", control, "1.0.0", "sha256:c", loaded)
    report = ReplicaReport(
        "replica-a",
        (
            served,
            ServedSlot(name, "control", "production", control, "1.0.0", "sha256:c", loaded),
            ServedSlot(name, "treatment", None, treatment, "1.1.0", "sha256:t", now),
        ),
        (
            ReloadEvent(
                name, "default", control, ReloadOutcome.LOADED, "", "serving 1.0.0", loaded
            ),
            ReloadEvent(
                name,
                "treatment",
                treatment,
                ReloadOutcome.REFUSED,
                "integrity",
                "artifact digest mismatch",
                now - timedelta(minutes=1),
            ),
            ReloadEvent(
                name, "treatment", treatment, ReloadOutcome.LOADED, "", "serving 1.1.0", now
            ),
        ),
    )
    registry.record_replica(report)
    registry.request(name, treatment, comment="beats v1 offline", actor="connie")
    return control, treatment, started.id


def backfill_history(
    registry: Registry, experiment_id: str, control: int, treatment: int, *, minutes: int = 30
) -> None:
    """Give a just-started experiment ``minutes`` of history, as if it had run that long.

    Moves its start back, writes one counts sample a minute (treatment a bit
    slower, control erring now and then) and logs predictions with feedback
    over the span (treatment right 85% of the time, control 60%), so the
    Experiment page's charts have lines to draw. Test seeding only: it
    writes the ledger's experiment row directly.
    """
    store = registry.ab.store
    record = store.get(experiment_id)
    assert record is not None
    now = datetime.now(UTC)
    start = now - timedelta(minutes=minutes)
    with registry.ledger.session(write=True) as session:
        row = session.get(ExperimentRow, experiment_id)
        assert row is not None
        row.started_at = start
    width = len(LATENCY_BOUNDS_S)
    records, feedback = [], []
    for minute in range(minutes + 1):
        at = start + timedelta(minutes=minute)
        treated, total = 12 * minute, 120 * minute
        fast, slow = [0] * width, [0] * width
        fast[3], slow[5] = total - treated, treated
        counts = [
            VariantCounts(
                experiment_id,
                "control",
                control,
                total - treated,
                minute // 3,
                0,
                tuple(fast),
                0,
                0,
                0,
            ),
            VariantCounts(
                experiment_id, "treatment", treatment, treated, 0, 0, tuple(slow), 0, 0, 0
            ),
        ]
        store.put_counts("replica-a", counts, now=at)
        for i in range(10):
            variant, version = ("treatment", treatment) if i % 2 else ("control", control)
            request_id = f"history-{minute}-{i}"
            records.append(
                PredictionRecord(
                    request_id,
                    record.model,
                    experiment_id,
                    variant,
                    version,
                    1.0,
                    at,
                )
            )
            right = (minute * 10 + i) % 20 < (17 if variant == "treatment" else 12)
            feedback.append(Feedback(request_id, 1.0 if right else 0.0, None))
    registry.log_predictions(records)
    for given in feedback:
        registry.record_feedback(given)
