"""Registry operation latency: the modelreg facade against the raw MlflowClient calls.

Run from the repository root::

    .venv/bin/python bench/registry.py                       # 1k, 10k and 100k versions
    .venv/bin/python bench/registry.py --sizes 200,2000 --repeat 5 --no-write-docs  # quick check
    .venv/bin/python bench/registry.py --sizes 100000 --seed-only   # time seeding alone

For every size N the script starts its own MLflow server (SQLite backend and a
local artifact directory in a temporary directory, unless ``--backend-store-uri``
names another store such as PostgreSQL) and a ledger (a SQLite file next to it,
unless ``--ledger-uri``), seeds one registered model with N versions, and then
times promote, show, search and history through ``modelreg.Registry`` and
through the plain ``MlflowClient`` calls a team would make without modelreg.
Both sides run interleaved in the same process against the same server:
warm-ups first (up to three), then ``--repeat`` timed runs, fewer once an
operation has used ``--budget-seconds`` (so slow operations at 100,000 versions,
history above all, stop after a few runs). Every timed call is probed: REST
requests to MLflow (``requests`` for MlflowClient, ``httpx`` for modelreg's own
REST client) and ledger rows read are counted per call. It prints p50/p95
latencies, the modelreg/raw ratio of the p50s, the ledger rows per call, and a
PASS/MISS line per target of issue 9 and per size: promote within 1.5x of the
raw calls, search by stage within 2x of the alias lookup, ledger rows per
promote, show and search by stage constant across sizes, and history complete
(every event that seeding and the measured promotions appended). With
``--write-docs`` (the default) it replaces the "Registry operations" section of
``docs/benchmarks.md``.

Seeding is set-up, not a result, and is built to take minutes at 100,000
versions: one small sklearn model is logged once; version 1 is registered
through MLflow's REST API and adopted by ``Registry.sync`` (download, manifest,
ledger record, adopt event, MLflow tags); versions 2..N are inserted in one
transaction through MLflow's own SQL store (its SQLAlchemy models, opened
in-process on the server's backend database), cloned from version 1's row and
tags (so source, run id, storage location, status READY, ``modelreg.*`` tags are
the ones the API and sync wrote) with their own ``team``, semver and creation
times, and the logged model's ``mlflow.modelVersions`` tag lists them all, as
the server would have left it; the ledger gets version 1's record and adopt
event cloned for every version through its public transaction API
(``Ledger.locked`` → ``add_version`` + ``append``, in batches), so everything
the ledger derives on append stays consistent. A few versions are then moved
through Staging and Production through the facade so that history has
transitions. A seeded version is compared with version 1 over REST before
anything is measured.

Use empty databases with ``--backend-store-uri`` / ``--ledger-uri``: search
reads every model in the registry, so leftovers from earlier runs skew it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import types
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import requests
from mlflow import MlflowClient
from mlflow.store.model_registry.dbmodels.models import (
    SqlModelVersion,
    SqlModelVersionTag,
    SqlRegisteredModel,
)
from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore
from mlflow.store.tracking.dbmodels.models import SqlLoggedModelTag
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS
from sklearn.linear_model import LogisticRegression
from sqlalchemy import func, insert, select, update

import modelreg.ledger
from modelreg.domain import Action, Stage
from modelreg.ledger import NewEvent, VersionRecord, store
from modelreg.registry import SEMVER_TAG, STAGE_TAG, Registry
from modelreg.stack import MLFLOW_SERVER_ENV, ServiceProcess, free_port, mlflow_server_argv

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Registry operations"
WARMUPS = 3
PAGE = 1000
LEDGER_BATCH = 2000  # versions per ledger transaction while seeding
INSERT_CHUNK = 5000  # MLflow rows per executemany while seeding (one transaction)
RISK_VERSIONS = 10  # versions tagged team=risk; the rest are team=growth
MIN_REPEATS = 3  # timed runs an operation gets before its budget may stop it
# The targets of issue 9 ("Done when").
PROMOTE_TARGET = 1.5  # modelreg promote p50 / raw promote p50
SEARCH_STAGE_TARGET = 2.0  # modelreg search by stage p50 / alias lookup p50
ROW_SLACK = (1.1, 2)  # rows at a size <= 1.1 x rows at the smallest size + 2 counts as constant
PROMOTE_LABELS = ("promote to Staging", "promote to Production")
SHOW_LABEL = "show"
STAGE_LABEL = "search `stage = 'Production'`"
HISTORY_LABEL = "history"
CONSTANT_ROWS = (*PROMOTE_LABELS, SHOW_LABEL, STAGE_LABEL)


# -- measuring -------------------------------------------------------------------


@dataclass
class Samples:
    """Latencies of one side of one operation, in seconds."""

    values: list[float] = field(default_factory=list)

    def p50(self) -> float:
        """Median in milliseconds."""
        return statistics.median(self.values) * 1000

    def p95(self) -> float:
        """95th percentile in milliseconds (inclusive method; the maximum for tiny samples)."""
        if len(self.values) < 2:
            return self.values[0] * 1000
        return statistics.quantiles(self.values, n=100, method="inclusive")[94] * 1000


@dataclass
class Cost:
    """Where calls spend their time: REST requests to MLflow and ledger reads (summed)."""

    calls: int = 0
    rest_calls: int = 0
    rest_ms: float = 0
    endpoints: Counter[str] = field(default_factory=Counter)
    endpoint_ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    ledger_reads: int = 0
    ledger_rows: int = 0
    ledger_ms: float = 0
    total_ms: float = 0

    def per_call(self, value: float) -> float:
        """``value`` averaged over the probed calls."""
        return value / max(self.calls, 1)

    def request_ms(self, endpoint: str) -> float:
        """Average milliseconds of one request to ``endpoint``."""
        return self.endpoint_ms[endpoint] / max(self.endpoints[endpoint], 1)

    def endpoint_text(self) -> str:
        """Requests per call by endpoint with their average time, most frequent first."""
        return (
            ", ".join(
                f"{self.per_call(n):g}x {endpoint} ({ms(self.request_ms(endpoint))} ms)"
                for endpoint, n in self.endpoints.most_common()
            )
            or "no REST requests"
        )


def ledger_rows(result: Any) -> int:
    """Rows a ledger read returned: one per element, per version of a model state, or one.

    ``None`` is 0 rows; a list, tuple or set counts its elements; a state with a
    ``versions`` mapping (``lifecycle.ModelState``) one row per version; a
    mapping the rows of its values (``{model: ModelState}``); anything else 1.
    """
    if result is None:
        return 0
    versions = getattr(result, "versions", None)
    if isinstance(versions, Mapping):
        return len(versions)
    if isinstance(result, Mapping):
        return sum(ledger_rows(value) for value in result.values())
    if isinstance(result, list | tuple | set | frozenset):
        return len(result)
    return 1


# Ledger methods that read rows without going through a select function.
LEDGER_METHODS = ("version_record", "version_by_semver", "known_versions", "highest_record")


def _ledger_reads() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, function) of every ledger read the probe counts.

    Every function named ``select*`` or ``_select*`` defined in a
    ``modelreg.ledger`` module (the row reads: events, records, the state
    projection), wherever a loaded modelreg module binds it (a ``from ...
    import`` copies the name), and the LEDGER_METHODS of ``Ledger`` and
    ``LedgerTransaction`` that exist.
    """
    package = modelreg.ledger.__name__
    loaded = [
        (name, module)
        for name, module in list(sys.modules.items())
        if isinstance(module, types.ModuleType)
        and (name == "modelreg" or name.startswith("modelreg."))
    ]
    selects = {
        id(value): value
        for name, module in loaded
        if name == package or name.startswith(f"{package}.")
        for attr, value in vars(module).items()
        if attr.lstrip("_").startswith("select")
        and isinstance(value, types.FunctionType)
        and value.__module__.startswith(package)
    }
    found: list[tuple[Any, str, Any]] = [
        (module, attr, value)
        for _name, module in loaded
        for attr, value in list(vars(module).items())
        if selects.get(id(value)) is value
    ]
    for owner in (store.Ledger, store.LedgerTransaction):
        found += [(owner, m, vars(owner)[m]) for m in LEDGER_METHODS if m in vars(owner)]
    return found


