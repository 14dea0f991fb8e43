"""The integration fixtures provide working services, and `modelreg up`'s Stack supervises them."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import uuid4

import httpx
import mlflow
import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from modelreg.errors import ConflictError
from modelreg.stack import Stack, StackConfig, free_port, process_group_alive
from services import Backend, S3Store

pytestmark = pytest.mark.integration

# Runs a Stack the way `modelreg up` does, in a process of its own so that the
# test can signal it; prints the service pids once both are healthy.
STACK_DRIVER = """
import sys
from pathlib import Path
from modelreg.stack import Stack, StackConfig
stack = Stack(StackConfig(home=Path(sys.argv[1]), port=int(sys.argv[2]), api_port=int(sys.argv[3])))
stack.start()
print(stack.mlflow.pid, stack.api.pid, flush=True)
sys.exit(stack.run_until_signal())
"""


def _log_model_file(client: MlflowClient, tmp_path: Path) -> tuple[str, str]:
    """Log ``model/model.txt`` in a new run; return the run id and the file content."""
    experiment_id = client.create_experiment(f"exp-{uuid4().hex[:10]}")
    run_id = client.create_run(experiment_id).info.run_id
    content = f"weights {uuid4().hex}"
    source = tmp_path / "model.txt"
    source.write_text(content)
    client.log_artifact(run_id, str(source), artifact_path="model")
    client.set_terminated(run_id)
    return run_id, content


def test_mlflow_round_trips_runs_artifacts_and_versions(
    backend: Backend, tmp_path: Path, model_name: str
) -> None:
    client = MlflowClient(tracking_uri=backend.tracking_uri, registry_uri=backend.tracking_uri)
    run_id, content = _log_model_file(client, tmp_path)

    downloaded = client.download_artifacts(run_id, "model/model.txt", str(tmp_path / "out"))
    assert Path(downloaded).read_text() == content

    client.create_registered_model(model_name)
    version = client.create_model_version(model_name, f"runs:/{run_id}/model", run_id=run_id)
    assert client.get_model_version(model_name, version.version).run_id == run_id


def test_fluent_api_follows_mlflow_env(mlflow_env: Backend) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metric("auc", 0.91)
        mlflow.log_text("hello", "notes/hello.txt")
    client = MlflowClient(tracking_uri=mlflow_env.tracking_uri)
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.91}
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes/hello.txt") == "hello"


def test_ledger_database_is_usable(backend: Backend) -> None:
    engine = sqlalchemy.create_engine(backend.ledger_uri)
    try:
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
            conn.execute(sqlalchemy.text("INSERT INTO probe (id) VALUES (1)"))
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM probe")).scalar() == 1
            conn.execute(sqlalchemy.text("DROP TABLE probe"))
    finally:
        engine.dispose()
    assert engine.dialect.name == backend.kind.replace("postgres", "postgresql")


def test_pg_server_stores_artifacts_in_seaweedfs(
    postgres_backend: Backend, seaweed_s3: S3Store, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=postgres_backend.tracking_uri)
    run_id, content = _log_model_file(client, tmp_path)

    s3 = seaweed_s3.client()
    listed = s3.list_objects_v2(Bucket=seaweed_s3.bucket, Prefix="mlflow/")
    keys = [obj["Key"] for obj in listed.get("Contents", [])]
    matching = [key for key in keys if run_id in key and key.endswith("model/model.txt")]
    assert len(matching) == 1, keys
    body = s3.get_object(Bucket=seaweed_s3.bucket, Key=matching[0])["Body"].read()
    assert body.decode() == content


def _start_stack_process(home: Path) -> tuple[subprocess.Popen[str], StackConfig, list[int]]:
    config = StackConfig(home=home, port=free_port(), api_port=free_port())
    driver = subprocess.Popen(
        [sys.executable, "-c", STACK_DRIVER, str(home), str(config.port), str(config.api_port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None
    ready, _, _ = select.select([driver.stdout], [], [], 150)
    line = driver.stdout.readline() if ready else ""
    if not line:
        driver.kill()
        _, err = driver.communicate()
        pytest.fail(f"stack did not start: {err}")
    return driver, config, [int(pid) for pid in line.split()]


def _wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while any(process_group_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"processes still running: {pids}"
        time.sleep(0.1)


def test_stack_serves_refuses_busy_ports_and_stops_on_sigterm(tmp_path: Path) -> None:
    driver, config, pids = _start_stack_process(tmp_path / "home")
    try:
        with httpx.Client(trust_env=False, timeout=10) as http:
            for url in (config.tracking_uri, f"http://localhost:{config.port}", config.api_url):
                assert http.get(f"{url}/health").status_code == 200, url
            search = f"http://localhost:{config.port}/api/2.0/mlflow/experiments/search"
            assert http.get(search, params={"max_results": 1}).status_code == 200

        second = Stack(StackConfig(home=tmp_path / "other", port=config.port, api_port=free_port()))
        with pytest.raises(ConflictError, match=f"port {config.port} "):
            second.start()
        assert not any(service.alive for service in second.services)

        driver.send_signal(signal.SIGTERM)
        assert driver.wait(timeout=30) == 0
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.communicate()
    _wait_gone(pids)
    assert (tmp_path / "home" / "logs" / "mlflow.log").stat().st_size > 0
    assert (tmp_path / "home" / "logs" / "api.log").stat().st_size > 0


def test_stack_stops_everything_when_a_service_dies(tmp_path: Path) -> None:
    driver, _, (mlflow_pid, api_pid) = _start_stack_process(tmp_path / "home")
    try:
        os.killpg(mlflow_pid, signal.SIGKILL)
        assert driver.wait(timeout=30) == 1
        _, err = driver.communicate()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
    assert "mlflow exited unexpectedly" in err
    _wait_gone([mlflow_pid, api_pid])


# Each process starts the throwaway cluster the way every pytest-xdist worker starts the
# machine's own (`services.admin_pg_url`), then runs a query on it as `postgres`.
CLUSTER_STARTER = """
import subprocess, sys
from pathlib import Path
from services import ensure_cluster_accepting, exclusive_lock
lock, version, name, port = Path(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
with exclusive_lock(lock):
    ensure_cluster_accepting(version, name, port)
subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-p", str(port), "-qAtc", "SELECT 1"],
               check=True, capture_output=True)
