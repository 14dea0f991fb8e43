"""Shared fixtures: real PostgreSQL, SeaweedFS S3 and MLflow servers for integration tests.

Servers are session-scoped and start lazily, only when a test asks for them,
so unit tests never pay for them. Nothing here changes process-global state
outside ``monkeypatch``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any
from uuid import uuid4

import pytest

from modelreg.errors import BackendUnavailableError
from modelreg.mlflow_gateway.connection import CLI_HTTP
from services import (
    CORPUS_FIGURES,
    Backend,
    S3Store,
    ServiceSetupError,
    add_corpus_figures,
    admin_pg_url,
    corpus_figures_table,
    create_database,
    drop_database,
    start_mlflow,
    start_seaweed,
)

BACKEND_FIXTURES = {"sqlite": "mlflow_sqlite", "postgres": "mlflow_pg_s3"}


@contextmanager
def _required(what: str) -> Iterator[None]:
    """Turn a service that cannot be provided into a clear test error."""
    try:
        yield
    except (ServiceSetupError, BackendUnavailableError) as exc:
        # Fail, never skip: a missing service must not turn integration tests green.
        pytest.fail(f"cannot provide {what} for integration tests: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """Superuser SQLAlchemy URL of the test PostgreSQL server."""
    with _required("PostgreSQL"):
        url = admin_pg_url()
    return url


@pytest.fixture(scope="session")
def pg_database(pg_admin_url: str) -> Iterator[Callable[[], str]]:
    """Return a factory: each call creates a fresh database and returns its URL.

    Every database created this way is dropped at the end of the session.
    """
    created: list[str] = []

    def make() -> str:
        url = create_database(pg_admin_url)
        created.append(url)
        return url

    yield make
    for url in reversed(created):
        drop_database(pg_admin_url, url)


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    """A SeaweedFS S3 endpoint on free ports with one bucket; see :class:`services.S3Store`."""
    with _required("SeaweedFS"):
        server = start_seaweed(tmp_path_factory.mktemp("seaweedfs"))
    yield server.store
    server.stop()


@pytest.fixture(scope="session")
def mlflow_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """MLflow server on SQLite with a local artifact directory; ledger on its own SQLite file."""
    workdir = tmp_path_factory.mktemp("mlflow-sqlite")
    with _required("MLflow on SQLite"):
        process, tracking_uri = start_mlflow(
            "mlflow-sqlite",
            workdir,
            backend_store_uri=f"sqlite:///{workdir / 'mlflow.db'}",
            artifacts_destination=str(workdir / "artifacts"),
        )
    yield Backend("sqlite", tracking_uri, f"sqlite:///{workdir / 'ledger.db'}")
    process.stop()


@pytest.fixture(scope="session")
def mlflow_pg_s3(
    tmp_path_factory: pytest.TempPathFactory,
    pg_database: Callable[[], str],
    seaweed_s3: S3Store,
) -> Iterator[Backend]:
    """MLflow server on a fresh PostgreSQL database with artifacts in SeaweedFS S3.

    Artifacts land under ``s3://<bucket>/mlflow``; the ledger gets its own
    fresh PostgreSQL database.
    """
    with _required("MLflow on PostgreSQL + S3"):
        process, tracking_uri = start_mlflow(
            "mlflow-pg-s3",
            tmp_path_factory.mktemp("mlflow-pg-s3"),
            backend_store_uri=pg_database(),
            artifacts_destination=f"s3://{seaweed_s3.bucket}/mlflow",
            env=seaweed_s3.server_env(),
        )
    yield Backend("postgres", tracking_uri, pg_database())
    process.stop()


@pytest.fixture(scope="session", params=list(BACKEND_FIXTURES), ids=list(BACKEND_FIXTURES))
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each test using it runs once per backend kind: "sqlite" and "postgres"."""
    # getfixturevalue starts only the server this parameter needs.
    result: Backend = request.getfixturevalue(BACKEND_FIXTURES[request.param])
    return result


@pytest.fixture(scope="session")
def postgres_backend(mlflow_pg_s3: Backend) -> Backend:
    """The PostgreSQL + S3 backend, for tests that only make sense there."""
    return mlflow_pg_s3


@pytest.fixture
def mlflow_env(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """Point MLflow's fluent API at ``backend`` for one test, and undo it afterwards."""
    import mlflow  # imported late: unit tests should not pay for importing MLflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", backend.tracking_uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # The env var alone loses against a URI some earlier code set with
    # mlflow.set_tracking_uri(), which is process-global; set that too.
    mlflow.set_tracking_uri(backend.tracking_uri)
    yield backend
    # A run left open would leak into the next test through MLflow's fluent globals.
    while mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")
    # None clears the global (and the env var, which monkeypatch then restores).
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses."""
    return f"m-{uuid4().hex[:10]}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import anyio and schemathesis whole, before any test starts a thread.

    Both ship pytest plugins, so pytest rewrites each of their modules with
    ``ast.parse`` as it is imported, and both import most modules lazily, on
    first use. CPython 3.11.7 keeps ``ast.parse``'s recursion counter per
    interpreter, not per thread (gh-106905, fixed in 3.11.8): two threads
    parsing at once, e.g. a fuzz test importing schemathesis while its ASGI
    client's thread imports anyio's backend, fail with ``SystemError: AST
    constructor recursion depth mismatch``. It happened in a pytest-xdist worker.
    About a second per process; optional parts whose dependency is missing
    (anyio's trio backend, schemathesis' allure reporting) are skipped.
    """
    for package in ("anyio", "schemathesis"):
        root = importlib.import_module(package)
        for found in pkgutil.walk_packages(root.__path__, f"{package}.", onerror=lambda _: None):
            with suppress(ImportError):
                importlib.import_module(found.name)


@pytest.fixture(autouse=True)
def _mlflow_http_settings() -> Iterator[None]:
    """Undo what a test's in-process ``modelreg serve`` did to MLflow's HTTP client.

    ``modelreg serve`` switches the whole process to fail fast (no retries, a
    10 s timeout; ``use_serving_http_defaults``). Under pytest-xdist a later
    test file in the same worker would otherwise talk to MLflow that way, and
    a busy MLflow server's dropped connection would become a 503.
    """
    from modelreg.mlflow_gateway import connection

    keys = CLI_HTTP.env().keys()
    saved = {key: os.environ.get(key) for key in keys}
    written = dict(connection._WRITTEN)
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    connection._WRITTEN.clear()
    connection._WRITTEN.update(written)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """Under pytest-xdist: add a finished worker's security corpus figures to the run's."""
    rows = getattr(node, "workeroutput", {}).get("corpus_figures")
    if rows:
        add_corpus_figures(node.config, rows)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the security corpus figures (docs/security.md quotes them), also under -q."""
    rows = terminalreporter.config.stash.get(CORPUS_FIGURES, {})
    if rows:
        terminalreporter.write_sep("-", "security corpus figures")
        for line in corpus_figures_table(rows):
            terminalreporter.write_line(line)
