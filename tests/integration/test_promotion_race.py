"""50 concurrent promotions of different versions serialise into one coherent history."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from mlflow import MlflowClient
from registry_helpers import create_versions

from modelreg import lifecycle
from modelreg.domain import Stage
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

RACERS = 50


def test_fifty_concurrent_promotions_leave_exactly_one_production(
    postgres_backend: Backend, tmp_path: Path, model_name: str
) -> None:
    setup = Registry.connect(
        postgres_backend.tracking_uri, postgres_backend.ledger_uri, actor="setup", home=tmp_path
    )
    numbers = create_versions(postgres_backend, setup, model_name, RACERS)
    for number in numbers:
        setup.promote(model_name, number, "Staging")

    def promote(number: int) -> int:
        # Each racer has its own facade and connection pool, like separate API replicas.
        racer = Registry.connect(
            postgres_backend.tracking_uri,
            postgres_backend.ledger_uri,
            actor=f"racer-{number}",
            home=tmp_path,
        )
        try:
            racer.promote(model_name, number, "Production", reason="race")
            return number
        finally:
            racer.close()

    with ThreadPoolExecutor(RACERS) as pool:
        done = list(pool.map(promote, numbers))
    assert sorted(done) == numbers

    history = setup.history(model_name)
    state = history.stages
    assert [v for v, s in state.items() if s is Stage.PRODUCTION] == [history.production]
    assert sum(s is Stage.ARCHIVED for s in state.values()) == RACERS - 1

    # The history is complete and ordered: every promotion archived exactly the
    # version the previous promotion put in Production.
    promotions = [e for e in history.events if e.to_stage == "Production"]
    archives = [e for e in history.events if e.action == "auto_archive"]
    assert len(promotions) == RACERS and len(archives) == RACERS - 1
    for previous, archive in zip(promotions, archives, strict=False):
        assert archive.version == previous.version
        assert archive.id > previous.id
    ids = [e.id for e in history.events]
    assert ids == sorted(ids)

    client = MlflowClient(postgres_backend.tracking_uri)
    winner = client.get_model_version_by_alias(model_name, "production").version
    assert int(winner) == history.production == promotions[-1].version
    natives = [
        mv.version
        for mv in client.search_model_versions(f"name = '{model_name}'")
        if mv.current_stage == "Production"
    ]
    assert natives == [winner]
    assert lifecycle.holder(state, Stage.PRODUCTION) == history.production
    setup.close()
