"""Background workers: the periodic sync and webhook delivery, in the API or on their own.

Three loops keep a deployment moving without anyone calling it:

- the **sync** adopts versions that plain MLflow clients registered, every
  ``sync_interval_seconds``;
- the **webhook delivery** fans the ledger's outbox out to the policy's
  subscribers and sends what is due, every ``webhook_interval_seconds``,
  with a :class:`~modelreg.webhooks.Dispatcher` rebuilt whenever the policy
  changes its subscribers;
- the **experiment guardrails** stop running A/B experiments whose
  guardrails are breached and prune the prediction log, every
  ``experiment_interval_seconds``.

:class:`Workers` runs all three. By default the API service runs them in its own
event loop; with ``MODELREG_API_RUNS_WORKERS=false`` it does not, and
``modelreg worker`` (:func:`run_standalone`) runs them in a process of their
own, so API replicas and workers scale separately. Both loops are safe to run
in several processes against one PostgreSQL ledger (adoption and deliveries
are serialised in the ledger).

A loop that dies silently (an exception nobody catches in an asyncio task)
stops adoption for everyone until a restart, with nothing in /health to say
so. Each round is guarded: an error is logged, counted, and retried with a
capped exponential backoff; /health and /metrics show every loop's rounds,
consecutive failures and last error (:class:`LoopHealth`,
:class:`LoopCollector`).

No web framework here: the standalone worker's /health and /metrics are
served by the standard library's HTTP server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelreg.errors import ModelregError

if TYPE_CHECKING:
    from modelreg.ledger import Ledger
    from modelreg.registry import Registry
    from modelreg.settings import Settings
    from modelreg.webhooks import Dispatcher, Subscriber

log = logging.getLogger("modelreg.workers")

UNHEALTHY_AFTER = 3
"""Consecutive failed rounds after which /health reports the process degraded."""


@dataclass
class LoopHealth:
    """What one background loop has done: rounds, failures in a row, the last error."""

    name: str
    rounds: int = 0
    failures: int = 0
    failed_total: int = 0
    last_error: str = ""
    last_success: datetime | None = None

    @property
    def healthy(self) -> bool:
        """False once :data:`UNHEALTHY_AFTER` rounds in a row have failed."""
        return self.failures < UNHEALTHY_AFTER

    def succeeded(self) -> None:
        """Record a round that completed."""
        self.rounds += 1
        self.failures = 0
        self.last_success = datetime.now(UTC)

    def failed(self, error: BaseException) -> None:
        """Record a round that raised ``error``."""
        self.rounds += 1
        self.failures += 1
        self.failed_total += 1
        message = error.message if isinstance(error, ModelregError) else repr(error)
        self.last_error = message[:500]

    def as_json(self) -> dict[str, Any]:
        """The loop's state for /health."""
        return {
            "healthy": self.healthy,
            "rounds": self.rounds,
            "consecutive_failures": self.failures,
            "failures": self.failed_total,
            "last_error": self.last_error,
            "last_success": self.last_success.isoformat() if self.last_success else None,
        }


async def run_forever(
    health: LoopHealth,
    round_: Callable[[], Awaitable[None]],
    interval: float,
    *,
    max_backoff: float = 300.0,
) -> None:
    """Run ``round_`` every ``interval`` seconds until cancelled, whatever it raises.

    After a failure the pause doubles (up to ``max_backoff`` seconds) so an
    outage is not hammered; the first success returns to ``interval``.
    """
    while True:
        try:
            await round_()
        except asyncio.CancelledError:
            raise
        except ModelregError as exc:
            # An outage of MLflow or the ledger: expected now and then, one line.
            health.failed(exc)
            log.warning("%s round failed (%d in a row): %s", health.name, health.failures, exc)
        except Exception as exc:
            health.failed(exc)
            log.exception("%s round failed (%d in a row)", health.name, health.failures)
        else:
            health.succeeded()
        pause = interval if health.failures == 0 else interval * 2 ** min(health.failures, 10)
        await asyncio.sleep(min(pause, max(max_backoff, interval)))


