"""The lean parts of modelreg.serving.protocol: orjson parsing and hand-written answers.

Both must be indistinguishable from the json module they replace: the same
values or the same error message for any body, the same answer bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import PayloadError
from modelreg.semver import InputColumn
from modelreg.serving.protocol import InputSchema, _load_json, parse_request, predictions_json

FLOATS = InputSchema(tuple(InputColumn(name, "double") for name in ("a", "b")))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


def _outcome(load: Any, body: bytes) -> tuple[str, Any]:
    try:
        return "value", load(body)
    except (ValueError, RecursionError) as exc:
        return type(exc).__name__, str(exc)


def _agrees(body: bytes) -> None:
    ours, theirs = _outcome(_load_json, body), _outcome(json.loads, body)
    assert ours[0] == theirs[0], (body, ours, theirs)
    if ours[0] == "value":
        assert _same(ours[1], theirs[1]), (body, ours, theirs)
    else:
        assert ours[1] == theirs[1]


@settings(max_examples=300)
@given(json_values)
def test_any_json_document_parses_as_the_json_module_parses_it(value: Any) -> None:
    _agrees(json.dumps(value).encode())
    _agrees(json.dumps(value, indent=1, ensure_ascii=False).encode())


@settings(max_examples=300)
@given(
    st.binary(max_size=40)
    | st.text(alphabet='{}[]",:0123456789.eE+-aNIfinty \\u', max_size=30).map(str.encode)
)
def test_any_bytes_parse_or_fail_as_with_the_json_module(body: bytes) -> None:
    _agrees(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 18446744073709551616}',  # past 64 bits: orjson would read a float
        b"[-9223372036854775809]",
        b"[NaN, Infinity, -Infinity]",
        b"[1e400]",
        b'"\\ud800"',
        b"\xef\xbb\xbf{}",
        '{"a": 1}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
        b"[" * 2000 + b"]" * 2000,
        b"[1,]",
        # A table of doubles (long digit runs after leading zeros) with one huge integer
        # deep inside: found by the walk over the parsed values.
        b'{"dataframe_split": {"data": [[0.0012345678901234567, 2.5], [[1, 2], '
        b'{"x": [123456789012345678901234567890]}]]}}',
        b"[0.0012345678901234567, -0.00098765432109876543]",  # fractions stay with orjson
        b"[9.3e18, 1e308]",  # large doubles: read again, same values
    ],
)
def test_bodies_orjson_reads_differently_or_refuses_behave_as_before(body: bytes) -> None:
    _agrees(body)


def test_deep_bodies_keep_their_error() -> None:
    body = b'{"inputs": ' + b"[" * 100 + b"]" * 100 + b"}"
    with pytest.raises(PayloadError, match="nest deeper than 64"):
        parse_request(body, "application/json", None)


def test_an_all_float_schema_gives_a_schema_ordered_array() -> None:
    body = json.dumps({"dataframe_split": {"columns": ["b", "a"], "data": [[2, 1]]}}).encode()
    parsed = parse_request(body, "application/json", FLOATS)
    assert isinstance(parsed.data, np.ndarray)
    assert parsed.data.tolist() == [[1.0, 2.0]]
    pd.testing.assert_frame_equal(parsed.frame, pd.DataFrame({"a": [1.0], "b": [2.0]}))
    csv = parse_request(b"b,a\n2,1\n", "text/csv", FLOATS)
    assert isinstance(csv.data, np.ndarray)
    assert csv.data.tolist() == [[1.0, 2.0]]


vectors = st.one_of(
    st.lists(st.integers(-(2**63), 2**63 - 1)).map(lambda v: np.array(v, dtype=np.int64)),
    st.lists(st.integers(0, 255)).map(lambda v: np.array(v, dtype=np.uint8)),
    st.lists(st.booleans()).map(lambda v: np.array(v, dtype=bool)),
    st.lists(st.floats(allow_nan=True, allow_infinity=True)).map(np.array),
    st.lists(st.floats(width=32)).map(lambda v: np.array(v, dtype=np.float32)),
)


@settings(max_examples=300)
@given(vectors)
def test_vector_answers_are_the_json_modules_bytes(values: np.ndarray) -> None:
    jsonable = values.tolist()
    try:
        expected = json.dumps({"predictions": jsonable}, allow_nan=False).encode()
    except ValueError:  # NaN or infinity: written as null, as before
        jsonable = [None if isinstance(v, float) and not math.isfinite(v) else v for v in jsonable]
        expected = json.dumps({"predictions": jsonable}).encode()
    assert predictions_json(values) == expected
