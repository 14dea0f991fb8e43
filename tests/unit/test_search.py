"""The search filter language: parse, render, parse back; errors that say what is wrong."""

from __future__ import annotations

import contextlib
import operator
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.domain import SemVer, Stage
from modelreg.errors import InvalidFilterError
from modelreg.search import Candidate, Clause, matches, parse

PYTHON = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
COMPARE = list(PYTHON)
TEXT_OPS = ["=", "!=", "like", "ilike"]


def _quote(value: str) -> str:
    """A filter literal for ``value``: single quotes, backslash escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _any_case(draw: st.DrawFn, word: str) -> str:
    """``word`` with each letter's case drawn: keys and keywords are case-insensitive."""
    return "".join(ch.upper() if draw(st.booleans()) else ch.lower() for ch in word)


# Any text but NUL-free surrogates; newlines and quotes of both kinds included.
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
ALNUM = string.ascii_letters + string.digits + "_"
fields = st.text(ALNUM, min_size=1, max_size=12)
spaced_fields = st.builds(
    "{} {}{}".format,
    st.text(ALNUM, min_size=1, max_size=5),
    st.text(ALNUM + " ", max_size=4),
    st.text(ALNUM, min_size=1, max_size=2),
)
numbers = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
ranges = st.one_of(
    st.tuples(*[st.integers(0, 99)] * 3).map(lambda v: "{}.{}.{}".format(*v)),
    st.tuples(*[st.integers(0, 99)] * 2).map(lambda v: "{}.{}.x".format(*v)),
    st.integers(0, 99).map(lambda major: f"^{major}.0.0"),
    st.integers(1, 99).map(lambda major: f">=0.1.0,<{major}.0.0"),
)


@st.composite
def clauses(draw: st.DrawFn) -> tuple[str, Clause]:
    """A clause every parser must accept, and the filter text a user would write for it."""
    kind = draw(st.sampled_from(["name", "run_id", "version", "stage", "semver", "lineage", "ns"]))
    if kind in {"name", "run_id"}:
        op, value = draw(st.sampled_from(TEXT_OPS)), draw(values)
        return f"{_any_case(draw, kind)} {op} {_quote(value)}", Clause(kind, op, value, True)
    if kind == "version":
        op, value = draw(st.sampled_from(COMPARE)), str(draw(st.integers(0, 10**6)))
        return f"{_any_case(draw, kind)} {op} {value}", Clause(kind, op, value, False)
    if kind == "stage":
        op, value = draw(st.sampled_from(["=", "!="])), draw(st.sampled_from(list(Stage))).value
        return f"{_any_case(draw, kind)} {op} {_quote(value)}", Clause(kind, op, value, True)
    if kind == "semver":
        op, value = draw(st.sampled_from(["=", "!="])), draw(ranges)
        return f"{kind} {op} {_quote(value)}", Clause(kind, op, value, True)
    if kind == "lineage":
        op, value = (
            draw(st.sampled_from(["=", "!="])),
            draw(st.sampled_from(["complete", "incomplete"])),
        )
        return f"{kind} {op} {value}", Clause(kind, op, value, False)
    namespace = draw(st.sampled_from(["tags", "params", "metrics"]))
    field = draw(st.one_of(fields, spaced_fields))
    written = f"{_any_case(draw, namespace)}.`{field}`" if " " in field else f"{namespace}.{field}"
    if namespace == "metrics":
        op, value = draw(st.sampled_from(COMPARE)), draw(numbers)
        return f"{written} {op} {value}", Clause(f"metrics.{field}", op, value, False)
    op = draw(st.sampled_from(TEXT_OPS if namespace == "tags" else [*COMPARE, "like"]))
    value = draw(values)
    rendered_op = _any_case(draw, op) if op in {"like", "ilike"} else op
    return (
        f"{written} {rendered_op} {_quote(value)}",
        Clause(f"{namespace}.{field}", op, value, True),
    )


# No deadline: the machine running the suite may be busy; the parser is not what is slow.
@settings(max_examples=200, deadline=None)
@given(st.lists(clauses(), min_size=1, max_size=5), st.sampled_from(["and", "AND", "And"]))
def test_rendered_queries_parse_back_to_the_same_clauses(
    drawn: list[tuple[str, Clause]], joiner: str
) -> None:
    text = f" {joiner} ".join(rendered for rendered, _ in drawn)
    query = parse(text)
    assert query.text == text
    assert query.clauses == tuple(clause for _, clause in drawn)


