"""The CLI's one table from error class to exit code (docs/operations.md lists it).

Looked up with :func:`modelreg.errors.nearest` along the class hierarchy, like
the web layer's status table: a new error class inherits its parent's code
until it needs its own row.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelreg.errors import (
    AccessError,
    BackendError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    ModelregError,
    NotFoundError,
    nearest,
)

EXIT_CODES: Mapping[type[ModelregError], int] = {
    InvalidInputError: 2,
    NotFoundError: 3,
    ConflictError: 4,
    IntegrityError: 5,
    BackendError: 6,
    AccessError: 7,
    ModelregError: 1,
}
INTERNAL_ERROR = 70
"""Exit code of an exception outside the error tree: a bug (BSD's EX_SOFTWARE)."""


def exit_code(error: BaseException) -> int:
    """The exit code for ``error``: its nearest listed class's, else :data:`INTERNAL_ERROR`."""
    return nearest(EXIT_CODES, error, INTERNAL_ERROR)
