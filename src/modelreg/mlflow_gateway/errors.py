"""MLflow's errors as modelreg errors: one translation for the REST calls and the client.

MLflow answers an error with a JSON body ``{"error_code": ..., "message": ...}``
(``MlflowException.serialize_as_json``, MLflow 3.17), or, from its basic-auth
app, with plain text and status 401/403 (``server/auth/__init__.py``
``make_basic_auth_response``/``make_forbidden_response``). ``MlflowClient``
turns both into exceptions carrying the same error codes, so
:func:`translate` serves both paths.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from modelreg.errors import (
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    InvalidInputError,
    ModelNotFoundError,
    PermissionDeniedError,
    VersionNotFoundError,
)

_INVALID = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS", "BAD_REQUEST"})


def translate(
    tracking_uri: str,
    code: str,
    message: str,
    *,
    status: int | None = None,
    name: str | None = None,
    version: int | str | None = None,
    write: bool = False,
) -> Exception:
    """The modelreg error for MLflow's answer ``code``/``message`` (HTTP ``status`` if known).

    RESOURCE_DOES_NOT_EXIST names the version (or model) asked about; refused
    parameters are invalid input. A write MLflow refuses for its credentials
    (401/UNAUTHENTICATED, 403/PERMISSION_DENIED) is an access error naming the
    MLflow account; a refused *read* stays a BackendError, because health checks
    and model servers read "MLflow cannot be used with these credentials" as an
    outage of their backend. Server errors (5xx) say the backend may be down.
    """
    if code == "RESOURCE_DOES_NOT_EXIST" and name is not None:
        if version is not None:
            return VersionNotFoundError(name, str(version))
        return ModelNotFoundError(name)
    if code in _INVALID:
        return InvalidInputError(f"MLflow refused the request: {message}")
    account = os.environ.get("MLFLOW_TRACKING_USERNAME") or "modelreg's MLflow account"
    if write and (status == 401 or code == "UNAUTHENTICATED"):
        return AuthenticationError(
            f"MLflow at {tracking_uri} refused the credentials of {account[:60]!r} "
            "(HTTP 401); check MLFLOW_TRACKING_USERNAME/PASSWORD"
        )
    if write and (status == 403 or code == "PERMISSION_DENIED"):
        target = f"model {name[:60]!r}" if name is not None else "the registry"
        return PermissionDeniedError(
            account[:60], f"change {target} in MLflow", "MLflow's permissions refuse it (HTTP 403)"
        )
    if status in {401, 403} or code in {"UNAUTHENTICATED", "PERMISSION_DENIED"}:
        return BackendError(
            f"MLflow at {tracking_uri} refused modelreg's credentials "
            f"(HTTP {status or code}); check MLFLOW_TRACKING_USERNAME/PASSWORD"
        )
    if status is not None and status >= 500:
        return BackendError(
            f"MLflow at {tracking_uri} answered with server errors; its backend "
            "store or artifact store may be down"
        )
    return BackendError(f"MLflow error {code or status}: {message}")


def connection_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause chain) is a failure to reach the server at all."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
            return True
        text = str(seen)
        if "Failed to establish a new connection" in text or "Connection refused" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


@contextlib.contextmanager
def client_errors(
    tracking_uri: str,
    name: str | None = None,
    version: int | str | None = None,
    *,
    write: bool = False,
) -> Iterator[None]:
    """Translate what ``MlflowClient`` and the fluent API raise inside the block.

    Raises BackendUnavailableError when MLflow cannot be reached, BackendError
    when it answers with server errors, else what :func:`translate` gives.
    """
    import requests
    from mlflow.exceptions import MlflowException, RestException

    try:
        with warnings.catch_warnings():
            # Native stages are deprecated upstream; we mirror them on purpose.
            warnings.simplefilter("ignore", FutureWarning)
            yield
    except RestException as exc:
        raise translate(
            tracking_uri, exc.error_code, exc.message, name=name, version=version, write=write
        ) from exc
    except MlflowException as exc:
        if connection_failed(exc):
            raise BackendUnavailableError("MLflow", tracking_uri, "connection failed") from exc
        if "too many 5" in str(exc) or "Max retries exceeded" in str(exc):
            # MLflow is up but failing: its database or artifact store is down.
            raise BackendError(
                f"MLflow at {tracking_uri} answered with server errors; its backend "
                "store or artifact store may be down"
            ) from exc
        raise translate(
            tracking_uri, exc.error_code, exc.message, name=name, version=version, write=write
        ) from exc
    except requests.exceptions.HTTPError as exc:
        # The server answered, with an error (e.g. its artifact proxy refusing a file).
        status = exc.response.status_code if exc.response is not None else "error"
        raise BackendError(
            f"MLflow at {tracking_uri} answered HTTP {status}: {str(exc)[:200]}"
        ) from exc
    except requests.exceptions.RequestException as exc:
        raise BackendUnavailableError("MLflow", tracking_uri, type(exc).__name__) from exc