def test_namespaces_split_the_query() -> None:
    query = parse("stage = 'Production' and metrics.auc > 0.8 and tags.`data set` = 'x'")
    assert [c.key for c in query.by_namespace("")] == ["stage"]
    assert [c.field for c in query.by_namespace("metrics")] == ["auc"]
    assert [c.field for c in query.by_namespace("tags")] == ["data set"]
    assert query.by_namespace("params") == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("name = 'a' " + "x" * 2000, "longer than 2000 characters"),
        ("name = 'a' ; drop", "unexpected character ';' at position 11"),
        ("name = 'unterminated", 'unexpected character "\'" at position 7'),
        ("stage = 'Production' or name = 'a'", "expected 'and' before 'or'"),
        ("stage =", "a condition is incomplete; write key op value"),
        ("name = 'a' and", "a condition is incomplete; write key op value"),
        ("'name' = 'a'", "expected a key, got \"'name'\""),
        ("owner = 'me'", "unknown key 'owner'; use name, version, stage, semver"),
        ("name is 'a'", "expected an operator after 'name', got 'is'"),
        ("name = =", "expected a value after '='"),
        ("metrics.auc like 0.5", "metrics compare with = != > >= < <=, not LIKE"),
        ("metrics.auc > high", "metric value 'high' is not a number"),
        ("tags.team > 'a'", "tags compare with =, !=, LIKE or ILIKE"),
        ("stage > 'Production'", "stage compares with = or !="),
        ("stage = 'Live'", "unknown stage 'Live'; use one of: None, Staging, Production"),
        ("semver > '1.0.0'", "semver takes = or != with a version or range"),
        ("semver = 'one'", "invalid semantic version 'one'"),
        ("version = 1.5", "version '1.5' is not a whole number"),
        ("version = '\u00b2'", "version '\u00b2' is not a whole number"),
        ("version like '1%'", "version compares with = != > >= < <=, not LIKE"),
        ("lineage = partial", "lineage is 'complete' or 'incomplete'"),
        ("lineage > complete", "lineage compares with = or !="),
        ("run_id >= 'a'", "run_id compares with =, !=, LIKE or ILIKE"),
    ],
)
def test_malformed_filters_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidFilterError) as caught:
        parse(text)
    message = caught.value.message
    assert message.startswith("invalid search filter ")
    assert why in message
    assert "Example: \"stage = 'Production'" in message  # and how to write one
    assert caught.value.filter_text == text


def test_a_long_filter_is_shortened_in_the_message() -> None:
    text = "owner = " + "y" * 200
    with pytest.raises(InvalidFilterError) as caught:
        parse(text)
    shown = re.search(r"invalid search filter '(.*?)': unknown key", caught.value.message)
    assert shown is not None
    assert len(shown.group(1)) == 80
    assert shown.group(1).endswith("...")


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_as_a_filter_error(text: str) -> None:
    with contextlib.suppress(InvalidFilterError):  # any other exception fails the test
        parse(text)


VERSION = Candidate(
    name="Churn-Model",
    version=7,
    stage=Stage.PRODUCTION,
    semver=SemVer(1, 4, 2),
    run_id="abc123",
    lineage_complete=True,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("stage = 'production'", True),
        ("stage != 'Production'", False),
        ("stage = 'Staging'", False),
        ("semver = '1.4.2'", True),
        ("semver = '1.x'", True),
        ("semver = '^1.5.0'", False),
        ("semver != '>=2.0.0'", True),
        ("lineage = complete", True),
        ("lineage = 'Incomplete'", False),
        ("lineage != incomplete", True),
        ("version = 7", True),
        ("version > 7", False),
        ("version <= '7'", True),
        ("name = 'Churn-Model'", True),
        ("name = 'churn-model'", False),
        ("name like 'Churn-%'", True),
        ("name like 'churn-%'", False),  # LIKE is case-sensitive, as in MLflow
        ("name ilike 'churn-%'", True),
        ("name like 'Churn_Model'", True),  # _ is any one character
        ("name like 'Churn%Model%'", True),
        ("name like 'Churn.Model'", False),  # regex characters are literal
        ("run_id != 'abc123'", False),
        ("run_id ilike 'ABC%'", True),
    ],
)
def test_built_in_clauses_match_a_version(text: str, expected: bool) -> None:
    (clause,) = parse(text).clauses
    assert matches(clause, VERSION) is expected


@given(st.integers(0, 1000), st.integers(0, 1000), st.sampled_from(COMPARE))
def test_version_clauses_compare_as_numbers(actual: int, wanted: int, op: str) -> None:
    (clause,) = parse(f"version {op} {wanted}").clauses
    item = Candidate("m", actual, Stage.NONE, None, "r", False)
    assert matches(clause, item) is PYTHON[op](actual, wanted)


@given(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="%_"), max_size=20))
def test_a_pattern_without_wildcards_matches_only_itself(value: str) -> None:
    (clause,) = parse(f"name like {_quote(value)}").clauses
    assert matches(clause, Candidate(value, 1, Stage.NONE, None, "r", False))
    assert not matches(clause, Candidate(value + "x", 1, Stage.NONE, None, "r", False))


def test_a_version_without_semver_matches_no_semver_clause() -> None:
    (clause,) = parse("semver = '1.x'").clauses
    assert not matches(clause, Candidate("m", 1, Stage.NONE, None, "r", False))
