"""Registry operation latency: the modelreg facade against the raw MlflowClient calls.

Run from the repository root::

    .venv/bin/python bench/registry.py --sizes 1000,10000
    .venv/bin/python bench/registry.py --sizes 200 --repeat 10 --no-write-docs   # quick check

For every size N the script starts its own MLflow server (SQLite backend and a
local artifact directory in a temporary directory, unless ``--backend-store-uri``
names another store such as PostgreSQL) and a ledger (a SQLite file next to it,
unless ``--ledger-uri``), seeds one registered model with N versions, and then
times promote, show, search and history through ``modelreg.Registry`` and
through the plain ``MlflowClient`` calls a team would make without modelreg.
Both sides run interleaved in the same process against the same server, three
warm-ups first, then ``--repeat`` timed runs (fewer if an operation exceeds
``--budget-seconds``). It prints p50/p95 latencies and the modelreg/raw ratio
of the p50s, attributes where the time of one call goes (REST calls to MLflow,
rows read from the ledger), and with ``--write-docs`` (the default) replaces the
"Registry operations" section of ``docs/benchmarks.md``.

Seeding is set-up, not a result: one small sklearn model is logged once, N
model versions point at it (created by a thread pool), and the ledger rows for
them are written directly in batches, cloned from the record modelreg's own
``sync`` made for version 1. A few versions are moved through Staging and
Production through the facade so that history has transitions.

Use empty databases with ``--backend-store-uri`` / ``--ledger-uri``: search
reads every model in the registry, so leftovers from earlier runs skew it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import requests
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from modelreg.domain import Action, Stage
from modelreg.ledger import NewEvent, VersionRecord, store
from modelreg.registry import DIGEST_TAG, STAGE_TAG, Registry
from modelreg.stack import MLFLOW_SERVER_ENV, ServiceProcess, free_port, mlflow_server_argv

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Registry operations"
WARMUPS = 3
PAGE = 1000
LEDGER_BATCH = 500
SEED_THREADS = 8
RISK_VERSIONS = 10  # versions tagged team=risk; the rest are team=growth
MIN_REPEATS = 5


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
        return ", ".join(
            f"{self.per_call(n):g}x {endpoint} ({ms(self.request_ms(endpoint))} ms)"
            for endpoint, n in self.endpoints.most_common()
        )


@contextlib.contextmanager
def probe(cost: Cost) -> Iterator[None]:
    """Add the REST requests and ledger reads made inside the block to ``cost``.

    Wraps ``requests.Session.request`` (every MlflowClient call goes through
    it) and the ledger's row-loading functions, and restores them on exit.
    """
    originals: list[tuple[Any, str, Any]] = []

    def wrap(owner: Any, attr: str, on_done: Callable[[Any, Any, float], None]) -> None:
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            result = original(*args, **kwargs)
            on_done(args, result, time.perf_counter() - start)
            return result

        originals.append((owner, attr, original))
        setattr(owner, attr, timed)

    def rest(args: Any, _result: Any, seconds: float) -> None:
        _session, method, url = args[:3]
        cost.rest_calls += 1
        cost.rest_ms += seconds * 1000
        endpoint = f"{method} {url.split('/mlflow/', 1)[-1]}"
        cost.endpoints[endpoint] += 1
        cost.endpoint_ms[endpoint] += seconds * 1000

    def ledger(_args: Any, result: Any, seconds: float) -> None:
        cost.ledger_reads += 1
        cost.ledger_rows += len(result) if isinstance(result, list) else int(result is not None)
        cost.ledger_ms += seconds * 1000

    wrap(requests.Session, "request", rest)
    wrap(store, "_select_events", ledger)
    wrap(store, "_select_records", ledger)
    wrap(store.Ledger, "version_record", ledger)
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

    @property
    def ratio(self) -> float:
        """modelreg p50 over raw p50."""
        return self.modelreg.p50() / self.raw.p50()


def _timed(fn: Callable[[int], object], i: int) -> float:
    start = time.perf_counter()
    fn(i)
    return time.perf_counter() - start


def measure(size: int, group: Sequence[Operation], repeat: int, budget: float) -> list[Result]:
    """Time every operation of ``group`` in lock-step, modelreg and raw interleaved.

    Operations in one group share the iteration number (promote to Staging,
    then the same version to Production). The side that goes first alternates
    so that neither always meets a warmer cache. Stops early, after at least
    MIN_REPEATS runs, when the group has used ``budget`` seconds per operation.
    """
    results = [Result(size, op) for op in group]
    started = time.monotonic()
    for i in range(WARMUPS + repeat):
        for result in results:
            sides = [
                (result.operation.modelreg, result.modelreg),
                (result.operation.raw, result.raw),
            ]
            for fn, samples in sides if i % 2 == 0 else reversed(sides):
                seconds = _timed(fn, i)
                if i >= WARMUPS:
                    samples.values.append(seconds)
        done = i + 1 - WARMUPS
        if done >= MIN_REPEATS and time.monotonic() - started > budget * len(group):
            break
    return results


def attribute(results: Sequence[Result], first: int, calls: int = 3) -> None:
    """Probe ``calls`` further calls of each side (iterations from ``first``)."""
    for result in results:
        for fn, cost in (
            (result.operation.modelreg, result.modelreg_cost),
            (result.operation.raw, result.raw_cost),
        ):
            for i in range(first, first + calls):
                with probe(cost):
                    fn(i)


# -- the services ------------------------------------------------------------------


@contextlib.contextmanager
def services(args: argparse.Namespace, size: int) -> Iterator[tuple[str, str]]:
    """An MLflow server and a ledger for one size; yields (tracking URI, ledger URI)."""
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
            yield f"http://127.0.0.1:{port}", ledger
        finally:
            server.stop()


# -- seeding -------------------------------------------------------------------------


@dataclass
class Seeded:
    """The seeded model and how long each seeding phase took (seconds)."""

    name: str
    size: int
    run_id: str
    phases: dict[str, float] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)  # 1-minute load average while measuring

    @property
    def total(self) -> float:
        """All seeding phases together."""
        return sum(self.phases.values())


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


def seed(registry: Registry, client: MlflowClient, size: int) -> Seeded:
    """Register ``size`` versions of one model in MLflow and in the ledger."""
    name = f"bench-{size}-{uuid.uuid4().hex[:6]}"
    seeded = Seeded(name=name, size=size, run_id="")
    with _phase(seeded, "log one sklearn model"):
        run_id, model_uri, model_id = _log_model(registry.gateway.tracking_uri)
        seeded.run_id = run_id
    with _phase(seeded, "adopt version 1 with modelreg sync (download + manifest)"):
        client.create_registered_model(name)
        client.create_model_version(
            name,
            model_uri,
            run_id=run_id,
            model_id=model_id,
            tags={"team": "risk", "modelreg.semver": "1.0.0"},
            await_creation_for=0,
        )
        registry.sync(name)
    first = registry.ledger.version_record(name, 1)
    adopted = registry.ledger.events(name)[0]
    if first is None:
        raise RuntimeError(f"sync did not adopt {name} v1")
    every = max(size // RISK_VERSIONS, 1)

    def create(k: int) -> int:
        team = "risk" if k % every == 0 else "growth"
        mv = client.create_model_version(
            name,
            model_uri,
            run_id=run_id,
            model_id=model_id,
            tags={"team": team, DIGEST_TAG: first.digest, STAGE_TAG: Stage.NONE.value},
            await_creation_for=0,
        )
        return int(mv.version)

    with (
        _phase(seeded, f"create {size - 1} MLflow versions ({SEED_THREADS} threads)"),
        ThreadPoolExecutor(SEED_THREADS) as pool,
    ):
        numbers = sorted(pool.map(create, range(2, size + 1)))
    with _phase(seeded, f"write {size - 1} ledger records + adopt events"):
        _seed_ledger(registry, first, adopted.details, numbers)
    with _phase(seeded, "promote v1, v2 to Production and v3 to Staging (facade)"):
        for version in (1, 2):
            registry.promote(name, version, Stage.STAGING, reason="bench seed")
            registry.promote(name, version, Stage.PRODUCTION, reason="bench seed")
        registry.promote(name, 3, Stage.STAGING, reason="bench seed")
    return seeded


def _seed_ledger(
    registry: Registry, first: VersionRecord, details: dict[str, Any], numbers: list[int]
) -> None:
    """Clone version 1's record for every other version, in batched transactions."""
    for start in range(0, len(numbers), LEDGER_BATCH):
        with registry.ledger.locked(first.model) as txn:
            for number in numbers[start : start + LEDGER_BATCH]:
                record = dataclasses.replace(
                    first,
                    version=number,
                    semver=f"1.0.{number - 1}",
                    registered_at=datetime.now(UTC),
                )
                txn.add_version(record)
                txn.append(
                    NewEvent(
                        model=first.model,
                        version=number,
                        action=Action.ADOPT,
                        actor=registry.settings.actor,
                        to_stage=Stage.NONE,
                        reason="bench seed",
                        semver=record.semver,
                        digest=record.digest,
                        details=details,
                    )
                )


