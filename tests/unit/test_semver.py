"""Unit and property tests of modelreg.semver."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.domain import SemVer
from modelreg.errors import InvalidSemVerError, SemVerConflictError
from modelreg.semver import (
    MAX_COMPONENT,
    Bump,
    InputColumn,
    VersionFacts,
    bump,
    classify,
    next_version,
    parse,
    parse_range,
)

numbers = st.integers(min_value=0, max_value=10**6)
identifiers = st.text(
    alphabet="0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-",
    min_size=1,
    max_size=8,
)
builds = st.lists(identifiers, max_size=3).map(".".join)
semvers = st.builds(SemVer, numbers, numbers, numbers, builds)
cores = st.builds(SemVer, st.integers(0, 4), st.integers(0, 4), st.integers(0, 4))

column_names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)
column_types = st.sampled_from(["double", "long", "string", "boolean"])
signatures = st.dictionaries(
    column_names, st.tuples(column_types, st.booleans()), min_size=1, max_size=5
).map(lambda cols: tuple(InputColumn(n, t, r) for n, (t, r) in cols.items()))
facts = st.builds(
    VersionFacts.build,
    inputs=st.one_of(st.none(), signatures),
    flavor=st.sampled_from(["sklearn", "pyfunc"]),
    model_class=st.sampled_from(["LogisticRegression", "RandomForestClassifier"]),
    params=st.dictionaries(st.sampled_from(["C", "depth", "seed"]), st.integers(0, 3)),
    data_fingerprint=st.text(alphabet="0123456789abcdef", max_size=8),
)
known_facts = facts.filter(lambda f: f.inputs is not None)
# Random text rarely looks like a version; this alphabet reaches the deeper parsing paths too.
malformed = st.one_of(
    st.text(max_size=300), st.text(alphabet="0123456789.+-vVxX*^~<>=!, a", max_size=40)
)

X, Y = InputColumn("x", "double"), InputColumn("y", "long")
BASE = VersionFacts.build([X, Y], "sklearn", "LogisticRegression", {"C": 1.0}, "abc")


def with_inputs(*columns: InputColumn) -> VersionFacts:
    return VersionFacts.build(columns, "sklearn", "LogisticRegression", {"C": 1.0}, "abc")


# -- parse -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3", SemVer(1, 2, 3)),
        ("v0.0.0", SemVer(0, 0, 0)),
        ("  10.20.30\n", SemVer(10, 20, 30)),
        ("1.0.0+build.7", SemVer(1, 0, 0, "build.7")),
        ("1.0.0+exp-sha.5114f85", SemVer(1, 0, 0, "exp-sha.5114f85")),
    ],
)
def test_parse_accepts(text: str, expected: SemVer) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "not a number"),
        ("1.2", "three numbers"),
        ("1.2.3.4", "at most three"),
        ("01.2.3", "leading zero"),
        ("1.02.3", "leading zero"),
        ("1.2.3-rc1", "pre-release"),
        ("1.2.3+", "build metadata"),
        ("1.2.3+a..b", "build metadata"),
        ("1.2.3+a_b", "build metadata"),
        ("1.2.x", "wildcards"),
        ("a.b.c", "not a number"),
        ("\u0661.2.3", "not a number"),  # Arabic-Indic digit: isdigit() but not ASCII
        ("V1.2.3", "not a number"),
        ("1" * 129, "longer than 128"),
        # The ledger keeps MAJOR/MINOR/PATCH in 32-bit columns: larger numbers are refused here.
        ("1.0." + "9" * 60, "larger than 2147483647"),
        ("2147483648.0.0", "larger than 2147483647"),
        ("1.0.0+" + "a" * 123, "longer than 128"),
    ],
)
def test_parse_refuses_with_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidSemVerError, match=why):
        parse(text)


def test_the_largest_components_parse_and_do_not_bump_past_the_ledger() -> None:
    top = parse("2147483647.2147483647.2147483647")
    assert top.core == (MAX_COMPONENT,) * 3
    for kind in Bump:
        with pytest.raises(InvalidSemVerError, match="cannot grow past"):
            bump(top, kind)
    assert parse_range(">2147483647.0.0").contains(top)


@given(semvers)
def test_parse_round_trips(v: SemVer) -> None:
    assert parse(str(v)) == v
    assert parse(f"v{v}") == v


@given(malformed)
def test_parse_raises_only_invalid_semver(text: str) -> None:
    try:
        v = parse(text)
    except InvalidSemVerError:
        return
    assert parse(str(v)) == v


# -- classify and bump -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        (BASE, Bump.PATCH),
        (
            VersionFacts.build([X, Y], "sklearn", "LogisticRegression", {"C": 1.0}, "new"),
            Bump.PATCH,
        ),
        (with_inputs(X), Bump.MAJOR),  # removed
        (with_inputs(X, InputColumn("z", "long")), Bump.MAJOR),  # renamed
        (with_inputs(X, InputColumn("y", "double")), Bump.MAJOR),  # retyped
        (with_inputs(X, Y, InputColumn("z", "long")), Bump.MAJOR),  # new required
        (with_inputs(X, Y, InputColumn("z", "long", required=False)), Bump.MINOR),
        (with_inputs(Y, X), Bump.PATCH),  # order does not matter: columns are by name
        (VersionFacts.build(None, "sklearn", "LogisticRegression", {"C": 1.0}, "abc"), Bump.MAJOR),
        (VersionFacts.build([X, Y], "pyfunc", "LogisticRegression", {"C": 1.0}, "abc"), Bump.MINOR),
        (VersionFacts.build([X, Y], "sklearn", "SVC", {"C": 1.0}, "abc"), Bump.MINOR),
        (VersionFacts.build([X, Y], "sklearn", "LogisticRegression", {"C": 2}, "abc"), Bump.MINOR),
        (VersionFacts.build([X, Y], "sklearn", "LogisticRegression", {}, "abc"), Bump.MINOR),
    ],
)
def test_classify_examples(new: VersionFacts, expected: Bump) -> None:
    assert classify(BASE, new) is expected


def test_classify_optional_becoming_required_is_major() -> None:
    optional = with_inputs(X, InputColumn("y", "long", required=False))
    assert classify(optional, BASE) is Bump.MAJOR
    assert classify(BASE, optional) is Bump.MINOR  # relaxing a column stays compatible


def test_classify_unknown_previous_signature_is_not_major() -> None:
    unknown = VersionFacts.build(None, "sklearn", "LogisticRegression", {"C": 1.0}, "abc")
    assert classify(unknown, BASE) is Bump.PATCH
    assert classify(unknown, unknown) is Bump.PATCH


def test_build_normalises_params() -> None:
    made = VersionFacts.build(None, params={"b": 2, "a": None, "c": 0.5})
    assert made.params == (("a", "None"), ("b", "2"), ("c", "0.5"))


@given(facts)
def test_classify_identical_facts_is_patch(f: VersionFacts) -> None:
    assert classify(f, f) is Bump.PATCH


@given(known_facts, st.data())
def test_removing_a_column_is_always_major(f: VersionFacts, data: st.DataObject) -> None:
    assert f.inputs is not None
    gone = data.draw(st.sampled_from(f.inputs))
    new = VersionFacts.build([c for c in f.inputs if c.name != gone.name], f.flavor, f.model_class)
    assert classify(f, new) is Bump.MAJOR


@given(known_facts)
def test_adding_an_optional_column_is_minor(f: VersionFacts) -> None:
    assert f.inputs is not None
    extra = InputColumn("new_" + "_".join(c.name for c in f.inputs), "double", required=False)
    new = VersionFacts(
        (*f.inputs, extra), f.flavor, f.model_class, f.params, f.data_fingerprint + "x"
    )
    assert classify(f, new) is Bump.MINOR


@pytest.mark.parametrize(
    ("kind", "expected"),
    [(Bump.MAJOR, "2.0.0"), (Bump.MINOR, "1.3.0"), (Bump.PATCH, "1.2.4")],
)
def test_bump_examples(kind: Bump, expected: str) -> None:
    assert str(bump(SemVer(1, 2, 3, "b7"), kind)) == expected


@given(semvers, st.sampled_from(Bump))
def test_bump_is_monotonic(v: SemVer, kind: Bump) -> None:
    bumped = bump(v, kind)
    assert bumped.core > v.core
    assert bumped.build == ""


# -- next_version ------------------------------------------------------------------------------


def test_next_version_first() -> None:
    assert next_version("m", [], None, BASE) == SemVer(1, 0, 0)
    assert next_version("m", [], None, BASE, explicit=SemVer(0, 3, 0)) == SemVer(0, 3, 0)


def test_next_version_bumps_highest_by_classification() -> None:
    existing = [SemVer(1, 0, 0), SemVer(1, 4, 2), SemVer(1, 1, 0)]
    assert next_version("m", existing, BASE, BASE) == SemVer(1, 4, 3)
    assert next_version("m", existing, BASE, with_inputs(X)) == SemVer(2, 0, 0)
    assert next_version("m", existing, None, BASE) == SemVer(1, 5, 0)


def test_next_version_refuses_duplicate_and_decrease() -> None:
    existing = [SemVer(1, 0, 0), SemVer(1, 4, 2)]
    for explicit in (SemVer(1, 4, 2), SemVer(1, 4, 2, "other"), SemVer(1, 3, 9)):
        with pytest.raises(SemVerConflictError, match=r"highest is 1\.4\.2") as caught:
            next_version("m", existing, BASE, BASE, explicit=explicit)
        assert caught.value.requested == str(explicit)
    assert next_version("m", existing, BASE, BASE, explicit=SemVer(1, 5, 0)) == SemVer(1, 5, 0)


@given(st.lists(semvers, min_size=1, max_size=6), st.one_of(st.none(), facts), facts)
def test_next_version_exceeds_all_existing(
    existing: list[SemVer], prev: VersionFacts | None, new: VersionFacts
) -> None:
    chosen = next_version("m", existing, prev, new)
    assert all(chosen.core > v.core for v in existing)


@given(st.lists(semvers, min_size=1, max_size=6), semvers)
def test_explicit_version_accepted_only_if_greater(
    existing: list[SemVer], explicit: SemVer
) -> None:
    # Compare cores: domain.SemVer's total_ordering makes 1.0.0 > 1.0.0+b (eq includes build).
    if all(explicit.core > v.core for v in existing):
        assert next_version("m", existing, None, BASE, explicit=explicit) == explicit
    else:
        with pytest.raises(SemVerConflictError):
            next_version("m", existing, None, BASE, explicit=explicit)


# -- ranges ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inside", "outside"),
    [
        ("1.2.3", ["1.2.3", "1.2.3+b1"], ["1.2.4", "1.3.3"]),
        ("1.2.3+b1", ["1.2.3+b1"], ["1.2.3", "1.2.3+b2"]),
        ("==1.2.3", ["1.2.3"], ["1.2.4"]),
        ("1.2.x", ["1.2.0", "1.2.99"], ["1.3.0", "1.1.9"]),
        ("1.2.*", ["1.2.0", "1.2.99"], ["1.3.0"]),
        ("1.x", ["1.0.0", "1.99.9"], ["2.0.0", "0.9.9"]),
        ("1.*", ["1.0.0"], ["2.0.0"]),
        ("1.x.x", ["1.5.0"], ["2.0.0"]),
        ("*", ["0.0.0", "99.0.0"], []),
        ("x", ["0.0.0", "99.0.0"], []),
        (">=1.2.0,<2.0.0", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
        (">=1.2 <2", ["1.2.0", "1.9.9"], ["1.1.9", "2.0.0"]),
        (">= 1.2.0, < 2.0.0", ["1.2.0"], ["2.0.0"]),
        (">1.2.3", ["1.2.4"], ["1.2.3"]),
        (">1.2", ["1.3.0"], ["1.2.9"]),
        ("<=1.2.3", ["1.2.3", "0.0.1"], ["1.2.4"]),
        ("<=1.2", ["1.2.9"], ["1.3.0"]),
        ("!=1.2.3", ["1.2.4", "1.2.2"], ["1.2.3", "1.2.3+b"]),
        ("=v1.0.0", ["1.0.0"], ["1.0.1"]),
        ("^1.2.3", ["1.2.3", "1.9.0"], ["1.2.2", "2.0.0"]),
        ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "0.2.2"]),
        ("^0.0.3", ["0.0.3"], ["0.0.4", "0.0.2"]),
        ("^0.0", ["0.0.9"], ["0.1.0"]),
        ("^0", ["0.9.9"], ["1.0.0"]),
        ("^1.x", ["1.0.0", "1.9.9"], ["2.0.0"]),
        ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
        ("~1.2", ["1.2.0"], ["1.3.0"]),
        ("~1", ["1.9.0"], ["2.0.0"]),
        ("!=*", [], ["1.0.0"]),
    ],
)
def test_range_examples(text: str, inside: list[str], outside: list[str]) -> None:
    spec = parse_range(text)
    assert str(spec) == text
    for v in inside:
        assert spec.contains(parse(v)), v
    for v in outside:
        assert not spec.contains(parse(v)), v


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (">=", "not followed by a version"),
        ("> = 1.0.0", "not followed by a version"),
        (">=1.0.0,,<2.0.0", "empty comparator"),
        ("1.x.2", "number after a wildcard"),
        ("1.2+b", "build metadata without a full version"),
        ("1.0.0 - 2.0.0", "hyphen ranges"),
        ("^1.2.3-beta", "pre-release"),
        ("~>1.2", "not a number"),
        ("01.x", "leading zero"),
        ("1.2.3.4", "at most three"),
        (">=1.0.0," * 30, "longer than 200"),
    ],
)
def test_range_refuses_with_reason(text: str, why: str) -> None:
    with pytest.raises(InvalidSemVerError, match=why):
        parse_range(text)


@given(st.integers(0, 4), st.integers(0, 4), cores)
def test_wildcards_equal_explicit_comparators(major: int, minor: int, v: SemVer) -> None:
    in_minor = v.major == major and v.minor == minor
    for text in (f"{major}.{minor}.x", f"{major}.{minor}.*", f"{major}.{minor}"):
        assert parse_range(text).contains(v) is in_minor
    explicit = parse_range(f">={major}.{minor}.0,<{major}.{minor + 1}.0")
    assert explicit.contains(v) is in_minor
    in_major = v.major == major
    for text in (f"{major}.x", f"{major}.*", f"{major}", f"~{major}"):
        assert parse_range(text).contains(v) is in_major
    assert parse_range(f">={major}.0.0 <{major + 1}.0.0").contains(v) is in_major


@given(cores, cores)
def test_caret_and_tilde_match_their_bounds(base: SemVer, v: SemVer) -> None:
    if base.major:
        caret_high = SemVer(base.major + 1, 0, 0)
    elif base.minor:
        caret_high = SemVer(0, base.minor + 1, 0)
    else:
        caret_high = SemVer(0, 0, base.patch + 1)
    assert parse_range(f"^{base}").contains(v) is (base <= v < caret_high)
    tilde_high = SemVer(base.major, base.minor + 1, 0)
    assert parse_range(f"~{base}").contains(v) is (base <= v < tilde_high)


@given(st.sampled_from(["=", ">", ">=", "<", "<=", "!="]), cores, cores)
def test_comparators_on_full_versions(op: str, bound: SemVer, v: SemVer) -> None:
    expected = {
        "=": v == bound,
        "!=": v != bound,
        ">": v > bound,
        ">=": v >= bound,
        "<": v < bound,
        "<=": v <= bound,
    }[op]
    assert parse_range(f"{op}{bound}").contains(v) is expected


@given(malformed)
def test_parse_range_raises_only_invalid_semver(text: str) -> None:
    try:
        spec = parse_range(text)
    except InvalidSemVerError:
        return
    assert isinstance(spec.contains(SemVer(1, 2, 3)), bool)
