"""MLflow's error codes and statuses as modelreg errors; importing the gateway changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from modelreg.errors import (
    AuthenticationError,
    BackendError,
    InvalidInputError,
    ModelNotFoundError,
    PermissionDeniedError,
    VersionNotFoundError,
)
from modelreg.mlflow_gateway import SERVING_HTTP, HttpDefaults, apply_http_defaults
from modelreg.mlflow_gateway.errors import translate

URI = "http://mlflow.example:5000"


@pytest.mark.parametrize(
    ("code", "status", "name", "version", "write", "expected"),
    [
        ("RESOURCE_DOES_NOT_EXIST", 404, "m", 2, True, VersionNotFoundError),
        ("RESOURCE_DOES_NOT_EXIST", 404, "m", None, True, ModelNotFoundError),
        ("RESOURCE_DOES_NOT_EXIST", 404, None, None, False, BackendError),
        ("INVALID_PARAMETER_VALUE", 400, "m", 2, True, InvalidInputError),
        ("RESOURCE_ALREADY_EXISTS", 400, "m", None, True, InvalidInputError),
        ("", 401, "m", 2, True, AuthenticationError),
        ("UNAUTHENTICATED", None, "m", 2, True, AuthenticationError),
        ("", 403, "m", 2, True, PermissionDeniedError),
        ("PERMISSION_DENIED", None, "m", 2, True, PermissionDeniedError),
        ("", 401, "m", 2, False, BackendError),
        ("PERMISSION_DENIED", 403, "m", 2, False, BackendError),
        ("INTERNAL_ERROR", 500, "m", 2, True, BackendError),
    ],
)
def test_translate(
    code: str,
    status: int | None,
    name: str | None,
    version: int | None,
    write: bool,
    expected: type[Exception],
) -> None:
    error = translate(URI, code, "msg", status=status, name=name, version=version, write=write)
    assert type(error) is expected


def test_server_errors_say_the_backend_may_be_down() -> None:
    error = translate(URI, "INTERNAL_ERROR", "boom", status=503)
    assert isinstance(error, BackendError)
    assert "may be down" in str(error)


def test_importing_the_gateway_changes_no_environment_and_imports_no_mlflow() -> None:
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import modelreg.mlflow_gateway\n"
        "assert dict(os.environ) == before, set(os.environ) ^ set(before)\n"
        "assert 'mlflow' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_http_defaults_never_override_the_operator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "123")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", raising=False)
    apply_http_defaults(HttpDefaults(max_retries=3, backoff_factor=1, timeout_s=60), replace=False)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "3"
    apply_http_defaults(SERVING_HTTP)  # replaces what modelreg set, not what the operator set
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "123"
    apply_http_defaults(HttpDefaults(max_retries=5, backoff_factor=1, timeout_s=60), replace=False)
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"  # the earlier explicit choice wins
