"""The one exception tree of modelreg.

Every error modelreg raises on purpose derives from :class:`ModelregError`.
Adapters (CLI, HTTP API, dashboard) map these classes to exit codes or HTTP
status codes by walking the class hierarchy; this module knows nothing about
either.

::

    ModelregError
    ├── InvalidInputError              bad name, stage, filter, semver, path ...
    │   ├── InvalidNameError
    │   ├── InvalidStageError
    │   ├── InvalidFilterError
    │   ├── InvalidSemVerError
    │   ├── PolicyError                the policy file is malformed
    │   └── PayloadError               a scoring request the model cannot take
    │       ├── PayloadTooLargeError
    │       └── UnsupportedMediaTypeError
    ├── NotFoundError
    │   ├── ModelNotFoundError
    │   ├── VersionNotFoundError
    │   ├── ArtifactsNotFoundError     a version's files are not in the artifact store
    │   └── ExpiredError               it existed but is past its retention (HTTP 410)
    ├── ConflictError                  the request is valid but the state forbids it
    │   ├── TransitionNotAllowedError
    │   ├── SemVerConflictError
    │   ├── NothingToRollBackError
    │   ├── GateFailedError            a version does not pass its policy's gates
    │   ├── ApprovalError              no open request, or a request already decided
    │   └── LedgerMismatchError        an empty ledger next to versions another one adopted
    ├── AccessError                    who is acting may not do this
    │   ├── AuthenticationError        credentials missing or wrong
    │   └── PermissionDeniedError      role or separation of duties forbids it
    ├── IntegrityError                 artifact digests do not match the ledger
    ├── CompilationError               no verified compiled form: unsupported, failed, disagrees
    ├── LineageError                   lineage could not be captured
    ├── BackendError                   MLflow, the ledger DB or the object store failed
    │   └── BackendUnavailableError
    └── ModelNotReadyError             a serving slot has no model loaded yet

Messages are built from named arguments and say what to do next.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

_E = TypeVar("_E", bound=BaseException)
_V = TypeVar("_V")


def nearest(table: Mapping[type[_E], _V], error: BaseException, default: _V) -> _V:
    """The entry of ``error``'s nearest class in ``table`` (walking its MRO), else ``default``.

    The one lookup behind every table keyed by error class (HTTP status, exit
    code, MLflow error code, failure reason), as Starlette's
    ``_lookup_exception_handler`` does: a new subclass inherits its parent's
    row until it needs its own.
    """
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return default


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in ``...`` when it was cut.

    Messages quote what the user sent; a huge value must not become a huge message.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


class ModelregError(Exception):
    """Base class of every error modelreg raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInputError(ModelregError):
    """Input from outside (CLI, HTTP, files) is malformed."""


class InvalidNameError(InvalidInputError):
    """A model name is empty, too long or contains forbidden characters."""

    def __init__(self, name: str, why: str) -> None:
        shown = shorten(name, 60)
        super().__init__(
            f"invalid model name {shown!r}: {why}; names may hold any printable "
            "characters except '/', ':' and '\\', at most 256 of them"
        )
        self.name = name


class InvalidStageError(InvalidInputError):
    """A stage name is not one of None, Staging, Production, Archived."""

    def __init__(self, stage: str) -> None:
        shown = shorten(stage, 40)
        super().__init__(
            f"unknown stage {shown!r}; use one of: None, Staging, Production, Archived"
        )
        self.stage = stage


class InvalidFilterError(InvalidInputError):
    """A search filter cannot be parsed."""

    def __init__(self, filter_text: str, why: str) -> None:
        shown = shorten(filter_text, 80)
        super().__init__(
            f"invalid search filter {shown!r}: {why}. Example: "
            "\"stage = 'Production' and metrics.test_auc > 0.85 and semver = '1.x'\""
        )
        self.filter_text = filter_text


class InvalidSemVerError(InvalidInputError):
    """A semantic version or version range cannot be parsed."""

    def __init__(self, text: str, why: str = "expected MAJOR.MINOR.PATCH[+build]") -> None:
        shown = shorten(text, 40)
        super().__init__(f"invalid semantic version {shown!r}: {why}")
        self.text = text


class PolicyError(InvalidInputError):
    """The policy file cannot be read, parsed or validated."""

    def __init__(self, source: str, why: str) -> None:
        super().__init__(
            f"policy {source} is invalid: {why}; see docs/governance.md for the reference"
        )
        self.source = source


class PayloadError(InvalidInputError):
    """A scoring request body is malformed or does not match the model's input schema."""


class PayloadTooLargeError(PayloadError):
    """A scoring request body exceeds the configured size limit."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"request body of {size} bytes exceeds the limit of {limit} bytes; "
            "send fewer rows per request"
        )
        self.size = size
        self.limit = limit


class UnsupportedMediaTypeError(PayloadError):
    """A scoring request has a content type the server does not accept."""

    def __init__(self, content_type: str) -> None:
        shown = shorten(content_type, 60)
        super().__init__(
            f"content type {shown!r} is not supported; use application/json or text/csv"
        )
        self.content_type = content_type


class NotFoundError(ModelregError):
    """Something that was asked for does not exist."""


class ModelNotFoundError(NotFoundError):
    """No registered model has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not registered; run `modelreg models` to list models")
        self.name = name


