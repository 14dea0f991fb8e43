"""`modelreg up --postgres URL --s3 ENDPOINT`: the production-like local stack, for real.

MLflow's tables land in the database's public schema, the ledger in schema
``modelreg`` of the same database, and every artifact in the S3 bucket; bad
input and unreachable stores exit with a message before anything starts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import mlflow
import psycopg
import pytest
from sklearn.linear_model import LogisticRegression
from sqlalchemy.engine import make_url

from modelreg.stack import free_port
from services import S3Store

pytestmark = pytest.mark.integration

MODELREG = [str(Path(sys.executable).parent / "modelreg")]


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _tables(url: str, schema: str) -> set[str]:
    with psycopg.connect(_conninfo(url)) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
        ).fetchall()
    return {row[0] for row in rows}


def _wait_healthy(url: str, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0][-3000:]
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} was not healthy within {timeout} s")


@contextmanager
def _up(database: str, store: S3Store, home: Path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`modelreg up --postgres --s3` on free ports until the block ends (SIGINT)."""
    port, api_port = free_port(), free_port()
    env = {**os.environ, **store.server_env()}
    env.pop("MODELREG_LEDGER_URI", None)
    process = subprocess.Popen(
        [*MODELREG, "--home", str(home), "up", "--port", str(port), "--api-port", str(api_port),
         "--postgres", database, "--s3", store.endpoint_url,
         "--artifacts-destination", f"s3://{store.bucket}/up-test"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        _wait_healthy(f"http://127.0.0.1:{api_port}/health", process)
        yield f"http://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(60)


@pytest.fixture
def up_on_stores(
    tmp_path: Path, pg_database: Callable[[], str], seaweed_s3: S3Store
) -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    """`modelreg up --postgres --s3` on free ports; yields (database URL, tracking URI, process)."""
    database = pg_database()
    with _up(database, seaweed_s3, tmp_path / "home") as (tracking_uri, process):
        yield database, tracking_uri, process


def _cli(
    tracking_uri: str, database: str, home: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """A `modelreg` command against the stack on ``database`` (its ledger in schema modelreg)."""
    from modelreg.stores import production_stores

    stores = production_stores(
        postgres=database, s3=None, backend_store_uri=None, artifacts_destination=None,
        ledger_uri=None,
    )  # fmt: skip
    return subprocess.run(
        [*MODELREG, "--home", str(home), "--tracking-uri", tracking_uri,
         "--ledger-uri", str(stores.ledger_uri), *args],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip


@pytest.fixture
def fluent_mlflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Undo what MLflow's fluent API leaves in the process: the tracking URI, the active
    experiment (a module global) and ``MLFLOW_EXPERIMENT_ID``, which later tests and their
    subprocesses would otherwise inherit from a server that no longer exists."""
    import mlflow.tracking.fluent

    # setenv first: pytest undoes a delenv only if the variable was there.
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "")
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID")
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run(status="KILLED")
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set_experiment sets it for subprocesses


def _register(tracking_uri: str, name: str) -> None:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(name)
    with mlflow.start_run():
        model = LogisticRegression().fit([[0.0], [1.0], [0.2], [0.9]], [0, 1, 0, 1])
        mlflow.sklearn.log_model(model, name="model", registered_model_name=name)


def test_up_keeps_mlflow_the_ledger_and_artifacts_in_the_production_stores(
    up_on_stores: tuple[str, str, subprocess.Popen[str]],
    seaweed_s3: S3Store,
    tmp_path: Path,
    fluent_mlflow: None,
) -> None:
    database, tracking_uri, process = up_on_stores
    _register(tracking_uri, "up-stores")
    # The ledger the API created is in schema modelreg; `sync` adopts through it.
    synced = _cli(tracking_uri, database, tmp_path / "cli", "sync", "up-stores")
    assert synced.returncode == 0, synced.stdout + synced.stderr

    assert {"registered_models", "model_versions", "experiments"} <= _tables(database, "public")
    ledger = _tables(database, "modelreg")
    assert {"events", "versions", "experiments", "alembic_version"} <= ledger
    with psycopg.connect(_conninfo(database)) as conn:
        adopted = conn.execute(
            "SELECT count(*) FROM modelreg.versions WHERE model = 'up-stores'"
        ).fetchone()
    assert adopted == (1,)
    listed = seaweed_s3.client().list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="up-test/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(key.endswith("MLmodel") for key in keys), keys

    process.send_signal(signal.SIGINT)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out[-3000:]
    assert "export MODELREG_LEDGER_URI=" in out
    assert "search_path" in out
    assert make_url(database).password not in out  # the password is never printed


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--postgres", "postgresql://u:p@127.0.0.1:5432"], 2, "must name a database"),
        (["--postgres", "mysql://u:p@127.0.0.1/x"], 2, "wants a postgresql:// URL"),
        (["--s3", "127.0.0.1:8333"], 2, "wants the S3 API's URL"),
        (["--s3", "http://127.0.0.1:1", "--artifacts-destination", "/tmp/x"], 2, "s3://bucket"),
        (
            ["--postgres", "postgresql://u:p@127.0.0.1:1/x", "--backend-store-uri", "sqlite://"],
            2,
            "give one",
        ),
        (["--postgres", "postgresql://u:secret@127.0.0.1:1/x"], 6, "PostgreSQL at"),
    ],
)
def test_up_refuses_bad_stores_before_starting_anything(
    args: list[str], code: int, message: str, tmp_path: Path
) -> None:
    port, api_port = free_port(), free_port()
    done = subprocess.run(
        [*MODELREG, "--home", str(tmp_path / "home"), "up", "--port", str(port),
         "--api-port", str(api_port), *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == code, done.stdout + done.stderr
    assert message in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "secret" not in done.stdout + done.stderr
    assert not (tmp_path / "home" / "logs").exists()  # nothing was started


def test_up_names_missing_s3_credentials(tmp_path: Path, seaweed_s3: S3Store) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null"}
    env["AWS_SHARED_CREDENTIALS_FILE"] = "/dev/null"
    done = subprocess.run(
        [*MODELREG, "--home", str(tmp_path / "home"), "up", "--port", str(free_port()),
         "--api-port", str(free_port()), "--s3", seaweed_s3.endpoint_url],
        capture_output=True, text=True, check=False, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "AWS_ACCESS_KEY_ID" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_one_pg_dump_backs_up_mlflow_and_the_ledger_together(
    up_on_stores: tuple[str, str, subprocess.Popen[str]],
    pg_database: Callable[[], str],
    seaweed_s3: S3Store,
    tmp_path: Path,
    fluent_mlflow: None,
) -> None:
    """docs/operations.md's backup and restore, as written: pg_dump, pg_restore, then check."""
    database, tracking_uri, _ = up_on_stores
    _register(tracking_uri, "backed-up")
    assert _cli(tracking_uri, database, tmp_path / "cli", "sync", "backed-up").returncode == 0
    dump = tmp_path / "registry.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={dump}", _conninfo(database)],
        check=True, timeout=120,
    )  # fmt: skip
    _register(tracking_uri, "backed-up")  # v2: in MLflow and the bucket, not in the dump

    restored = pg_database()
    subprocess.run(
        ["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={_conninfo(restored)}",
         str(dump)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    with _up(restored, seaweed_s3, tmp_path / "restored") as (restored_uri, _process):
        home = tmp_path / "cli-restored"
        doctor = _cli(restored_uri, restored, home, "doctor")
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        verified = _cli(restored_uri, restored, home, "verify", "backed-up")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        versions = _cli(restored_uri, restored, home, "versions", "backed-up", "--json")
        assert [v["version"] for v in json.loads(versions.stdout)] == [1]
