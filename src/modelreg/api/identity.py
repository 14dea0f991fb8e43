"""Who is calling the API: MLflow basic-auth users, or the claimed actor in the embedded default."""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from modelreg.errors import AuthenticationError
from modelreg.policy import ANONYMOUS
from modelreg.registry import Registry

CREDENTIALS_TTL_SECONDS = 15.0
"""How long a verified password is trusted before MLflow is asked again (docs/governance.md).

A password changed in MLflow can keep working on the API for at most this long, unless
the new one is used first: any refusal for a user drops every cached entry of that user.
"""


class Identifier:
    """Who is calling: an MLflow-authenticated user, or the claimed actor header.

    With ``auth = "mlflow"`` every API call needs HTTP Basic credentials that
    MLflow's basic-auth app accepts; the header is ignored, so an approval
    records an authenticated user. Without auth the header names the actor
    (``anonymous`` when absent, who gets the policy's ``anonymous_role``, viewer
    by default) and the policy's roles still apply.
    """

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._verified: dict[str, tuple[str, float]] = {}
        self._basic = HTTPBasic(auto_error=False)

    async def identify(self, request: Request, claimed: str | None) -> str:
        """Resolve the caller's name (raises AuthenticationError for bad credentials)."""
        if self._registry.settings.auth != "mlflow":
            return claimed or ANONYMOUS
        credentials: HTTPBasicCredentials | None = await self._basic(request)
        if credentials is None:
            raise AuthenticationError(
                "this API needs MLflow credentials: send HTTP Basic auth (user and password)"
            )
        return await asyncio.to_thread(self._check, credentials.username, credentials.password)

    def _check(self, username: str, password: str) -> str:
        key = hashlib.sha256(f"{username}\0{password}".encode()).hexdigest()
        known = self._verified.get(key)
        if known is not None and known[1] > time.monotonic():
            return known[0]
        try:
            user = self._registry.authenticate(username, password)
        except AuthenticationError:
            # MLflow refused this user: no password of theirs stays trusted from the cache.
            self._verified = {k: v for k, v in self._verified.items() if v[0] != username}
            raise
        now = time.monotonic()
        # Expired entries go as new ones come, so the cache stays as large as the active users.
        self._verified = {k: v for k, v in self._verified.items() if v[1] > now}
        self._verified[key] = (user, now + CREDENTIALS_TTL_SECONDS)
        return user


async def _caller(
    request: Request,
    claimed: Annotated[str | None, Header(alias="X-Modelreg-Actor", max_length=256)] = None,
) -> str:
    identifier = request.app.state.identifier
    assert isinstance(identifier, Identifier)  # noqa: S101 - set by the app factory
    return await identifier.identify(request, claimed)


Actor = Annotated[str, Depends(_caller)]
"""A route parameter that resolves to the calling user's name."""
