"""The production shape on one machine, without containers, and the checks run against it.

What ``deploy/compose.yaml`` runs in containers, as plain processes on free
ports under one work directory:

- PostgreSQL (Debian's cluster, :func:`services.admin_pg_url`): three fresh
  databases, MLflow's backend store, MLflow's basic-auth user store and the
  modelreg ledger;
- SeaweedFS S3 (:func:`services.start_seaweed`): MLflow's artifact store;
- MLflow with ``--app-name basic-auth`` and ``--serve-artifacts``; modelreg
  talks to it as the service account (the basic-auth admin);
- the modelreg API (uvicorn ``modelreg.api.app:create_app --factory``, its
  loops off) and one ``modelreg worker``;
- N ``modelreg serve --config serving.toml`` replicas of ``fraud-detection``
  behind nginx (Debian's, unprivileged, a generated config);
- Prometheus (Debian's) scraping every replica, the API and the worker each
  second.

:class:`ProductionShape` starts and stops it; :func:`run_checks` drives an
A/B experiment under concurrent load through the load balancer while a
promotion, a ramp and a rolling restart happen, and returns one
:class:`Check` per claim of issue 12. ``tests/topology/test_topology.py``,
``scripts/topology`` and ``bench/topology.py`` all use this module.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import mlflow
from prometheus_client.parser import text_string_to_metric_families
from sklearn.tree import DecisionTreeClassifier

from integration.registry_helpers import labels, training_frame
from modelreg.domain import Stage
from modelreg.errors import BackendUnavailableError
from modelreg.registry import Registry
from modelreg.settings import Settings
from modelreg.stack import (
    MLFLOW_SERVER_ENV,
    ServiceProcess,
    api_server_argv,
    free_port,
    mlflow_server_argv,
)
from services import (
    SERVER_START_TIMEOUT,
    SeaweedServer,
    ServiceSetupError,
    admin_pg_url,
    create_database,
    drop_database,
    start_seaweed,
)

MODEL = "fraud-detection"
KEY_HEADER = "X-User-ID"
SERVICE_ACCOUNT = ("modelreg-svc", "topology-service-password-0123")
NGINX = "/usr/sbin/nginx"
PROMETHEUS = "/usr/bin/prometheus"
#: Seconds of load in each phase of the checks; MODELREG_TOPOLOGY_SECONDS sets the longer form.
DEFAULT_PHASE_SECONDS = 8.0
#: Requests per second of the checks' load: steady, and leaving CPU for restarts on 2 cores.
CHECK_RATE = 150.0
#: Seconds between a replica's count flushes and alias checks (serving.toml).
FLUSH_INTERVAL = 1.0
TREE_DEPTHS = (2, 3, 4)  # versions 1 (first Production), 2 (treatment), 3 (promoted under load)
#: The experiment of the checks: version 2 against production, ramped under load.
TREATMENT, TRAFFIC, RAMPED_TRAFFIC = 2, 0.3, 0.5
#: Loose guardrails: the worker must not stop the experiment because a 2-core CI machine is slow.
GUARDRAILS = ("error_rate<0.5", "p99_latency_ms<60000")
COLUMNS = ["amount", "age", "score"]


def missing_tools() -> list[str]:
    """The Debian packages the shape needs that are not installed (nginx, prometheus)."""
    return [
        package
        for package, binary in (("nginx", NGINX), ("prometheus", PROMETHEUS))
        if not os.access(binary, os.X_OK)
    ]


def phase_seconds() -> float:
    """Seconds of load per phase: MODELREG_TOPOLOGY_SECONDS, else the CI default."""
    return float(os.environ.get("MODELREG_TOPOLOGY_SECONDS", DEFAULT_PHASE_SECONDS))


# --------------------------------------------------------------------------- config files


def nginx_config(directory: Path, port: int, upstreams: Sequence[int]) -> str:
    """nginx.conf of a load balancer on ``port`` over the replicas on ``upstreams``.

    A replica that is stopping closes its idle keep-alive connections and then
    its listening socket; a request nginx sent on such a connection, or one
    refused at connect, goes to the next replica. Scoring is retried even
    after it was sent (``non_idempotent``): a replica that closed the
    connection never started it. Feedback is not (it writes).
    """
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams
    )
    temp = "\n".join(
        f"    {kind}_temp_path {directory / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root nginx would switch its workers to `nobody`, who cannot use the temp dirs.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    proxy = """
            proxy_pass http://serving;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_connect_timeout 1s;
            proxy_read_timeout 30s;
            proxy_next_upstream_tries 3;
            add_header X-Upstream $upstream_addr always;"""
    return f"""{user}worker_processes 1;
