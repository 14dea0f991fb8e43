"""Start and supervise the local services behind ``modelreg up``.

The embedded default is two processes on one machine: an MLflow tracking
server (backend store + proxied artifact store) and the modelreg API service
that talks to it. :class:`ServiceProcess` runs one such process in its own
session so that a stop reaches every worker it forks; :class:`Stack` starts
both in order, waits until they answer their health checks and supervises
them until a signal arrives. The integration-test fixtures reuse the same
pieces, so tests exercise exactly what ``modelreg up`` runs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Self

import httpx

from modelreg.errors import BackendUnavailableError, ConflictError, InvalidInputError

#: Environment every MLflow server we start gets. modelreg uses none of MLflow's
#: server-side jobs (GenAI judges, online scoring, trace rollups); turning them off
#: saves a job runner and a huey consumer process per server and about a second of
#: start-up, which matters on small CI machines running several servers.
MLFLOW_SERVER_ENV: Mapping[str, str] = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_LOG_TAIL_LINES = 20
_POLL_SECONDS = 0.2


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks the port; another process may still take it before the
    caller binds it, which is acceptable for tests and local start-up.
    """
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(_address_family(host), socket.SOCK_STREAM) as sock:
        # Servers set SO_REUSEADDR too; without it a port still in TIME_WAIT after
        # a previous clean stop would be reported as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def _client_host(host: str) -> str:
    """Return the address a client on this machine uses to reach a server bound to ``host``."""
    if host in ("0.0.0.0", ""):  # noqa: S104 - recognising a wildcard bind, not binding one
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def process_group_alive(pgid: int) -> bool:
    """Return whether any non-zombie process is left in process group ``pgid``.

    ``killpg(pgid, 0)`` alone also counts zombies, and orphaned workers stay
    zombies for a while when PID 1 of a container does not reap promptly; a
    stop would then always wait for its full timeout.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process exited while we looked
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            return True
    return False


class ServiceProcess:
    """One long-running server process, started in its own session and health-checked.

    ``with ServiceProcess(...) as svc:`` starts the process and waits until it
    is ready; leaving the block stops it. Output goes to ``log_path`` (a
    temporary file removed on stop when none is given) so failures can quote
    the last lines of the log.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        health_url: str,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.health_url = health_url
        self.env = dict(env or {})
        self.cwd = cwd
        self._own_log_dir: Path | None = None
        if log_path is None:
            self._own_log_dir = Path(tempfile.mkdtemp(prefix=f"modelreg-{name}-"))
            log_path = self._own_log_dir / f"{name}.log"
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped = False

    @property
    def pid(self) -> int | None:
        """Process id of the started process (also its process group id), or None."""
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        """Whether the process has been started and has not exited."""
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Exit code once the process has exited, else None (negative: killed by a signal)."""
        return self._process.poll() if self._process else None

    def start(self) -> None:
        """Start the process; it does not wait for readiness (see :meth:`wait_ready`)."""
        if self.alive:
            return
        self._stopped = False
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # Unbuffered so the log tail quoted in errors shows the latest lines.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            # A new session makes the process a group leader: stop() signals the
            # whole group, so workers it forks (uvicorn, gunicorn) cannot outlive it.
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """Return the last ``lines`` lines of the service log ('' when there is none yet)."""
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines)).rstrip()
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll the health URL until it answers 200.

        Raises :class:`BackendUnavailableError`, quoting the end of the log,
        when the process exits first or ``timeout`` seconds pass.
        """
        if self._process is None:
            raise BackendUnavailableError(self.name, self.health_url, "it was never started")
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        # trust_env=False: a proxy configured for the outside world must not
        # intercept requests to our own loopback services.
        with httpx.Client(trust_env=False, timeout=5.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._fail(f"it exited with code {code} before becoming ready")
                try:
                    response = client.get(self.health_url)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return
                    last = f"HTTP {response.status_code}"
                if time.monotonic() >= deadline:
                    self._fail(f"not healthy after {timeout:.0f}s, last check: {last}")
                time.sleep(_POLL_SECONDS)

    def _fail(self, why: str) -> None:
        tail = self.log_tail()
        detail = f"{why}; log {self.log_path}:\n{tail}" if tail else f"{why}; log is empty"
        raise BackendUnavailableError(self.name, self.health_url, detail)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process and everything in its group: SIGTERM, then SIGKILL after ``timeout``."""
        process = self._process
        if process is None or self._stopped:
            return
        # Signal the group only once: after the final wait its id may be reused.
        self._stopped = True
        pgid = process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
        # The leader may exit while its workers are still draining; wait for the
        # whole group, since a lingering worker keeps the port bound.
        while process_group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        process.wait()
        if self._own_log_dir is not None:
            for path in self._own_log_dir.iterdir():
                path.unlink(missing_ok=True)
            self._own_log_dir.rmdir()
            self._own_log_dir = None

    def __enter__(self) -> Self:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"ServiceProcess({self.name!r}, pid={self.pid}, alive={self.alive})"


def mlflow_server_argv(
    *,
    backend_store_uri: str,
    artifacts_destination: str,
    host: str,
    port: int,
    workers: int = 1,
    app_name: str | None = None,
) -> list[str]:
    """Command line of an MLflow tracking server that proxies artifact access.

    ``app_name="basic-auth"`` runs MLflow's authentication app (production
    identity); it reads MLFLOW_AUTH_CONFIG_PATH and MLFLOW_FLASK_SERVER_SECRET_KEY.

    With ``--serve-artifacts`` new experiments get ``mlflow-artifacts:/`` roots,
    so clients upload and download through the server and never need the
    object store's credentials.

    MLflow 3.17 rejects requests whose Host header is not allowed (DNS
    rebinding protection). Its default list covers loopback names on any port,
    but an explicit ``--allowed-hosts`` replaces it, so we always pass loopback
    plus the bind address: a server bound to another interface stays reachable
    under that address and from this machine.
    """
    allowed = ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[[]::1]:*"]
    client_host = _client_host(host)
    if client_host not in allowed:
        # fnmatch treats '[' as a character class, so escape it for IPv6 literals.
        pattern = client_host.replace("[", "[[]", 1)
        allowed += [client_host, f"{pattern}:*"]
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend_store_uri,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--allowed-hosts",
        ",".join(allowed),
        *(["--app-name", app_name] if app_name else []),
    ]


def api_server_argv(*, host: str, port: int) -> list[str]:
    """Command line of the modelreg API service (configured through MODELREG_* variables)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "modelreg.api.app:create_app",
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
    ]


