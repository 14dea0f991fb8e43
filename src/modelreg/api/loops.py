"""Background loops of the API service that outlive any error and report their health.

A loop that dies silently (an exception nobody catches in an asyncio task) stops
adoption for everyone until a restart, with nothing in /health to say so. Each
round here is guarded: an error is logged, counted, and retried with a capped
exponential backoff; /health shows every loop's rounds, consecutive failures
and last error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from modelreg.errors import ModelregError

log = logging.getLogger("modelreg.api")

UNHEALTHY_AFTER = 3
"""Consecutive failed rounds after which /health reports the service degraded."""


@dataclass
class LoopHealth:
    """What one background loop has done: rounds, failures in a row, the last error."""

    name: str
    rounds: int = 0
    failures: int = 0
    failed_total: int = 0
    last_error: str = ""
    last_success: datetime | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

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

    After a failure the pause doubles (up to ``max_backoff``) so an outage is not
    hammered; the first success returns to ``interval``.
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

    Registered on the API's own ``CollectorRegistry`` (no process-global state).
    """

    def __init__(self, loops: list[LoopHealth]) -> None:
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
