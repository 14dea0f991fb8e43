"""Fixtures of the dashboard tests: the integration tests' registry fixtures, a browser.

The registry fixtures (a facade on the real MLflow and ledger, the starter
policy, registering versions) are the integration tests' own; their conftest
imports its helpers as top-level modules, so its folder goes on the path.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

from dashboard_helpers import Browser

from integration.conftest import governed, register_auc, registry
from modelreg.api.app import create_app
from modelreg.registry import Registry

__all__ = ["governed", "register_auc", "registry"]


@pytest.fixture
def browser(governed: Registry) -> Callable[[str], Browser]:
    """Log a new browser (its own cookies) in as a user of the governed registry's API app."""
    app = create_app(governed.settings, governed)
    # No lifespan: the test drives the registry itself, no background workers run.
    return lambda name: Browser(TestClient(app)).log_in(name)