pid {directory / "nginx.pid"};
error_log {directory / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
{temp}
    upstream serving {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location = /lb-health {{
            return 200 "ok\\n";
        }}
        location = /feedback {{{proxy}
            proxy_next_upstream error timeout;
        }}
        location / {{{proxy}
            proxy_next_upstream error timeout http_502 http_503 non_idempotent;
        }}
    }}
}}
"""


def prometheus_config(targets: dict[str, Sequence[tuple[str, int]]]) -> str:
    """prometheus.yml scraping each job's (name, port) targets every second."""
    jobs = []
    for job, pairs in targets.items():
        static = "\n".join(
            f"      - targets: ['127.0.0.1:{port}']\n        labels: {{replica: '{name}'}}"
            for name, port in pairs
        )
        jobs.append(f"  - job_name: {job}\n    static_configs:\n{static}")
    return (
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n" + "\n".join(jobs) + "\n"
    )


def serving_toml(model: str, cache_dir: Path) -> str:
    """The replicas' serving config: one model following production, quick flushes."""
    return (
        f'cache_dir = "{cache_dir}"\n'
        f"flush_interval = {FLUSH_INTERVAL}\n"
        "prediction_sample_rate = 1.0\n\n"
        "[[models]]\n"
        f'name = "{model}"\n'
        'alias = "production"\n'
        f"poll_interval = {FLUSH_INTERVAL}\n"
    )


def basic_auth_ini(database_uri: str) -> str:
    """MLflow's basic-auth config: default permission READ, the service account is admin.

    Checked passwords are cached for 60 s (MLflow's ``auth_cache_ttl_seconds``,
    off by default).
    """
    return (
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {SERVICE_ACCOUNT[0]}\n"
        f"admin_password = {SERVICE_ACCOUNT[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # Each worker remembers a checked password for a minute instead of computing its
        # scrypt hash (~75 ms of CPU) on every request; a password change reaches the
        # other worker within that minute.
        "auth_cache_ttl_seconds = 60\n"
    )


# --------------------------------------------------------------------------- the shape


@dataclass(frozen=True)
class Restart:
    """One replica's restart: exit code and seconds to stop and to be ready again.

    An exit code of 0 or -SIGTERM means it drained and stopped by itself;
    -SIGKILL that it had to be killed.
    """

    replica: str
    code: int | None
    stop_seconds: float
    start_seconds: float

    @property
    def drained(self) -> bool:
        """Whether the process stopped by itself on SIGTERM."""
        return self.code in (0, -signal.SIGTERM)

    def __str__(self) -> str:
        return (
            f"{self.replica}: exit {self.code} after {self.stop_seconds:.1f}s, "
            f"ready again {self.start_seconds:.1f}s later"
        )


@dataclass
class Replica:
    """One ``modelreg serve`` process of the shape."""

    name: str
    port: int
    process: ServiceProcess

    @property
    def url(self) -> str:
        """Where to reach this replica directly."""
        return f"http://127.0.0.1:{self.port}"


def _modelreg_argv(*args: str) -> list[str]:
    beside = Path(sys.executable).with_name("modelreg")
    if beside.is_file():
        return [str(beside), *args]
    return [sys.executable, "-c", "from modelreg.cli import run; run()", *args]


