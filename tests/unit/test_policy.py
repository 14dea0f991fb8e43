"""Policy files, gates and approval counting: pure logic, no services."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg import policy
from modelreg.domain import Action, Event, SemVer, Stage
from modelreg.errors import PolicyError
from modelreg.policy import Approvals, Evidence, Role, Vote
from modelreg.registry.governance import open_request
from modelreg.semver import InputColumn, VersionFacts

STARTER = policy.parse(policy.starter(["ann"]), "starter")
INPUTS = (InputColumn("amount", "double"), InputColumn("age", "long"))


def evidence(**changes: object) -> Evidence:
    """Evidence that passes every starter gate, with ``changes`` applied."""
    fields: dict[str, object] = {
        "name": "churn",
        "version": 2,
        "semver": SemVer(1, 1, 0),
        "metrics": {"test_auc": 0.9},
        "metadata": {"data_version": "2026-11"},
        "description": "better trees",
        "facts": VersionFacts(inputs=INPUTS),
        "lineage_missing": [],
        "digest_problems": [],
    }
    fields.update(changes)
    return Evidence(**fields)  # type: ignore[arg-type]


def champion(auc: float, inputs: tuple[InputColumn, ...] = INPUTS) -> policy.ChampionEvidence:
    """The current Production version, 1.0.0, with ``auc``."""
    return policy.ChampionEvidence(1, SemVer(1, 0, 0), {"test_auc": auc}, VersionFacts(inputs))


def test_starter_policy_has_the_course_rules() -> None:
    rules = STARTER.for_model("anything")
    assert [str(g) for g in rules.gates.metrics] == ["test_auc >= 0.85"]
    assert rules.gates.required_metadata == ["data_version"]
    assert rules.gates.require_description and rules.gates.require_signature
    assert rules.gates.require_complete_lineage
    assert rules.approvals.required == 1 and rules.approvals.separation_of_duties
    assert (rules.auto_promote.enabled, rules.auto_promote.metric) == (True, "test_auc")
    assert rules.auto_promote.margin == pytest.approx(0.02)
    assert STARTER.access.role_of("ann") is Role.ADMIN
    assert STARTER.access.role_of("someone") is Role.APPROVER


def test_a_passing_version_passes_every_gate() -> None:
    decision = policy.evaluate(STARTER.default, evidence())
    assert decision.passed
    assert [r.gate for r in decision.results] == [
        "metric test_auc",
        "metadata data_version",
        "description",
        "signature",
        "lineage",
        "digest",
    ]


@pytest.mark.parametrize(
    ("changes", "gate", "observed"),
    [
        ({"metrics": {"test_auc": 0.84}}, "metric test_auc", "0.84"),
        ({"metrics": {}}, "metric test_auc", "not logged on the version's run"),
        ({"metadata": {}}, "metadata data_version", "missing"),
        ({"metadata": {"data_version": " "}}, "metadata data_version", "' '"),
        ({"description": ""}, "description", "missing"),
        ({"facts": VersionFacts(inputs=None)}, "signature", "missing"),
        ({"lineage_missing": ["git commit"]}, "lineage", "missing git commit"),
        ({"digest_problems": ["modified: MLmodel"]}, "digest", "modified: MLmodel"),
        ({"digest_problems": None}, "digest", "not verified"),
    ],
)
def test_each_failing_gate_names_what_it_saw(
    changes: dict[str, object], gate: str, observed: str
) -> None:
    decision = policy.evaluate(STARTER.default, evidence(**changes))
    assert [(r.gate, r.observed) for r in decision.failures] == [(gate, observed)]


def test_per_model_overrides_merge_key_by_key() -> None:
    loaded = policy.parse(
        '[default.gates]\nmetrics = ["test_auc >= 0.85"]\nrequired_metadata = ["owner"]\n'
        '[models.fraud.gates]\nmetrics = ["test_auc >= 0.95", "latency_ms <= 20"]\n',
        "test",
    )
    fraud = loaded.for_model("fraud")
    assert [str(g) for g in fraud.gates.metrics] == ["test_auc >= 0.95", "latency_ms <= 20"]
    assert fraud.gates.required_metadata == ["owner"]  # kept from the default
    assert loaded.for_model("other").gates.metrics[0].threshold == pytest.approx(0.85)


def test_serving_rules_default_to_auto_and_merge_per_model() -> None:
    assert policy.parse("", "test").for_model("any").serving.compile == "auto"
    loaded = policy.parse(
        '[default.serving]\ncompile_tolerance = 1e-4\n[models.fraud.serving]\ncompile = "off"\n',
        "test",
    )
    fraud = loaded.for_model("fraud").serving
    assert (fraud.compile, fraud.compile_tolerance) == ("off", 1e-4)
    assert loaded.for_model("other").serving.compile == "auto"


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[default.gates]\nmetrics = ['auc => 1']", "default.gates.metrics"),
        ("[default.serving]\ncompile = 'always'", "default.serving.compile"),
        ("[default.serving]\ncompile_tolerance = 0", "default.serving.compile_tolerance"),
        ("[default.approvals]\nrequired = -1", "default.approvals.required"),
        ("[default.gates]\nbogus = true", "default.gates.bogus"),
        ("[models.x.gates]\nmetrics = 3", "models.x.gates.metrics"),
        ("[models.'../etc']\n", "models.../etc"),
        ("[access.users]\nbob = 'god'", "access.users.bob"),
        ("[[webhooks]]\nname = 'a'\nurl = 'ftp://x'\nsecret_env = 'S'", "webhooks.0.url"),
        ("default = [", "not valid TOML"),
        ("[default.gates]\nmetrics = [{metric = 'auc', op = '==', threshold = 1}]", "op"),
        ("[default.gates]\nmetrics = [{metric = 'auc', op = '>', threshold = nan}]", "threshold"),
        ("[default.auto_promote]\nenabled = true\nmetric = ''", "needs auto_promote.metric"),
        ("[default.auto_promote]\nrequire_approval = true", "approvals.required >= 1"),
        ("[[webhooks]]\nname = 'a'\nurl = 'http://'\nsecret_env = 'S'", "webhooks.0.url"),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'https://h'\nsecret_env = 'S'\nactions = ['x']",
            "webhooks.0.actions.0",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'http://169.254.169.254/'\nsecret_env = 'S'\n"
            "allow_private = true",
            "webhooks.0: url: 169.254.169.254 is a link-local, cloud-metadata",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'http://metadata.google.internal/'\nsecret_env = 'S'",
            "webhooks.0: url: metadata.google.internal is a cloud-metadata service",
        ),
        (
            "[[webhooks]]\nname = 'a'\nurl = 'http://0x7f.1:8080/'\nsecret_env = 'S'",
            "webhooks.0: url: 127.0.0.1 is a private or loopback address; set allow_private",
        ),
    ],
)
def test_bad_policy_files_name_the_key(text: str, where: str) -> None:
    with pytest.raises(PolicyError, match="policy test is invalid") as raised:
        policy.parse(text, "test")
    assert where in raised.value.message


def test_missing_file_is_the_open_policy_and_unreadable_is_refused(tmp_path: Path) -> None:
    assert policy.load(tmp_path / "absent.toml") is policy.OPEN_POLICY
    binary = tmp_path / "policy.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(PolicyError, match="cannot be read"):
        policy.load(binary)


@pytest.mark.parametrize(
    ("candidate", "production", "beats"),
    [(0.87, 0.85, False), (0.88, 0.86, False), (0.8701, 0.85, True), (0.86, 0.85, False)],
)
def test_beating_production_needs_more_than_the_margin(
    candidate: float, production: float, beats: bool
) -> None:
    assert policy.beats(candidate, production, 0.02, higher_is_better=True) is beats


@given(st.floats(0, 1, allow_nan=False), st.floats(0, 1, allow_nan=False), st.floats(0, 0.5))
def test_lower_is_better_mirrors_higher_is_better(a: float, b: float, margin: float) -> None:
    assert policy.beats(a, b, margin, higher_is_better=True) == policy.beats(
        b, a, margin, higher_is_better=False
    )


def test_auto_promotion_compares_with_production() -> None:
    rules = STARTER.default
    assert policy.auto_promotion(rules, evidence()).passed  # no Production yet
    close = policy.auto_promotion(rules, evidence(champion=champion(0.88)))
    assert [r.gate for r in close.failures] == ["auto-promotion test_auc"]
    assert "Production v1 (0.88)" in close.failures[0].required
    assert policy.auto_promotion(rules, evidence(champion=champion(0.85))).passed


def test_breaking_signature_needs_a_new_major() -> None:
    narrower = (InputColumn("amount", "double"),)
    breaking = evidence(facts=VersionFacts(inputs=narrower), champion=champion(0.8))
    [failure] = policy.evaluate(STARTER.default, breaking).failures
    assert failure.gate == "signature compatibility"
    major = evidence(
        facts=VersionFacts(inputs=narrower), semver=SemVer(2, 0, 0), champion=champion(0.8)
    )
    assert policy.evaluate(STARTER.default, major).passed


def test_counted_approvers_drop_stale_ineligible_and_conflicted_votes() -> None:
    rules = Approvals(required=2)
    votes = [
        Vote("bob", Role.APPROVER, "sha256:old"),  # approved other bytes
        Vote("carol", Role.APPROVER, "sha256:new"),
        Vote("carol", Role.APPROVER, "sha256:new"),  # counted once
        Vote("victor", Role.VIEWER, "sha256:new"),  # may not approve
        Vote("alice", Role.ADMIN, "sha256:new"),  # registered it
        Vote("dave", Role.ADMIN, "sha256:new"),
    ]
    counted = policy.counted_approvers(rules, votes, "sha256:new", {"alice"}, "erin")
    assert counted == ["carol", "dave"]
    listed = Approvals(required=1, approvers=["victor", "dave"])
    # A list narrows who among approvers may approve; it never lets a viewer in.
    assert policy.counted_approvers(listed, votes, "sha256:new", {"alice"}, "erin") == ["dave"]
    lax = Approvals(required=1, separation_of_duties=False)
    assert "alice" in policy.counted_approvers(lax, votes, "sha256:new", {"alice"}, "erin")


def _event(id_: int, action: Action, actor: str = "x", **kw: object) -> Event:
    return Event(
        id=id_,
        at=datetime(2026, 11, 26, tzinfo=UTC),
        model="churn",
        version=kw.pop("version", 2),  # type: ignore[arg-type]
        action=action,
        actor=actor,
        digest="sha256:d",
        **kw,  # type: ignore[arg-type]
    )


def test_open_request_ends_with_rejection_or_a_move() -> None:
    opened = [_event(1, Action.REGISTER), _event(2, Action.REQUEST, "alice")]
    voted = [*opened, _event(3, Action.APPROVE, "bob", details={"role": "approver"})]
    request = open_request(voted, 2)
    assert request is not None
    assert (request.id, request.actor) == (2, "alice")
    assert request.votes == (Vote("bob", Role.APPROVER, "sha256:d"),)
    assert open_request(voted, 3) is None  # another version
    assert open_request([*voted, _event(4, Action.REJECT, "bob")], 2) is None
    moved = _event(4, Action.TRANSITION, to_stage=Stage.PRODUCTION)
    assert open_request([*voted, moved], 2) is None


def test_roles_listed_for_approval_include_the_roles_above() -> None:
    rules = Approvals(required=1, roles=[Role.APPROVER])
    assert policy.may_approve(rules, "ann", Role.ADMIN)
    assert policy.may_approve(rules, "bob", Role.APPROVER)
    assert not policy.may_approve(rules, "connie", Role.CONTRIBUTOR)
    admins_only = Approvals(required=1, roles=[Role.ADMIN])
    assert not policy.may_approve(admins_only, "bob", Role.APPROVER)


def test_metric_gates_ignore_float_noise() -> None:
    loss = policy.MetricGate.parse("loss <= 0.3")
    assert loss.holds(0.1 + 0.2)
    assert not loss.holds(0.3001)
    rules = policy.parse('[default.gates]\nmetrics = ["auc >= 0.85"]', "t").default
    [failure] = policy.evaluate(rules, evidence(metrics={"auc": 0.8499999})).failures
    assert failure.observed == "0.8499999"  # not "0.85", which would read as passing


def test_a_request_the_automation_opened_belongs_to_who_triggered_it() -> None:
    opened = _event(1, Action.REQUEST, "modelreg-automation", details={"triggered_by": "connie"})
    request = open_request([opened], 2)
    assert request is not None
    assert request.actor == "connie"
    assert policy.conflicts_of_interest(Approvals(), "connie", {"alice"}, request.actor)


def test_a_webhook_may_target_private_addresses_only_when_the_policy_says_so() -> None:
    text = "[[webhooks]]\nname = 'ci'\nurl = 'http://10.1.2.3:8080/hook'\nsecret_env = 'S'\n"
    with pytest.raises(PolicyError, match="allow_private"):
        policy.parse(text, "test")
    [hook] = policy.parse(text + "allow_private = true\n", "test").webhooks
    assert hook.allow_private
