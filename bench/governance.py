"""Governance cost: registering and auto-promoting through modelreg against plain MLflow.

Run from the repository root (a git checkout, so that registrations carry complete
lineage)::

    .venv/bin/python bench/governance.py                               # about 2 minutes
    .venv/bin/python bench/governance.py --repeat 3 --no-write-docs    # quick check

The script starts its own MLflow server (SQLite backend and local artifacts in a
temporary directory, through ``registry.services``) and a SQLite ledger, and
writes the starter policy (``modelreg.policy.write_starter``) into the registry's
home: ``test_auc >= 0.85``, a ``data_version`` tag, a description, a signature,
complete lineage and verified digests before Production, and auto-promotion
when ``test_auc`` beats Production by more than 0.02.

It trains two models on ``make_classification`` (2,000 rows, 20 features, 25%
held out): the candidate, ``RandomForestClassifier(n_estimators=50, max_depth=8)``,
and a weaker champion (3 trees, depth 2) that starts in Production, each with
its real held-out ``test_auc``. Then it times, interleaved in one process
against the same server (the side that goes first alternates):

1. registration of the candidate: ``Registry.register`` against the course's
   plain ``mlflow.sklearn.log_model(..., registered_model_name=...)`` (plus the
   tag, params and description the course sets by hand). Each timed call is the
   whole ``with mlflow.start_run():`` block, ``log_metric("test_auc")`` included
   on both sides;
2. the auto-promotion decision for a fresh registered candidate:
   ``Registry.auto_promote`` against a hand-written CI gate on ``MlflowClient``
   (read both runs' ``test_auc``, check the margin, set the alias and the stage).
   Before every iteration, outside the timing, Production of both models is
   returned to the champion (``Registry.rollback`` / alias and stage), so each
   decision compares a candidate with a Production it beats; every outcome is
   checked and a refusal stops the run;
3. ``Registry.validate`` (the gates without promoting) against the gate's reads;
4. ``Registry.verify`` (download and re-hash) against a plain download of the
   same version.

Every operation gets one warm-up, ``--repeat`` timed runs and two probed runs
that attribute its time (REST requests, ledger reads, and the named steps in
``STEPS``). The registrations of step 1 are the candidates of step 2. The table
is printed and, with ``--write-docs`` (the default), written to the "Governance"
section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.models
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from modelreg import integrity, lineage, policy
from modelreg.domain import Outcome
from modelreg.registry import Registry
from registry import Cost, Samples, machine, ms, probe, services, write_section

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
REPO = DOCS.parents[1]
SECTION = "## Governance"
WARMUPS = 1
PROBES = 2
ACTOR = "bench"  # registers, and is the starter policy's admin
CI = "ci"  # triggers auto-promotion (the starter's default role, approver)
CANDIDATE = {"n_estimators": 50, "max_depth": 8}
CHAMPION = {"n_estimators": 3, "max_depth": 2}
DATA_VERSION = "make-classification-2000x20-seed0"
DESCRIPTION = "RandomForest on make_classification (2,000 x 20), bench/governance.py"
COURSE_TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]  # what course_register.py passes

# Steps timed inside the probed calls (label, owner, attribute). They may nest in
# REST time (uploads and downloads go through the server), never in each other.
STEPS: tuple[tuple[str, Any, str], ...] = (
    ("mlflow.sklearn.log_model", mlflow.sklearn, "log_model"),
    ("of which pip-requirements inference", mlflow.models, "infer_pip_requirements"),
    ("git status and diff (lineage)", lineage, "capture_git"),
    ("pip freeze (lineage)", lineage, "pip_freeze"),
    ("artifact download", mlflow.artifacts, "download_artifacts"),
    ("sha256 of artifact files", integrity, "sha256_file"),
)


# -- measuring -------------------------------------------------------------------------


@dataclass
class Steps:
    """Milliseconds and calls of the named ``STEPS`` (summed over the probed calls)."""

    ms: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))


@contextlib.contextmanager
def stopwatch(steps: Steps) -> Iterator[None]:
    """Add the time spent in each of ``STEPS`` inside the block to ``steps``."""
    originals = []
    for label, owner, attr in STEPS:
        original = getattr(owner, attr)

        def timed(*args: Any, _fn: Any = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                steps.ms[_label] += (time.perf_counter() - start) * 1000
                steps.calls[_label] += 1

        originals.append((owner, attr, original))
        setattr(owner, attr, timed)
    try:
        yield
    finally:
        for owner, attr, original in reversed(originals):
            setattr(owner, attr, original)


@dataclass(frozen=True)
class Case:
    """One measured operation: modelreg's call and the named baseline, by iteration."""

    label: str
    modelreg: Callable[[int], object]
    baseline: Callable[[int], object]
    baseline_name: str
    prepare: Callable[[int], object] = lambda _i: None  # untimed, before each iteration


