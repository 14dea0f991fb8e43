"""Which variant of a model answers a request.

A served model may run several variants side by side (an A/B experiment's
control and treatments), each in its own slot keyed by ``(model, variant)``.
The data plane asks a :class:`Router` for the variant of every request,
passing the request's routing key: a stable value such as a user id header,
so that one key always lands on the same variant, or the request id when the
client sent none.

Until experiments exist every request goes to :data:`DEFAULT_VARIANT`
(:class:`DefaultRouter`). An experiment router will hash the key into
buckets; the slot watchers, which already follow alias moves, will follow
experiment changes and hand the router its new split.
"""

from __future__ import annotations

from typing import Protocol

DEFAULT_VARIANT = "default"
"""The variant of a model served outside any experiment (the ``variant`` metrics label)."""


class Router(Protocol):
    """Picks the variant of ``model`` that answers a request; pure and fast (per request)."""

    def route(self, model: str, routing_key: str) -> str:
        """The variant answering ``model`` for ``routing_key``; one key, one variant."""
        ...


class DefaultRouter:
    """Every request to every model goes to :data:`DEFAULT_VARIANT` (no experiments)."""

    def route(self, model: str, routing_key: str) -> str:
        """Always :data:`DEFAULT_VARIANT`."""
        return DEFAULT_VARIANT