class LoopCollector:
    """Prometheus view of the loops: rounds and failures (counters), healthy (gauge).

    Registered on the owning process's own ``CollectorRegistry`` (no
    process-global state). The metric names keep the ``modelreg_api_`` prefix
    they had when the loops lived in the API, so dashboards and alerts carry on.
    """

    def __init__(self, loops: Sequence[LoopHealth]) -> None:
        self._loops = loops

    def collect(self) -> list[Metric]:
        """The metric families, read from the loops' current state."""
        rounds = CounterMetricFamily(
            "modelreg_api_loop_rounds", "Rounds a background loop ran.", labels=["loop"]
        )
        failures = CounterMetricFamily(
            "modelreg_api_loop_failures", "Rounds that raised an error.", labels=["loop"]
        )
        healthy = GaugeMetricFamily(
            "modelreg_api_loop_healthy",
            f"1 unless the last {UNHEALTHY_AFTER} rounds failed.",
            labels=["loop"],
        )
        for loop in self._loops:
            rounds.add_metric([loop.name], loop.rounds)
            failures.add_metric([loop.name], loop.failed_total)
            healthy.add_metric([loop.name], 1.0 if loop.healthy else 0.0)
        return [rounds, failures, healthy]


def health_report(registry: Registry, loops: Sequence[LoopHealth]) -> tuple[bool, dict[str, Any]]:
    """Whether the process is healthy, and the /health body that says why.

    The body holds ``status`` ("ok" or "degraded"), one entry per backend
    (``mlflow``, ``ledger``: "ok" or the error message) and ``loops`` (each
    loop's :meth:`LoopHealth.as_json`). Unhealthy when a backend is unreachable
    or a loop has failed :data:`UNHEALTHY_AFTER` rounds in a row.
    """
    checks = registry.health()
    ok = all(value == "ok" for value in checks.values()) and all(loop.healthy for loop in loops)
    return ok, {
        "status": "ok" if ok else "degraded",
        **checks,
        "loops": {loop.name: loop.as_json() for loop in loops},
    }