@dataclass
class Result:
    """Latencies and cost attribution of both sides of one case."""

    case: Case
    modelreg: Samples = field(default_factory=Samples)
    baseline: Samples = field(default_factory=Samples)
    modelreg_cost: Cost = field(default_factory=Cost)
    baseline_cost: Cost = field(default_factory=Cost)
    modelreg_steps: Steps = field(default_factory=Steps)
    baseline_steps: Steps = field(default_factory=Steps)
    loads: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """modelreg p50 over baseline p50."""
        return self.modelreg.p50() / self.baseline.p50()


def iterations(repeat: int) -> int:
    """Calls per side of every case: warm-ups, timed runs, probed runs."""
    return WARMUPS + repeat + PROBES


def measure(case: Case, repeat: int) -> Result:
    """Run both sides of ``case`` in lock-step; the side that goes first alternates."""
    result = Result(case)
    result.loads.append(os.getloadavg()[0])
    for i in range(iterations(repeat)):
        case.prepare(i)
        sides = [
            (case.modelreg, result.modelreg, result.modelreg_cost, result.modelreg_steps),
            (case.baseline, result.baseline, result.baseline_cost, result.baseline_steps),
        ]
        for fn, samples, cost, steps in sides if i % 2 == 0 else reversed(sides):
            if i >= WARMUPS + repeat:
                with probe(cost), stopwatch(steps):
                    fn(i)
                continue
            start = time.perf_counter()
            fn(i)
            if i >= WARMUPS:
                samples.values.append(time.perf_counter() - start)
    result.loads.append(os.getloadavg()[0])
    print(
        f"  {case.label}: modelreg {result.modelreg.p50():,.1f} ms, baseline "
        f"{result.baseline.p50():,.1f} ms, ratio {result.ratio:.1f}x",
        file=sys.stderr,
        flush=True,
    )
    return result


# -- the models and the two sides ------------------------------------------------------------


@dataclass
class Data:
    """The training data and the two trained models with their held-out AUC."""

    x_train: pd.DataFrame
    y_train: pd.Series
    candidate: RandomForestClassifier
    candidate_auc: float
    champion: RandomForestClassifier
    champion_auc: float


def train() -> Data:
    """Train the candidate and the weaker champion on the same split."""
    features, labels = make_classification(
        n_samples=2000, n_features=20, n_informative=8, random_state=0
    )
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(20)])
    x_train, x_test, y_train, y_test = train_test_split(
        frame, pd.Series(labels, name="label"), test_size=0.25, random_state=0
    )

    def fit(params: dict[str, int]) -> tuple[RandomForestClassifier, float]:
        model = RandomForestClassifier(**params, random_state=0, n_jobs=1).fit(x_train, y_train)
        return model, float(roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]))

    candidate, candidate_auc = fit(CANDIDATE)
    champion, champion_auc = fit(CHAMPION)
    return Data(x_train, y_train, candidate, candidate_auc, champion, champion_auc)