def _counted_read(original: Any, cost: Cost, lock: Any, depth: threading.local) -> Any:
    """``original`` wrapped to add its rows to ``cost``, unless called inside another read."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        level = getattr(depth, "level", 0)
        depth.level = level + 1
        start = time.perf_counter()
        try:
            result = original(*args, **kwargs)
        finally:
            depth.level = level
        if level == 0:
            with lock:
                cost.ledger_reads += 1
                cost.ledger_rows += ledger_rows(result)
                cost.ledger_ms += (time.perf_counter() - start) * 1000
        return result

    return counted


@contextlib.contextmanager
def probe(cost: Cost) -> Iterator[None]:
    """Add the REST requests and ledger reads made inside the block to ``cost``.

    Wraps ``requests.Session.request`` (every MlflowClient call goes through
    it), ``httpx.Client.send`` (modelreg's own REST client) and the ledger's
    row reads (:func:`_ledger_reads`), and restores them on exit. A ledger read
    made inside another counted read (``version_record`` runs
    ``_select_record``) is counted once, by the outer one. The wrappers add
    microseconds per request or read.
    """
    originals: list[tuple[Any, str, Any]] = []
    lock = threading.Lock()
    depth = threading.local()

    def wrap(owner: Any, attr: str, on_done: Callable[[Any, Any, float], None]) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = original(*args, **kwargs)
            on_done(args, kwargs, time.perf_counter() - start)
            return result

        originals.append((owner, attr, original))
        setattr(owner, attr, timed)

    def count_request(method: str, url: str, seconds: float) -> None:
        endpoint = f"{method.upper()} {url.split('?', 1)[0].split('/mlflow/', 1)[-1]}"
        with lock:
            cost.rest_calls += 1
            cost.rest_ms += seconds * 1000
            cost.endpoints[endpoint] += 1
            cost.endpoint_ms[endpoint] += seconds * 1000

    def via_requests(args: Any, kwargs: Any, seconds: float) -> None:
        # Session.request(self, method, url, ...); requests.get passes them by keyword.
        method = args[1] if len(args) > 1 else kwargs["method"]
        url = args[2] if len(args) > 2 else kwargs["url"]
        count_request(str(method), str(url), seconds)

    def via_httpx(args: Any, kwargs: Any, seconds: float) -> None:
        request = args[1] if len(args) > 1 else kwargs["request"]
        count_request(str(request.method), str(request.url), seconds)

    wrap(requests.Session, "request", via_requests)
    wrap(httpx.Client, "send", via_httpx)
    for owner, attr, original in _ledger_reads():
        originals.append((owner, attr, original))
        setattr(owner, attr, _counted_read(original, cost, lock, depth))
    start = time.perf_counter()
    try:
        yield
    finally:
        cost.calls += 1
        cost.total_ms += (time.perf_counter() - start) * 1000
        for owner, attr, original in reversed(originals):
            setattr(owner, attr, original)


@dataclass(frozen=True)
class Operation:
    """One measured operation: the modelreg call and its raw MlflowClient equivalent.

    Both take the iteration number, so operations that change state (promote)
    can use a fresh version each time.
    """

    label: str
    modelreg: Callable[[int], object]
    raw: Callable[[int], object]
    baseline: str


@dataclass
class Result:
    """Measurements of one operation at one registry size."""

    size: int
    operation: Operation
    modelreg: Samples = field(default_factory=Samples)
    raw: Samples = field(default_factory=Samples)
    modelreg_cost: Cost = field(default_factory=Cost)
    raw_cost: Cost = field(default_factory=Cost)
    warmups: int = 0

    @property
    def ratio(self) -> float:
        """modelreg p50 over raw p50."""
        return self.modelreg.p50() / self.raw.p50()

    @property
    def rows(self) -> float:
        """Ledger rows one modelreg call read (average over the timed runs)."""
        return self.modelreg_cost.per_call(self.modelreg_cost.ledger_rows)


def _run(result: Result, i: int, *, timed: bool) -> None:
    """One call of each side, the side that goes first alternating with ``i``."""
    sides = [
        (result.operation.modelreg, result.modelreg, result.modelreg_cost),
        (result.operation.raw, result.raw, result.raw_cost),
    ]
    for fn, samples, cost in sides if i % 2 == 0 else reversed(sides):
        if not timed:
            fn(i)
            continue
        with probe(cost):
            start = time.perf_counter()
            fn(i)
            samples.values.append(time.perf_counter() - start)


def measure(size: int, group: Sequence[Operation], repeat: int, budget: float) -> list[Result]:
    """Time every operation of ``group`` in lock-step, modelreg and raw interleaved.

    Operations in one group share the iteration number (promote to Staging,
    then the same version to Production). Up to WARMUPS warm-ups, fewer once
    they used a quarter of the budget; then up to ``repeat`` probed, timed runs,
    stopping once the group used ``budget`` seconds per operation after at least
    MIN_REPEATS runs, or twice that after at least one. The first iteration is
    probed and timed too: when it alone took longer than the budget (history at
    100,000 versions lists 100 pages on the raw side) it is kept as the first
    run, since a warm-up changes nothing for a call of minutes.
    """
    results = [Result(size, op) for op in group]
    allowed = budget * len(group)
    started = time.monotonic()
    for result in results:
        _run(result, 0, timed=True)
    first = time.monotonic() - started
    warmups = 0
    if first <= allowed:
        for result in results:
            result.modelreg, result.raw = Samples(), Samples()
            result.modelreg_cost, result.raw_cost = Cost(), Cost()
        warmups = 1
        while warmups < WARMUPS and time.monotonic() - started <= allowed / 4:
            for result in results:
                _run(result, warmups, timed=False)
            warmups += 1
    done = 0 if warmups else 1
    runs_started = time.monotonic() - (0 if warmups else first)
    while done < repeat:
        used = time.monotonic() - runs_started
        if (used > allowed and done >= MIN_REPEATS) or (used > 2 * allowed and done >= 1):
            break
        for result in results:
            _run(result, warmups + done, timed=True)
        done += 1
    for result in results:
        result.warmups = warmups
    return results


# -- the services ------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """One size's MLflow server and ledger."""

    tracking_uri: str
    ledger_uri: str
    backend_uri: str  # the server's backend store, which seeding writes in-process


@contextlib.contextmanager
def stack(args: argparse.Namespace, size: int) -> Iterator[Stack]:
    """An MLflow server and a ledger for one size, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"modelreg-bench-{size}-") as tmp:
        home = Path(tmp)
        backend = args.backend_store_uri or f"sqlite:///{home / 'mlflow.db'}"
        ledger = args.ledger_uri or f"sqlite:///{home / 'ledger.db'}"
        port = free_port()
        server = ServiceProcess(
            "mlflow",
            mlflow_server_argv(
                backend_store_uri=backend,
                artifacts_destination=str(home / "artifacts"),
                host="127.0.0.1",
                port=port,
                workers=args.workers,
            ),
            health_url=f"http://127.0.0.1:{port}/health",
            env=MLFLOW_SERVER_ENV,
            log_path=home / "mlflow.log",
            cwd=home,
        )
        server.start()
        try:
            server.wait_ready(timeout=180)
            yield Stack(f"http://127.0.0.1:{port}", ledger, backend)
        finally:
            server.stop()


@contextlib.contextmanager
def services(args: argparse.Namespace, size: int) -> Iterator[tuple[str, str]]:
    """An MLflow server and a ledger for one size; yields (tracking URI, ledger URI)."""
    with stack(args, size) as running:
        yield running.tracking_uri, running.ledger_uri


# -- seeding -------------------------------------------------------------------------


@dataclass
class Seeded:
    """The seeded model, how long each seeding phase took (seconds), what was appended."""

    name: str
    size: int
    run_id: str
    phases: dict[str, float] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # 1-minute load average while measuring
    appended: Counter[str] = field(default_factory=Counter)  # ledger events appended, by model
    promotions: int = 0  # Registry.promote calls made (seeding, warm-ups, timed runs)
    history: HistoryCheck | None = None

    @property
    def total(self) -> float:
        """All seeding phases together."""
        return sum(self.phases.values())


@dataclass(frozen=True)
class HistoryCheck:
    """Whether ``Registry.history`` returned every event appended for the model."""

    events: int  # events history returned
    appended: int  # events LedgerTransaction.append wrote for the model (counted at append)
    adopted: int  # distinct versions with an adopt or register event in history
    versions: int  # versions seeded
    transitions: int  # transition events in history
    promotions: int  # Registry.promote calls made
    ordered: bool  # event ids strictly increasing
    seconds: float

    @property
    def complete(self) -> bool:
        """Every appended event, every version's adoption, every promotion, in order."""
        return (
            self.events == self.appended
            and self.adopted == self.versions
            and self.transitions >= self.promotions
            and self.ordered
        )

    def text(self) -> str:
        """One line: the counts and the verdict."""
        verdict = "PASS" if self.complete else "MISS"
        return (
            f"{self.events:,} of {self.appended:,} appended events; {self.adopted:,} of "
            f"{self.versions:,} versions adopted; {self.transitions:,} transitions for "
            f"{self.promotions:,} promotions; ids {'in order' if self.ordered else 'OUT OF ORDER'}"
            f" ({self.seconds:,.1f} s) **{verdict}**"
        )


@contextlib.contextmanager
def count_appends(counter: Counter[str]) -> Iterator[None]:
    """Count every event ``LedgerTransaction.append`` writes inside the block, by model."""
    original = store.LedgerTransaction.append

    def counted(self: Any, new: Any, *args: Any, **kwargs: Any) -> Any:
        appended = original(self, new, *args, **kwargs)
        counter[appended.model] += 1
        return appended

    store.LedgerTransaction.append = counted  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.LedgerTransaction.append = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _phase(seeded: Seeded, label: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    seeded.phases[label] = time.perf_counter() - start
    print(f"  {label}: {seeded.phases[label]:.1f} s", file=sys.stderr, flush=True)


def _log_model(tracking_uri: str) -> tuple[str, str, str]:
    """Log one small model; return (run id, models:/m-... URI, model id)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    model = LogisticRegression(max_iter=200).fit(features, labels)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("bench-registry")
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 1.0, "max_iter": 200})
        mlflow.log_metric("accuracy", float(model.score(features, labels)))
        info = mlflow.sklearn.log_model(model, name="model", input_example=features[:5])
    return run.info.run_id, str(info.model_uri), str(info.model_id)


def _team(size: int, version: int) -> str:
    """``risk`` for RISK_VERSIONS evenly spread versions (version 1 among them), else growth."""
    return "risk" if (version - 1) % max(size // RISK_VERSIONS, 1) == 0 else "growth"


def _semver(version: int) -> str:
    return f"1.0.{version - 1}"


def seed(registry: Registry, client: MlflowClient, running: Stack, size: int) -> Seeded:
    """Register ``size`` versions of one model in MLflow and in the ledger."""
    name = f"bench-{size}-{uuid.uuid4().hex[:6]}"
    seeded = Seeded(name=name, size=size, run_id="")
    with _phase(seeded, "log one sklearn model"):
        run_id, model_uri, model_id = _log_model(registry.gateway.tracking_uri)
        seeded.run_id = run_id
    with _phase(seeded, "version 1 through MLflow's REST API, adopted by modelreg sync"):
        client.create_registered_model(name)
        client.create_model_version(
            name,
            model_uri,
            run_id=run_id,
            model_id=model_id,
            tags={"team": _team(size, 1), SEMVER_TAG: _semver(1)},
            await_creation_for=0,
        )
        registry.sync(name)
    first = registry.ledger.version_record(name, 1)
    adopted = registry.ledger.events(name)
    if first is None or len(adopted) != 1:
        raise RuntimeError(f"sync did not adopt {name} v1 (record {first}, events {adopted})")
    with _phase(
        seeded,
        f"insert versions 2..{size:,} into MLflow's SQL store in-process (one transaction)",
    ):
        _seed_mlflow(running.backend_uri, name, size, model_id)
    with _phase(
        seeded,
        f"append {size - 1:,} ledger records + adopt events "
        f"(Ledger.locked, batches of {LEDGER_BATCH:,})",
    ):
        _seed_ledger(registry, first, adopted[0], size)
    with _phase(seeded, "compare the last seeded version with version 1 over REST"):
        _check_seeded(client, name, size)
    with _phase(seeded, "promote v1, v2 to Production and v3 to Staging (facade)"):
        for version in (1, 2):
            _promote(registry, seeded, version, Stage.STAGING, reason="bench seed")
            _promote(registry, seeded, version, Stage.PRODUCTION, reason="bench seed")
        _promote(registry, seeded, 3, Stage.STAGING, reason="bench seed")
    return seeded


def _promote(registry: Registry, seeded: Seeded, version: int, stage: Stage, **kw: Any) -> None:
    registry.promote(seeded.name, version, stage, **kw)
    seeded.promotions += 1


def _seed_mlflow(backend_uri: str, name: str, size: int, model_id: str) -> None:
    """Insert versions 2..``size`` of ``name`` into MLflow's backend store, cloned from v1.

    Opens MLflow's own ``SqlAlchemyStore`` on the server's backend database (the
    server is idle meanwhile) and bulk-inserts ``model_versions`` and
    ``model_version_tags`` rows in one transaction: every column of version 1
    (source, storage location, run id and link, user, status READY, stage) and
    its tags (the ``modelreg.*`` tags sync wrote), with the version's own
    number, ``team`` tag, semver tag and creation time (1 ms apart after v1).
    The registered model's last update and the logged model's
    ``mlflow.modelVersions`` tag end as the server would have left them.
    """
    registry_store = SqlAlchemyStore(backend_uri)  # type: ignore[no-untyped-call]
    versions_table = SqlModelVersion.__table__
    tags_table = SqlModelVersionTag.__table__
    try:
        with registry_store.ManagedSessionMaker(read_only=False) as session:
            first = dict(
                session.execute(
                    select(versions_table).where(
                        versions_table.c.name == name, versions_table.c.version == 1
                    )
                )
                .mappings()
                .one()
            )
            tag_rows = [
                dict(row)
                for row in session.execute(
                    select(tags_table).where(tags_table.c.name == name, tags_table.c.version == 1)
                ).mappings()
            ]
            tags = {row["key"]: row["value"] for row in tag_rows}
            # Columns other than the tag itself (workspace), as version 1's tags have them.
            tag_extra = {
                column: value
                for column, value in tag_rows[0].items()
                if column not in {"name", "version", "key", "value"}
            }
            base = int(first["creation_time"])
            for start in range(2, size + 1, INSERT_CHUNK):
                numbers = range(start, min(start + INSERT_CHUNK, size + 1))
                session.execute(
                    insert(versions_table),
                    [
                        first
                        | {
                            "version": v,
                            "creation_time": base + v - 1,
                            "last_updated_time": base + v - 1,
                        }
                        for v in numbers
                    ],
                )
                session.execute(
                    insert(tags_table),
                    [
                        tag_extra | {"name": name, "version": v, "key": key, "value": value}
                        for v in numbers
                        for key, value in (
                            tags
                            | {
                                "team": _team(size, v),
                                SEMVER_TAG: _semver(v),
                                STAGE_TAG: Stage.NONE.value,
                            }
                        ).items()
                    ],
                )
            rm = SqlRegisteredModel.__table__
            session.execute(
                update(rm).where(rm.c.name == name).values(last_updated_time=base + size - 1)
            )
            _list_versions_on_logged_model(session, name, size, model_id)
            count = session.execute(
                select(func.count())
                .select_from(versions_table)
                .where(versions_table.c.name == name)
            ).scalar_one()
        if count != size:
            raise RuntimeError(f"MLflow has {count} versions of {name}, expected {size}")
    finally:
        registry_store.engine.dispose()


def _list_versions_on_logged_model(session: Any, name: str, size: int, model_id: str) -> None:
    """Extend the logged model's ``mlflow.modelVersions`` tag as ``create_model_version`` does."""
    table = SqlLoggedModelTag.__table__
    where = (table.c.model_id == model_id, table.c.tag_key == MLFLOW_MODEL_VERSIONS)
    current = session.execute(select(table.c.tag_value).where(*where)).scalar_one_or_none()
    if current is None:
        return  # this MLflow does not keep the list; nothing to match
    listed = json.loads(current)
    kind = type(listed[0]["version"]) if listed else int
    listed += [{"name": name, "version": kind(v)} for v in range(2, size + 1)]
    session.execute(update(table).where(*where).values(tag_value=json.dumps(listed)))


def _seed_ledger(registry: Registry, first: VersionRecord, adopted: Any, size: int) -> None:
    """Clone version 1's record and adopt event for versions 2..``size``, in batched transactions.

    Through the ledger's public transaction API, so whatever ``append`` keeps
    beside the events (state projection, outbox) is written as for a real adoption.
    """
    event_fields = {f.name: getattr(adopted, f.name) for f in dataclasses.fields(NewEvent)}
    for start in range(2, size + 1, LEDGER_BATCH):
        with registry.ledger.locked(first.model) as txn:
            for number in range(start, min(start + LEDGER_BATCH, size + 1)):
                semver = _like(first.semver, number)
                record = dataclasses.replace(
                    first, version=number, semver=semver, registered_at=datetime.now(UTC)
                )
                txn.add_version(record)
                changed = {
                    "version": number,
                    "semver": _like(event_fields["semver"], number),
                    "reason": "bench seed",
                }
                txn.append(NewEvent(**event_fields | changed))


def _like(template: Any, version: int) -> Any:
    """Version ``version``'s semver in the form of ``template`` (text, or a SemVer value)."""
    if isinstance(template, str):
        return _semver(version)
    return dataclasses.replace(template, major=1, minor=0, patch=version - 1)


def _check_seeded(client: MlflowClient, name: str, size: int) -> None:
    """Fail unless the last seeded version reads over REST like version 1 (the API-made one)."""
    made, seeded = client.get_model_version(name, "1"), client.get_model_version(name, str(size))
    same = ("source", "run_id", "run_link", "status", "current_stage", "user_id", "description")
    differ = [a for a in same if getattr(made, a) != getattr(seeded, a)]
    if set(made.tags) != set(seeded.tags):
        differ.append(f"tag keys {sorted(made.tags)} vs {sorted(seeded.tags)}")
    if seeded.tags.get(SEMVER_TAG) != _semver(size) or seeded.tags["team"] != _team(size, size):
        differ.append(f"tags {seeded.tags}")
    if not int(made.creation_timestamp) < int(seeded.creation_timestamp):
        differ.append("creation time")
    if differ:
        raise RuntimeError(f"seeded version {size} differs from version 1: {differ}")


def check_history(registry: Registry, seeded: Seeded) -> HistoryCheck:
    """Read the whole history once and compare it with what was appended."""
    start = time.perf_counter()
    events = registry.history(seeded.name).events
    seconds = time.perf_counter() - start
    ids = [e.id for e in events]
    return HistoryCheck(
        events=len(events),
        appended=seeded.appended[seeded.name],
        adopted=len({e.version for e in events if e.action in {Action.ADOPT, Action.REGISTER}}),
        versions=seeded.size,
        transitions=sum(e.action == Action.TRANSITION for e in events),
        promotions=seeded.promotions,
        ordered=all(a < b for a, b in itertools.pairwise(ids)),
        seconds=seconds,
    )


# -- the operations --------------------------------------------------------------------


def operations(
    registry: Registry, client: MlflowClient, seeded: Seeded, repeat: int
) -> list[list[Operation]]:
    """The measured operations, grouped by what must run in lock-step."""
    name, size = seeded.name, seeded.size
    needed = 2 * (WARMUPS + repeat)
    if size - 3 < needed:
        raise SystemExit(f"--repeat {repeat} needs at least {needed + 3} versions per size")
    # Fresh versions from the top: modelreg takes the even offsets, raw the odd ones.
    ours = [size - 2 * i for i in range(needed // 2)]
    theirs = [size - 2 * i - 1 for i in range(needed // 2)]
    picks = random.Random(size)
    shown = [picks.randint(1, size) for _ in range(needed)]

    def promote(i: int, stage: Stage) -> None:
        _promote(registry, seeded, ours[i], stage)

    def raw_promote(i: int, alias: str, stage: str) -> None:
        version = str(theirs[i])
        client.set_registered_model_alias(name, alias, version)
        if stage == "Production":
            # The same end state plain MLflow clients see after modelreg's promotion:
            # the version left Staging, so the staging alias no longer points at it
            # (the course's "staging" alias follows the version under test).
            client.delete_registered_model_alias(name, "staging")
        client.transition_model_version_stage(
            name, version, stage, archive_existing_versions=stage == "Production"
        )

    def raw_show(i: int) -> None:
        mv = client.get_model_version(name, str(shown[i]))
        client.get_run(str(mv.run_id))

    def raw_all_versions(_i: int) -> None:
        token = None
        while True:
            page = client.search_model_versions(
                f"name = '{name}'", max_results=PAGE, page_token=token
            )
            token = page.token
            if not token:
                return

    return [
        [
            Operation(
                PROMOTE_LABELS[0],
                lambda i: promote(i, Stage.STAGING),
                lambda i: raw_promote(i, "staging", "Staging"),
                "set_registered_model_alias + transition_model_version_stage",
            ),
            Operation(
                PROMOTE_LABELS[1],
                lambda i: promote(i, Stage.PRODUCTION),
                lambda i: raw_promote(i, "production", "Production"),
                "set_registered_model_alias + delete_registered_model_alias('staging')"
                " + transition_model_version_stage (archive_existing_versions=True)",
            ),
        ],
        [
            Operation(
                SHOW_LABEL,
                lambda i: registry.show(name, shown[i]),
                raw_show,
                "get_model_version + get_run",
            )
        ],
        [
            Operation(
                STAGE_LABEL,
                lambda _i: registry.search("stage = 'Production'"),
                lambda _i: client.get_model_version_by_alias(name, "production"),
                "get_model_version_by_alias(name, 'production')",
            )
        ],
        [
            Operation(
                "search `tags.team = 'risk'`",
                lambda _i: registry.search("tags.team = 'risk'"),
                lambda _i: client.search_model_versions(f"name = '{name}' and tags.team = 'risk'"),
                "search_model_versions(name and tags.team = 'risk')",
            )
        ],
        [
            Operation(
                HISTORY_LABEL,
                lambda _i: registry.history(name),
                raw_all_versions,
                "search_model_versions(name), every page of 1000 (MLflow keeps no audit history)",
            )
        ],
    ]


# -- targets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One target of issue 9 at one size."""

    target: str
    size: int
    value: str
    passed: bool

    @property
    def mark(self) -> str:
        """PASS or MISS."""
        return "PASS" if self.passed else "MISS"


def verdicts(results: Sequence[Result], seeds: Sequence[Seeded]) -> list[Verdict]:
    """Every target at every size, computed from the measurements."""
    found: list[Verdict] = []
    by = {(r.operation.label, r.size): r for r in results}
    sizes = sorted({r.size for r in results})
    smallest = sizes[0] if sizes else 0
    for size in sizes:
        for label in PROMOTE_LABELS:
            r = by.get((label, size))
            if r:
                found.append(
                    Verdict(
                        f"{label} ≤ {PROMOTE_TARGET:g}x raw",
                        size,
                        f"{r.ratio:.2f}x",
                        r.ratio <= PROMOTE_TARGET,
                    )
                )
        r = by.get((STAGE_LABEL, size))
        if r:
            found.append(
                Verdict(
                    f"search by stage ≤ {SEARCH_STAGE_TARGET:g}x alias lookup",
                    size,
                    f"{r.ratio:.2f}x",
                    r.ratio <= SEARCH_STAGE_TARGET,
                )
            )
        for label in CONSTANT_ROWS:
            r, base = by.get((label, size)), by.get((label, smallest))
            if not (r and base):
                continue
            scale, slack = ROW_SLACK
            # At the smallest size there is nothing smaller to compare with: reading a
            # tenth of the versions or more is a scan of the history, not a constant.
            passed = r.rows < size / 10 if size == smallest else r.rows <= scale * base.rows + slack
            found.append(
                Verdict(f"ledger rows per {label} constant", size, f"{r.rows:,.1f}", passed)
            )
    for s in seeds:
        if s.history is not None:
            found.append(
                Verdict(
                    "history complete",
                    s.size,
                    f"{s.history.events:,} / {s.history.appended:,} events",
                    s.history.complete,
                )
            )
    return found


def targets_table(found: Sequence[Verdict]) -> str:
    """Targets as rows, sizes as columns: the value and PASS/MISS in each cell."""
    sizes = sorted({v.size for v in found})
    cells = {(v.target, v.size): f"{v.value} **{v.mark}**" for v in found}
    lines = [
        "| target | " + " | ".join(f"{s:,} versions" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for target in dict.fromkeys(v.target for v in found):
        row = " | ".join(cells.get((target, s), "n/a") for s in sizes)
        lines.append(f"| {target} | {row} |")
    missed = [v for v in found if not v.passed]
    verdict = (
        "Every target is met at every size."
        if not missed
        else f"{len(missed)} of {len(found)} checks MISS: "
        + "; ".join(f"{v.target} at {v.size:,} ({v.value})" for v in missed)
        + "."
    )
    return "\n".join(lines) + "\n\n" + verdict


# -- reporting -------------------------------------------------------------------------


def machine() -> str:
    """One line naming the machine, OS and versions this ran on."""
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown memory"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024**2:.0f} GiB RAM"
    system = platform.platform()
    with contextlib.suppress(OSError):
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        if found:
            system = f"{found.group(1)} (Linux {platform.release()})"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"{cpus} CPUs ({model}), {memory}, {system}, "
        f"Python {platform.python_version()}, MLflow {mlflow.__version__}"
    )


def ms(value: float) -> str:
    """A latency in ms as the tables print it: one decimal below 100 ms."""
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| operation | versions | runs | modelreg p50 ms | p95 ms | raw p50 ms | p95 ms "
        "| **ratio p50** | REST requests modelreg / raw | ledger rows read |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ours, theirs = r.modelreg_cost, r.raw_cost
        lines.append(
            f"| {r.operation.label} | {r.size:,} | {len(r.modelreg.values)} "
            f"| {ms(r.modelreg.p50())} | {ms(r.modelreg.p95())} "
            f"| {ms(r.raw.p50())} | {ms(r.raw.p95())} | **{r.ratio:.2f}x** "
            f"| {ours.per_call(ours.rest_calls):g} / {theirs.per_call(theirs.rest_calls):g} "
            f"| {r.rows:,.1f} |"
        )
    return "\n".join(lines)


def baselines(results: Sequence[Result]) -> str:
    """The raw baseline of every operation, once each."""
    seen: dict[str, str] = {}
    for r in results:
        seen.setdefault(r.operation.label, r.operation.baseline)
    return "\n".join(f"- {label}: `MlflowClient.{base}`" for label, base in seen.items())


def split(results: Sequence[Result]) -> str:
    """Where one modelreg call spends its time, per operation and size."""
    lines = []
    for r in results:
        c, raw = r.modelreg_cost, r.raw_cost
        other = max(c.total_ms - c.rest_ms - c.ledger_ms, 0)
        lines.append(
            f"- {r.operation.label}, {r.size:,} versions: {c.per_call(c.total_ms):,.0f} ms = "
            f"REST {c.per_call(c.rest_ms):,.0f} ms ({c.per_call(c.rest_calls):g} req.; "
            f"raw side {raw.per_call(raw.rest_calls):g} req., {raw.per_call(raw.rest_ms):,.0f}"
            f" ms) + ledger {c.per_call(c.ledger_ms):,.0f} ms ({c.per_call(c.ledger_reads):g} "
            f"reads, {c.per_call(c.ledger_rows):,.0f} rows) + fold/views/other "
            f"{c.per_call(other):,.0f} ms"
        )
    return "\n".join(lines)


def requests_made(results: Sequence[Result]) -> str:
    """REST requests of one call by endpoint, at the largest size."""
    largest = max(r.size for r in results)
    return "\n".join(
        f"- {r.operation.label}: modelreg {r.modelreg_cost.endpoint_text()}; "
        f"raw {r.raw_cost.endpoint_text()}"
        for r in results
        if r.size == largest
    )


def scaling(results: Sequence[Result]) -> str:
    """Which modelreg operations read ledger rows in proportion to the number of versions."""
    sizes = sorted({r.size for r in results})
    if len(sizes) < 2:
        return "Run with two sizes to see which ledger reads grow with the number of versions."
    small, large = sizes[0], sizes[-1]
    rows = {(r.operation.label, r.size): r.rows for r in results}
    labels = list(dict.fromkeys(r.operation.label for r in results))
    growing = [
        label
        for label in labels
        if rows[label, large] > 0.5 * (large / small) * max(rows[label, small], 1)
    ]
    if growing:
        text = (
            f"Ledger rows read per call grow in proportion to the number of versions "
            f"({small:,} to {large:,}) for: {', '.join(growing)}."
        )
        if HISTORY_LABEL in growing:
            text += " History returns every event, so it must."
    else:
        text = "No operation reads more ledger rows as the number of versions grows."
    return f"{text}\n\n{_slow_endpoints(results, small, large)}"


def _slow_endpoints(results: Sequence[Result], small: int, large: int) -> str:
    """MLflow endpoints whose time per request grows with the number of versions."""
    totals: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for r in results:
        for cost in (r.modelreg_cost, r.raw_cost):
            for endpoint, n in cost.endpoints.items():
                totals[endpoint, r.size][0] += cost.endpoint_ms[endpoint]
                totals[endpoint, r.size][1] += n
    per_request = {key: ms / n for key, (ms, n) in totals.items() if n}
    growing = sorted(
        (
            (endpoint, per_request[endpoint, small], ms)
            for (endpoint, size), ms in per_request.items()
            if size == large and (endpoint, small) in per_request
        ),
        key=lambda item: item[2] / max(item[1], 0.01),
        reverse=True,
    )
    slow = [
        f"{endpoint} ({ms(before)} ms at {small:,}, {ms(after)} ms at {large:,})"
        for endpoint, before, after in growing
        if after > 3 * before
    ]
    if not slow:
        return "No single MLflow request gets much slower as the number of versions grows."
    return (
        "MLflow requests that get slower per request as the number of versions grows: "
        + "; ".join(slow)
        + "."
    )


def _redacted(argv: Sequence[str]) -> list[str]:
    """``argv`` with database URIs (which may carry passwords) replaced by a placeholder."""
    secret = ("--backend-store-uri", "--ledger-uri")
    shown, hide_next = [], False
    for arg in argv:
        if hide_next:
            shown.append("<uri>")
        elif arg.startswith(tuple(f"{flag}=" for flag in secret)):
            shown.append(arg.split("=", 1)[0] + "=<uri>")
        else:
            shown.append(arg)
        hide_next = arg in secret
    return shown


def section(args: argparse.Namespace, results: Sequence[Result], seeds: Sequence[Seeded]) -> str:
    """The "Registry operations" section of docs/benchmarks.md."""
    seeding = "\n".join(
        f"- {s.size:,} versions: {s.total:,.0f} s in total; "
        + "; ".join(f"{label} {seconds:,.1f} s" for label, seconds in s.phases.items())
        for s in seeds
    )
    load = "; ".join(
        f"{s.size:,} versions {min(s.loads):.1f} to {max(s.loads):.1f}" for s in seeds if s.loads
    )
    history = "\n".join(
        f"- {s.size:,} versions: {s.history.text()}" for s in seeds if s.history is not None
    )
    command = " ".join([".venv/bin/python bench/registry.py", *_redacted(args.argv)])
    backend = "custom backend store" if args.backend_store_uri else "SQLite backend store"
    ledger = "custom ledger database" if args.ledger_uri else "SQLite ledger"
    scale, slack = ROW_SLACK
    return f"""{SECTION}

`bench/registry.py` times the `Registry` facade against the raw `MlflowClient` calls
a team would make by hand, interleaved in the same run against the same server.
Ratio = modelreg p50 / raw p50.

- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Machine: {machine()}
- Set-up: one local MLflow server ({backend}, local artifacts, {args.workers} worker),
  {ledger}, client and server on the same machine; up to {WARMUPS} warm-ups, then up to
  {args.repeat} runs per operation (fewer once an operation used
  {args.budget_seconds:.0f} s, at least {MIN_REPEATS} unless it used twice that)
- Command: `{command}`
- Other load on the machine (1-minute load average sampled around each operation; it
  slows both sides alike, so ratios are steadier than absolute times): {load}

### Targets (issue 9)

Computed from the runs below. Promote: modelreg p50 / raw p50 (alias + stage
transition). Search by stage: `search("stage = 'Production'")` p50 / MLflow's alias
lookup p50. Ledger rows read per call are constant when they stay within
{scale:g}x + {slack} of the smallest size's (and, at the smallest size, below a tenth
of its versions). History is complete when `Registry.history` returns exactly the
events `LedgerTransaction.append` wrote for the model during seeding and measuring,
an adoption for every version, a transition for every promotion, in id order.

{targets_table(verdicts(results, seeds))}

### Measurements

{table(results)}

Baselines (raw side):

{baselines(results)}

`history` has no MLflow equivalent (MLflow keeps no audit log); listing every version of
the model is the closest thing a team has. `search stage` is answered by hand with the
alias lookup. REST requests (MlflowClient's `requests` and modelreg's `httpx`) and
ledger rows are counted during every timed call; a ledger read counts the rows it
returned (a model state one per version it holds).

History check (after measuring, one more `Registry.history` call):

{history}

Seeding (set-up, not measured). Version 1 goes through MLflow's REST API and
`Registry.sync`; versions 2..N are inserted in one transaction into the server's
backend database through MLflow's own SQL store opened in-process (`SqlAlchemyStore`
and its `model_versions` / `model_version_tags` models), cloned from version 1's row
and tags (source, run, storage location, status READY, `modelreg.*` tags) with their
own number, `team`, semver tag and creation time; a seeded version is compared with
version 1 over REST before measuring. The ledger gets version 1's record and adopt
event cloned for every version through `Ledger.locked` → `add_version` + `append`, in
batches of {LEDGER_BATCH:,}, so everything `append` maintains stays consistent.

{seeding}

### What limits it

One modelreg call (average over the timed runs), split into REST requests to MLflow,
ledger reads, and the rest (event fold, search matching, building views):

{split(results)}

REST requests per call by endpoint ({max(r.size for r in results):,} versions). MLflow
3.17's client sends a `GET registered-models/get` before every registry write (it
refuses to modify prompts), so each raw write costs two requests:

{requests_made(results)}

{scaling(results)}
"""


def write_docs(path: Path, text: str) -> None:
    """Replace (or add) the Registry section of ``path``, keeping everything else."""
    write_section(path, SECTION, text)


def write_section(path: Path, section: str, text: str) -> None:
    """Replace (or add) the ``section`` heading's part of ``path``, keeping everything else."""
    if path.exists():
        current = path.read_text()
    else:
        current = (
            "# Benchmarks\n\n"
            "Latest results of the scripts in `bench/`. Each compares modelreg with a named\n"
            "baseline measured in the same run and prints the ratio; performance is never\n"
            "asserted in tests. Every section names the machine and date of its run.\n\n"
            f"Machine this file was started on: {machine()}, {datetime.now(UTC):%Y-%m-%d}.\n"
        )
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _m: text.rstrip() + "\n\n", current).rstrip() + "\n"
    else:
        updated = current.rstrip() + "\n\n" + text.rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated)


# -- main --------------------------------------------------------------------------------


def run_size(args: argparse.Namespace, size: int) -> tuple[Seeded, list[Result]]:
    """Seed and measure one registry size on its own server and ledger."""
    print(f"== {size:,} versions: starting MLflow", file=sys.stderr, flush=True)
    appended: Counter[str] = Counter()
    with (
        stack(args, size) as running,
        tempfile.TemporaryDirectory() as home,
        count_appends(appended),
    ):
        uri = running.tracking_uri
        registry = Registry.connect(uri, running.ledger_uri, actor="bench", home=Path(home))
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            registry.ledger.migrate()
            print(f"== {size:,} versions: seeding", file=sys.stderr, flush=True)
            started = time.perf_counter()
            seeded = seed(registry, client, running, size)
            seeded.appended = appended
            print(f"  seeding total: {seeded.total:.1f} s", file=sys.stderr, flush=True)
            results: list[Result] = []
            if not args.seed_only:
                results = _measure_size(args, registry, client, seeded)
            seeded.history = check_history(registry, seeded)
            print(f"  history: {seeded.history.text()}", file=sys.stderr, flush=True)
            print(
                f"== {size:,} versions done in {time.perf_counter() - started:,.0f} s",
                file=sys.stderr,
                flush=True,
            )
        finally:
            registry.close()
    return seeded, results


def _measure_size(
    args: argparse.Namespace, registry: Registry, client: MlflowClient, seeded: Seeded
) -> list[Result]:
    results: list[Result] = []
    for group in operations(registry, client, seeded, args.repeat):
        seeded.loads.append(os.getloadavg()[0])
        started = time.perf_counter()
        measured = measure(seeded.size, group, args.repeat, args.budget_seconds)
        seconds = time.perf_counter() - started
        seeded.loads.append(os.getloadavg()[0])
        for r in measured:
            print(
                f"  {r.operation.label}: modelreg {r.modelreg.p50():.1f} ms, "
                f"raw {r.raw.p50():.1f} ms, ratio {r.ratio:.2f}x, "
                f"{r.rows:,.1f} ledger rows/call ({r.warmups} warm-ups + "
                f"{len(r.modelreg.values)} runs, group {seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        results += measured
    return results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="1000,10000,100000",
        help="comma-separated numbers of model versions to seed (default: 1000,10000,100000)",
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per operation")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=45.0,
        help="stop an operation early once it used this long "
        f"(after {MIN_REPEATS} runs; after 1 once it used twice this)",
    )
    parser.add_argument(
        "--backend-store-uri",
        help="MLflow backend store, e.g. postgresql+psycopg://... (default: SQLite in a temp dir)",
    )
    parser.add_argument(
        "--ledger-uri", help="ledger database URI (default: SQLite file in a temp dir)"
    )
    parser.add_argument("--workers", type=int, default=1, help="MLflow server workers")
    parser.add_argument(
        "--seed-only",
        action="store_true",
        help="seed every size, check its history, print the seeding times, measure nothing",
    )
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace the Registry section of docs/benchmarks.md (default: on)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="benchmarks page to update")
    args = parser.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if not args.size_list or min(args.size_list) < 1 or args.repeat < 1:
        parser.error("--sizes and --repeat must be positive")
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the targets and tables and update the docs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The raw side uses MLflow's deprecated stages on purpose: that is the baseline.
    warnings.filterwarnings("ignore", category=FutureWarning)
    started = time.perf_counter()
    seeds, results = [], []
    for size in args.size_list:
        seeded, measured = run_size(args, size)
        seeds.append(seeded)
        results += measured
    elapsed = time.perf_counter() - started
    if args.seed_only:
        for s in seeds:
            print(f"{s.size:,} versions seeded in {s.total:,.1f} s:")
            for label, seconds in s.phases.items():
                print(f"  {label}: {seconds:,.1f} s")
            if s.history is not None:
                print(f"  history: {s.history.text()}")
        print(f"total {elapsed:,.0f} s (with server start-ups)")
        return 0 if all(s.history and s.history.complete for s in seeds) else 1
    text = section(args, results, seeds)
    print(text)
    found = verdicts(results, seeds)
    for v in found:
        print(f"{v.mark} {v.target} at {v.size:,}: {v.value}", file=sys.stderr)
    print(f"total {elapsed:,.0f} s", file=sys.stderr)
    if args.write_docs:
        write_docs(args.docs, text)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