def start_nginx(directory: Path, upstreams: Sequence[int]) -> tuple[ServiceProcess, str]:
    """Start an unprivileged nginx in front of ``upstreams``; return it and its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(nginx_config(directory, port, upstreams))
    url = f"http://127.0.0.1:{port}"
    process = ServiceProcess(
        "nginx",
        [NGINX, "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
        health_url=f"{url}/lb-health",
        log_path=directory / "nginx.out",
        cwd=directory,
    )
    process.start()
    try:
        process.wait_ready(30)
    except BaseException:
        process.stop()
        raise
    return process, url


class ProductionShape:
    """PostgreSQL, S3, MLflow (basic auth), API, worker, N replicas, nginx and Prometheus.

    ``with ProductionShape(workdir) as shape:`` starts everything (under a
    minute on 2 cores) and stops it on exit. Model ``model`` gets versions
    1..3 (small decision trees, distinct artifacts), version 1 in Production;
    with ``experiment`` an A/B experiment of version 2 at 30% runs from
    before the replicas start (so they load its arm while starting). Logs
    are under ``workdir/logs``.
    """

    def __init__(
        self, workdir: Path, *, replicas: int = 3, model: str = MODEL, experiment: bool = True
    ) -> None:
        self.workdir = workdir.resolve()
        self.experiment = experiment
        self.logs = self.workdir / "logs"
        self.model = model
        self.replica_count = replicas
        self.replicas: list[Replica] = []
        self.processes: list[ServiceProcess] = []  # start order, stopped in reverse
        self.seaweed: SeaweedServer | None = None
        self.admin_url = ""
        self.databases: list[str] = []
        self.mlflow_url = ""
        self.api_url = ""
        self.worker_metrics_url = ""
        self.lb_url = ""
        self.prometheus_url = ""
        self.ledger_uri = ""

    # -- the environment every modelreg process gets ------------------------------------

    def modelreg_env(self, home: Path) -> dict[str, str]:
        """MODELREG_* and the service account's MLflow credentials, as compose sets them."""
        return {
            "MODELREG_TRACKING_URI": self.mlflow_url,
            "MODELREG_LEDGER_URI": self.ledger_uri,
            "MODELREG_HOME": str(home),
            "MODELREG_AUTH": "mlflow",
            "MLFLOW_TRACKING_URI": self.mlflow_url,
            "MLFLOW_TRACKING_USERNAME": SERVICE_ACCOUNT[0],
            "MLFLOW_TRACKING_PASSWORD": SERVICE_ACCOUNT[1],
        }

    @contextlib.contextmanager
    def service_account(self) -> Iterator[Registry]:
        """This process as modelreg's service account: a Registry, MLflow's fluent API pointed here.

        The MLflow credentials are environment variables (MLflow's client reads
        them per request); they are restored when the block ends.
        """
        keys = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        saved = {key: os.environ.get(key) for key in keys}
        os.environ.update(
            {key: value for key, value in self.modelreg_env(self.workdir).items() if key in keys}
        )
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.mlflow_url)
        settings = Settings(
            tracking_uri=self.mlflow_url,
            ledger_uri=self.ledger_uri,
            home=self.workdir / "operator",
            auth="mlflow",
        )
        registry = Registry(settings)
        try:
            yield registry
        finally:
            registry.close()
            while mlflow.active_run() is not None:
                mlflow.end_run(status="KILLED")
            mlflow.set_tracking_uri(previous)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Start every service in dependency order; on failure stop what was started."""
        try:
            self._start_backends()
            self._start_api_and_worker()
            with self.service_account() as registry:
                first, treatment, promoted = TREE_DEPTHS
                register_tree(registry, self.model, first)
                register_tree(registry, self.model, treatment)
                registry.promote(self.model, 1, Stage.STAGING, reason="topology: first")
                registry.promote(self.model, 1, Stage.PRODUCTION, reason="topology: first")
                if self.experiment:
                    start_experiment(registry, self.model)
                self._launch_replicas()
                # Version 3 is only promoted later: register it while the replicas load.
                register_tree(registry, self.model, promoted)
            for replica in self.replicas:
                replica.process.wait_ready(SERVER_START_TIMEOUT)
            self._start_front()
        except BaseException:
            self.stop()
            raise

    def _start_backends(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.admin_url = admin_pg_url()
        backend, auth, ledger = (
            create_database(self.admin_url, f"modelreg_topology_{what}")
            for what in ("mlflow", "auth", "ledger")
        )
        self.databases = [backend, auth, ledger]
        self.ledger_uri = ledger
        self.seaweed = start_seaweed(self.workdir / "s3", bucket="modelreg-topology")
        config = self.workdir / "basic_auth.ini"
        config.write_text(basic_auth_ini(auth))
        config.chmod(0o600)
        port = free_port()
        self.mlflow_url = f"http://127.0.0.1:{port}"
        self._launch(
            "mlflow",
            # Two workers, as compose runs it: basic auth hashes the password of every
            # request, and the replicas' alias checks must not starve the operator's calls.
            mlflow_server_argv(
                backend_store_uri=backend,
                artifacts_destination=f"s3://{self.seaweed.store.bucket}/artifacts",
                host="127.0.0.1",
                port=port,
                workers=2,
                app_name="basic-auth",
            ),
            health_url=f"{self.mlflow_url}/health",
            env={
                **MLFLOW_SERVER_ENV,
                **self.seaweed.store.server_env(),
                "MLFLOW_AUTH_CONFIG_PATH": str(config),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "topology-flask-secret-0123456789",
            },
        )

    def _start_api_and_worker(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self._launch(
            "api",
            api_server_argv(host="127.0.0.1", port=port),
            health_url=f"{self.api_url}/health",
            env={
                **self.modelreg_env(self.workdir / "api"),
                "MODELREG_API_RUNS_WORKERS": "false",
                "MODELREG_DASHBOARD_SECRET": "topology-dashboard-secret-0123456789abcdef",
            },
        )
        worker_port = free_port()
        self.worker_metrics_url = f"http://127.0.0.1:{worker_port}"
        self._launch(
            "worker",
            _modelreg_argv("worker", "--metrics-port", str(worker_port)),
            health_url=f"{self.worker_metrics_url}/health",
            env={
                **self.modelreg_env(self.workdir / "worker"),
                "MODELREG_EXPERIMENT_INTERVAL_SECONDS": "5",
                "MODELREG_SYNC_INTERVAL_SECONDS": "30",
            },
        )

    def _launch(
        self,
        name: str,
        argv: list[str],
        *,
        health_url: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        wait: bool = True,
    ) -> ServiceProcess:
        """Start one process of the shape, logging to ``<logs>/<name>.log``; wait until ready."""
        process = ServiceProcess(
            name,
            argv,
            health_url=health_url,
            env=env,
            log_path=self.logs / f"{name}.log",
            cwd=cwd or self.workdir,
        )
        self.processes.append(process)
        process.start()
        if wait:
            process.wait_ready(SERVER_START_TIMEOUT)
        return process

    def _launch_replicas(self) -> None:
        for index in range(1, self.replica_count + 1):
            name = f"serving-{index}"
            home = self.workdir / name
            home.mkdir(parents=True, exist_ok=True)
            config = home / "serving.toml"
            config.write_text(serving_toml(self.model, home / "cache"))
            port = free_port()
            process = self._launch(
                name,
                _modelreg_argv(
                    "serve", "--config", str(config), "--port", str(port), "--workers", "1"
                ),
                health_url=f"http://127.0.0.1:{port}/v2/health/ready",
                env={**self.modelreg_env(home), "MODELREG_RELOAD_TOKEN": ""},
                cwd=home,
                wait=False,  # all at once: loading is mostly waiting for MLflow and S3
            )
            self.replicas.append(Replica(name, port, process))

    def _start_front(self) -> None:
        nginx, self.lb_url = start_nginx(self.workdir / "nginx", [r.port for r in self.replicas])
        self.processes.append(nginx)
        directory = self.workdir / "prometheus"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        api_port, worker_port = (
            int(u.rsplit(":", 1)[1]) for u in (self.api_url, self.worker_metrics_url)
        )
        config.write_text(
            prometheus_config(
                {
                    "modelreg-serving": [(r.name, r.port) for r in self.replicas],
                    "modelreg-api": [("api", api_port)],
                    "modelreg-worker": [("worker", worker_port)],
                }
            )
        )
        port = free_port()
        self.prometheus_url = f"http://127.0.0.1:{port}"
        self._launch(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            health_url=f"{self.prometheus_url}/-/ready",
            cwd=directory,
        )

    def stop(self) -> None:
        """Stop every process (reverse start order), SeaweedFS, and drop the databases."""
        # All at once: nothing left needs another to stop cleanly (replicas flush to PostgreSQL).
        with ThreadPoolExecutor(max_workers=max(1, len(self.processes))) as pool:
            list(pool.map(lambda process: process.stop(timeout=15), reversed(self.processes)))
        self.processes.clear()
        if self.seaweed is not None:
            self.seaweed.stop()
            self.seaweed = None
        for url in self.databases:
            with contextlib.suppress(Exception):  # best effort: the cluster may be gone
                drop_database(self.admin_url, url)
        self.databases.clear()

    def restart_replica(self, replica: Replica) -> Restart:
        """Stop ``replica`` with SIGTERM (graceful), start it again, wait until it is ready."""
        began = time.monotonic()
        replica.process.stop(timeout=30)
        stopped = time.monotonic()
        code = replica.process.returncode
        replica.process.start()
        replica.process.wait_ready(SERVER_START_TIMEOUT)
        return Restart(replica.name, code, stopped - began, time.monotonic() - stopped)

    def urls(self) -> dict[str, str]:
        """Where each part of the shape answers."""
        found = {
            "load balancer (nginx)": self.lb_url,
            "API and dashboard": f"{self.api_url}  (dashboard {self.api_url}/ui)",
            "MLflow (basic auth)": self.mlflow_url,
            "Prometheus": self.prometheus_url,
            "worker /metrics": f"{self.worker_metrics_url}/metrics",
        }
        for replica in self.replicas:
            found[replica.name] = replica.url
        if self.seaweed is not None:
            found["S3 (SeaweedFS)"] = self.seaweed.store.endpoint_url
        found["ledger (PostgreSQL)"] = self.ledger_uri
        found["logs"] = str(self.logs)
        return found

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def register_tree(registry: Registry, model: str, depth: int) -> None:
    """Register a decision tree of ``depth`` as the model's next version, with lineage."""
    frame = training_frame(0, columns=COLUMNS)
    tree = DecisionTreeClassifier(max_depth=depth, random_state=0).fit(frame, labels(frame))
    with mlflow.start_run():
        registry.register(tree, name=model, training_data=frame, description=f"depth {depth}")