@dataclass
class Bench:
    """Both registered models and the operations on them."""

    registry: Registry
    client: MlflowClient
    data: Data
    ours: str = field(default_factory=lambda: f"bench-governance-{uuid.uuid4().hex[:6]}")
    theirs: str = field(default_factory=lambda: f"bench-plain-{uuid.uuid4().hex[:6]}")
    our_versions: list[int] = field(default_factory=list)
    their_versions: list[int] = field(default_factory=list)
    our_champion: int = 0
    their_champion: int = 0
    files: int = 0  # in the candidates' manifest, counted after measuring
    margin: float = 0.0  # the policy's auto-promotion margin; the hand-written gate uses it too
    threshold: float = 0.0  # the policy's test_auc gate; the hand-written gate uses it too

    def read_policy(self) -> None:
        """Take the margin and the test_auc gate from the starter policy, while it exists."""
        current = self.registry.policy()
        if current.source is None:
            raise SystemExit("the starter policy was not loaded")
        rules = current.for_model(self.ours)
        self.margin = rules.auto_promote.margin
        self.threshold = next(g.threshold for g in rules.gates.metrics if g.metric == "test_auc")

    # registration

    def register_ours(self, model: RandomForestClassifier, auc: float) -> int:
        """Log and register ``model`` through the facade inside a run."""
        with mlflow.start_run():
            mlflow.log_metric("test_auc", auc)
            view = self.registry.register(
                model,
                name=self.ours,
                training_data=self.data.x_train,
                data_version=DATA_VERSION,
                description=DESCRIPTION,
                code_path=REPO,
            )
        return view.version

    def register_theirs(self, model: RandomForestClassifier, auc: float) -> int:
        """What the course code does: log and register with plain MLflow inside a run."""
        x = self.data.x_train
        with mlflow.start_run():
            mlflow.log_metric("test_auc", auc)
            mlflow.log_params(model.get_params())
            mlflow.set_tag("data_version", DATA_VERSION)
            info = mlflow.sklearn.log_model(
                model,
                name="model",
                signature=infer_signature(x, model.predict(x)),
                input_example=x.head(5),
                registered_model_name=self.theirs,
                skops_trusted_types=COURSE_TRUSTED_TYPES,
            )
            version = str(info.registered_model_version)
            self.client.update_model_version(self.theirs, version, description=DESCRIPTION)
        return int(version)

    # promotion

    def set_up_production(self) -> None:
        """Register the champion on both sides and put it into Production."""
        self.read_policy()
        data = self.data
        if data.champion_auc < self.threshold or data.candidate_auc <= data.champion_auc + (
            self.margin
        ):
            raise SystemExit(
                f"the models do not fit the starter policy: candidate test_auc "
                f"{data.candidate_auc:.4f} must beat champion {data.champion_auc:.4f} by more "
                f"than {self.margin} and the champion must reach {self.threshold}"
            )
        self.our_champion = self.register_ours(data.champion, data.champion_auc)
        record = self.registry.ledger.version_record(self.ours, self.our_champion)
        if record is None or not record.lineage_complete:
            missing = ", ".join(record.lineage_missing) if record else "no ledger record"
            raise SystemExit(f"registration lineage is incomplete ({missing}); run from git")
        self.auto_promote(self.our_champion)
        self.their_champion = self.register_theirs(data.champion, data.champion_auc)
        self.promote_by_hand(self.theirs, self.their_champion)

    def reset(self, i: int) -> None:
        """Return Production of both models to the champion (untimed)."""
        if i == 0:
            return
        self.registry.rollback(self.ours, to=self.our_champion, reason="bench", actor=ACTOR)
        self.promote_by_hand(self.theirs, self.their_champion)

    def auto_promote(self, version: int) -> None:
        """``Registry.auto_promote``; stop the run unless it promoted."""
        decision = self.registry.auto_promote(self.ours, version, actor=CI)
        if decision.outcome is not Outcome.PROMOTED:
            failed = "; ".join(f"{g.gate}: {g.observed}" for g in decision.gates if not g.passed)
            raise SystemExit(
                f"auto_promote {self.ours} v{version} returned {decision.outcome.value}, not "
                f"promoted: {decision.message or failed}"
            )

    def gate_by_hand(self, version: int) -> bool:
        """The reads of a hand-written CI gate: the two runs' test_auc, tag, description."""
        name = self.theirs
        candidate = self.client.get_model_version(name, str(version))
        run = self.client.get_run(str(candidate.run_id))
        production = self.client.get_model_version_by_alias(name, "production")
        champion = self.client.get_run(str(production.run_id)).data.metrics.get("test_auc")
        auc = run.data.metrics.get("test_auc")
        return (
            auc is not None
            and auc >= self.threshold
            and bool(run.data.tags.get("data_version"))
            and bool(candidate.description)
            and (champion is None or auc > champion + self.margin)
        )

    def promote_by_hand(self, name: str, version: int) -> None:
        """Alias and stage, as a script without modelreg sets them."""
        self.client.set_registered_model_alias(name, "production", str(version))
        self.client.transition_model_version_stage(
            name, str(version), "Production", archive_existing_versions=True
        )

    def ci_gate(self, version: int) -> None:
        """The hand-written CI gate: check, then promote; stop the run if it refuses."""
        if not self.gate_by_hand(version):
            raise SystemExit(f"the hand-written gate refused {self.theirs} v{version}")
        self.promote_by_hand(self.theirs, version)

    # validation and verification

    def validate(self) -> None:
        """``Registry.validate`` of the first candidate; it must pass."""
        decision = self.registry.validate(self.ours, self.our_versions[0], actor=CI)
        if decision.outcome is not Outcome.VALID:
            raise SystemExit(f"validate returned {decision.outcome.value}: {decision.message}")

    def verify(self) -> None:
        """``Registry.verify`` of the first candidate; it must be intact."""
        (result,) = self.registry.verify(self.ours, self.our_versions[0])
        if not result.ok:
            raise SystemExit(f"verify found {result.problems}")

    def manifest_files(self) -> int:
        """How many files the first candidate's manifest lists."""
        record = self.registry.ledger.version_record(self.ours, self.our_versions[0])
        return len(record.manifest) if record and record.manifest else 0

    def download(self) -> None:
        """Plain MLflow download of the same version (no hashing)."""
        uri = self.client.get_model_version_download_uri(self.ours, str(self.our_versions[0]))
        with tempfile.TemporaryDirectory() as tmp:
            mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)