@dataclass(frozen=True)
class StackConfig:
    """Where the local stack listens and keeps its data.

    Unset URIs fall back to the embedded default under ``home``: MLflow and the
    ledger on SQLite files, artifacts in a local directory.
    """

    home: Path
    host: str = "127.0.0.1"
    port: int = 5000
    api_port: int = 8000
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    ledger_uri: str | None = None
    s3_endpoint_url: str | None = None
    basic_auth_config: Path | None = None  # MLflow's basic-auth ini: production identity

    @property
    def tracking_uri(self) -> str:
        """URL of the MLflow server for clients on this machine."""
        return f"http://{_client_host(self.host)}:{self.port}"

    @property
    def api_url(self) -> str:
        """URL of the modelreg API service for clients on this machine."""
        return f"http://{_client_host(self.host)}:{self.api_port}"

    def resolved_home(self) -> Path:
        """Absolute home directory (services may run with another working directory)."""
        return self.home.expanduser().resolve()

    def resolved_backend_store_uri(self) -> str:
        """MLflow backend store URI to use."""
        return self.backend_store_uri or f"sqlite:///{self.resolved_home() / 'mlflow.db'}"

    def resolved_artifacts_destination(self) -> str:
        """Where the MLflow server stores artifacts."""
        return self.artifacts_destination or str(self.resolved_home() / "artifacts")

    def resolved_ledger_uri(self) -> str:
        """Ledger database URI to use."""
        return self.ledger_uri or f"sqlite:///{self.resolved_home() / 'ledger.db'}"


def _basic_auth_env(config_path: Path, home: Path) -> dict[str, str]:
    """What MLflow's basic-auth app needs, checked before anything starts.

    The API service talks to MLflow as the service account named by
    MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (the ini's admin), and
    the auth app needs a stable Flask secret: taken from the environment, or
    created once under the home directory.
    """
    path = config_path.expanduser().resolve()
    if not path.is_file():
        raise InvalidInputError(f"basic-auth config {path} does not exist or is not a file")
    missing = [
        k for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD") if not os.environ.get(k)
    ]
    if missing:
        raise InvalidInputError(
            f"set {' and '.join(missing)} to modelreg's service account (the admin of {path.name}) "
            "so that the API service can move aliases in MLflow"
        )
    secret = os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
    if not secret:
        stored = home / "flask-secret"
        if not stored.exists():
            home.mkdir(parents=True, exist_ok=True)
            stored.touch(mode=0o600)
            stored.write_text(secrets.token_hex(32))
        secret = stored.read_text().strip()
    return {"MLFLOW_AUTH_CONFIG_PATH": str(path), "MLFLOW_FLASK_SERVER_SECRET_KEY": secret}