class SyncWorker:
    """Adopts what plain MLflow clients registered, every ``sync_interval_seconds``."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.interval = settings.sync_interval_seconds
        self.health = LoopHealth("background sync")
        self._registry = registry

    async def round(self) -> None:
        """One sync over every model; the facade call runs in a thread (it blocks on I/O)."""
        from modelreg.registry import SYSTEM  # loaded already: a Registry exists

        # modelreg itself adopts, so no caller's role is checked.
        adopted = await asyncio.to_thread(self._registry.sync, actor=SYSTEM)
        if adopted:
            log.info("adopted %d version(s) registered outside modelreg", len(adopted))

    async def run(self) -> None:
        """Sync until cancelled."""
        await run_forever(self.health, self.round, self.interval)


class WebhookWorker:
    """Sends due webhook deliveries every ``webhook_interval_seconds``.

    Holds its own connection to the ledger (opened from ``settings``): the
    outbox and delivery tables are the ledger's public API, and the worker
    runs the same way inside the API process and alone.
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        from modelreg.ledger import Ledger  # SQLAlchemy and Alembic: import when used

        self.interval = settings.webhook_interval_seconds
        self.health = LoopHealth("webhook delivery")
        self._registry = registry
        self._ledger: Ledger = Ledger(settings.resolved_ledger_uri())
        self._dispatcher: Dispatcher | None = None
        self._subscribers: list[Subscriber] | None = None

    def _deliver(self) -> None:
        from modelreg.webhooks import Dispatcher

        subscribers = self._registry.subscribers()
        if subscribers != self._subscribers:
            # A new dispatcher per policy change, not per round: it keeps one
            # HTTP connection pool per subscriber between rounds.
            self._close_dispatcher()
            self._dispatcher = Dispatcher(self._ledger, subscribers)
            self._subscribers = subscribers
        if subscribers and self._dispatcher is not None:
            self._dispatcher.run_once()

    async def round(self) -> None:
        """Fan out new events and send what is due; a failure leaves the events in the outbox."""
        await asyncio.to_thread(self._deliver)

    async def run(self) -> None:
        """Deliver until cancelled, then close the HTTP pools and the ledger connection."""
        try:
            # Deliveries are waited for: after an outage, resume within 30 s, not 5 minutes.
            await run_forever(self.health, self.round, self.interval, max_backoff=30.0)
        finally:
            self.close()

    def _close_dispatcher(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.close()
        self._dispatcher, self._subscribers = None, None

    def close(self) -> None:
        """Release the HTTP connection pools and the ledger's connections."""
        self._close_dispatcher()
        self._ledger.dispose()


class ExperimentWorker:
    """Checks running A/B experiments' guardrails every ``experiment_interval_seconds``.

    A breached guardrail stops its experiment (an AB_AUTO_STOP event by the
    automation actor, with the report as evidence); the same round prunes the
    prediction log to its retention and row cap.
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.interval = settings.experiment_interval_seconds
        self.health = LoopHealth("experiment guardrails")
        self._registry = registry

    async def round(self) -> None:
        """One check of every running experiment (in a thread: it reads the ledger)."""
        await asyncio.to_thread(self._registry.guard_experiments)

    async def run(self) -> None:
        """Check until cancelled."""
        await run_forever(self.health, self.round, self.interval)


class Workers:
    """Every background worker of one process, for ``registry`` as ``settings`` configure.

    ``await workers.run()`` runs them until cancelled. The registry stays the
    caller's to close; the workers close what they opened themselves.
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.sync = SyncWorker(settings, registry)
        self.webhooks = WebhookWorker(settings, registry)
        self.experiments = ExperimentWorker(settings, registry)
        self.loops: list[LoopHealth] = [
            self.sync.health,
            self.webhooks.health,
            self.experiments.health,
        ]

    async def run(self) -> None:
        """Run every worker until cancelled."""
        await asyncio.gather(self.sync.run(), self.webhooks.run(), self.experiments.run())


class _OpsHandler(BaseHTTPRequestHandler):
    """GET /health (JSON, 200 or 503) and GET /metrics (Prometheus text) of a worker."""

    server: _OpsServer

    def do_GET(self) -> None:
        """Answer /health and /metrics; anything else is 404."""
        path = self.path.split("?", 1)[0]
        if path == "/health":
            ok, body = health_report(self.server.registry, self.server.loops)
            self._send(200 if ok else 503, "application/json", json.dumps(body).encode())
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.metrics))
        else:
            self._send(404, "application/json", b'{"error_code": "NotFoundError"}')

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr; log them at debug level instead."""
        log.debug("ops %s", format % args)


class _OpsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], registry: Registry, loops: list[LoopHealth]):
        super().__init__(address, _OpsHandler)
        self.registry = registry
        self.loops = loops
        self.metrics = CollectorRegistry()  # this server's own: no process-global state
        self.metrics.register(LoopCollector(loops))


async def run_standalone(
    workers: Workers,
    registry: Registry,
    *,
    metrics_address: tuple[str, int] | None = None,
    on_ready: Callable[[str | None], None] = lambda _url: None,
) -> None:
    """Run ``workers`` in this process until SIGTERM or SIGINT, then stop them cleanly.

    With ``metrics_address`` (host, port; port 0 picks a free one) GET /health
    and GET /metrics are served there, reporting the same loops the API would.
    ``on_ready`` gets the ops URL (or None) once everything runs. A round in
    progress when the signal arrives is finished, not torn: the event loop
    waits for its thread before returning.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server: _OpsServer | None = None
    url: str | None = None
    if metrics_address is not None:
        server = _OpsServer(metrics_address, registry, workers.loops)
        host, port = metrics_address[0], server.server_port  # port 0: the one bound
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        threading.Thread(target=server.serve_forever, name="modelreg-worker-ops").start()
    task = asyncio.create_task(workers.run())
    try:
        on_ready(url)
        await stop.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if server is not None:
            server.shutdown()
            server.server_close()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