def start_experiment(registry: Registry, model: str) -> None:
    """Start the checks' experiment: version 2 against production at 30%."""
    registry.ab_start(
        model, [TREATMENT], traffic=TRAFFIC, guardrails=GUARDRAILS, reason="topology check"
    )


# --------------------------------------------------------------------------- load


def scoring_body(seed: int) -> dict[str, Any]:
    """A one-row scoring body."""
    rng = random.Random(seed)
    return {"dataframe_split": {"columns": COLUMNS, "data": [[rng.gauss(0, 1) for _ in COLUMNS]]}}


@dataclass(frozen=True)
class Answer:
    """One request of the load: who asked, who answered, with what."""

    key: str
    status: int  # 0: no HTTP answer at all
    variant: str
    version: str
    upstream: str
    error: str = ""


@dataclass
class LoadResult:
    """Every answer of a load run and how long it ran."""

    answers: list[Answer] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> list[Answer]:
        """The successful answers (200)."""
        return [a for a in self.answers if a.status == 200]

    @property
    def failed(self) -> list[Answer]:
        """Every answer that was not a 200 (or no answer)."""
        return [a for a in self.answers if a.status != 200]

    def per_variant(self) -> Counter[str]:
        """Successful requests per X-Variant."""
        return Counter(a.variant for a in self.ok)

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return len(self.ok) / self.seconds if self.seconds else 0.0