class VersionNotFoundError(NotFoundError):
    """The model exists but has no such version."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(
            f"model {name!r} has no version {version!r}; "
            f"run `modelreg versions {name}` to list its versions"
        )
        self.name = name
        self.version = version


class ExpiredError(NotFoundError):
    """What was asked for existed once but is gone for good (past its retention)."""


class ConflictError(ModelregError):
    """The request is well formed but the current state does not allow it."""


class TransitionNotAllowedError(ConflictError):
    """A lifecycle transition is not in the table of allowed transitions."""

    def __init__(self, name: str, version: int, current: str, target: str, allowed: str) -> None:
        super().__init__(
            f"{name} version {version} is in {current}; moving it to {target} is not allowed "
            f"(from {current} it may go to: {allowed or 'nothing'})"
        )
        self.name = name
        self.version = version
        self.current = current
        self.target = target


class SemVerConflictError(ConflictError):
    """An explicit semantic version is a duplicate or not greater than existing ones."""

    def __init__(self, name: str, requested: str, highest: str) -> None:
        super().__init__(
            f"semantic version {requested} for {name!r} is refused: it must be greater than "
            f"every existing version (highest is {highest}); omit it to let modelreg choose"
        )
        self.name = name
        self.requested = requested
        self.highest = highest


class NothingToRollBackError(ConflictError):
    """There is no earlier Production version to roll back to."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"cannot roll back {name!r}: {why}")
        self.name = name


class GateFailedError(ConflictError):
    """A version fails the gates of its model's policy."""

    def __init__(self, name: str, version: int, failures: list[str]) -> None:
        super().__init__(
            f"{name} version {version} does not pass its policy: "
            + "; ".join(failures)
            + f". Run `modelreg validate {name} {version}` for every gate"
        )
        self.name = name
        self.version = version
        self.failures = failures


class LedgerMismatchError(ConflictError):
    """An empty ledger beside MLflow versions that another ledger adopted.

    Carrying on would start a second audit history (a fork); the message names
    the ledger that adopted them.
    """

    def __init__(self, ledger: str, tracking_uri: str, other: str) -> None:
        home = other.removeprefix("sqlite:///").removesuffix("/ledger.db")
        hint = (
            f"export MODELREG_HOME={home} (or pass --home {home})"
            if other.startswith("sqlite:///")
            else f"export MODELREG_LEDGER_URI='{other}' (with its password)"
        )
        super().__init__(
            f"the ledger at {ledger} is empty, but MLflow at {tracking_uri} holds versions "
            f"adopted by the ledger at {other}; use that one: {hint}. To start a new ledger "
            "on purpose, set MODELREG_ALLOW_NEW_LEDGER=1"
        )
        self.ledger = ledger
        self.other = other


class ApprovalError(ConflictError):
    """An approval, rejection or request does not fit the version's open request."""


class AccessError(ModelregError):
    """The acting user may not do what was asked."""


class AuthenticationError(AccessError):
    """Credentials are missing or wrong."""


class PermissionDeniedError(AccessError):
    """The user's role, the approver list or separation of duties forbids the action."""

    def __init__(self, actor: str, action: str, why: str) -> None:
        super().__init__(f"{actor} may not {action}: {why}")
        self.actor = actor
        self.action = action


class ArtifactsNotFoundError(NotFoundError):
    """The artifact store has no files (or no readable MLmodel) where a version points."""

    def __init__(self, name: str, version: int, why: str) -> None:
        super().__init__(
            f"the artifacts of {name} version {version} cannot be read: {why}; the version "
            "cannot be adopted or served (delete it in MLflow, or register the model again)"
        )
        self.name = name
        self.version = version


class IntegrityError(ModelregError):
    """Artifact files differ from the manifest recorded at registration."""

    def __init__(self, name: str, version: int, problems: list[str]) -> None:
        listed = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        super().__init__(
            f"{name} version {version} failed integrity verification: {listed}. "
            "The artifacts changed after registration; register a new version instead"
        )
        self.name = name
        self.version = version
        self.problems = problems


class CompilationError(ModelregError):
    """A model version has no verified compiled form (ONNX) to serve.

    The model type has no converter, conversion failed, the compiled model
    disagrees with the original on the verification rows, or a stored
    compiled artifact does not match the digest the ledger recorded. The
    server then serves the original MLflow pyfunc, unless compilation is
    required. ``reason`` says which, in words a log reader understands.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LineageError(ModelregError):
    """Lineage could not be captured (e.g. no active MLflow run)."""


class BackendError(ModelregError):
    """MLflow, the ledger database or the object store reported a failure."""


class BackendUnavailableError(BackendError):
    """A backend service cannot be reached."""

    def __init__(self, service: str, target: str, why: str) -> None:
        super().__init__(
            f"{service} at {target} is not reachable ({why}); start it with `modelreg up` "
            "or point MLFLOW_TRACKING_URI / --tracking-uri at a running server"
        )
        self.service = service
        self.target = target


class ModelNotReadyError(ModelregError):
    """A serving slot has not loaded a model yet (or could never load one)."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"model {name!r} is not ready to serve: {why}")
        self.name = name
