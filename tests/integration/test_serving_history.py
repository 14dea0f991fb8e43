"""Serving history on real ledgers (SQLite and PostgreSQL): counts samples, replica reports.

The ledger stores (:class:`ExperimentStore` samples, :class:`ReplicaStore`) run on a
fresh migrated ledger each, so their prunes touch nothing of other tests; the
facade's reads and ``ab_timeline`` run through a Registry on real MLflow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from registry_helpers import write_policy

from modelreg.domain import ReloadEvent, ReloadOutcome, ReplicaReport, ServedSlot, Stage
from modelreg.errors import (
    InvalidInputError,
    ModelNotFoundError,
    NotFoundError,
    PolicyError,
)
from modelreg.experiments.definition import (
    LATENCY_BOUNDS_S,
    CountsSample,
    Feedback,
    PredictionRecord,
    VariantCounts,
    epoch_minute,
)
from modelreg.ledger import Ledger, store
from modelreg.ledger.experiments import THIN_AFTER, THIN_MINUTES, ExperimentStore, LoggedOutcome
from modelreg.ledger.replicas import MESSAGE_CHARS, ReplicaStore
from modelreg.ledger.tables import CountsSampleRow
from modelreg.registry import Registry
from modelreg.registry.experiments import OutcomeCache
from modelreg.registry.reads import MAX_PAGE

pytestmark = pytest.mark.integration

BUCKETS = len(LATENCY_BOUNDS_S)
NOW = datetime(2026, 11, 3, 12, 7, 20, tzinfo=UTC)  # its day-old minute is mid-window
NEW_TABLES = {"experiment_count_samples", "replica_slots", "replica_events"}


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database on SQLite and on PostgreSQL (not migrated)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    make: Callable[[], str] = request.getfixturevalue("pg_database")
    return make()


@pytest.fixture
def ledger(ledger_uri: str) -> Iterator[Ledger]:
    """A fresh, migrated ledger."""
    result = Ledger(ledger_uri)
    result.migrate()
    yield result
    result.dispose()


def _counts(experiment: str, variant: str, requests: int, errors: int = 0) -> VariantCounts:
    latency = (requests, *([0] * (BUCKETS - 1)))
    return VariantCounts(experiment, variant, 1, requests, errors, 0, latency, 0, 0.0, 0.0)


def _same_minute_for(seconds: float) -> None:
    """Wait, if need be, until the next ``seconds`` stay within one wall-clock minute."""
    left = 60 - time.time() % 60
    if left < seconds:
        time.sleep(left + 0.05)


# --- counts samples -----------------------------------------------------------------------


def test_each_flush_is_its_minutes_sample_and_the_last_one_of_a_minute_wins(
    ledger: Ledger,
) -> None:
    experiments = ExperimentStore(ledger)
    _same_minute_for(5)
    minute = epoch_minute(datetime.now(UTC))
    experiments.put_counts("host/a", [_counts("exp-1", "control", 5), _counts("exp-1", "t", 1)])
    experiments.put_counts("host/a", [_counts("exp-1", "control", 9, 2), _counts("exp-1", "t", 3)])
    experiments.put_counts("host/b", [_counts("exp-1", "control", 4)])
    experiments.put_counts("host/a", [_counts("exp-2", "control", 7)])
    assert sorted(experiments.samples("exp-1"), key=lambda s: (s.replica, s.variant)) == [
        CountsSample("host/a", "control", minute, 9, 2, (9, *[0] * (BUCKETS - 1))),
        CountsSample("host/a", "t", minute, 3, 0, (3, *[0] * (BUCKETS - 1))),
        CountsSample("host/b", "control", minute, 4, 0, (4, *[0] * (BUCKETS - 1))),
    ]
    assert [s.requests for s in experiments.samples("exp-2")] == [7]
    assert experiments.samples("exp-none") == []


def _put_samples(ledger: Ledger, samples: list[tuple[str, str, str, int]]) -> None:
    """Samples (experiment, replica, variant, minute) whose requests are their minute."""
    with ledger.session(write=True) as session:
        session.add_all(
            CountsSampleRow(
                experiment_id=experiment,
                replica=replica,
                variant=variant,
                minute=minute,
                version=1,
                requests=minute,
                errors=0,
                latency=[minute, *[0] * (BUCKETS - 1)],
            )
            for experiment, replica, variant, minute in samples
        )


def _kept(experiments: ExperimentStore, experiment: str) -> set[tuple[str, str, int]]:
    return {(s.replica, s.variant, s.minute) for s in experiments.samples(experiment)}


def test_prune_keeps_the_last_sample_of_each_window_of_old_minutes_only(ledger: Ledger) -> None:
    experiments = ExperimentStore(ledger)
    cutoff = epoch_minute(NOW - THIN_AFTER)
    base = (cutoff // THIN_MINUTES - 10) * THIN_MINUTES  # a window start, well before the cutoff
    edge = (cutoff // THIN_MINUTES) * THIN_MINUTES  # the window that holds the cutoff
    assert edge < cutoff, "the test wants the cutoff inside its window"
    old = {
        ("host/a", "c", base),
        ("host/a", "c", base + 5),
        ("host/a", "c", base + 14),  # last of window 1
        ("host/a", "c", base + 15),
        ("host/a", "c", base + 20),  # last of window 2
        ("host/a", "c", base + 31),  # alone in window 3
        ("host/b", "c", base + 3),  # another replica: its own last
        ("host/a", "t", base + 1),
        ("host/a", "t", base + 2),  # another variant: its own last
        ("host/a", "c", cutoff - 1),  # old, but a recent sample of its window supersedes it
    }
    recent = {("host/a", "c", cutoff), ("host/a", "c", cutoff + 1), ("host/a", "c", cutoff + 30)}
    _put_samples(ledger, [("exp-1", *s) for s in old | recent])
    _put_samples(ledger, [("exp-2", "host/a", "c", base), ("exp-2", "host/a", "c", base + 1)])
    before = {(s.replica, s.variant, s.minute): s for s in experiments.samples("exp-1")}

    assert experiments.prune(retention=timedelta(days=7), max_rows=1000, now=NOW) == 0
    expected = {
        ("host/a", "c", base + 14),
        ("host/a", "c", base + 20),
        ("host/a", "c", base + 31),
        ("host/b", "c", base + 3),
        ("host/a", "t", base + 2),
        *recent,
    }
    assert _kept(experiments, "exp-1") == expected
    assert _kept(experiments, "exp-2") == {("host/a", "c", base + 1)}
    # Cumulative samples: what is kept is exact, and each replica's last sample (its total) stays.
    assert all(before[(s.replica, s.variant, s.minute)] == s for s in experiments.samples("exp-1"))
    experiments.prune(retention=timedelta(days=7), max_rows=1000, now=NOW)
    assert _kept(experiments, "exp-1") == expected  # thinning again changes nothing


def test_a_variant_counted_under_two_versions_in_one_flush_is_added_up(ledger: Ledger) -> None:
    # Control follows the production alias: moved mid-experiment, a replica has counted
    # control under the old and the new version, and flushes both at once.
    experiments = ExperimentStore(ledger)
    old = VariantCounts("exp-1", "control", 1, 10, 1, 0, (10, *[0] * (BUCKETS - 1)), 2, 1.0, 1.0)
    new = VariantCounts("exp-1", "control", 2, 5, 0, 1, (0, 5, *[0] * (BUCKETS - 2)), 1, 2.0, 4.0)
    experiments.put_counts("host/a", [old, new, _counts("exp-1", "t", 3)])
    totals = {t.variant: t for t in experiments.totals("exp-1")}
    control = totals["control"]
    assert (control.version, control.requests, control.errors, control.missing_key) == (2, 15, 1, 1)
    assert control.latency[:2] == (10, 5)
    assert (control.predictions, control.prediction_sum, control.prediction_sumsq) == (3, 3.0, 5.0)
    assert totals["t"].requests == 3
    assert sorted((s.variant, s.requests) for s in experiments.samples("exp-1")) == [
        ("control", 15),
        ("t", 3),
    ]


def test_samples_as_of_are_each_series_latest_at_or_before_each_minute(ledger: Ledger) -> None:
    experiments = ExperimentStore(ledger)
    start = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)
    m0 = epoch_minute(start)
    for minute in (0, 2, 3, 7, 9):
        at = start + timedelta(minutes=minute)
        experiments.put_counts("host/a", [_counts("exp-1", "control", 10 * minute)], now=at)
    for minute in (1, 8):
        at = start + timedelta(minutes=minute)
        experiments.put_counts("host/b", [_counts("exp-1", "control", 100 + minute)], now=at)
    experiments.put_counts("host/a", [_counts("exp-1", "t", 5)], now=start)

    found = experiments.samples("exp-1", as_of=[-1, m0 + 2, m0 + 5, m0 + 20])
    assert {(s.replica, s.variant, s.minute - m0) for s in found} == {
        ("host/a", "control", 2),
        ("host/a", "control", 3),
        ("host/a", "control", 9),
        ("host/b", "control", 1),
        ("host/b", "control", 8),
        ("host/a", "t", 0),
    }
    whole = {(s.replica, s.variant, s.minute): s for s in experiments.samples("exp-1")}
    assert all(whole[(s.replica, s.variant, s.minute)] == s for s in found)
    assert experiments.samples("exp-1", as_of=[]) == []
    assert experiments.samples("exp-1", as_of=[m0 - 1]) == []


class _CountingStore(ExperimentStore):
    """A real store that remembers how its outcomes were read."""

    def __init__(self, ledger: Ledger) -> None:
        super().__init__(ledger)
        self.reads: list[str] = []

    def outcomes(
        self, experiment_id: str, *, after: datetime | None = None, until: datetime | None = None
    ) -> list[LoggedOutcome]:
        found = super().outcomes(experiment_id, after=after, until=until)
        self.reads.append(f"{'since' if after else 'all'}:{len(found)}")
        return found


def test_the_outcome_cache_reads_only_new_feedback_and_always_equals_a_full_read(
    ledger: Ledger,
) -> None:
    experiments = _CountingStore(ledger)
    cache = OutcomeCache(experiments, size=1)
    old = datetime.now(UTC) - timedelta(days=3)
    experiments.log_predictions(
        [
            PredictionRecord(f"r{i}", "churn", "exp-1", "control", 1, float(i % 2), old)
            for i in range(10)
        ]
    )

    def feed(*numbers: int) -> None:
        for i in numbers:
            experiments.record_feedback(Feedback(f"r{i}", 1.0, None))

    def full() -> list[tuple[object, ...]]:
        return sorted(
            (o.variant, o.prediction, o.label, o.value, o.at)
            for o in ExperimentStore(ledger).outcomes("exp-1")
        )

    def cached() -> list[tuple[object, ...]]:
        return sorted((o.variant, *o.outcome, o.at) for o in cache.outcomes("exp-1"))

    assert cached() == [] and experiments.reads == ["all:0"]
    feed(0, 1, 2)
    assert cached() == full()
    assert experiments.reads[-1] == "all:3"  # no newest feedback cached yet: all of them
    feed(3, 4)
    experiments.reads.clear()
    assert len(cached()) == 5
    assert experiments.reads == ["since:2"]  # only what came since
    experiments.reads.clear()
    assert len(cached()) == 5 and experiments.reads == []  # nothing new: nothing read
    assert cached() == full()

    # Pruning expires fed-back predictions: the count no longer adds up, all is read again.
    assert experiments.prune(retention=timedelta(days=1), max_rows=1000) == 10
    experiments.reads.clear()
    assert cached() == [] and experiments.reads == ["all:0"]

    # Another experiment evicts the first (size 1); reading it again reads it whole.
    cache.outcomes("exp-2")
    experiments.reads.clear()
    cache.outcomes("exp-1")
    assert experiments.reads == ["all:0"]


# --- replica reports ----------------------------------------------------------------------


def _slot(model: str, version: int | None, reasons: tuple[str, ...] = ()) -> ServedSlot:
    return ServedSlot(
        model=model,
        variant="default",
        alias="production",
        version=version,
        semver=f"1.{version}.0" if version else None,
        digest=f"sha256:{version}" if version else None,
        since=NOW - timedelta(minutes=version) if version else None,
        reasons=reasons,
    )


def _reload(
    model: str, version: int, at: datetime, outcome: ReloadOutcome = ReloadOutcome.LOADED
) -> ReloadEvent:
    reason = "integrity" if outcome is ReloadOutcome.REFUSED else ""
    return ReloadEvent(model, "default", version, outcome, reason, f"v{version}", at)


def test_a_report_replaces_the_replicas_slots_and_appends_its_reloads(ledger: Ledger) -> None:
    replicas = ReplicaStore(ledger)
    first = ReplicaReport(
        "host/a",
        (_slot("churn", 1), _slot("fraud", None, reasons=("no version loaded",))),
        (_reload("churn", 1, NOW - timedelta(seconds=5)),),
    )
    replicas.put(first, now=NOW - timedelta(seconds=4))
    replicas.put(ReplicaReport("host/b", (_slot("churn", 1),)), now=NOW)
    refused = _reload("churn", 3, NOW - timedelta(seconds=1), ReloadOutcome.REFUSED)
    long = ReloadEvent("churn", "default", 2, ReloadOutcome.LOADED, "", "x" * 5000, NOW)
    replicas.put(ReplicaReport("host/a", (_slot("churn", 2),), (refused, long)), now=NOW)

    slots = replicas.slots()
    assert [(s.model, s.replica, s.version) for s in slots] == [
        ("churn", "host/a", 2),
        ("churn", "host/b", 1),
    ]  # host/a's fraud slot is gone with its new report
    a = slots[0]
    assert (a.semver, a.digest, a.since, a.alias, a.reported_at) == (
        "1.2.0",
        "sha256:2",
        NOW - timedelta(minutes=2),
        "production",
        NOW,
    )
    assert replicas.slots("fraud") == []

    page, total = replicas.reloads(None, limit=2, offset=0)
    assert total == 3
    assert [(r.version, r.outcome, r.replica) for r in page] == [
        (2, ReloadOutcome.LOADED, "host/a"),
        (3, ReloadOutcome.REFUSED, "host/a"),
    ]  # newest first
    assert len(page[0].message) <= MESSAGE_CHARS
    assert (page[1].reason, page[1].at) == ("integrity", NOW - timedelta(seconds=1))
    rest, total = replicas.reloads("churn", limit=2, offset=2)
    assert ([r.version for r in rest], total) == ([1], 3)
    assert replicas.reloads("fraud", limit=10, offset=0) == ([], 0)


def test_prune_forgets_silent_replicas_and_old_reloads(ledger: Ledger) -> None:
    replicas = ReplicaStore(ledger)
    old = NOW - timedelta(days=3)
    replicas.put(
        ReplicaReport("host/gone", (_slot("churn", 1),), (_reload("churn", 1, old),)), now=old
    )
    replicas.put(
        ReplicaReport("host/alive", (_slot("churn", 2),), (_reload("churn", 2, NOW),)), now=NOW
    )
    replicas.prune(silent=timedelta(days=1), history=timedelta(days=2), now=NOW)
    assert [s.replica for s in replicas.slots()] == ["host/alive"]
    page, total = replicas.reloads(None, limit=10, offset=0)
    assert ([r.replica for r in page], total) == (["host/alive"], 1)


# --- migration ----------------------------------------------------------------------------


def _migrator(ledger: Ledger) -> Callable[..., None]:
    """``to(revision, down=False)``: upgrade or downgrade ``ledger`` with Alembic, one step."""
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))

    def to(revision: str, *, down: bool = False) -> None:
        with ledger.engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(config, revision)

    return to


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_migration_0006_adds_and_removes_the_serving_history_tables(ledger_uri: str) -> None:
    ledger = Ledger(ledger_uri)  # not migrated: Alembic drives it step by step
    to = _migrator(ledger)
    to("0005")
    assert not NEW_TABLES & _tables(ledger.engine)
    to("0006")
    assert _tables(ledger.engine) >= NEW_TABLES
    to("0005", down=True)
    assert not NEW_TABLES & _tables(ledger.engine)
    ledger.dispose()
    upgraded = Ledger(ledger_uri)
    upgraded.migrate()
    ReplicaStore(upgraded).put(ReplicaReport("host/a", (_slot("churn", 1),)))
    assert [s.version for s in ReplicaStore(upgraded).slots()] == [1]
    upgraded.dispose()


def _columns(engine: sa.Engine, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(engine).get_columns(table)}


def test_migration_0007_records_the_experiment_revision_each_replica_routes_by(
    ledger_uri: str,
) -> None:
    ledger = Ledger(ledger_uri)  # not migrated: Alembic drives it step by step
    to = _migrator(ledger)
    routes = {"experiment", "experiment_revision"}
    to("0006")
    assert not routes & _columns(ledger.engine, "replica_slots")
    to("0007")
    assert _columns(ledger.engine, "replica_slots") >= routes
    to("0006", down=True)
    assert not routes & _columns(ledger.engine, "replica_slots")
    ledger.dispose()
    upgraded = Ledger(ledger_uri)
    upgraded.migrate()
    routed = replace(_slot("churn", 1), experiment="exp-1", experiment_revision=3)
    ReplicaStore(upgraded).put(ReplicaReport("host/a", (routed, _slot("other", 2))))
    read = {s.model: (s.experiment, s.experiment_revision) for s in ReplicaStore(upgraded).slots()}
    assert read == {"churn": ("exp-1", 3), "other": (None, None)}
    upgraded.dispose()


# --- through the facade -------------------------------------------------------------------


def test_the_facade_reads_reports_with_the_read_permission_and_checks_paging(
    registry: Registry,
) -> None:
    model = f"served-{uuid4().hex[:8]}"
    replica = f"host/{uuid4()}"
    at = datetime.now(UTC)
    registry.record_replica(
        ReplicaReport(
            replica,
            (_slot(model, 1),),
            tuple(_reload(model, 1, at + timedelta(seconds=i)) for i in range(3)),
        )
    )
    write_policy(registry)  # victor is a viewer, the lowest role; unidentified callers too
    for actor in ("victor", "anonymous", None):
        [slot] = registry.replicas(model, actor=actor)
        assert (slot.replica, slot.version, slot.semver) == (replica, 1, "1.1.0")
        page = registry.reloads(model, limit=2, offset=1, actor=actor)
        assert (page.total, page.offset, page.limit, len(page.reloads)) == (3, 1, 2, 2)
    assert registry.replicas(f"no-{model}") == []
    # Fresh reports are not silent; one that is two minutes old is, and says for how long.
    assert registry.replicas(model)[0].silent_seconds is None
    quiet = f"host/{uuid4()}"
    registry.serving.store.put(
        ReplicaReport(quiet, (_slot(model, 2),)), now=datetime.now(UTC) - timedelta(minutes=2)
    )
    silent = {s.replica: s.silent_seconds for s in registry.replicas(model)}
    assert silent[replica] is None
    assert silent[quiet] is not None and 120 <= silent[quiet] < 180
    for limit, offset in ((0, 0), (MAX_PAGE + 1, 0), (10, -1)):
        with pytest.raises(InvalidInputError, match="page"):
            registry.reloads(model, limit=limit, offset=offset)
    with pytest.raises(InvalidInputError):
        registry.replicas("bad name\n")
    with pytest.raises(InvalidInputError):
        registry.reloads("bad name\n")

    # The read goes through the policy: one that does not parse refuses it.
    registry.settings.resolved_policy_file().write_text("[access\n", encoding="utf-8")
    with pytest.raises(PolicyError):
        registry.replicas(model, actor="victor")
    with pytest.raises(PolicyError):
        registry.reloads(model, actor="victor")


def test_ab_timeline_charts_a_real_experiment(
    registry: Registry, quick_versions: Callable[[str, int], list[int]], model_name: str
) -> None:
    with pytest.raises(ModelNotFoundError):
        registry.ab_timeline(f"no-such-{model_name}")
    control, treatment = quick_versions(model_name, 2)
    registry.promote(model_name, control, Stage.PRODUCTION)
    with pytest.raises(NotFoundError, match="no experiment"):
        registry.ab_timeline(model_name)
    view = registry.ab_start(model_name, [treatment], traffic=0.5, metrics=["accuracy", "value"])
    experiment = str(view.id)
    for points in (0, -1, 501):
        with pytest.raises(InvalidInputError, match="points"):
            registry.ab_timeline(model_name, points=points)

    _same_minute_for(10)  # the counts below are one minute's samples
    registry.record_variant_counts(
        "host/a", [_counts(experiment, "control", 30, 3), _counts(experiment, "treatment", 10)]
    )
    registry.record_variant_counts("host/b", [_counts(experiment, "control", 6)])
    now = datetime.now(UTC)
    registry.log_predictions(
        [
            PredictionRecord(
                f"{experiment}-{i}", model_name, experiment, variant, version, 1.0, now
            )
            for i, (variant, version) in enumerate(
                [("control", control)] * 3 + [("treatment", treatment)] * 2
            )
        ]
    )
    for i, (label, value) in enumerate([(1, 0.1), (0, 0.2), (1, 0.3), (1, 5.0), (1, None)]):
        registry.record_feedback(Feedback(f"{experiment}-{i}", label=label, value=value))

    timeline = registry.ab_timeline(model_name, points=10)
    assert 1 <= len(timeline.ends) <= 10
    assert timeline.ends[-1] >= now
    by_variant = {s.variant: s for s in timeline.variants}
    assert list(by_variant) == ["control", "treatment"]
    totals = {
        name: sum(round(r * timeline.minutes) for r in s.requests_per_minute)
        for name, s in by_variant.items()
    }
    assert totals == {"control": 36, "treatment": 10}
    rates = [r for r in by_variant["control"].error_rate if r is not None]
    assert rates == [pytest.approx(3 / 36)]
    report = registry.ab_status(model_name).report
    assert report is not None
    for variant in report["variants"]:
        series = by_variant[variant["variant"]]
        assert series.metrics.keys() == {"accuracy", "value"}
        for metric, found in variant["metrics"].items():
            assert series.metrics[metric][-1] == pytest.approx(found["value"]), metric
    assert by_variant["control"].metrics["accuracy"][-1] == pytest.approx(2 / 3)
    assert timeline.to_json()["variants"][1]["metrics"]["value"][-1] == 5.0


def test_the_workers_round_forgets_silent_replicas_and_old_reloads(registry: Registry) -> None:
    model = f"served-{uuid4().hex[:8]}"
    now = datetime.now(UTC)
    silent = now - timedelta(days=2)
    ancient = now - timedelta(days=registry.settings.replica_history_days + 1)
    stored = registry.serving.store
    stored.put(
        ReplicaReport("host/silent", (_slot(model, 1),), (_reload(model, 1, ancient),)), now=silent
    )
    stored.put(ReplicaReport("host/alive", (_slot(model, 2),), (_reload(model, 2, silent),)))
    registry.guard_experiments()
    assert [s.replica for s in registry.replicas(model)] == ["host/alive"]
    assert [r.version for r in registry.reloads(model).reloads] == [2]  # within the history
