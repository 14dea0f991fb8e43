"""Who is calling the API: HTTP Basic credentials and the claimed actor, handed to the core.

The rule (MLflow-authenticated user under ``auth = "mlflow"``, else the claimed
``X-Modelreg-Actor`` or ``anonymous``) and the credential cache live in
:mod:`modelreg.registry.access`; this module only reads them off the request.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from modelreg.registry import Credentials, Registry


class Identifier:
    """Reads a request's credentials and claimed actor and asks the registry who acts."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._basic = HTTPBasic(auto_error=False)

    async def identify(self, request: Request, claimed: str | None) -> str:
        """The caller's name (raises AuthenticationError for missing or bad credentials)."""
        try:
            basic: HTTPBasicCredentials | None = await self._basic(request)
        except HTTPException:
            # A malformed Authorization header presents no credentials: the core
            # refuses that under MLflow auth (401 in the API's error shape) and
            # ignores it otherwise, as it ignores well-formed ones.
            basic = None
        # An empty header claims nothing, as a missing one.
        claim = claimed or None
        if basic is None:
            return self._registry.caller(None, claim)
        credentials = Credentials(basic.username, basic.password)
        # MLflow may be asked (at most every few seconds per user): off the event loop.
        return await asyncio.to_thread(self._registry.caller, credentials, claim)


async def _caller(
    request: Request,
    claimed: Annotated[str | None, Header(alias="X-Modelreg-Actor", max_length=256)] = None,
) -> str:
    identifier = request.app.state.identifier
    assert isinstance(identifier, Identifier)  # noqa: S101 - set by the app factory
    return await identifier.identify(request, claimed)


Actor = Annotated[str, Depends(_caller)]
"""A route parameter that resolves to the calling user's name."""
