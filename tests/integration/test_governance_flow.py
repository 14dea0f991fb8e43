"""The course's acceptance rules, end to end on SQLite+local and PostgreSQL+S3.

Versions are real sklearn models registered through modelreg with lineage; the
policy is the starter `modelreg policy init` writes. Every refusal is checked
to change nothing but the ledger.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from registry_helpers import create_versions, overwrite_artifact, production, write_policy

from modelreg import policy
from modelreg.domain import Action, Stage
from modelreg.errors import ApprovalError, GateFailedError, PermissionDeniedError
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


def test_request_refuses_low_auc_with_the_observed_value(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.81)
    with pytest.raises(
        GateFailedError,
        match=r"test_auc failed: required test_auc >= 0\.85, "
        r"observed 0\.81",
    ):
        governed.request(model_name, version)
    with pytest.raises(GateFailedError, match=r"observed 0\.81"):
        governed.approve(model_name, version, actor="bob")
    assert production(governed, model_name) is None
    actions = [e.action for e in governed.history(model_name).events]
    assert actions == [Action.REGISTER, Action.DECLINE]  # the refusal is audited, nothing else
    view = governed.validate(model_name, version)
    assert not view.passed
    failed = {g.gate: g.observed for g in view.gates if not g.passed}
    assert failed == {"metric test_auc": "0.81"}


def test_missing_required_tag_is_refused_naming_it(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.9, data_version=None)
    with pytest.raises(GateFailedError, match="metadata data_version failed"):
        governed.request(model_name, version)
    assert production(governed, model_name) is None


def test_one_approval_by_someone_else_promotes_and_tags_mlflow(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.9)
    requested = governed.request(model_name, version, comment="ready")
    assert requested.outcome == "requested"
    assert production(governed, model_name) is None

    # Separation of duties: alice registered it and the run is the OS user's, so
    # neither may approve it although both hold the approver role...
    for registrant in ("alice", getpass.getuser()):
        with pytest.raises(PermissionDeniedError, match="separation of duties"):
            governed.approve(model_name, version, actor=registrant)
    # ...and a viewer or contributor may not approve at all.
    for actor in ("victor", "connie"):
        with pytest.raises(PermissionDeniedError, match="needs the approver role"):
            governed.approve(model_name, version, actor=actor)
    assert production(governed, model_name) is None

    approved = governed.approve(model_name, version, comment="metrics look right", actor="bob")
    assert approved.outcome == "promoted"
    assert approved.approvers == ["bob"]
    assert production(governed, model_name) == version
    tags = governed.show(model_name, version).tags
    assert tags["approved_by"] == "bob"
    assert tags["comment"] == "metrics look right"
    assert tags["approved_at"].startswith(approved.events[0].at.isoformat()[:16])
    history = governed.history(model_name)
    promoted = [e for e in history.events if e.to_stage is Stage.PRODUCTION]
    assert [(e.actor, e.details["approvers"]) for e in promoted] == [("bob", ["bob"])]
    assert promoted[0].digest == governed.show(model_name, version).digest


def test_rejection_with_comment_shows_in_show_and_tags(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    version = register_auc(0.9)
    governed.request(model_name, version)
    rejected = governed.reject(model_name, version, comment="data_version is stale", actor="bob")
    assert rejected.outcome == "rejected"
    shown = governed.show(model_name, version)
    assert shown.stage is Stage.NONE
    assert shown.tags["rejected_by"] == "bob"
    assert shown.tags["comment"] == "data_version is stale"
    mlflow_tags = (
        MlflowClient(governed.gateway.tracking_uri).get_model_version(model_name, str(version)).tags
    )
    assert mlflow_tags["rejected_by"] == "bob"
    with pytest.raises(ApprovalError, match="no open promotion request"):
        governed.approve(model_name, version, actor="carol")
    assert production(governed, model_name) is None


def test_auto_promotion_needs_more_than_the_margin(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    first = register_auc(0.86, seed=1)
    result = governed.auto_promote(model_name, first)  # no Production yet: gates suffice
    assert result.outcome == "promoted"
    assert production(governed, model_name) == first

    for auc in (0.87, 0.88):  # +0.01, and exactly +0.02: not *more* than the margin
        candidate = register_auc(auc, seed=int(auc * 100))
        declined = governed.auto_promote(model_name, candidate)
        assert declined.outcome == "declined"
        assert "auto-promotion test_auc failed" in declined.message
        assert production(governed, model_name) == first

    better = register_auc(0.89, seed=3)
    promoted = governed.auto_promote(model_name, better)
    assert promoted.outcome == "promoted"
    assert production(governed, model_name) == better
    entered = next(e for e in promoted.events if e.to_stage is Stage.PRODUCTION)
    assert entered.actor == governed.settings.automation_actor
    assert entered.details["previous_version"] == first
    assert entered.reason == "auto-promotion triggered by alice"


def test_approvals_are_bound_to_the_artifact_digest(
    governed: Registry,
    register_auc: Callable[..., int],
    backend: Backend,
    model_name: str,
    tmp_path: Path,
) -> None:
    # Two approvals; the digest gate off so that tampered artifacts reach the count.
    write_policy(
        governed,
        f"\n[models.{model_name}.approvals]\nrequired = 2\n"
        f"[models.{model_name}.gates]\nrequire_verified_digest = false\n",
    )
    version = register_auc(0.9)
    governed.request(model_name, version)
    assert governed.approve(model_name, version, actor="bob").outcome == "pending"

    forged = tmp_path / "input_example.json"
    forged.write_text('{"columns": ["amount"], "data": [[1.0]]}')
    overwrite_artifact(backend, model_name, version, forged)

    after = governed.approve(model_name, version, actor="carol")
    assert after.outcome == "pending"  # bob approved other bytes: his approval no longer counts
    assert after.approvers == ["carol"]
    assert production(governed, model_name) is None


def test_roles_guard_promote_and_rollback(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    first, second = register_auc(0.86, seed=1), register_auc(0.9, seed=2)
    for version in (first, second):
        governed.promote(model_name, version, "Staging", actor="connie")
    for actor in ("victor", "connie", "bob"):  # viewer, contributor, approver
        with pytest.raises(PermissionDeniedError, match="admin role"):
            governed.promote(model_name, first, "Production", actor=actor)
    with pytest.raises(PermissionDeniedError, match="contributor role"):
        governed.promote(model_name, first, "Staging", actor="victor")
    with pytest.raises(PermissionDeniedError, match="contributor role"):
        governed.request(model_name, first, actor="victor")
    governed.promote(model_name, first, "Production", actor="ann", reason="break-glass")
    governed.promote(model_name, second, "Production", actor="ann")
    for actor in ("victor", "connie"):
        with pytest.raises(PermissionDeniedError, match="approver role"):
            governed.rollback(model_name, actor=actor)
    assert production(governed, model_name) == second
    governed.rollback(model_name, actor="bob")
    assert production(governed, model_name) == first
    # Taking Production away weighs like a rollback: not for contributors.
    with pytest.raises(PermissionDeniedError, match="approver role"):
        governed.promote(model_name, first, "Archived", actor="connie")
    assert production(governed, model_name) == first


def test_no_policy_file_means_open_policy(registry: Registry, quick_versions: Any) -> None:
    name = "open-policy-model"
    [version] = quick_versions(name, 1)
    assert registry.role_of("anyone") is policy.Role.ADMIN
    view = registry.request(name, version)
    assert view.outcome == "promoted"  # no gates, no approvals required
    assert view.gates == []


def test_auto_promotion_can_hand_over_to_a_human(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    write_policy(governed, f"\n[models.{model_name}.auto_promote]\nrequire_approval = true\n")
    version = register_auc(0.9)
    handed = governed.auto_promote(model_name, version, actor="bob")
    assert handed.outcome == "requested"
    assert production(governed, model_name) is None
    # The request is bob's although the automation opened it: he may not approve it.
    with pytest.raises(PermissionDeniedError, match="bob requested this promotion"):
        governed.approve(model_name, version, actor="bob")
    assert governed.approve(model_name, version, actor="carol").outcome == "promoted"
    assert production(governed, model_name) == version


def test_production_set_in_plain_mlflow_is_not_adopted_as_production(
    governed: Registry, backend: Backend, model_name: str
) -> None:
    [second] = create_versions(backend, governed, model_name, 1, adopt=False)
    MlflowClient(backend.tracking_uri).set_registered_model_alias(
        model_name, "production", str(second)
    )
    governed.sync(model_name)
    assert governed.show(model_name, second).stage is Stage.NONE
    drift = governed.drift(model_name)
    assert [(d.kind, d.expected, d.actual) for d in drift] == [
        ("alias production", "None", str(second))
    ]
    with pytest.raises(PermissionDeniedError, match="contributor role"):
        governed.sync(model_name, actor="victor")
