"""Fixtures of the security suite: one seeded SQLite stack, the API in-process, a real model server.

The stack is shared by the package's tests: a model with two versions, version 1 in
Production, adopted from plain MLflow as users create them. The model server is a
real ``modelreg serve`` on a free port following that model's Production alias.
"""

from __future__ import annotations

from collections.abc import Iterator
from uuid import uuid4

import pytest
from security_helpers import Stack, figures_rows

from integration.registry_helpers import create_versions
from modelreg.domain import Stage
from modelreg.registry import Registry
from services import Backend, add_corpus_figures
from serving.serving_helpers import Server, serving


@pytest.fixture(scope="package")
def stack(mlflow_sqlite: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A model with versions 1 and 2, version 1 in Production, on the SQLite backend."""
    home = tmp_path_factory.mktemp("security-home")
    registry = Registry.connect(
        mlflow_sqlite.tracking_uri, mlflow_sqlite.ledger_uri, actor="alice", home=home
    )
    model = f"sec-{uuid4().hex[:8]}"
    create_versions(mlflow_sqlite, registry, model, 2)
    registry.promote(model, 1, Stage.STAGING, reason="security suite")
    registry.promote(model, 1, Stage.PRODUCTION, reason="security suite")
    yield Stack(mlflow_sqlite, registry, model, home)
    registry.close()


@pytest.fixture(scope="package")
def model_server(stack: Stack) -> Iterator[Server]:
    """``modelreg serve MODEL`` on a free port, serving the stack's Production version."""
    home = stack.home / "serve"
    home.mkdir()
    with serving(stack.backend, home, stack.model) as server:
        yield server


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Hand the corpus figures to the process that prints them (tests/conftest.py).

    Under pytest-xdist that is the controller, which gets them in the worker's output.
    """
    rows = figures_rows()
    sink = getattr(session.config, "workeroutput", None)
    if sink is not None:
        sink["corpus_figures"] = rows
    elif rows:
        add_corpus_figures(session.config, rows)
