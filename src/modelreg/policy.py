"""Governance policy: gates, approval rules, auto-promotion and roles, from one TOML file.

The policy file has a ``[default]`` policy, per-model overrides under
``[models.<name>]`` (merged key by key over the default), an ``[access]``
table that gives users roles, and ``[[webhooks]]`` subscribers. It is
validated on load; a bad file is refused with the key that is wrong.

The rules are pure: :func:`evaluate` turns a policy and the evidence about a
candidate version (:class:`Evidence`) into a :class:`Decision`, and
:func:`counted_approvers` says which approvals still count. :func:`load` reads
the file and :func:`write_starter` writes the starter policy (the only I/O
here). The registry gathers the evidence and acts on the decision.
"""

from __future__ import annotations

import enum
import math
import operator
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

import httpx
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from modelreg.domain import Action, CompileMode, SemVer, check_model_name, validation_problem
from modelreg.errors import ConflictError, InvalidNameError, PolicyError
from modelreg.semver import VersionFacts, breaks_inputs
from modelreg.ssrf import url_refusal

MAX_POLICY_BYTES = 1 << 20


class Role(enum.StrEnum):
    """What a user may do; each role includes the ones before it."""

    VIEWER = "viewer"
    CONTRIBUTOR = "contributor"
    APPROVER = "approver"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the viewer < contributor < approver < admin order."""
        return list(Role).index(self)


class Permission(enum.StrEnum):
    """A kind of operation, allowed from a minimum role upwards."""

    READ = "read"  # list, show, search, history, lineage, validate
    CONTRIBUTE = "contribute"  # register, sync, request, Staging/Archived moves, auto-promote
    APPROVE = "approve"  # approve, reject, roll back
    ADMINISTER = "administer"  # promote to Production directly, doctor --fix

    @property
    def minimum(self) -> Role:
        """The least role holding this permission."""
        return {
            Permission.READ: Role.VIEWER,
            Permission.CONTRIBUTE: Role.CONTRIBUTOR,
            Permission.APPROVE: Role.APPROVER,
            Permission.ADMINISTER: Role.ADMIN,
        }[self]

    def allows(self, role: Role) -> bool:
        """Whether ``role`` holds this permission (the one rule the facade enforces)."""
        return role.rank >= self.minimum.rank


_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
}
_GATE = re.compile(r"^\s*([A-Za-z0-9_.\-/ ]+?)\s*(>=|<=|>|<)\s*(-?[0-9.]+(?:[eE]-?[0-9]+)?)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MetricGate(_Strict):
    """``metric op threshold``, e.g. ``test_auc >= 0.85``, checked on the version's run."""

    metric: str
    op: Literal[">=", ">", "<=", "<"]
    threshold: float = Field(allow_inf_nan=False)

    @classmethod
    def parse(cls, text: str) -> MetricGate:
        """Parse ``"test_auc >= 0.85"``; raise ValueError naming what is wrong."""
        match = _GATE.match(text)
        if match is None:
            raise ValueError(
                f"metric gate {text!r} must look like 'test_auc >= 0.85' (operators >=, >, <=, <)"
            )
        value = float(match.group(3))
        if not math.isfinite(value):
            raise ValueError(f"metric gate {text!r} needs a finite threshold")
        return cls(metric=match.group(1), op=match.group(2), threshold=value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"

    def holds(self, observed: float) -> bool:
        """Whether ``observed`` satisfies the gate, up to float noise (0.1 + 0.2 <= 0.3)."""
        return _OPS[self.op](round(observed - self.threshold, 12), 0.0)


class Gates(_Strict):
    """What a version must show before it may enter Production."""

    metrics: list[MetricGate] = []
    required_metadata: list[str] = []
    require_description: bool = False
    require_signature: bool = False
    require_complete_lineage: bool = False
    # Declared data lineage (a data_version label, an MLflow dataset) satisfies complete
    # lineage; this stricter rule wants a content fingerprint of the training data.
    require_data_fingerprint: bool = False
    require_verified_digest: bool = True
    # Time a version must spend in Staging before Production; 0 lets a promotion
    # pass through Staging in one step.
    min_staging_minutes: float = Field(default=0.0, ge=0, allow_inf_nan=False)

    @field_validator("metrics", mode="before")
    @classmethod
    def _parse_metrics(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [MetricGate.parse(v) if isinstance(v, str) else v for v in value]
        return value


class Champion(_Strict):
    """How a candidate compares with the current Production version."""

    metric: str = ""  # empty: no metric comparison
    margin: float = Field(default=0.0, ge=0)
    higher_is_better: bool = True
    protect_signature: bool = True  # a breaking input change needs a new MAJOR


class Approvals(_Strict):
    """Who must sign off, and how many of them."""

    required: int = Field(default=0, ge=0, le=20)
    approvers: list[str] = []  # narrow approving to these users (who still need the role)
    roles: list[Role] = []  # ... or to these roles and above; both empty: approver and admin
    separation_of_duties: bool = True  # registrant and requester may not approve


class AutoPromote(_Strict):
    """Whether a better candidate may be promoted without a human."""

    enabled: bool = False
    metric: str = ""
    margin: float = Field(default=0.0, ge=0)
    higher_is_better: bool = True
    require_approval: bool = False


class ServingRules(_Strict):
    """How model servers run a model's versions (``[default.serving]``, ``[models.X.serving]``)."""

    # auto: serve a compiled (ONNX) form once it is verified to answer like the original,
    # else the MLflow pyfunc; require: refuse a version without one; off: always the pyfunc.
    compile: CompileMode = "auto"
    # The largest absolute difference of probabilities (classifiers) or values (regressors)
    # between the original and the compiled form that verification accepts.
    compile_tolerance: float = Field(default=1e-5, gt=0, le=1, allow_inf_nan=False)


class ModelPolicy(_Strict):
    """The effective rules for one model."""

    gates: Gates = Gates()
    champion: Champion = Champion()
    approvals: Approvals = Approvals()
    auto_promote: AutoPromote = AutoPromote()
    serving: ServingRules = ServingRules()

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        rule = self.auto_promote
        if rule.enabled and not rule.metric:
            # Without a metric, any passing candidate would replace a better Production.
            raise ValueError("auto_promote.enabled needs auto_promote.metric to compare with")
        if rule.require_approval and self.approvals.required < 1:
            raise ValueError("auto_promote.require_approval needs approvals.required >= 1")
        return self


ANONYMOUS = "anonymous"
"""The actor of API callers who send no identity (embedded default, no authentication)."""


class Access(_Strict):
    """Roles of users; users not listed get ``default_role``, unidentified callers viewer."""

    default_role: Role = Role.VIEWER
    # Whoever sends no name must not inherit a role meant for known colleagues.
    anonymous_role: Role = Role.VIEWER
    users: dict[str, Role] = {}

    def role_of(self, user: str) -> Role:
        """The role ``user`` holds."""
        if user in self.users:
            return self.users[user]
        return self.anonymous_role if user == ANONYMOUS else self.default_role


class Webhook(_Strict):
    """A subscriber that receives every ledger event, signed with HMAC-SHA256.

    Link-local and cloud-metadata targets are refused; private and loopback
    ones only with ``allow_private`` (see :mod:`modelreg.ssrf`).
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
    url: str = Field(max_length=2000)
    secret_env: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # env var holding the secret
    actions: list[Action] = []  # empty: every action
    allow_private: bool = False  # may the url be (or resolve to) a private or loopback address?

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid url: {exc}") from exc
        if url.scheme not in {"http", "https"} or not url.host:
            raise ValueError("url must be http:// or https:// with a host")
        return value

    @model_validator(mode="after")
    def _allowed_target(self) -> Self:
        # Names are judged again after DNS resolution, at delivery.
        if refusal := url_refusal(httpx.URL(self.url).host, allow_private=self.allow_private):
            raise ValueError(f"url: {refusal}")
        return self


class PolicyFile(_Strict):
    """A whole policy file."""

    default: ModelPolicy = ModelPolicy()
    models: dict[str, dict[str, Any]] = {}
    access: Access = Access()
    webhooks: list[Webhook] = []
    source: str = ""  # where it was read from; "" for the built-in open policy
    # Merged per-model policies, built once: every governed call asks for one.
    _merged: dict[str, ModelPolicy] = PrivateAttr(default_factory=dict)

    def for_model(self, name: str) -> ModelPolicy:
        """The default policy with ``name``'s overrides merged in (validated once)."""
        override = self.models.get(name)
        if not override:
            return self.default
        if name not in self._merged:
            merged = _merge(self.default.model_dump(mode="json"), override)
            try:
                self._merged[name] = ModelPolicy.model_validate(merged)
            except ValidationError as exc:
                raise PolicyError(
                    self.source or "policy", validation_problem(exc.errors()[0], ("models", name))
                ) from exc
        return self._merged[name]


OPEN_POLICY = PolicyFile(
    default=ModelPolicy(gates=Gates(require_verified_digest=False)),
    access=Access(default_role=Role.ADMIN, anonymous_role=Role.ADMIN),
)
"""Used when there is no policy file: no gates and every user an admin, as in plain MLflow."""


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse(text: str, source: str) -> PolicyFile:
    """Parse and validate policy TOML; raise PolicyError naming the offending key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(source, f"not valid TOML: {exc}") from exc
    try:
        policy = PolicyFile.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise PolicyError(source, validation_problem(exc.errors()[0])) from exc
    for name in policy.models:
        try:
            check_model_name(name)
        except InvalidNameError as exc:
            raise PolicyError(source, f"models.{name}: {exc.message}") from exc
        policy.for_model(name)  # a bad override is refused on load, naming its key
    return policy


def load(path: Path) -> PolicyFile:
    """Read the policy file at ``path``; the open policy when it does not exist."""
    if not path.exists():
        return OPEN_POLICY
    try:
        if path.stat().st_size > MAX_POLICY_BYTES:
            raise PolicyError(str(path), f"larger than {MAX_POLICY_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), f"cannot be read: {exc}") from exc
    return parse(text, str(path))


# -- evaluation --------------------------------------------------------------------


@dataclass(frozen=True)
class ChampionEvidence:
    """What is known about the current Production version."""

    version: int
    semver: SemVer | None
    metrics: Mapping[str, float]
    facts: VersionFacts | None


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """Everything the gates look at for one candidate version."""

    name: str
    version: int
    semver: SemVer | None
    metrics: Mapping[str, float]
    metadata: Mapping[str, str]  # version tags, then run tags, then run params
    description: str
    facts: VersionFacts | None  # None: not adopted into the ledger
    lineage_missing: Sequence[str] | None  # None: not adopted
    digest_problems: Sequence[str] | None  # None: not verified
    champion: ChampionEvidence | None = None
    data_fingerprinted: bool = False  # a content hash of the training data is recorded
    staging_minutes: float | None = None  # time in Staging so far; None: not in Staging


@dataclass(frozen=True)
class GateResult:
    """One check with what was required and what was observed."""

    gate: str
    passed: bool
    required: str
    observed: str

    def explain(self) -> str:
        """One line: the gate, required and observed values."""
        verdict = "passed" if self.passed else "failed"
        return f"{self.gate} {verdict}: required {self.required}, observed {self.observed}"


@dataclass(frozen=True)
class Decision:
    """The gates a version went through, in order."""

    results: tuple[GateResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        """The gates that failed."""
        return [r for r in self.results if not r.passed]


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def _metric_gates(gates: Gates, evidence: Evidence) -> list[GateResult]:
    results = []
    for gate in gates.metrics:
        observed = evidence.metrics.get(gate.metric)
        passed = observed is not None and gate.holds(observed)
        shown = "not logged on the version's run" if observed is None else _fmt(observed)
        if observed is not None and not passed and shown == _fmt(gate.threshold):
            shown = repr(observed)  # 0.8499999 must not read as the required 0.85
        results.append(
            GateResult(
                gate=f"metric {gate.metric}", passed=passed, required=str(gate), observed=shown
            )
        )
    return results


def _metadata_gates(gates: Gates, evidence: Evidence) -> list[GateResult]:
    results = [
        GateResult(
            gate=f"metadata {key}",
            passed=bool(evidence.metadata.get(key, "").strip()),
            required="a non-empty tag or param",
            observed=repr(evidence.metadata[key]) if key in evidence.metadata else "missing",
        )
        for key in gates.required_metadata
    ]
    if gates.require_description:
        text = evidence.description.strip()
        results.append(
            GateResult(
                gate="description",
                passed=bool(text),
                required="a version description",
                observed=f"{len(text)} characters" if text else "missing",
            )
        )
    return results


def _problems_gate(
    gate: str,
    required: str,
    problems: Sequence[str] | None,
    *,
    ok: str,
    unknown: str,
    prefix: str = "",
) -> GateResult:
    """A gate that passes when a known list of problems is empty (None: not checked)."""
    if problems is None:
        return GateResult(gate=gate, passed=False, required=required, observed=unknown)
    observed = prefix + ", ".join(problems[:5]) if problems else ok
    return GateResult(gate=gate, passed=not problems, required=required, observed=observed)


def _artifact_gates(gates: Gates, evidence: Evidence) -> list[GateResult]:
    results = []
    if gates.require_signature:
        has = evidence.facts is not None and evidence.facts.inputs is not None
        results.append(
            GateResult(
                gate="signature",
                passed=has,
                required="an input signature",
                observed="present" if has else "missing",
            )
        )
    if gates.require_complete_lineage:
        results.append(
            _problems_gate(
                "lineage",
                "complete lineage (git commit, data, params, environment)",
                evidence.lineage_missing,
                ok="complete",
                unknown="not adopted",
                prefix="missing ",
            )
        )
    if gates.require_data_fingerprint:
        results.append(
            GateResult(
                gate="data fingerprint",
                passed=evidence.data_fingerprinted,
                required="a content fingerprint of the training data",
                observed="recorded" if evidence.data_fingerprinted else "declared only or missing",
            )
        )
    if gates.require_verified_digest:
        results.append(
            _problems_gate(
                DIGEST_GATE,
                "artifacts match the registered sha256 manifest",
                evidence.digest_problems,
                ok="verified",
                unknown="not verified",
            )
        )
    return results


def beats(
    candidate: float | None, champion: float | None, margin: float, *, higher_is_better: bool
) -> bool:
    """Whether ``candidate`` beats ``champion`` by more than ``margin``.

    The difference is rounded to 12 places so that 0.87 - 0.85 counts as
    exactly 0.02 (float subtraction gives 0.020000000000000018).
    """
    if candidate is None or champion is None:
        return False
    gain = candidate - champion if higher_is_better else champion - candidate
    return round(gain, 12) > margin


def _beats_production(
    gate: str,
    metric: str,
    margin: float,
    evidence: Evidence,
    current: ChampionEvidence,
    *,
    higher_is_better: bool,
) -> GateResult:
    """Whether the candidate's ``metric`` beats Production's by more than ``margin``."""
    observed = evidence.metrics.get(metric)
    theirs = current.metrics.get(metric)
    direction = "above" if higher_is_better else "below"
    return GateResult(
        gate=gate,
        passed=beats(observed, theirs, margin, higher_is_better=higher_is_better),
        required=f"more than {_fmt(margin)} {direction} Production "
        f"v{current.version} ({_fmt(theirs) if theirs is not None else 'not logged'})",
        observed=_fmt(observed) if observed is not None else "not logged",
    )


def _champion_gates(champion: Champion, evidence: Evidence) -> list[GateResult]:
    current = evidence.champion
    if current is None:
        return []
    results = []
    if champion.metric:
        results.append(
            _beats_production(
                f"champion {champion.metric}",
                champion.metric,
                champion.margin,
                evidence,
                current,
                higher_is_better=champion.higher_is_better,
            )
        )
    if champion.protect_signature and current.facts is not None and evidence.facts is not None:
        breaking = breaks_inputs(current.facts.inputs, evidence.facts.inputs)
        new_major = (
            evidence.semver is not None
            and current.semver is not None
            and evidence.semver.major > current.semver.major
        )
        results.append(
            GateResult(
                gate="signature compatibility",
                passed=not breaking or new_major,
                required=f"inputs compatible with Production v{current.version}, "
                "or a new MAJOR version",
                observed="compatible"
                if not breaking
                else f"breaking change in {evidence.semver} vs {current.semver}",
            )
        )
    return results


STAGING_GATE = "time in Staging"
"""The gate an override cannot skip: the policy wants the version tried in Staging first."""
DIGEST_GATE = "digest"
"""The gate an override cannot skip: artifacts changed since registration."""
BINDING_GATES = frozenset({STAGING_GATE, DIGEST_GATE})
"""Gates no one may override: an admin's direct promotion is refused when one fails."""


def _staging_gate(gates: Gates, evidence: Evidence) -> list[GateResult]:
    if gates.min_staging_minutes <= 0:
        return []
    spent = evidence.staging_minutes
    return [
        GateResult(
            gate=STAGING_GATE,
            passed=spent is not None and round(spent - gates.min_staging_minutes, 9) >= 0,
            required=f"at least {gates.min_staging_minutes:g} minutes in Staging "
            "(gates.min_staging_minutes)",
            observed="not in Staging" if spent is None else f"{spent:.1f} minutes",
        )
    ]


def evaluate(policy: ModelPolicy, evidence: Evidence) -> Decision:
    """Run every gate of ``policy`` against ``evidence``."""
    return Decision(
        tuple(
            _metric_gates(policy.gates, evidence)
            + _metadata_gates(policy.gates, evidence)
            + _artifact_gates(policy.gates, evidence)
            + _staging_gate(policy.gates, evidence)
            + _champion_gates(policy.champion, evidence)
        )
    )


def auto_promotion(policy: ModelPolicy, evidence: Evidence) -> Decision:
    """The gates plus the auto-promotion rule: enabled, and better than Production."""
    rule = policy.auto_promote
    results = list(evaluate(policy, evidence).results)
    results.append(
        GateResult(
            gate="auto-promotion enabled",
            passed=rule.enabled,
            required="auto_promote.enabled = true",
            observed=str(rule.enabled).lower(),
        )
    )
    current = evidence.champion
    if rule.metric and current is not None:
        results.append(
            _beats_production(
                f"auto-promotion {rule.metric}",
                rule.metric,
                rule.margin,
                evidence,
                current,
                higher_is_better=rule.higher_is_better,
            )
        )
    return Decision(tuple(results))


# -- approvals -------------------------------------------------------------------


@dataclass(frozen=True)
class Vote:
    """One recorded approval."""

    actor: str
    role: Role
    digest: str


def may_approve(rules: Approvals, actor: str, role: Role) -> bool:
    """Whether ``actor`` (holding ``role``) may approve under ``rules``.

    Approving always needs the approver role; the rules can only narrow who
    among approvers and admins may, never widen it to viewers or contributors.
    A listed role includes the roles above it.
    """
    if role.rank < Role.APPROVER.rank:
        return False
    if not rules.approvers and not rules.roles:
        return True
    return actor in rules.approvers or any(role.rank >= r.rank for r in rules.roles)


def conflicts_of_interest(
    rules: Approvals, actor: str, registrants: Collection[str], requester: str
) -> str:
    """Why ``actor`` may not approve this version, or "" when they may.

    ``registrants`` holds everyone who put the version there: the modelreg
    actor that registered it and the user of the MLflow run that produced it.
    """
    if not rules.separation_of_duties:
        return ""
    if actor in registrants:
        return f"{actor} registered this version"
    if actor == requester:
        return f"{actor} requested this promotion"
    return ""


def counted_approvers(
    rules: Approvals,
    votes: Sequence[Vote],
    digest: str,
    registrants: Collection[str],
    requester: str,
) -> list[str]:
    """Distinct approvers whose approval still counts: same artifacts, eligible, no conflict."""
    counted: list[str] = []
    for vote in votes:
        if vote.digest != digest or vote.actor in counted:
            continue
        if not may_approve(rules, vote.actor, vote.role):
            continue
        if conflicts_of_interest(rules, vote.actor, registrants, requester):
            continue
        counted.append(vote.actor)
    return counted


STARTER = """\
# modelreg governance policy.  Reference: docs/governance.md
# The [default] policy applies to every model; [models.<name>] overrides it
# key by key.  Gates are checked whenever a version is requested, approved or
# auto-promoted into Production.

[default.gates]
# Metrics are read from the MLflow run that produced the version.
metrics = ["test_auc >= 0.85"]
# Looked up in the version's tags, then its run's tags, then its run's params.
required_metadata = ["data_version"]
require_description = true
require_signature = true
# Complete lineage: git commit, training data, hyperparameters, environment.  Data
# may be declared (a data_version param or tag, an MLflow dataset) or fingerprinted.
require_complete_lineage = true
# Stricter: require a content fingerprint of the training data (modelreg's register()).
require_data_fingerprint = false
# Minutes a version must spend in Staging before Production (0: promote in one step).
min_staging_minutes = 0
# Re-hash the artifacts and compare them with the manifest taken at registration.
require_verified_digest = true

[default.champion]
# Compare with the current Production version.  Leave metric empty to skip.
metric = ""
margin = 0.0
# A breaking input-signature change is only allowed with a new MAJOR version.
protect_signature = true

[default.approvals]
# One approval by any identified user who did not register the version.
required = 1
approvers = []           # e.g. ["carol"]; with roles = [] too: any approver or admin
roles = []               # e.g. ["approver"]
separation_of_duties = true

[default.auto_promote]
enabled = true
metric = "test_auc"
margin = 0.02            # promote when test_auc beats Production by more than 0.02
require_approval = false # true: passing automation opens a request for a human instead

# Per-model overrides, e.g.:
# [models.fraud-detection.gates]
# metrics = ["test_auc >= 0.9", "latency_ms <= 20"]

[access]
# Roles: viewer < contributor < approver < admin.  Users not listed get default_role;
# API callers who send no identity ("anonymous") get anonymous_role.
default_role = "{default_role}"
anonymous_role = "viewer"

[access.users]
{users}

# Webhook subscribers receive every ledger event, signed with HMAC-SHA256:
# [[webhooks]]
# name = "ops"
# url = "https://hooks.example.com/modelreg"
# secret_env = "MODELREG_WEBHOOK_SECRET_OPS"   # the secret comes from this env var
# actions = []                                 # empty: every action
# allow_private = false                        # true: a private or loopback url is allowed
"""


def write_starter(path: Path, admins: Sequence[str], *, force: bool = False) -> None:
    """Write the starter policy to ``path`` atomically; never overwrite unless ``force``."""
    if path.exists() and not force:
        raise ConflictError(f"{path} exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(starter(admins), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written policy behind


def starter(admins: Sequence[str], default_role: Role = Role.APPROVER) -> str:
    """The commented starter policy with the course's rules; ``admins`` get the admin role."""
    users = "\n".join(f'"{user}" = "admin"' for user in admins) or '# alice = "approver"'
    text = STARTER.format(default_role=default_role.value, users=users)
    parse(text, "starter policy")  # the starter must always be a valid policy
    return text