class Load:
    """Concurrent scoring requests to ``urls`` from a thread of its own until :meth:`stop`.

    Each of ``concurrency`` tasks loops: a random key of ``keys`` in
    ``X-User-ID``, a one-row body, POST ``/invocations`` to the next URL.
    ``rate`` (requests per second, all tasks together) paces them; None sends
    as fast as answers come.
    """

    def __init__(
        self,
        urls: Sequence[str],
        keys: Sequence[str],
        concurrency: int = 4,
        rate: float | None = None,
    ) -> None:
        self.urls = list(urls)
        self.keys = list(keys)
        self.concurrency = concurrency
        self.interval = concurrency / rate if rate else 0.0
        self.result = LoadResult()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topology-load", daemon=True)

    def start(self) -> Self:
        """Start sending."""
        self._thread.start()
        return self

    def stop(self) -> LoadResult:
        """Stop sending, wait for the requests in flight; return every answer."""
        self._stop.set()
        self._thread.join()
        return self.result

    def _run(self) -> None:
        began = time.monotonic()
        asyncio.run(self._main())
        self.result.seconds = time.monotonic() - began

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        async with httpx.AsyncClient(trust_env=False, timeout=30, limits=limits) as client:
            await asyncio.gather(*(self._worker(client, n) for n in range(self.concurrency)))

    async def _worker(self, client: httpx.AsyncClient, number: int) -> None:
        rng = random.Random(number)
        sent = 0
        due = time.monotonic()
        while not self._stop.is_set():
            if self.interval:
                due += self.interval
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            key = rng.choice(self.keys)
            url = self.urls[(number + sent) % len(self.urls)]
            sent += 1
            self.result.answers.append(await score(client, url, key, number * 1_000_000 + sent))


async def score(client: httpx.AsyncClient, url: str, key: str, seed: int) -> Answer:
    """POST one scoring request as ``key``; a transport error is an answer with status 0."""
    try:
        response = await client.post(
            f"{url}/invocations", json=scoring_body(seed), headers={KEY_HEADER: key}
        )
    except httpx.HTTPError as exc:
        return Answer(key, 0, "", "", url, f"{type(exc).__name__}: {exc}")
    headers = response.headers
    return Answer(
        key,
        response.status_code,
        headers.get("x-variant", ""),
        headers.get("x-model-version", ""),
        headers.get("x-upstream", url),
        "" if response.status_code == 200 else response.text[:200],
    )


def route_table(urls: Sequence[str], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """For every URL, the X-Variant each key gets from it (one request per key)."""

    async def ask(url: str) -> dict[str, str]:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            answers = [await score(client, url, key, i) for i, key in enumerate(keys)]
        bad = [a for a in answers if a.status != 200]
        if bad:
            raise AssertionError(f"{url}: {len(bad)} failed requests, e.g. {bad[0]}")
        return {a.key: a.variant for a in answers}

    async def everyone() -> list[dict[str, str]]:
        return list(await asyncio.gather(*(ask(url) for url in urls)))

    return dict(zip(urls, asyncio.run(everyone()), strict=True))


# --------------------------------------------------------------------------- observations


def replica_counts(url: str, model: str) -> Counter[str]:
    """A replica's ``modelreg_serving_requests_total`` per variant (code 200), from /metrics."""
    text = httpx.get(f"{url}/metrics", trust_env=False, timeout=10).text
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "modelreg_serving_requests_total"
                and sample.labels.get("model") == model
                and sample.labels.get("code") == "200"
            ):
                counts[sample.labels["variant"]] += int(sample.value)
    return counts