# -- the operations --------------------------------------------------------------------


def operations(
    registry: Registry, client: MlflowClient, seeded: Seeded, repeat: int
) -> list[list[Operation]]:
    """The measured operations, grouped by what must run in lock-step."""
    name, size = seeded.name, seeded.size
    needed = 2 * (WARMUPS + repeat + 3)  # + 3 calls for the cost attribution
    if size - 3 < needed:
        raise SystemExit(f"--repeat {repeat} needs at least {needed + 3} versions per size")
    # Fresh versions from the top: modelreg takes the even offsets, raw the odd ones.
    ours = [size - 2 * i for i in range(needed // 2)]
    theirs = [size - 2 * i - 1 for i in range(needed // 2)]
    picks = random.Random(size)
    shown = [picks.randint(1, size) for _ in range(needed)]

    def raw_promote(i: int, alias: str, stage: str) -> None:
        version = str(theirs[i])
        client.set_registered_model_alias(name, alias, version)
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
                "promote to Staging",
                lambda i: registry.promote(name, ours[i], Stage.STAGING),
                lambda i: raw_promote(i, "staging", "Staging"),
                "set_registered_model_alias + transition_model_version_stage",
            ),
            Operation(
                "promote to Production",
                lambda i: registry.promote(name, ours[i], Stage.PRODUCTION),
                lambda i: raw_promote(i, "production", "Production"),
                "set_registered_model_alias + transition_model_version_stage"
                " (archive_existing_versions=True)",
            ),
        ],
        [
            Operation(
                "show",
                lambda i: registry.show(name, shown[i]),
                raw_show,
                "get_model_version + get_run",
            )
        ],
        [
            Operation(
                "search `stage = 'Production'`",
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
                "history",
                lambda _i: registry.history(name),
                raw_all_versions,
                "search_model_versions(name), every page of 1000 (MLflow keeps no audit history)",
            )
        ],
    ]


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
            f"| {ms(r.raw.p50())} | {ms(r.raw.p95())} | **{r.ratio:.1f}x** "
            f"| {ours.per_call(ours.rest_calls):g} / {theirs.per_call(theirs.rest_calls):g} "
            f"| {ours.per_call(ours.ledger_rows):,.0f} |"
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
    rows = {
        (r.operation.label, r.size): r.modelreg_cost.per_call(r.modelreg_cost.ledger_rows)
        for r in results
    }
    labels = list(dict.fromkeys(r.operation.label for r in results))
    growing = [
        label
        for label in labels
        if rows[label, large] > 0.5 * (large / small) * max(rows[label, small], 1)
    ]
    if growing:
        text = (
            f"Ledger rows read per call grow in proportion to the number of versions "
            f"({small:,} to {large:,}) for: {', '.join(growing)}. History returns every "
            "event, so it must; the others return one version or a handful."
        )
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
    command = " ".join([".venv/bin/python bench/registry.py", *_redacted(args.argv)])
    backend = "custom backend store" if args.backend_store_uri else "SQLite backend store"
    ledger = "custom ledger database" if args.ledger_uri else "SQLite ledger"
    return f"""{SECTION}

`bench/registry.py` times the `Registry` facade against the raw `MlflowClient` calls
a team would make by hand, interleaved in the same run against the same server.
Ratio = modelreg p50 / raw p50.

- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Machine: {machine()}
- Set-up: one local MLflow server ({backend}, local artifacts, {args.workers} worker),
  {ledger}, client and server on the same machine; {WARMUPS} warm-ups, then up to
  {args.repeat} runs per operation (fewer when an operation used more than
  {args.budget_seconds:.0f} s)
- Command: `{command}`
- Other load on the machine (1-minute load average sampled around each operation; it
  slows both sides alike, so ratios are steadier than absolute times): {load}

{table(results)}

Baselines (raw side):

{baselines(results)}

`history` has no MLflow equivalent (MLflow keeps no audit log); listing every version of
the model is the closest thing a team has. `search stage` is answered by hand with the
alias lookup. REST requests and ledger rows are counted for one call (average of three).

Seeding (set-up, not measured; MLflow versions through the REST API, ledger rows
written directly in batches of {LEDGER_BATCH}):

{seeding}

### What limits it

One modelreg call (average of three), split into REST requests to MLflow, ledger
reads, and the rest (event fold, search matching, building views):

{split(results)}

REST requests per call by endpoint ({max(r.size for r in results):,} versions). MLflow
3.17's client sends a `GET registered-models/get` before every registry write (it
refuses to modify prompts), so each write costs two requests on both sides:

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
    with services(args, size) as (tracking_uri, ledger_uri), tempfile.TemporaryDirectory() as home:
        registry = Registry.connect(tracking_uri, ledger_uri, actor="bench", home=Path(home))
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            registry.ledger.migrate()
            print(f"== {size:,} versions: seeding", file=sys.stderr, flush=True)
            seeded = seed(registry, client, size)
            print(f"  seeding total: {seeded.total:.1f} s; measuring", file=sys.stderr, flush=True)
            results: list[Result] = []
            for group in operations(registry, client, seeded, args.repeat):
                seeded.loads.append(os.getloadavg()[0])
                measured = measure(size, group, args.repeat, args.budget_seconds)
                seeded.loads.append(os.getloadavg()[0])
                attribute(measured, first=WARMUPS + args.repeat)
                for r in measured:
                    print(
                        f"  {r.operation.label}: modelreg {r.modelreg.p50():.1f} ms, "
                        f"raw {r.raw.p50():.1f} ms, ratio {r.ratio:.1f}x "
                        f"({len(r.modelreg.values)} runs)",
                        file=sys.stderr,
                        flush=True,
                    )
                results += measured
        finally:
            registry.close()
    return seeded, results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="1000,10000",
        help="comma-separated numbers of model versions to seed (default: 1000,10000)",
    )
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per operation")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=120.0,
        help="stop an operation early (after at least 5 runs) once it used this long",
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
    """Run the benchmark; print the table and update the docs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The raw side uses MLflow's deprecated stages on purpose: that is the baseline.
    warnings.filterwarnings("ignore", category=FutureWarning)
    seeds, results = [], []
    for size in args.size_list:
        seeded, measured = run_size(args, size)
        seeds.append(seeded)
        results += measured
    text = section(args, results, seeds)
    print(text)
    if args.write_docs:
        write_docs(args.docs, text)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