print("accepting", flush=True)
"""


def test_parallel_test_processes_start_a_stopped_cluster_once(tmp_path: Path) -> None:
    """Three test processes meet a stopped cluster: one starts it, all then use it.

    CI's machine boots with PostgreSQL down; without the lock two workers' `pg_ctlcluster
    start` collide ("Cluster is already running"), or one queries a server that is still
    starting ("the database system is starting up").
    """
    if os.geteuid() != 0 or not shutil.which("pg_createcluster"):
        pytest.skip("needs root and Debian's postgresql-common to create a throwaway cluster")
    version = subprocess.run(
        ["pg_lsclusters", "-h"], capture_output=True, text=True, check=True
    ).stdout.split()[0]
    name, port = f"modelreg_race_{uuid4().hex[:8]}", free_port()
    subprocess.run(
        ["pg_createcluster", version, name, "-p", str(port)], capture_output=True, check=True
    )
    try:
        starters = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    CLUSTER_STARTER,
                    str(tmp_path / "lock"),
                    version,
                    name,
                    str(port),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
            )
            for _ in range(3)
        ]
        outcomes = [(s, *s.communicate(timeout=120)) for s in starters]
        assert [(s.returncode, out.strip()) for s, out, _ in outcomes] == [(0, "accepting")] * 3, [
            err[-400:] for _, _, err in outcomes
        ]
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, name], capture_output=True, check=False
        )