def ledger_counts(registry: Registry, model: str) -> Counter[str]:
    """The ledger's requests per variant of the model's experiment, summed over replicas."""
    report = registry.ab_status(model).report or {}
    return Counter({v["variant"]: int(v["requests"]) for v in report.get("variants", [])})


def prometheus_series(prometheus_url: str, model: str) -> dict[tuple[str, str], float]:
    """Prometheus's request counters: (replica, variant) -> value, from /api/v1/query."""
    query = f'sum by (replica, variant) (modelreg_serving_requests_total{{model="{model}"}})'
    answer = httpx.get(
        f"{prometheus_url}/api/v1/query", params={"query": query}, trust_env=False, timeout=10
    ).json()
    return {
        (r["metric"].get("replica", ""), r["metric"].get("variant", "")): float(r["value"][1])
        for r in answer["data"]["result"]
    }


def prometheus_targets_up(prometheus_url: str) -> dict[str, bool]:
    """Every scrape target's replica label and whether its last scrape worked."""
    answer = httpx.get(f"{prometheus_url}/api/v1/targets", trust_env=False, timeout=10).json()
    return {
        t["labels"].get("replica", t["scrapeUrl"]): t["health"] == "up"
        for t in answer["data"]["activeTargets"]
    }


def nginx_retries(error_log: Path) -> Counter[str]:
    """Why nginx gave up on a replica, from its error log: refused connects, cut-off answers."""
    reasons: Counter[str] = Counter()
    with contextlib.suppress(FileNotFoundError):
        for line in error_log.read_text(errors="replace").splitlines():
            if "[error]" in line and "upstream" in line:
                # "*27 connect() failed (111: Connection refused) while connecting to upstream"
                reasons[line.split("] ", 1)[-1].split(", client")[0].split(" ", 2)[-1]] += 1
    return reasons


