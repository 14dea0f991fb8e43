"""doctor checks the ledger's state projection against its events, and --fix rebuilds it."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow import MlflowClient
from sqlalchemy import update

from modelreg.domain import Action, Stage
from modelreg.ledger.tables import VersionStateRow
from modelreg.registry import Registry
from modelreg.registry.drift import PROJECTION_KIND
from services import Backend

pytestmark = pytest.mark.integration


def test_doctor_finds_and_rebuilds_a_damaged_projection(
    registry: Registry, quick_versions: Any, backend: Backend, model_name: str
) -> None:
    quick_versions(model_name, 2)
    registry.promote(model_name, 1, Stage.STAGING, reason="candidate")
    # Damage the projection behind the ledger's back: hot paths now read it wrong.
    with registry.ledger.session(write=True) as session:
        session.execute(
            update(VersionStateRow)
            .where(VersionStateRow.model == model_name, VersionStateRow.version == 1)
            .values(stage=Stage.ARCHIVED.value)
        )
    assert registry.show(model_name, 1).stage is Stage.ARCHIVED

    found = [d for d in registry.doctor() if d.name == model_name]
    assert [(d.version, d.kind, d.repairable) for d in found] == [(1, PROJECTION_KIND, True)]
    assert found[0].expected.startswith("stage Staging; entered Staging at event ")
    assert found[0].actual.startswith("stage Archived")

    fixed = [d for d in registry.doctor(fix=True, actor="ops") if d.name == model_name]
    assert [(d.kind, d.fixed) for d in fixed] == [(PROJECTION_KIND, True)]
    assert registry.show(model_name, 1).stage is Stage.STAGING
    assert [d for d in registry.doctor() if d.name == model_name] == []
    last = registry.history(model_name).events[-1]
    assert (last.action, last.actor) == (Action.REPAIR, "ops")
    assert last.reason == "doctor rebuilt the state projection from the events"
    # MLflow was right all along and is left as it was.
    assert MlflowClient(backend.tracking_uri).get_registered_model(model_name).aliases == {
        "staging": "1"
    }