def cases(bench: Bench) -> list[Case]:
    """The measured operations, in the order they must run."""
    data = bench.data

    return [
        Case(
            "register a version",
            lambda _i: bench.our_versions.append(
                bench.register_ours(data.candidate, data.candidate_auc)
            ),
            lambda _i: bench.their_versions.append(
                bench.register_theirs(data.candidate, data.candidate_auc)
            ),
            "`mlflow.sklearn.log_model(..., registered_model_name=...)` as in the course, "
            "plus `log_params`, `set_tag('data_version')`, `infer_signature` and "
            "`update_model_version(description=...)`",
        ),
        Case(
            "auto-promotion decision",
            lambda i: bench.auto_promote(bench.our_versions[i]),
            lambda i: bench.ci_gate(bench.their_versions[i]),
            "hand-written CI gate on `MlflowClient`: `get_model_version`, `get_run`, "
            "`get_model_version_by_alias`, `get_run`, compare test_auc with the margin, then "
            "`set_registered_model_alias` + `transition_model_version_stage`",
            prepare=bench.reset,
        ),
        Case(
            "validate (gates only)",
            lambda _i: bench.validate(),
            lambda _i: bench.gate_by_hand(bench.their_versions[0]),
            "the hand-written gate's four reads, without promoting",
        ),
        Case(
            "verify (download + re-hash)",
            lambda _i: bench.verify(),
            lambda _i: bench.download(),
            "`get_model_version_download_uri` + `mlflow.artifacts.download_artifacts` of the "
            "same version, no hashing",
        ),
    ]


# -- reporting -------------------------------------------------------------------------


