"""Fixtures for the model-server tests (helpers live in ``serving_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from modelreg.registry import Registry
from services import Backend


@pytest.fixture(scope="module")
def module_registry(
    backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """A facade on the parametrised backend, shared by one module's tests."""
    reg = Registry.connect(
        backend.tracking_uri,
        backend.ledger_uri,
        actor="alice",
        home=tmp_path_factory.mktemp("registry-home"),
    )
    yield reg
    reg.close()
