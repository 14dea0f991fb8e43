"""Outbound webhooks as the registry offers them: subscribers from the policy, the delivery log.

Signing and sending live in :mod:`modelreg.webhooks`; this service decides who
subscribes (the policy's ``[[webhooks]]`` with secrets from the environment),
who may retry or send deliveries, and reads the delivery log from the ledger.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

from modelreg.domain import DeliveryStatus
from modelreg.ledger import Ledger
from modelreg.ledger.deliveries import DeliveryStore
from modelreg.policy import Permission
from modelreg.registry.access import Access
from modelreg.views import DeliveryView
from modelreg.webhooks import Dispatcher, Subscriber

log = logging.getLogger("modelreg.registry")


class Webhooks:
    """The policy's webhook subscribers and their deliveries."""

    def __init__(self, ledger: Ledger, access: Access) -> None:
        self.ledger = ledger
        self.access = access

    def subscribers(self) -> list[Subscriber]:
        """The policy's webhook subscribers with their secrets read from the environment."""
        found = []
        for hook in self.access.policy().webhooks:
            secret = os.environ.get(hook.secret_env, "")
            if not secret:
                # Its events wait in the outbox until the secret is set; others go on.
                log.warning(
                    "webhook %s is paused: environment variable %s is not set",
                    hook.name,
                    hook.secret_env,
                )
                continue
            found.append(
                Subscriber(
                    hook.name,
                    hook.url,
                    secret.encode(),
                    frozenset(hook.actions),
                    allow_private=hook.allow_private,
                )
            )
        return found

    def deliveries(
        self, *, subscriber: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[DeliveryView]:
        """Webhook deliveries, newest first."""
        # The log is read from the ledger; no sender (and no HTTP pool) is needed.
        found = DeliveryStore(self.ledger).deliveries(
            subscriber=subscriber,
            status=DeliveryStatus.parse(status) if status is not None else None,
            limit=limit,
        )
        return found

    def retry_delivery(self, delivery_id: int, *, actor: str | None = None) -> DeliveryView:
        """Send a failed webhook delivery again on the next round."""
        self.access.authorize(actor, Permission.ADMINISTER, "retry webhook deliveries")
        delivery = DeliveryStore(self.ledger).retry(delivery_id, now=datetime.now(UTC))
        return delivery

    def deliver_webhooks(self, *, actor: str | None = None) -> int:
        """Fan out new events and send every due delivery now; return the attempts made."""
        self.access.authorize(actor, Permission.ADMINISTER, "send webhook deliveries")
        with Dispatcher(self.ledger, self.subscribers()) as dispatcher:
            return dispatcher.run_once()