def _params(params: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def table(results: Sequence[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| operation | runs | modelreg p50 ms | p95 ms | baseline p50 ms | p95 ms "
        "| **ratio p50** | REST requests modelreg / baseline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ours, theirs = r.modelreg_cost, r.baseline_cost
        lines.append(
            f"| {r.case.label} | {len(r.modelreg.values)} | {ms(r.modelreg.p50())} "
            f"| {ms(r.modelreg.p95())} | {ms(r.baseline.p50())} | {ms(r.baseline.p95())} "
            f"| **{r.ratio:.1f}x** | {ours.per_call(ours.rest_calls):g} / "
            f"{theirs.per_call(theirs.rest_calls):g} |"
        )
    return "\n".join(lines)


def breakdown(cost: Cost, steps: Steps) -> str:
    """Where one probed call went: total, REST, ledger and the named steps."""
    per = cost.per_call
    parts = [
        f"{per(cost.total_ms):,.0f} ms per call",
        f"{per(cost.rest_calls):g} REST requests {per(cost.rest_ms):,.0f} ms",
    ]
    if cost.ledger_reads:
        parts.append(f"ledger reads {per(cost.ledger_ms):,.0f} ms")
    for label, _owner, _attr in STEPS:
        if steps.calls[label]:
            calls = per(steps.calls[label])
            times = f" ({calls:g} calls)" if calls != 1 else ""
            parts.append(f"{label} {per(steps.ms[label]):,.0f} ms{times}")
    return "; ".join(parts)


def endpoints(cost: Cost) -> str:
    """Requests per call by endpoint, artifact file transfers grouped into one line."""
    calls: defaultdict[str, float] = defaultdict(float)
    spent: defaultdict[str, float] = defaultdict(float)
    for endpoint, n in cost.endpoints.items():
        key = endpoint
        if "/mlflow-artifacts/artifacts" in endpoint:
            key = f"{endpoint.split()[0]} mlflow-artifacts (artifact listings and files)"
        calls[key] += n
        spent[key] += cost.endpoint_ms[endpoint]
    return ", ".join(
        f"{cost.per_call(n):g}x {key} ({ms(spent[key] / n)} ms)"
        for key, n in sorted(calls.items(), key=lambda item: -item[1])
    )


def limits(results: Sequence[Result], files: int) -> str:
    """The "What limits it" paragraph, from the probed calls."""
    by = {r.case.label: r for r in results}
    register, promote = by["register a version"], by["auto-promotion decision"]
    verify = by["verify (download + re-hash)"]
    theirs_log = register.baseline_steps
    infer = "of which pip-requirements inference"
    log_ms = register.baseline_cost.per_call(theirs_log.ms["mlflow.sklearn.log_model"])
    infer_ms = register.baseline_cost.per_call(theirs_log.ms[infer])
    sha = "sha256 of artifact files"
    sha_ms = promote.modelreg_cost.per_call(promote.modelreg_steps.ms[sha])
    sha_calls = promote.modelreg_cost.per_call(promote.modelreg_steps.calls[sha])
    share = 100 * verify.modelreg.p50() / promote.modelreg.p50()
    ours, theirs = promote.modelreg_cost, promote.baseline_cost
    lines = [
        f"Registration: plain MLflow spent {ms(infer_ms)} ms of its {ms(log_ms)} ms "
        "`log_model` inferring pip requirements (a subprocess that imports the model); "
        "modelreg pins scikit-learn, skops, numpy and scipy for models built only from "
        "their types (`registration.known_requirements`) and skips that, and spends the time "
        "saved on lineage (git state, pip freeze, data fingerprint), downloading the version "
        "back and hashing it for the manifest, and the ledger record.",
        "",
        f"Auto-promotion: `Registry.verify` alone (download and re-hash the artifacts) takes "
        f"{ms(verify.modelreg.p50())} ms at p50, {share:.0f}% of an auto-promotion's "
        f"{ms(promote.modelreg.p50())} ms; hashing itself is {ms(sha_ms)} ms of it "
        f"({sha_calls:g} `sha256_file` calls for the {files} files of the manifest"
        + (
            ": each file hashed once, the digest taken from the same pass). "
            if sha_calls <= files
            else f": {sha_calls / max(files, 1):.1f} hashes per file). "
        )
        + f"The rest is REST requests: {ours.per_call(ours.rest_calls):g} of them, "
        f"{ms(ours.per_call(ours.rest_ms))} ms summed, against the hand-written gate's "
        f"{theirs.per_call(theirs.rest_calls):g} ({ms(theirs.per_call(theirs.rest_ms))} ms): "
        "reading the candidate, its run, its artifacts and Production, and writing "
        "Staging then Production (stages, alias, tags); modelreg's own writes go "
        "straight to MLflow's REST API, the baseline's MlflowClient sends "
        "`GET registered-models/get` before each of its writes.",
        "",
        f"One probed call of each side (average of {PROBES}). REST time is the sum of the "
        "requests; MLflow downloads artifact files in parallel threads, so it can exceed "
        "the call, and uploads and downloads also count in the steps that make them:",
        "",
    ]
    for r in results:
        lines.append(f"- {r.case.label}, modelreg: {breakdown(r.modelreg_cost, r.modelreg_steps)}")
        lines.append(f"- {r.case.label}, baseline: {breakdown(r.baseline_cost, r.baseline_steps)}")
    lines += [
        "",
        "REST requests of one auto-promotion decision by endpoint:",
        "",
        f"- modelreg: {endpoints(promote.modelreg_cost)}",
        f"- baseline: {endpoints(promote.baseline_cost)}",
    ]
    return "\n".join(lines)


def section(args: argparse.Namespace, results: Sequence[Result], bench: Bench) -> str:
    """The "Governance" section of docs/benchmarks.md."""
    data = bench.data
    command = " ".join([".venv/bin/python bench/governance.py", *args.argv])
    loads = [load for r in results for load in r.loads]
    baselines = "\n".join(f"- {r.case.label}: {r.case.baseline_name}" for r in results)
    return f"""{SECTION}

`bench/governance.py` times what governance costs: registering a version with
`Registry.register` and deciding an auto-promotion with `Registry.auto_promote`
under the starter policy, against the plain-MLflow code a team writes without
modelreg, interleaved in the same run against the same server. Ratio = modelreg
p50 / baseline p50.

- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC
- Machine: {machine()}
- Set-up: one local MLflow server (SQLite backend store, local artifacts, 1 worker),
  SQLite ledger, client and server on the same machine; the starter policy
  (`modelreg.policy.write_starter`); {WARMUPS} warm-up, then {args.repeat} timed runs
  and {PROBES} probed runs per operation
- Models: `RandomForestClassifier({_params(CANDIDATE)})` (held-out test_auc
  {data.candidate_auc:.4f}) is every candidate, trained on `make_classification`
  ({len(data.x_train):,} training rows, {data.x_train.shape[1]} features); Production starts
  with a weaker champion, `RandomForestClassifier({_params(CHAMPION)})` (test_auc
  {data.champion_auc:.4f}), and is returned to it, untimed, before each auto-promotion,
  so every candidate beats it by more than the margin ({bench.margin:g}) and passes the
  gates (test_auc >= {bench.threshold:g}); every `auto_promote` returned `promoted`
  (checked, as is every hand-written gate)
- Command: `{command}`
- 1-minute load average around each operation: {min(loads):.1f} to {max(loads):.1f}

{table(results)}

Baselines:

{baselines}

A registration is the whole `with mlflow.start_run():` block on both sides,
`log_metric("test_auc")` included. modelreg's auto-promotion also re-hashes the
artifacts, checks the signature, lineage, tag and description gates, records the
decision in the ledger and moves the version through Staging; the hand-written
gate does none of that (no integrity check, no audit trail).

### What limits it

{limits(results, bench.files)}
"""


# -- main ------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[list[Result], Bench]:
    """Start the services, register the champions and measure every case."""
    print("== starting MLflow", file=sys.stderr, flush=True)
    with services(args, 0) as (tracking_uri, ledger_uri), tempfile.TemporaryDirectory() as home:
        policy.write_starter(Path(home) / "policy.toml", [ACTOR])
        registry = Registry.connect(tracking_uri, ledger_uri, actor=ACTOR, home=Path(home))
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(tracking_uri)
        mlflow.set_experiment("bench-governance")
        try:
            registry.ledger.migrate()
            print("== training; champions into Production", file=sys.stderr, flush=True)
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
            bench = Bench(registry, client, train())
            bench.set_up_production()
            print("== measuring", file=sys.stderr, flush=True)
            results = [measure(case, args.repeat) for case in cases(bench)]
            bench.files = bench.manifest_files()
        finally:
            registry.close()
    return results, bench


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per operation")
    parser.add_argument(
        "--write-docs",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace the Governance section of docs/benchmarks.md (default: on)",
    )
    parser.add_argument("--docs", type=Path, default=DOCS, help="benchmarks page to update")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be positive")
    # What registry.services reads: SQLite in a temporary directory, one MLflow worker.
    args.backend_store_uri = args.ledger_uri = None
    args.workers = 1
    args.argv = list(argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table and update the docs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # The baseline uses MLflow's deprecated stages on purpose: that is what teams script.
    warnings.filterwarnings("ignore", category=FutureWarning)
    results, bench = run(args)
    text = section(args, results, bench)
    print(text)
    if args.write_docs:
        write_section(args.docs, SECTION, text)
        print(f"wrote {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
