"""Experiment arms: the slots an A/B experiment needs, following its route as it changes.

After every check of a model's default slot (each ``poll_interval`` and on
``POST /-/reload``) the :class:`ArmFollower` asks the
:class:`~modelreg.serving.source.ExperimentSource` for the model's
experiment. While one runs, every treatment gets its own slot pinned to its
version (variant = the arm's name); control is answered by the default slot
when it follows the same alias as the experiment's control, else by its own
pinned slot. A stopped experiment keeps control only; a concluded one (or
none) goes back to the default variant.

A change is applied as a reload is: load and warm the new arms first, then
switch the slot lookup and the router in one step (no await in between),
then drain and close the arms no longer used. A treatment that cannot load
is routed to control (its keys wait there), reported as degraded in
``/version`` and ``modelreg_serving_experiment_degraded``, and retried on the
next poll; requests never see a 5xx for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from modelreg.errors import ModelregError
from modelreg.experiments.assignment import CONTROL
from modelreg.experiments.definition import Arm, ExperimentRoute, ExperimentState
from modelreg.serving.config import ModelConfig
from modelreg.serving.metrics import ServingMetrics
from modelreg.serving.router import ExperimentRouter, RoutePlan
from modelreg.serving.slots import CheckResult, ModelSlot, SlotSet
from modelreg.serving.source import ExperimentSource

log = logging.getLogger("modelreg.serving")

SlotFactory = Callable[[ModelConfig, str], ModelSlot]
"""Builds the slot of one arm: (its pinned config, its variant name) → an unloaded slot."""


class ArmFollower:
    """Keeps each model's arm slots and its router plan in line with its experiment."""

    def __init__(
        self,
        slots: SlotSet,
        experiments: ExperimentSource,
        router: ExperimentRouter,
        metrics: ServingMetrics,
        make_slot: SlotFactory,
    ) -> None:
        self.slots = slots
        self.experiments = experiments
        self.router = router
        self.metrics = metrics
        self.make_slot = make_slot
        self._routes: dict[str, ExperimentRoute] = {}
        self._reasons: dict[str, list[str]] = {}
        self._check_failed: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._retiring: set[asyncio.Task[None]] = set()

    async def follow(self, slot: ModelSlot, *, force: bool) -> dict[str, CheckResult]:
        """Read ``slot``'s model's experiment and converge on it; check results by arm label.

        Never raises for registry or model problems: an unreachable ledger
        keeps the current routing and is reported as degraded.
        """
        name = slot.name
        async with self._locks.setdefault(name, asyncio.Lock()):
            try:
                route = await asyncio.to_thread(self.experiments.experiment, name)
            except ModelregError as exc:
                if name not in self._check_failed:  # once per outage, not once per poll
                    log.warning("%s: experiment check failed: %s", name, exc.message)
                self._check_failed[name] = exc.message
                self._update_gauge(name)
                return {}
            if self._check_failed.pop(name, None) is not None:
                log.info("%s: experiment check works again", name)
            if route is not None and route.state is ExperimentState.CONCLUDED:
                route = None
            if route is None:
                self._end(name)
                return {}
            return await self._converge(slot, route, force=force)

    async def _converge(
        self, default: ModelSlot, route: ExperimentRoute, *, force: bool
    ) -> dict[str, CheckResult]:
        name = default.name
        # A stopped experiment sends everyone to control: its treatments can go.
        needed = route.arms if route.state is ExperimentState.RUNNING else (route.control,)
        arms: dict[str, ModelSlot] = {}
        results: dict[str, CheckResult] = {}
        for arm in needed:
            if arm.variant == CONTROL and _default_is_control(default.config, route):
                arms[CONTROL] = default
                continue
            slot = self._arm_slot(default.config, arm)
            results[slot.label] = await slot.check(force=force)
            arms[arm.variant] = slot
        reasons = [
            f"{variant} v{slot.config.version} is not loaded; its keys go to control"
            for variant, slot in arms.items()
            if slot.current is None and variant != CONTROL
        ]
        plan: RoutePlan | None = None
        if arms[CONTROL].current is None:
            # Control cannot answer: the experiment waits and the default variant serves.
            reasons = [f"control v{route.control.version} is not loaded; experiment not routed"]
            unused = [slot for slot in arms.values() if slot is not default]
            arms = {}
        else:
            unready = frozenset(v for v, s in arms.items() if s.current is None and v != CONTROL)
            plan = RoutePlan.of(route, unready)
            unused = []
        previous = self.router.plan(name)
        # Load-new is done; now swap lookup and router together (no await), then drain old.
        retired = self.slots.set_arms(name, arms)
        self.router.switch(name, plan)
        self._routes[name] = route
        self._reasons[name] = reasons
        self._update_gauge(name)
        if plan != previous:
            degraded = "; degraded: " + "; ".join(reasons) if reasons else ""
            log.info(
                "%s: routing experiment %s revision %d (%s)%s",
                name,
                route.id,
                route.revision,
                route.state,
                degraded,
            )
        for slot in {id(s): s for s in [*retired, *unused]}.values():  # each once
            self._retire(slot)
        return results

    def _end(self, name: str) -> None:
        had = self.router.plan(name) is not None or name in self._routes
        self.router.switch(name, None)
        retired = self.slots.set_arms(name, {})
        self._routes.pop(name, None)
        self._reasons.pop(name, None)
        self._update_gauge(name)
        for slot in retired:
            self._retire(slot)
        if had:
            log.info("%s: no experiment any more; every request goes to the default variant", name)

    def _arm_slot(self, config: ModelConfig, arm: Arm) -> ModelSlot:
        existing = self.slots.arm(config.name, arm.variant)
        if existing is not None and existing.config.version == arm.version:
            return existing
        pinned = config.model_copy(update={"alias": None, "version": arm.version})
        return self.make_slot(pinned, arm.variant)

    def _retire(self, slot: ModelSlot) -> None:
        task = asyncio.create_task(slot.retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _update_gauge(self, name: str) -> None:
        degraded = bool(self._reasons.get(name)) or name in self._check_failed
        self.metrics.experiment_degraded.labels(name).set(1 if degraded else 0)

    def routed(self, name: str) -> tuple[str, int] | None:
        """The experiment (id, revision) ``name``'s requests are routed by now, or None.

        Set in the same step as the router's switch, so a replica never reports
        a revision before it routes by it (``ab ... --wait`` relies on that).
        """
        route = self._routes.get(name)
        if route is None or self.router.plan(name) is None:
            return None
        return route.id, route.revision

    @property
    def degraded(self) -> bool:
        """Whether some experiment cannot route as asked, or cannot be read."""
        return any(self._reasons.values()) or bool(self._check_failed)

    def status(self) -> dict[str, Any]:
        """Each followed model's experiment as ``/version`` shows it, by model name."""
        shown: dict[str, Any] = {}
        for name in sorted({*self._routes, *self._check_failed}):
            route = self._routes.get(name)
            reasons = list(self._reasons.get(name, []))
            if name in self._check_failed:
                reasons.append(f"experiment check failed: {self._check_failed[name]}")
            shown[name] = {
                "id": route.id if route else None,
                "revision": route.revision if route else None,
                "state": str(route.state) if route else None,
                "shadow": route.shadow if route else None,
                "traffic": route.traffic if route else None,
                "key_header": route.key_header if route else None,
                "arms": {arm.variant: arm.version for arm in route.arms} if route else {},
                "degraded": bool(reasons),
                "reasons": reasons,
            }
        return shown

    async def stop(self) -> None:
        """Wait for retiring arms to drain and close."""
        await asyncio.gather(*self._retiring, return_exceptions=True)


def _default_is_control(config: ModelConfig, route: ExperimentRoute) -> bool:
    """Whether the model's default slot serves what the experiment calls control."""
    if route.control_alias is not None:
        return route.control_alias == config.alias
    return config.alias is None and config.version == route.control.version
