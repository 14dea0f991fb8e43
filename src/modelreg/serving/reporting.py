"""A replica's report to the registry: what each slot serves, since when, and its reloads.

Every ``interval`` seconds :class:`ReplicaReporter` sends a
:class:`~modelreg.domain.ReplicaReport` through a :class:`ReplicaSink` (the
registry in ``modelreg serve``): one :class:`~modelreg.domain.ServedSlot`
per slot (configured models and experiment arms) and the reloads and
refused loads since the last report, which slots hand to :meth:`reloaded`
as they happen. The report doubles as a heartbeat: the dashboard shows how
long ago each replica reported. A failed write is counted and retried next
round with the newer slots and every reload not yet written (the oldest are
dropped beyond ``buffer``). On shutdown a last report with no slots says
the replica is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from modelreg.domain import ReloadEvent, ReplicaReport, ServedSlot
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.source import ReplicaSink

log = logging.getLogger("modelreg.serving")


class ReplicaReporter:
    """Collects this replica's reloads and reports them with its slots every ``interval`` s."""

    def __init__(
        self,
        sink: ReplicaSink,
        metrics: ServingMetrics,
        *,
        replica: str,
        interval: float = 2.0,
        buffer: int = 1000,
    ) -> None:
        self.sink = sink
        self.metrics = metrics
        self.replica = replica
        self.interval = interval
        self._reloads: deque[ReloadEvent] = deque(maxlen=buffer)
        self._lock = asyncio.Lock()

    def reloaded(self, event: ReloadEvent) -> None:
        """Keep a slot's reload or refused load for the next report (no I/O)."""
        self._reloads.append(event)

    async def report(self, slots: Sequence[ServedSlot]) -> bool:
        """Send ``slots`` and the pending reloads now; True when it was written."""
        async with self._lock:
            reloads = tuple(self._reloads)
            self._reloads.clear()
            report = ReplicaReport(self.replica, tuple(slots), reloads)
            write = asyncio.ensure_future(asyncio.to_thread(self.sink.record_replica, report))
            # A thread cannot be stopped: when cancelled, wait for its write before letting
            # go of the lock, else the next report (the last one, at shutdown, with no slots)
            # could commit first and this one bring the replica's slots back.
            cancelled = False
            while not write.done():
                try:
                    await asyncio.wait([write])
                except asyncio.CancelledError:
                    cancelled = True
            error = write.exception()
            if error is not None:
                # Newer reloads queued meanwhile go after the ones put back.
                newer = list(self._reloads)
                self._reloads.clear()
                self._reloads.extend([*reloads, *newer])
                if not isinstance(error, Exception):
                    raise error
                self.metrics.report_failures.inc()
                message = getattr(error, "message", None) or str(error)
                log.warning("reporting this replica failed (retried next round): %s", message)
            if cancelled:
                raise asyncio.CancelledError
            return error is None

    async def run(self, snapshot: Callable[[], Sequence[ServedSlot]]) -> None:
        """Report ``snapshot()`` every ``interval`` seconds, from now until cancelled."""
        while True:
            await self.report(snapshot())
            await asyncio.sleep(self.interval)