def wait_for(what: str, condition: Any, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll ``condition()`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def routing_settled(urls: Sequence[str], keys: Sequence[str]) -> bool:
    """Whether every replica routes ``keys`` the same way, to control and treatment both."""
    table = route_table(urls, keys)
    first = table[urls[0]]
    return set(first.values()) == {"control", "treatment"} and all(
        t == first for t in table.values()
    )


# --------------------------------------------------------------------------- the checks


@dataclass(frozen=True)
class Check:
    """One claim about the shape, whether it held, and the evidence."""

    name: str
    ok: bool
    detail: str


@dataclass
class Observations:
    """What :func:`run_checks` saw, for reports and benchmarks."""

    checks: list[Check] = field(default_factory=list)
    steady: LoadResult = field(default_factory=LoadResult)
    changes: LoadResult = field(default_factory=LoadResult)
    restarts: list[Restart] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds each step took

    @contextlib.contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record how long the block took under ``step``."""
        began = time.monotonic()
        try:
            yield
        finally:
            self.timings[step] = time.monotonic() - began

    def add(self, name: str, ok: bool, detail: str) -> None:
        """Record one check."""
        self.checks.append(Check(name, ok, detail))

    @property
    def ok(self) -> bool:
        """Whether every check held."""
        return all(c.ok for c in self.checks)

    def summary(self) -> str:
        """One line per check, then the seconds each step took."""
        steps = ", ".join(f"{step} {took:.1f}s" for step, took in self.timings.items())
        lines = [f"{'PASS' if c.ok else 'FAIL'}  {c.name}: {c.detail}" for c in self.checks]
        return "\n".join([*lines, f"took: {steps}"])


def run_checks(shape: ProductionShape, seconds: float | None = None) -> Observations:
    """Run an experiment under load through the load balancer and check issue 12's claims.

    1. Steady phase (``seconds`` of load through nginx and to each replica
       directly, experiment v2 vs production at 30%): every key gets the same
       variant from every replica and through the load balancer; after a
       flush, the ledger's per-variant counts equal the sum of the replicas'
       ``/metrics`` counters and the load generator's successful requests;
       Prometheus holds per-variant series of every replica.
    2. Changes under load (through nginx only): promote v3 to Production
       (control's alias moves), ramp the treatment to 50%, then restart the
       replicas one at a time (SIGTERM, start, ready). No request may fail,
       each replica must drain by itself, and afterwards the ledger's counts
       still equal everything the load generator got answered.
    """
    seconds = phase_seconds() if seconds is None else seconds
    seen = Observations()
    keys = [f"user-{n:04d}" for n in range(300)]
    urls = [r.url for r in shape.replicas]
    model = shape.model
    with shape.service_account() as registry:
        if not shape.experiment:
            with seen.timed("experiment start"):
                start_experiment(registry, model)
        with seen.timed("routing settled"):
            wait_for(
                "every replica to route the experiment",
                lambda: routing_settled(urls, keys[:50]),
            )
        with seen.timed("steady phase"):
            _steady_phase(shape, registry, keys, seconds, seen)
        with seen.timed("changes phase"):
            _changes_phase(shape, registry, keys, seconds, seen)
    return seen


def flushed_counts(
    shape: ProductionShape, registry: Registry
) -> tuple[bool, Counter[str], Counter[str], dict[str, Counter[str]]]:
    """Wait until the ledger's counts equal the sum of the replicas' (they flush each second).

    Returns whether they came to agree, the ledger's counts per variant, the
    replicas' sum and each replica's counters (``default``, answered before
    the experiment reached a replica, is not experiment traffic).
    """
    deadline = time.monotonic() + FLUSH_INTERVAL * 15
    while True:
        per_replica = {r.name: replica_counts(r.url, shape.model) for r in shape.replicas}
        summed = sum(per_replica.values(), Counter())
        summed.pop("default", None)
        ledger = ledger_counts(registry, shape.model)
        if ledger == summed or time.monotonic() > deadline:
            return ledger == summed, ledger, summed, per_replica
        time.sleep(FLUSH_INTERVAL / 2)


def _steady_phase(
    shape: ProductionShape,
    registry: Registry,
    keys: Sequence[str],
    seconds: float,
    seen: Observations,
) -> None:
    urls = [r.url for r in shape.replicas]
    model = shape.model
    # The requests that waited for the routing to settle, once every replica flushed them.
    _, ledger_before, replicas_before, _ = flushed_counts(shape, registry)
    load = Load([shape.lb_url, shape.lb_url, *urls], keys, rate=CHECK_RATE).start()
    time.sleep(seconds)
    table = route_table([*urls, shape.lb_url], keys)
    seen.steady = load.stop()
    disagreeing = [k for k in keys if len({table[u][k] for u in table}) != 1]
    by_key: dict[str, set[str]] = defaultdict(set)
    for answer in seen.steady.ok:
        by_key[answer.key].add(answer.variant)
    drifting = [k for k, variants in by_key.items() if {table[urls[0]][k]} != variants]
    upstreams = {a.upstream for a in seen.steady.ok}
    seen.add(
        "same variant for every key on every replica and through the load balancer",
        not disagreeing and not drifting and not seen.steady.failed,
        f"{len(keys)} keys asked of {len(urls)} replicas and nginx; "
        f"{len(seen.steady.ok)} requests under load from {len(upstreams)} answering addresses; "
        f"{len(disagreeing)} keys disagreed between replicas, {len(drifting)} changed variant "
        f"under load, {len(seen.steady.failed)} failed; treated keys: "
        f"{sum(v == 'treatment' for v in table[urls[0]].values())}",
    )
    sent = seen.steady.per_variant() + Counter(v for t in table.values() for v in t.values())
    agree, ledger, summed, per_replica = flushed_counts(shape, registry)
    grown_ledger, grown_replicas = ledger - ledger_before, summed - replicas_before
    seen.add(
        "ledger counts = sum over replicas' /metrics = requests answered (steady)",
        agree and grown_ledger == grown_replicas == sent,
        f"ledger {dict(ledger)}, replicas { ({n: dict(c) for n, c in per_replica.items()}) }; "
        f"during the load the ledger grew by {dict(grown_ledger)}, the replicas' sum by "
        f"{dict(grown_replicas)}, the load generator got {dict(sent)} answered",
    )
    want = {(r.name, v) for r in shape.replicas for v in ("control", "treatment")}

    def prometheus_has_all() -> dict[tuple[str, str], float] | None:
        series = prometheus_series(shape.prometheus_url, model)
        complete = all(series.get(k) == per_replica[k[0]][k[1]] for k in want)
        return series if complete else None

    try:
        series = wait_for("Prometheus to scrape every replica's counts", prometheus_has_all, 15)
        ok = True
    except AssertionError:
        series, ok = prometheus_series(shape.prometheus_url, model), False
    targets = prometheus_targets_up(shape.prometheus_url)
    seen.add(
        "Prometheus holds per-variant series of every replica",
        ok and all(targets.values()),
        f"series { ({f'{r}/{v}': int(n) for (r, v), n in sorted(series.items())}) }; "
        f"targets up: {targets}",
    )


def _changes_phase(
    shape: ProductionShape,
    registry: Registry,
    keys: Sequence[str],
    seconds: float,
    seen: Observations,
) -> None:
    model = shape.model
    before = ledger_counts(registry, model)
    load = Load([shape.lb_url], keys, rate=CHECK_RATE).start()
    pause = seconds / 3
    time.sleep(pause)
    with seen.timed("promotion"):
        registry.promote(model, 3, Stage.STAGING, reason="topology: promotion under load")
        registry.promote(model, 3, Stage.PRODUCTION, reason="topology: promotion under load")
    time.sleep(pause)
    with seen.timed("ramp"):
        registry.ab_ramp(model, RAMPED_TRAFFIC, reason="topology: ramp under load")
    time.sleep(pause)
    for replica in shape.replicas:
        seen.restarts.append(shape.restart_replica(replica))
        time.sleep(1.0)  # nginx retries the replica after fail_timeout
    time.sleep(pause)
    seen.changes = load.stop()
    failed = seen.changes.failed
    examples = Counter(f"{a.status} {a.error[:80]}" for a in failed).most_common(3)
    seen.add(
        "0 failed requests through the load balancer during promotion, ramp, rolling restart",
        not failed,
        f"{len(seen.changes.answers)} requests in {seen.changes.seconds:.1f}s "
        f"({seen.changes.rate:.0f}/s), {len(failed)} failed {examples}",
    )
    retried = nginx_retries(shape.workdir / "nginx" / "error.log")
    seen.add(
        "every replica stopped by itself on SIGTERM (drained, not killed)",
        all(r.drained for r in seen.restarts),
        "; ".join(str(r) for r in seen.restarts)
        + f"; nginx passed requests on to the next replica after: {dict(retried) or 'nothing'}",
    )
    control_versions = Counter(a.version for a in seen.changes.ok[-200:] if a.variant == "control")
    seen.add(
        "control follows the promotion (v3 answers control at the end)",
        set(control_versions) == {"3"},
        f"control's versions in the last 200 answers: {dict(control_versions)}",
    )
    sent = seen.changes.per_variant()
    with contextlib.suppress(AssertionError):  # judged below, with what was last read
        wait_for(
            "the ledger to count every answered request",
            lambda: ledger_counts(registry, model) - before == sent,
            timeout=FLUSH_INTERVAL * 15,
        )
    ledger = ledger_counts(registry, model)
    grown = ledger - before
    seen.add(
        "ledger counts grew by exactly the requests answered during the changes",
        grown == sent and sum(before.values()) > 0,
        f"ledger {dict(before)} -> {dict(ledger)} (+{dict(grown)}), load generator {dict(sent)}",
    )


# --------------------------------------------------------------------------- the command


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM stops the shape as Ctrl-C does


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``scripts/topology``: start the shape and keep it running, or run the checks once."""
    parser = argparse.ArgumentParser(prog="scripts/topology", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="run the checks once and exit")
    parser.add_argument(
        "--replicas",
        type=int,
        default=3,
        choices=range(1, 17),
        metavar="N",
        help="serving replicas, 1 to 16 (default 3)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep data and logs here (default: a temporary directory)"
    )
    args = parser.parse_args(argv)
    if missing := missing_tools():
        _say(f"missing: {', '.join(missing)} (apt-get install -y {' '.join(missing)})")
        return 2
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)  # also where a shell started us with SIGINT ignored
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="modelreg-topology-"))
    _say(f"starting the production shape in {workdir} (under a minute)")
    try:
        with ProductionShape(workdir, replicas=args.replicas) as shape:
            code = _run(shape, check=args.check)
    except (ServiceSetupError, BackendUnavailableError) as exc:
        _say(f"cannot start the production shape: {exc}")
        code = 1
    if code == 0 and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        _say(f"data and logs kept in {workdir}")
    return code


def _run(shape: ProductionShape, *, check: bool) -> int:
    """Print where everything answers; run the checks, or wait for Ctrl-C or a dead process."""
    for what, url in shape.urls().items():
        _say(f"  {what:24} {url}")
    body = json.dumps({"dataframe_split": {"columns": COLUMNS, "data": [[0.1, 0.2, 0.3]]}})
    _say(f"  {'service account':24} {SERVICE_ACCOUNT[0]} / {SERVICE_ACCOUNT[1]}")
    _say(
        f"try: curl -s {shape.lb_url}/invocations -H '{KEY_HEADER}: u-1' "
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    if check:
        seen = run_checks(shape)
        _say(seen.summary())
        return 0 if seen.ok else 1
    _say("running; Ctrl-C stops everything")
    with contextlib.suppress(KeyboardInterrupt):
        while all(p.alive for p in shape.processes):
            time.sleep(0.5)
    dead = [p.name for p in shape.processes if not p.alive]
    if dead:
        _say(f"stopped: {', '.join(dead)} exited; see their logs in {shape.logs}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
