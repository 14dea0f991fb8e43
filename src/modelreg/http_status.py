"""The web layer's one table from exception class to HTTP status, shared by every app.

The API service and the model server both answer errors through
:func:`status_for`, which walks the class hierarchy with
:func:`modelreg.errors.nearest` (as Starlette's ``_exception_handler.py`` does),
so a new subclass inherits its parent's status until it needs its own row.
:mod:`modelreg.errors` stays free of HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelreg.errors import (
    AccessError,
    AuthenticationError,
    BackendError,
    BackendUnavailableError,
    CompilationError,
    ConflictError,
    ExpiredError,
    IntegrityError,
    InvalidInputError,
    LineageError,
    ModelNotReadyError,
    ModelregError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PolicyError,
    UnsupportedMediaTypeError,
    nearest,
)

STATUS_CODES: Mapping[type[ModelregError], int] = {
    # The policy file is the server's configuration, not the caller's input.
    PolicyError: 503,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    InvalidInputError: 400,
    ExpiredError: 410,
    NotFoundError: 404,
    ConflictError: 409,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    AccessError: 403,
    IntegrityError: 422,
    LineageError: 422,
    CompilationError: 422,
    ModelNotReadyError: 503,
    BackendUnavailableError: 503,
    BackendError: 502,
    ModelregError: 500,
}


def status_for(error: BaseException) -> int:
    """The HTTP status of ``error``: its nearest listed class's in STATUS_CODES, else 500."""
    return nearest(STATUS_CODES, error, 500)
