"""Which variant of a model answers a request.

A served model may run several variants side by side (an A/B experiment's
control and treatments), each in its own slot keyed by ``(model, variant)``.
The data plane asks a :class:`Router` for the :class:`Decision` of every
request, handing it the request's headers and id.

Outside experiments every request goes to :data:`DEFAULT_VARIANT`
(:class:`DefaultRouter`). :class:`ExperimentRouter` holds, per model, the
current :class:`~modelreg.experiments.definition.ExperimentRoute` (installed
by the slot watcher's :class:`~modelreg.serving.arms.ArmFollower`) and hashes
the request's routing key (the experiment's ``key_header``, else the request
id) into its split with :mod:`modelreg.experiments.assignment`: one key,
one variant, on every replica.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from modelreg.experiments.assignment import CONTROL, Split, assign
from modelreg.experiments.definition import ExperimentRoute, ExperimentState

DEFAULT_VARIANT = "default"
"""The variant of a model served outside any experiment (the ``variant`` metrics label)."""


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one request goes and what the experiment bookkeeping needs to know about it.

    ``variant`` answers the request. ``experiment`` is the running experiment
    whose counts it joins (None outside experiments and once one is stopped).
    ``missing_key`` says the routing header was absent and the request id
    was hashed instead. ``shadow`` names a treatment that scores a mirrored
    copy off the request path (shadow experiments), else None.
    """

    variant: str
    experiment: ExperimentRoute | None = None
    missing_key: bool = False
    shadow: str | None = None


DEFAULT_DECISION = Decision(DEFAULT_VARIANT)


class Router(Protocol):
    """Picks the variant of ``model`` that answers a request; pure and fast (per request)."""

    def decide(self, model: str, headers: Mapping[str, str], request_id: str) -> Decision:
        """The decision for one request to ``model``; one routing key, one variant.

        ``headers`` looks names up case-insensitively (Starlette's ``Headers``)
        or has lower-case keys.
        """
        ...


class DefaultRouter:
    """Every request to every model goes to :data:`DEFAULT_VARIANT` (no experiments)."""

    def decide(self, model: str, headers: Mapping[str, str], request_id: str) -> Decision:
        """Always :data:`DEFAULT_DECISION`."""
        return DEFAULT_DECISION

    def route(self, model: str, routing_key: str) -> str:
        """Always :data:`DEFAULT_VARIANT`."""
        return DEFAULT_VARIANT


@dataclass(frozen=True, slots=True)
class RoutePlan:
    """An experiment route as the router applies it, precomputed once per change.

    ``unready`` holds treatments whose slot has no model loaded: their keys
    go to control until it loads (the follower reports the experiment as
    degraded meanwhile).
    """

    route: ExperimentRoute
    split: Split
    header: str  # lower-case, so plain lower-cased mappings work too
    unready: frozenset[str]

    @classmethod
    def of(cls, route: ExperimentRoute, unready: frozenset[str] = frozenset()) -> RoutePlan:
        """The plan of ``route`` with ``unready`` treatments sent to control."""
        return cls(route, route.split, route.key_header.lower(), unready)


class ExperimentRouter:
    """Routes each model by its current experiment plan; DEFAULT_VARIANT without one.

    :meth:`switch` replaces a model's plan in one assignment, so a request
    sees the old plan or the new one, never a mix.
    """

    def __init__(self) -> None:
        self._plans: dict[str, RoutePlan] = {}

    def plan(self, model: str) -> RoutePlan | None:
        """The plan ``model`` is routed by now, None outside experiments."""
        return self._plans.get(model)

    def switch(self, model: str, plan: RoutePlan | None) -> None:
        """Route ``model`` by ``plan`` from the next request on (None: default variant)."""
        if plan is None:
            self._plans.pop(model, None)
        else:
            self._plans[model] = plan

    def decide(self, model: str, headers: Mapping[str, str], request_id: str) -> Decision:
        """Hash the routing key into the model's split (see :class:`Decision`).

        A stopped experiment sends everyone to control and counts nothing.
        In a shadow experiment control answers everyone and the keys the
        split gives a treatment are mirrored to it.
        """
        plan = self._plans.get(model)
        if plan is None:
            return DEFAULT_DECISION
        route = plan.route
        if route.state is not ExperimentState.RUNNING:
            return _STOPPED
        key = headers.get(plan.header)
        missing = not key
        variant = assign(route.id, plan.split, key or request_id)
        if variant in plan.unready:
            variant = CONTROL
        if route.shadow:
            shadow = None if variant == CONTROL else variant
            return Decision(CONTROL, route, missing, shadow)
        return Decision(variant, route, missing)

    def route(self, model: str, routing_key: str) -> str:
        """The variant answering ``routing_key`` (the key given directly, no headers)."""
        plan = self._plans.get(model)
        if plan is None:
            return DEFAULT_VARIANT
        return self.decide(model, {plan.header: routing_key}, routing_key).variant


_STOPPED = Decision(CONTROL)
