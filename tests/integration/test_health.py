"""/health really asks: a ledger whose PostgreSQL database went away is reported, not "ok"."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modelreg.api.app import create_app
from modelreg.registry import Registry
from modelreg.settings import Settings
from services import Backend, admin_pg_url, create_database, drop_database

pytestmark = pytest.mark.integration


def test_health_asks_the_ledger_each_time(postgres_backend: Backend, tmp_path: Path) -> None:
    admin = admin_pg_url()
    ledger_uri = create_database(admin, prefix="modelreg_health")
    settings = Settings(
        tracking_uri=postgres_backend.tracking_uri,
        ledger_uri=ledger_uri,
        home=tmp_path,
        api_runs_workers=False,
    )
    registry = Registry(settings)
    try:
        registry.ledger.migrate()
        assert registry.health() == {"mlflow": "ok", "ledger": "ok"}
        with TestClient(create_app(settings, registry)) as api:
            assert api.get("/health").status_code == 200
            # The ledger's database goes away while the service runs (migrate() would
            # still answer "ok" from memory: it succeeded once).
            drop_database(admin, ledger_uri)
            answer = api.get("/health")
        assert answer.status_code == 503
        assert answer.json()["mlflow"] == "ok"
        assert answer.json()["ledger"] != "ok"
        assert "ledger database" in answer.json()["ledger"]
    finally:
        registry.close()
        drop_database(admin, ledger_uri)
