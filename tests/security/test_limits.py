"""The parsers' limits are the ledger's: the largest accepted values fit both databases.

A version number or semver component the parsers accept must be stored and
looked up without an overflow on SQLite and on PostgreSQL (32-bit INTEGER
columns); one past the limit is refused before any database sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from fastapi.testclient import TestClient

from integration.registry_helpers import _logged_model
from modelreg.api.app import create_app
from modelreg.domain import MAX_VERSION_NUMBER
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

TOP = f"{MAX_VERSION_NUMBER}.{MAX_VERSION_NUMBER}.{MAX_VERSION_NUMBER}"


@pytest.fixture
def registry(backend: Backend, tmp_path: Path) -> Iterator[Registry]:
    reg = Registry.connect(backend.tracking_uri, backend.ledger_uri, actor="alice", home=tmp_path)
    yield reg
    reg.close()


def test_the_largest_versions_fit_the_ledger(registry: Registry, backend: Backend) -> None:
    name = f"limits-{uuid4().hex[:8]}"
    uri, _run_id = _logged_model(backend)
    registered = registry.register_uri(name, uri, semver=TOP)
    assert registered.semver == TOP
    api = TestClient(create_app(registry.settings, registry), raise_server_exceptions=False)
    answers = {
        TOP: 200,  # looked up by the largest components: they fit the columns
        str(MAX_VERSION_NUMBER): 404,  # the largest version number: no such version
        str(MAX_VERSION_NUMBER + 1): 400,
        f"{MAX_VERSION_NUMBER + 1}.0.0": 400,
    }
    for ref, status in answers.items():
        answer = api.get(f"/api/v1/models/{name}/versions/{ref}")
        assert answer.status_code == status, (ref, answer.text)
    assert api.get(f"/api/v1/models/{name}/versions/{TOP}").json()["version"] == 1
