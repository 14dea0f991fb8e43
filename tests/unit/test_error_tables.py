"""Every error class gets its row in each adapter table, looked up along the class hierarchy."""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg import errors
from modelreg.cli import EXIT_CODES, INTERNAL_ERROR, exit_code
from modelreg.cli.governance import DECLINED_EXIT
from modelreg.errors import ConflictError, ModelregError, nearest
from modelreg.http_status import STATUS_CODES, status_for

# Written out by hand, not computed: (HTTP status, exit code) per class of the tree,
# as docs/operations.md documents them.
EXPECTED: dict[type[ModelregError], tuple[int, int]] = {
    errors.ModelregError: (500, 1),
    errors.InvalidInputError: (400, 2),
    errors.InvalidNameError: (400, 2),
    errors.InvalidStageError: (400, 2),
    errors.InvalidFilterError: (400, 2),
    errors.InvalidSemVerError: (400, 2),
    errors.PolicyError: (503, 2),  # the server's configuration, but the CLI user's input
    errors.PayloadError: (400, 2),
    errors.PayloadTooLargeError: (413, 2),
    errors.UnsupportedMediaTypeError: (415, 2),
    errors.NotFoundError: (404, 3),
    errors.ModelNotFoundError: (404, 3),
    errors.VersionNotFoundError: (404, 3),
    errors.ArtifactsNotFoundError: (404, 3),
    errors.ExpiredError: (410, 3),
    errors.ConflictError: (409, 4),
    errors.TransitionNotAllowedError: (409, 4),
    errors.SemVerConflictError: (409, 4),
    errors.NothingToRollBackError: (409, 4),
    errors.GateFailedError: (409, 4),
    errors.ApprovalError: (409, 4),
    errors.LedgerMismatchError: (409, 4),
    errors.AccessError: (403, 7),
    errors.AuthenticationError: (401, 7),
    errors.PermissionDeniedError: (403, 7),
    errors.IntegrityError: (422, 5),
    errors.LineageError: (422, 1),
    errors.CompilationError: (422, 1),
    errors.BackendError: (502, 6),
    errors.BackendUnavailableError: (503, 6),
    errors.ModelNotReadyError: (503, 1),
}

TREE = sorted(
    (
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ModelregError)
    ),
    key=lambda cls: cls.__name__,
)


def _instance(cls: type[ModelregError]) -> ModelregError:
    """An instance without its constructor's arguments: the lookups read only the class."""
    return cls.__new__(cls)


def test_the_expectations_cover_the_whole_tree() -> None:
    # A new error class must be given its rows here (and in the docs) on purpose.
    assert set(TREE) == set(EXPECTED)


@pytest.mark.parametrize("cls", TREE, ids=lambda cls: cls.__name__)
def test_each_class_gets_the_row_of_its_nearest_listed_base(cls: type[ModelregError]) -> None:
    status, code = EXPECTED[cls]
    assert status_for(_instance(cls)) == status
    assert exit_code(_instance(cls)) == code


@pytest.mark.parametrize("table", [STATUS_CODES, EXIT_CODES], ids=["http", "exit"])
def test_every_listed_class_is_in_the_tree(table: Mapping[type[ModelregError], int]) -> None:
    assert set(table) <= set(TREE)


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("k"), RuntimeError(), Exception()])
def test_an_exception_outside_the_tree_gets_the_default(error: Exception) -> None:
    assert status_for(error) == 500
    assert exit_code(error) == INTERNAL_ERROR
    assert nearest(STATUS_CODES, error, 418) == 418


@given(st.sampled_from([cls for cls in TREE if cls is not ModelregError]), st.integers(1, 3))
def test_no_error_of_the_tree_is_an_internal_error(base: type[ModelregError], depth: int) -> None:
    # Subclasses a future change might add, `depth` levels under any class of the tree,
    # inherit its rows: never the 500 or exit 70 kept for bugs.
    cls = base
    for level in range(depth):
        cls = type(f"New{level}{base.__name__}", (cls,), {})
    assert status_for(_instance(cls)) == EXPECTED[base][0] != 500
    assert exit_code(_instance(cls)) == EXPECTED[base][1] != INTERNAL_ERROR


def test_the_nearest_class_wins_over_a_farther_one() -> None:
    class Special(errors.BackendUnavailableError):
        pass

    table = {ModelregError: "any", errors.BackendError: "backend", Special: "special"}
    assert nearest(table, _instance(Special), "none") == "special"
    assert nearest(table, _instance(errors.BackendUnavailableError), "none") == "backend"
    assert nearest(table, _instance(errors.LineageError), "none") == "any"


def test_a_declined_promotion_exits_as_a_conflict() -> None:
    assert DECLINED_EXIT == exit_code(ConflictError("declined")) == 4
