"""One MLflow server: its REST connection, its lazily made ``MlflowClient``, HTTP defaults.

Nothing here changes the process at import. MLflow's own HTTP client reads its
retry and timeout settings from environment variables on every request
(``MLFLOW_HTTP_REQUEST_*``, MLflow 3.17 ``utils/rest_utils.py`` ``http_request``),
so the only way to choose them is the environment; the gateway sets them when
it first needs MLflow's client, and never where the operator chose a value.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from modelreg.mlflow_gateway.errors import client_errors
from modelreg.mlflow_gateway.rest import MlflowRest

T = TypeVar("T")


@dataclass(frozen=True)
class HttpDefaults:
    """Retries and timeout of MLflow's HTTP client (counts and seconds)."""

    max_retries: int
    backoff_factor: float
    timeout_s: float

    def env(self) -> dict[str, str]:
        """The ``MLFLOW_HTTP_REQUEST_*`` variables that say this."""
        return {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": f"{self.backoff_factor:g}",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": f"{self.timeout_s:g}",
        }


# MLflow retries 7 times with exponential backoff by default: minutes of silence
# before a CLI user learns the server is down.
CLI_HTTP = HttpDefaults(max_retries=3, backoff_factor=1, timeout_s=60)
# A model server polls every second and retries on its own; a retried or hanging
# call only delays noticing an outage (6.6 s vs 0.01 s on a dead port).
SERVING_HTTP = HttpDefaults(max_retries=0, backoff_factor=1, timeout_s=10)

# What modelreg itself put into the environment: a value that differs was the operator's.
_WRITTEN: dict[str, str] = {}


def apply_http_defaults(defaults: HttpDefaults, *, replace: bool = True) -> None:
    """Make MLflow's HTTP client use ``defaults``, except where the operator set a value.

    With ``replace=False`` values modelreg set earlier are kept too (the first
    explicit choice in a process wins over a gateway's defaults).
    """
    for key, value in defaults.env().items():
        current = os.environ.get(key)
        if current is None or (replace and _WRITTEN.get(key) == current):
            os.environ[key] = value
            _WRITTEN[key] = value


def use_serving_http_defaults() -> None:
    """Switch MLflow's HTTP client to fail fast (:data:`SERVING_HTTP`), for model servers."""
    apply_http_defaults(SERVING_HTTP)


class Connection:
    """The parts of the gateway every concept uses: URI, REST, client, error translation."""

    def __init__(self, tracking_uri: str, http: HttpDefaults | None = None) -> None:
        """Talk to ``tracking_uri``; ``http`` chooses MLflow's retries (default :data:`CLI_HTTP`).

        Without ``http`` the CLI defaults fill only what nobody chose yet, so a
        model server's earlier :func:`use_serving_http_defaults` stays in force.
        """
        self.tracking_uri = tracking_uri
        self.http = http
        self._client: Any = None
        # Reads and hot-path writes go over MLflow's REST API without importing
        # mlflow; other stores (sqlite:///, file:) only have the client.
        remote = tracking_uri.split("://", 1)[0] in {"http", "https"}
        timeout = (http or CLI_HTTP).timeout_s
        self._rest = MlflowRest(tracking_uri, timeout) if remote else None

    def _mlflow(self) -> Any:
        """The mlflow package, imported on first use (~1.4 s; reads never need it)."""
        apply_http_defaults(self.http or CLI_HTTP, replace=self.http is not None)
        import mlflow

        return mlflow

    @property
    def client(self) -> Any:
        """MLflow's ``MlflowClient`` (registration, artifacts, runs), created on first use."""
        if self._client is None:
            self._client = self._mlflow().MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def close(self) -> None:
        """Release the REST connection pool."""
        if self._rest is not None:
            self._rest.close()

    def _errors(
        self, name: str | None = None, version: int | str | None = None, *, write: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        return client_errors(self.tracking_uri, name, version, write=write)

    def _call(
        self,
        fn: Callable[[], T],
        name: str | None = None,
        version: int | str | None = None,
        *,
        write: bool = False,
    ) -> T:
        with self._errors(name, version, write=write):
            return fn()
