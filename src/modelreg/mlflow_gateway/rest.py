"""An MLflow tracking server's REST API over httpx, without importing mlflow.

``import mlflow`` takes about 1.4 s, more than a whole CLI read command may
(``modelreg versions`` should answer in under a second). The registry's reads
(models, versions, runs, aliases) are a handful of documented GET endpoints and
``runs/search``, a POST (MLflow REST API 2.0, unchanged in 3.17), so they are
made here with httpx and return plain JSON; :mod:`modelreg.mlflow_gateway`
turns that into its values.

The registry writes modelreg makes on hot paths (aliases, version tags, stages,
descriptions, deleting a version) are made here too: ``MlflowClient`` (3.17)
sends ``GET registered-models/get`` before each of them (``_raise_if_prompt``),
which loads every version of the model server-side and grows with its history
(see docs/benchmarks.md, "MLflow writes"). Registration, runs and artifacts
still go through ``MlflowClient``.

Credentials and TLS follow MLflow's own environment variables:
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (HTTP Basic),
``MLFLOW_TRACKING_TOKEN`` (bearer), ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH`` and ``MLFLOW_TRACKING_CLIENT_CERT_PATH``.
A refused connection fails at once; 429/5xx answers are retried twice.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx

from modelreg.errors import BackendUnavailableError
from modelreg.mlflow_gateway.errors import translate

_API = "/api/{version}/mlflow/"
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRIES = 2
_BACKOFF_SECONDS = 0.5


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes"}


def _client(base_url: str, timeout_s: float) -> httpx.Client:
    """An httpx client configured from MLflow's tracking environment variables.

    ``MLFLOW_HTTP_REQUEST_TIMEOUT`` (seconds), when set, wins over ``timeout_s``.
    """
    # httpx logs every request at INFO; a model server polls an alias every second,
    # so those lines would drown its own. Set when a client is made, not at import.
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
    timeout = float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or timeout_s)
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
    """Requests to one MLflow server's REST API, answered as JSON dicts.

    Errors are translated by :func:`modelreg.mlflow_gateway.errors.translate`, as
    the client's are: RESOURCE_DOES_NOT_EXIST → not found (for the name and
    version asked about), INVALID_PARAMETER_VALUE/BAD_REQUEST → invalid input,
    a write refused for its credentials → AuthenticationError/PermissionDeniedError,
    anything else → BackendError; no answer → BackendUnavailableError.
    """

    def __init__(self, tracking_uri: str, timeout_s: float = 60.0) -> None:
        self.tracking_uri = tracking_uri
        self.timeout_s = timeout_s
        self._http: httpx.Client | None = None
        self._opening = threading.Lock()  # writes may be sent from several threads at once
        self.requests = 0  # requests sent, retries included (what benchmarks count)

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
        query = {k: v for k, v in params.items() if v is not None}
        return self._send("GET", endpoint, {"params": query}, name, version, api, write=False)

    def post(self, endpoint: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """A read sent as POST ``api/2.0/mlflow/<endpoint>`` with a JSON ``body``; the answer.

        ``runs/search`` is POST only (MLflow REST API 2.0). Errors are translated
        as a GET's are, not as a write's.
        """
        payload = {"json": {k: v for k, v in body.items() if v is not None}}
        return self._send("POST", endpoint, payload, None, None, "2.0", write=False)

    def write(
        self,
        method: str,
        endpoint: str,
        body: Mapping[str, Any],
        *,
        name: str | None = None,
        version: int | str | None = None,
    ) -> dict[str, Any]:
        """POST/PATCH/DELETE ``api/2.0/mlflow/<endpoint>`` with a JSON ``body``; the answer.

        MLflow reads the body of DELETE requests too (``call_endpoint`` in 3.17
        ``utils/rest_utils.py`` sends JSON for every method but GET, and the
        basic-auth app reads a DELETE's parameters from it). Every write modelreg
        sends is idempotent, so 429/5xx answers are retried like reads.
        """
        return self._send(method, endpoint, {"json": dict(body)}, name, version, "2.0", write=True)

    def _send(
        self,
        method: str,
        endpoint: str,
        payload: dict[str, Any],
        name: str | None,
        version: int | str | None,
        api: str,
        *,
        write: bool,
    ) -> dict[str, Any]:
        if self._http is None:
            with self._opening:
                if self._http is None:
                    self._http = _client(self.tracking_uri, self.timeout_s)
        url = _API.format(version=api) + endpoint
        for attempt in range(_RETRIES + 1):
            self.requests += 1
            try:
                response = self._http.request(method, url, **payload)
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
        return self._decode(response, name, version, write)

    def _decode(
        self, response: httpx.Response, name: str | None, version: int | str | None, write: bool
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
        raise translate(
            self.tracking_uri,
            code,
            message,
            status=response.status_code,
            name=name,
            version=version,
            write=write,
        )


def pairs(items: Any) -> dict[str, Any]:
    """``[{"key": k, "value": v}, ...]`` from MLflow's REST JSON as a dict."""
    return {str(i.get("key")): i.get("value") for i in items or [] if isinstance(i, dict)}
