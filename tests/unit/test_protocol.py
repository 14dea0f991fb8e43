"""Unit and property tests of modelreg.serving.protocol (MLflow's /invocations protocol)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow.models.utils import _enforce_schema
from mlflow.types import ColSpec, Schema, TensorSpec

from modelreg.errors import (
    AuthenticationError,
    ConflictError,
    ModelNotReadyError,
    ModelregError,
    PayloadError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
    VersionNotFoundError,
)
from modelreg.semver import InputColumn
from modelreg.serving.protocol import (
    MAX_JSON_DEPTH,
    InputSchema,
    enforce,
    error_body,
    error_code_for,
    parse_request,
    predictions_json,
)

JSON = "application/json"
COLUMNS = [f"f{i}" for i in range(20)]
FLOATS = InputSchema(tuple(InputColumn(name, "double") for name in COLUMNS))
MIXED = InputSchema(
    (
        InputColumn("n", "long"),
        InputColumn("x", "double"),
        InputColumn("s", "string"),
        InputColumn("b", "boolean"),
        InputColumn("t", "datetime"),
        InputColumn("i", "integer"),
        InputColumn("f", "float"),
        InputColumn("opt", "double", required=False),
    )
)
ROW = [i + 0.5 for i in range(20)]
MIXED_ROW = {"n": 1, "x": 2.5, "s": "a", "b": True, "t": "2024-01-02", "i": 3, "f": 1.5}


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def parse(document: Any, schema: InputSchema | None = FLOATS, content_type: str = JSON) -> Any:
    return parse_request(body(document), content_type, schema)


def expected_frame(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS, dtype=np.float64)


# -- schemas -------------------------------------------------------------------------------


def test_schema_from_mlflow_keeps_names_types_and_optional_columns() -> None:
    mlflow_schema = Schema([ColSpec("double", "a"), ColSpec("long", "b", required=False)])
    assert InputSchema.from_mlflow(mlflow_schema) == InputSchema(
        (
            InputColumn("a", "double"),
            InputColumn("b", "long", required=False),
        )
    )


@pytest.mark.parametrize(
    "mlflow_schema",
    [None, Schema([TensorSpec(np.dtype("float64"), (-1, 3))]), Schema([ColSpec("double")])],
    ids=["none", "tensor", "unnamed"],
)
def test_schema_from_mlflow_passes_through_tensor_and_unnamed(mlflow_schema: Any) -> None:
    assert InputSchema.from_mlflow(mlflow_schema) is None


# -- the four JSON formats and CSV ---------------------------------------------------------

RECORD = dict(zip(COLUMNS, ROW, strict=True))
EQUIVALENT_BODIES = {
    "split": {"dataframe_split": {"columns": COLUMNS, "data": [ROW, ROW]}},
    "split reordered": {"dataframe_split": {"columns": COLUMNS[::-1], "data": [ROW[::-1]] * 2}},
    "split with index": {
        "dataframe_split": {"columns": COLUMNS, "data": [ROW] * 2, "index": [7, 9]}
    },
    "records": {"dataframe_records": [RECORD, RECORD]},
    "instances records": {"instances": [RECORD, RECORD]},
    "inputs records": {"inputs": [RECORD, RECORD]},
    "inputs columns": {"inputs": {c: [v, v] for c, v in RECORD.items()}},
    "instances columns": {"instances": {c: [v, v] for c, v in RECORD.items()}},
    "extra column": {"dataframe_records": [{**RECORD, "zz": "x"}, {**RECORD, "zz": "y"}]},
    "ints for doubles": {"dataframe_split": {"columns": COLUMNS, "data": [ROW, ROW]}},
}


@pytest.mark.parametrize("document", EQUIVALENT_BODIES.values(), ids=EQUIVALENT_BODIES.keys())
def test_every_json_format_gives_the_same_frame(document: dict[str, Any]) -> None:
    parsed = parse(document)
    assert parsed.rows == 2
    assert parsed.params is None
    pd.testing.assert_frame_equal(
        parsed.frame.reset_index(drop=True), expected_frame([ROW, ROW]), check_index_type=False
    )


def test_inputs_with_scalars_is_one_row() -> None:
    parsed = parse({"inputs": RECORD})
    pd.testing.assert_frame_equal(parsed.frame, expected_frame([ROW]), check_index_type=False)


def test_csv_gives_the_same_frame_with_and_without_the_fast_path() -> None:
    csv = (",".join(COLUMNS[::-1]) + "\n" + ",".join(map(str, ROW[::-1])) + "\n").encode()
    fast = parse_request(csv, "text/csv", FLOATS).frame
    pd.testing.assert_frame_equal(fast, expected_frame([ROW]), check_index_type=False)
    # An empty cell is not for the fast path: pandas reads it as NaN, as in MLflow.
    gap = (",".join(COLUMNS) + "\n" + ",".join(map(str, ROW[:-1])) + ",\n").encode()
    slow = parse_request(gap, "text/csv; charset=utf-8", FLOATS).frame
    assert math.isnan(slow.iloc[0, -1])
    assert slow.iloc[0, :-1].tolist() == ROW[:-1]


def test_params_are_returned_and_must_be_an_object() -> None:
    parsed = parse({"dataframe_records": [RECORD], "params": {"k": 3}})
    assert parsed.params == {"k": 3}
    with pytest.raises(PayloadError, match="'params' must be a JSON object"):
        parse({"dataframe_records": [RECORD], "params": [1]})


def test_mixed_types_are_converted_to_the_schema() -> None:
    frame = parse({"dataframe_records": [MIXED_ROW]}, MIXED).frame
    assert list(frame.columns) == ["n", "x", "s", "b", "t", "i", "f"]
    assert [str(t) for t in frame.dtypes] == [
        "int64",
        "float64",
        str(frame.dtypes["s"]),
        "bool",
        "datetime64[ns]",
        "int32",
        "float32",
    ]
    assert frame.iloc[0].tolist() == [1, 2.5, "a", True, pd.Timestamp("2024-01-02"), 3, 1.5]


def test_no_schema_passes_the_frame_through() -> None:
    frame = parse({"instances": [[1, 2], [3, 4]]}, None).frame
    assert frame.to_numpy().tolist() == [[1, 2], [3, 4]]


def test_single_column_schema_takes_a_plain_list() -> None:
    frame = parse({"inputs": [1, 2, 3]}, InputSchema((InputColumn("x", "double"),))).frame
    assert frame["x"].tolist() == [1.0, 2.0, 3.0]


# -- bad input ------------------------------------------------------------------------------

BAD = {
    "two keys": ({"inputs": [RECORD], "instances": [RECORD]}, "exactly one of the input fields"),
    "no key": ({"data": [ROW]}, "exactly one of the input fields"),
    "a list": ([RECORD], "got a JSON array"),
    "split not an object": ({"dataframe_split": [ROW]}, "'dataframe_split' must be an object"),
    "split extra key": (
        {"dataframe_split": {"data": [ROW], "rows": 1}},
        "'dataframe_split' must be an object",
    ),
    "records not a list": ({"dataframe_records": RECORD}, "must be a list of records"),
    "missing column": (
        {"dataframe_records": [{k: v for k, v in RECORD.items() if k != "f3"}]},
        r"missing the required column\(s\) \['f3'\]",
    ),
    "unnamed rows": ({"instances": [ROW]}, "rows without column names"),
    "text for double": ({"dataframe_records": [{**RECORD, "f2": "abc"}]}, "'f2' expects double"),
    "ragged split": (
        {"dataframe_split": {"columns": COLUMNS, "data": [ROW[:5]]}},
        "'dataframe_split'",
    ),
}


@pytest.mark.parametrize(("document", "message"), BAD.values(), ids=BAD.keys())
def test_bad_json_is_a_payload_error_naming_the_problem(document: Any, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse(document)


MIXED_BAD = {
    "fraction for long": ("n", 1.5, "'n' expects long values: 1.5 is not a whole number"),
    "null for long": ("n", None, "'n' expects long values: got a missing value .* required"),
    "overflow for integer": ("i", 2**40, "'i' expects integer values: .* out of range"),
    "text for long": ("n", "seven", "'n' expects long values"),
    "word for boolean": ("b", "yes", "'b' expects boolean values: 'yes' is not true or false"),
    "number for boolean": ("b", 2, "'b' expects boolean values"),
    "bad date": ("t", "not a date", "'t' expects datetime values"),
    "zoned date": ("t", "2024-01-01T00:00:00+02:00", "'t' expects datetime values: .*time zone"),
}


@pytest.mark.parametrize(("column", "value", "message"), MIXED_BAD.values(), ids=MIXED_BAD.keys())
def test_values_of_the_wrong_type_name_column_and_type(
    column: str, value: Any, message: str
) -> None:
    with pytest.raises(PayloadError, match=message):
        parse({"dataframe_records": [{**MIXED_ROW, column: value}]}, MIXED)


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [("n", 2.0, 2), ("n", "7", 7), ("b", "False", False), ("b", 0, False), ("x", "2.5", 2.5)],
)
def test_lossless_conversions_are_accepted(column: str, value: Any, expected: Any) -> None:
    frame = parse({"dataframe_records": [{**MIXED_ROW, column: value}]}, MIXED).frame
    assert frame[column].iloc[0] == expected


def test_malformed_and_empty_bodies() -> None:
    with pytest.raises(PayloadError, match="malformed JSON: Expecting"):
        parse_request(b'{"inputs": [', JSON, FLOATS)
    with pytest.raises(PayloadError, match="malformed JSON"):
        parse_request(b"\xff\xfe", JSON, FLOATS)
    with pytest.raises(PayloadError, match="body is empty"):
        parse_request(b"  ", JSON, FLOATS)
    with pytest.raises(PayloadError, match="malformed CSV"):
        parse_request(b"\xff,\xfe\n1,2\n", "text/csv", FLOATS)


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("schema", [FLOATS, MIXED, None], ids=["floats", "mixed", "no-schema"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 500, 10_000])
def test_json_nested_too_deeply_is_malformed(schema: InputSchema | None, depth: int) -> None:
    # 10,000 levels made json.loads raise RecursionError, answered as a model failure (500).
    for document in (
        b'{"inputs": ' + _nested(depth) + b"}",
        b'{"dataframe_records": [{"n": ' + _nested(depth) + b"}]}",
        b'{"inputs": [[1]], "params": {"p": ' + _nested(depth) + b"}}",
    ):
        with pytest.raises(PayloadError, match=f"deeper than {MAX_JSON_DEPTH} levels"):
            parse_request(document, JSON, schema)


def test_json_nested_up_to_the_limit_is_parsed() -> None:
    document = b'{"inputs": ' + _nested(MAX_JSON_DEPTH - 1) + b"}"
    assert parse_request(document, JSON, None).rows == 1


HUGE = 10**400  # larger than any float64 (about 1.8e308); json reads it as a Python int
HUGE_ROW = {c: HUGE if i == 0 else 0 for i, c in enumerate(COLUMNS)}


@pytest.mark.parametrize(
    "document",
    [
        {"dataframe_split": {"columns": COLUMNS, "data": [list(HUGE_ROW.values())]}},
        {"dataframe_records": [HUGE_ROW]},
        {"inputs": {c: [v] for c, v in HUGE_ROW.items()}},
    ],
    ids=["split", "records", "inputs"],
)
def test_an_integer_too_large_for_a_float_column_names_the_column(document: Any) -> None:
    # np.asarray(..., float64) raised OverflowError past the fast path: a 500.
    with pytest.raises(PayloadError, match="column 'f0' expects double values: int too large"):
        parse(document)


@pytest.mark.parametrize(
    ("column", "values"),
    [("n", (HUGE, -HUGE, 2**64)), ("i", (HUGE, 2**31)), ("x", (HUGE, -HUGE)), ("f", (HUGE,))],
)
def test_huge_integers_in_typed_columns_are_payload_errors(
    column: str, values: tuple[int, ...]
) -> None:
    for value in values:
        with pytest.raises(PayloadError, match=f"column '{column}'"):
            parse({"dataframe_records": [{**MIXED_ROW, column: value}]}, MIXED)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/json; format=pandas-split", "text/csv; charset=latin-1"],
)
def test_unsupported_content_types(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        parse_request(body({"inputs": RECORD}), content_type, FLOATS)


@pytest.mark.parametrize("content_type", ["application/json; charset=UTF-8", "Application/JSON"])
def test_json_content_type_variants(content_type: str) -> None:
    assert parse_request(body({"inputs": RECORD}), content_type, FLOATS).rows == 1


def test_enforce_rejects_duplicate_columns() -> None:
    frame = pd.DataFrame([[1.0, 2.0]], columns=["f0", "f0"])
    with pytest.raises(PayloadError, match="repeats the column"):
        enforce(frame, FLOATS)


_NULLABLE_VALUES = {
    "double": 1.5,
    "float": 2.5,
    "boolean": True,
    "string": "a",
    "datetime": "2024-01-02",
    "binary": "eA==",  # base64 of b"x"
}


@pytest.mark.parametrize("content_type", [JSON, "text/csv"])
@pytest.mark.parametrize(("kind", "value"), list(_NULLABLE_VALUES.items()))
def test_a_null_in_an_optional_column_passes_mlflows_enforcement(
    kind: str, value: Any, content_type: str
) -> None:
    mlflow_schema = Schema([ColSpec(kind, "c", required=False), ColSpec("double", "x")])
    schema = InputSchema.from_mlflow(mlflow_schema)
    assert schema is not None
    for rows in ([{"c": None, "x": 1.0}, {"c": value, "x": 2.0}], [{"c": None, "x": 1.0}]):
        text = (
            body({"dataframe_records": rows})
            if content_type == JSON
            else pd.DataFrame(rows).to_csv(index=False).encode()
        )
        frame = parse_request(text, content_type, schema).frame
        # What pyfunc.predict runs next: the null must reach the model as a missing value.
        enforced = _enforce_schema(frame, mlflow_schema)
        assert pd.isna(enforced["c"].iloc[0])
        if len(rows) == 2:
            assert not pd.isna(enforced["c"].iloc[1])


@pytest.mark.parametrize("kind", ["long", "integer"])
def test_a_null_in_an_optional_integer_column_says_why_mlflow_cannot_take_it(kind: str) -> None:
    schema = InputSchema((InputColumn("c", kind, required=False),))
    with pytest.raises(PayloadError, match="MLflow cannot pass one into an integer column"):
        parse({"dataframe_records": [{"c": None}, {"c": 3}]}, schema)
    assert parse({"dataframe_records": [{"c": 3}]}, schema).frame["c"].tolist() == [3]


def test_enforce_skips_missing_optional_columns_and_orders_columns() -> None:
    frame = pd.DataFrame([{**MIXED_ROW, "opt": 1}])[list(MIXED_ROW)[::-1]]
    assert list(enforce(frame, MIXED).columns) == list(MIXED_ROW)


@given(st.lists(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=20, max_size=20)))
def test_fast_and_general_paths_agree(rows: list[list[float]]) -> None:
    fast = parse({"dataframe_split": {"columns": COLUMNS, "data": rows}}).frame
    general = enforce(pd.DataFrame(rows, columns=COLUMNS, dtype=object), FLOATS)
    assert fast.shape == (len(rows), 20)
    np.testing.assert_array_equal(fast.to_numpy(), general.to_numpy())


# -- predictions and errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        (np.array([1, 0]), [1, 0]),
        (np.array([[0.25, 0.75]]), [[0.25, 0.75]]),
        ([1, "a"], [1, "a"]),
        (pd.Series([1.5, 2.5], name="y"), [{"y": 1.5}, {"y": 2.5}]),
        (pd.Series([1.5]), [{"0": 1.5}]),
        (pd.DataFrame({"a": [1], "b": ["x"]}), [{"a": 1, "b": "x"}]),
        (np.float64(0.5), 0.5),
        (pd.DataFrame({"t": [pd.Timestamp("2024-01-02")]}), [{"t": "2024-01-02T00:00:00"}]),
        ([b"ab"], ["YWI=\n"]),
    ],
)
def test_predictions_json_matches_mlflow(predictions: Any, expected: Any) -> None:
    assert json.loads(predictions_json(predictions)) == {"predictions": expected}


def _strict(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (RFC 8259)")


@pytest.mark.parametrize(
    ("predictions", "expected"),
    [
        (np.array([np.nan, np.inf, -np.inf, 0.5]), [None, None, None, 0.5]),
        (np.array([[np.nan, 1.0]], dtype=np.float32), [[None, 1.0]]),
        ([math.nan, 1, "a"], [None, 1, "a"]),
        (
            pd.DataFrame({"y": [np.nan, 2.0], "s": ["a", "b"]}),
            [{"y": None, "s": "a"}, {"y": 2.0, "s": "b"}],
        ),
        (pd.Series([np.inf, 1.5], name="y"), [{"y": None}, {"y": 1.5}]),
        (np.float64(np.nan), None),
        (np.float32(-np.inf), None),
        (
            {"scores": np.array([np.nan, 1.0]), "top": np.float32(np.inf)},
            {"scores": [None, 1.0], "top": None},
        ),
        ([{"p": (math.inf, 2.0)}], [{"p": [None, 2.0]}]),
    ],
)
def test_predictions_json_writes_nan_and_infinity_as_null(predictions: Any, expected: Any) -> None:
    # MLflow writes the bare tokens NaN and Infinity; strict JSON parsers refuse them.
    document = json.loads(predictions_json(predictions), parse_constant=_strict)
    assert document == {"predictions": expected}


def test_predictions_json_stays_byte_identical_to_mlflow_for_finite_values() -> None:
    assert predictions_json(np.array([0.5, 1.0])) == b'{"predictions": [0.5, 1.0]}'


def test_predictions_json_refuses_unknown_objects() -> None:
    with pytest.raises(TypeError, match="cannot be written as JSON"):
        predictions_json([object()])


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PayloadError("bad"), "BAD_REQUEST"),
        (UnsupportedMediaTypeError("text/plain"), "BAD_REQUEST"),
        (PayloadTooLargeError(10, 5), "REQUEST_LIMIT_EXCEEDED"),
        (VersionNotFoundError("m", "3"), "RESOURCE_DOES_NOT_EXIST"),
        (ModelNotReadyError("m", "loading"), "TEMPORARILY_UNAVAILABLE"),
        (AuthenticationError("send a token"), "UNAUTHENTICATED"),
        (PermissionDeniedError("bob", "reload", "wrong token"), "PERMISSION_DENIED"),
        (ConflictError("already has feedback"), "RESOURCE_CONFLICT"),
        (ModelregError("x"), "INTERNAL_ERROR"),
        (ValueError("x"), "INTERNAL_ERROR"),
    ],
)
def test_error_codes_follow_the_class_hierarchy(error: BaseException, code: str) -> None:
    assert error_code_for(error) == code
    assert error_body(code, "why") == {"error_code": code, "message": "why"}
