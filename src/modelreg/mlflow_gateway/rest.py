"""Read-only access to an MLflow tracking server's REST API, without importing mlflow.

``import mlflow`` takes about 1.4 s, more than a whole CLI read command may
(``modelreg versions`` should answer in under a second). The registry's reads
(models, versions, runs, aliases) are a handful of documented GET endpoints
(MLflow REST API 2.0, unchanged in 3.17), so they are made here with httpx and
return plain JSON; :mod:`modelreg.mlflow_gateway` turns that into its values
and still uses ``MlflowClient`` for every write and artifact transfer.

Credentials and TLS follow MLflow's own environment variables:
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (HTTP Basic),
``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH`` and ``MLFLOW_TRACKING_CLIENT_CERT_PATH``.
A refused connection fails at once; 429/5xx answers are retried twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import httpx

from modelreg.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotFoundError,
    VersionNotFoundError,
)

_API = "/api/{version}/mlflow/"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRIES = 2
_BACKOFF_SECONDS = 0.5

# httpx logs every request at INFO; a model server polls an alias every second, so
# those lines would drown its own. Failures still surface as modelreg errors.
logging.getLogger("httpx").setLevel(logging.WARNING)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def _client(base_url: str) -> httpx.Client:
    """An httpx client configured from MLflow's tracking environment variables."""
    headers: dict[str, str] = {}
    auth: tuple[str, str] | None = None
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        auth = (user, password)
    elif token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        headers["Authorization"] = f"Bearer {token}"
    verify: bool | str = True
    if _env_flag("MLFLOW_TRACKING_INSECURE_TLS"):
        verify = False
    elif cert := os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = cert
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "60"))
    return httpx.Client(
        base_url=base_url.rstrip("/"),
        auth=auth,
        headers=headers,
        verify=verify,
        cert=os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        trust_env=True,
    )


class MlflowRest:
    """GET requests to one MLflow server's REST API, answered as JSON dicts.

    Errors become modelreg errors the way :class:`modelreg.mlflow_gateway.MlflowGateway`
    translates MLflow's: RESOURCE_DOES_NOT_EXIST → not found (for the name and
    version asked about), INVALID_PARAMETER_VALUE/BAD_REQUEST → invalid input,
    anything else → BackendError; no answer → BackendUnavailableError.
    """

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._http: httpx.Client | None = None

    def close(self) -> None:
        """Close the connection pool."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def get(
        self,
        endpoint: str,
        params: Mapping[str, Any],
        *,
        name: str | None = None,
        version: int | str | None = None,
        api: str = "2.0",
    ) -> dict[str, Any]:
        """GET ``api/<api>/mlflow/<endpoint>`` with ``params``; the decoded JSON body."""
        if self._http is None:
            self._http = _client(self.tracking_uri)
        query = {k: v for k, v in params.items() if v is not None}
        for attempt in range(_RETRIES + 1):
            try:
                response = self._http.get(_API.format(version=api) + endpoint, params=query)
            except httpx.TransportError as exc:
                # A refused connection or a timeout is reported at once: retrying
                # only delays telling the user the server is down.
                why = (
                    "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
                )
                raise BackendUnavailableError("MLflow", self.tracking_uri, why) from exc
            if response.status_code not in _RETRY_STATUS or attempt == _RETRIES:
                break
            time.sleep(_BACKOFF_SECONDS * (attempt + 1))
        return self._decode(response, name, version)

    def _decode(
        self, response: httpx.Response, name: str | None, version: int | str | None
    ) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code == 200:
            return body
        code = str(body.get("error_code", ""))
        message = str(body.get("message", "")) or response.reason_phrase
        if code == "RESOURCE_DOES_NOT_EXIST" and name is not None:
            if version is not None:
                raise VersionNotFoundError(name, str(version))
            raise ModelNotFoundError(name)
        if code in {"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"}:
            raise InvalidInputError(f"MLflow refused the request: {message}")
        if response.status_code in {401, 403}:
            raise BackendError(
                f"MLflow at {self.tracking_uri} refused modelreg's credentials "
                f"(HTTP {response.status_code}); check MLFLOW_TRACKING_USERNAME/PASSWORD"
            )
        if response.status_code >= 500:
            raise BackendError(
                f"MLflow at {self.tracking_uri} answered with server errors; its backend "
                "store or artifact store may be down"
            )
        raise BackendError(f"MLflow error {code or response.status_code}: {message}")