class Stack:
    """The MLflow server and the modelreg API service, started and stopped together.

    ``with Stack(config) as stack:`` starts both and stops them on exit. Logs
    go to ``<home>/logs/<name>.log`` unless ``log_dir`` says otherwise.
    """

    def __init__(self, config: StackConfig, *, log_dir: Path | None = None) -> None:
        self.config = config
        home = config.resolved_home()
        logs = log_dir or home / "logs"
        mlflow_env = dict(MLFLOW_SERVER_ENV)
        if config.s3_endpoint_url:
            mlflow_env["MLFLOW_S3_ENDPOINT_URL"] = config.s3_endpoint_url
        api_env = {
            "MODELREG_HOME": str(home),
            "MODELREG_TRACKING_URI": config.tracking_uri,
            "MODELREG_LEDGER_URI": config.resolved_ledger_uri(),
        }
        if config.basic_auth_config is not None:
            mlflow_env.update(_basic_auth_env(config.basic_auth_config, home))
            api_env["MODELREG_AUTH"] = "mlflow"
        self.mlflow = ServiceProcess(
            "mlflow",
            mlflow_server_argv(
                backend_store_uri=config.resolved_backend_store_uri(),
                artifacts_destination=config.resolved_artifacts_destination(),
                host=config.host,
                port=config.port,
                app_name="basic-auth" if config.basic_auth_config is not None else None,
            ),
            health_url=f"{config.tracking_uri}/health",
            env=mlflow_env,
            log_path=logs / "mlflow.log",
            cwd=home,
        )
        self.api = ServiceProcess(
            "api",
            api_server_argv(host=config.host, port=config.api_port),
            health_url=f"{config.api_url}/health",
            env=api_env,
            log_path=logs / "api.log",
            cwd=home,
        )

    @property
    def services(self) -> tuple[ServiceProcess, ...]:
        """The supervised services in start order."""
        return (self.mlflow, self.api)

    def check_ports(self) -> None:
        """Raise :class:`ConflictError` naming the option to change if a port is taken.

        Checked before anything starts (or anything is cleared for it), so a
        conflict leaves no half-started stack behind and names the port instead
        of a log tail.
        """
        ports = (
            (self.mlflow, self.config.port, "--port"),
            (self.api, self.config.api_port, "--api-port"),
        )
        for service, port, option in ports:
            if _port_in_use(self.config.host, port):
                raise ConflictError(
                    f"cannot start {service.name}: port {port} on {self.config.host} is already "
                    f"in use; stop the process listening there or choose another port with "
                    f"{option}"
                )

    def start(self, timeout: float = 90) -> None:
        """Start MLflow, then the API, and wait until both are healthy.

        Raises :class:`ConflictError` naming the port when one is already in
        use (nothing is started), and :class:`BackendUnavailableError` when a
        service is not healthy within ``timeout`` seconds (whatever was
        started is stopped again).
        """
        self.check_ports()
        self.config.resolved_home().mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            for service in self.services:
                service.start()
                service.wait_ready(max(deadline - time.monotonic(), 1.0))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the API, then MLflow (reverse start order); safe to call repeatedly."""
        for service in reversed(self.services):
            service.stop()

    def run_until_signal(self) -> int:
        """Supervise the running stack until SIGINT/SIGTERM; start it first if needed.

        Returns 0 after a signal and a clean stop, and 1 when a service exited
        on its own (the other one is stopped and the reason goes to stderr).
        Must be called from the main thread, where signal handlers live.
        """
        if not all(service.alive for service in self.services):
            self.start()
        stop_requested = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop_requested.set()

        previous = {
            signum: signal.signal(signum, request_stop)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            while not stop_requested.wait(0.5):
                dead = next((svc for svc in self.services if not svc.alive), None)
                if dead is not None:
                    tail = dead.log_tail()
                    self.stop()
                    sys.stderr.write(
                        f"modelreg: {dead.name} exited unexpectedly with code "
                        f"{dead.returncode}; stopped the stack. Log {dead.log_path}:\n{tail}\n"
                    )
                    return 1
            self.stop()
            return 0
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

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
