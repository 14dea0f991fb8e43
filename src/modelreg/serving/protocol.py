"""MLflow's ``/invocations`` protocol: parse scoring requests, enforce the schema, format answers.

A request body is JSON with exactly one of ``dataframe_split``,
``dataframe_records``, ``instances`` or ``inputs`` (and optionally
``params``), or CSV. :func:`parse_request` turns it into a
:class:`ScoringInput` whose frame already conforms to the model's column
schema; :func:`predictions_json` renders ``{"predictions": ...}`` as MLflow's
scoring server does. Nothing here knows HTTP status codes: bad input
raises :class:`~modelreg.errors.PayloadError` (or its media-type subclass),
and the web layer maps classes to statuses; :data:`ERROR_CODES` gives the
MLflow ``error_code`` string for the response body.

Deliberate differences from MLflow 3.17's scoring server (the integration
test ``tests/integration/test_payload_compat.py`` pins each one):

- Lossy conversions are errors: fractions or out-of-range numbers for
  integer columns, and anything but true/false/0/1 for boolean columns
  (MLflow's JSON path ``astype``-casts first, so 1.5 becomes 1, 2**40 wraps
  to 0 in an int32 column and "false" becomes True).
- No Content-Type header is a 415 (MLflow: 500); ``params`` that is not an
  object is a 400 (MLflow ignores it when the model declares no params);
  media types match case-insensitively (MLflow: exact match).
- Schema mismatches found here carry BAD_REQUEST; MLflow finds them later in
  ``predict`` and says INVALID_PARAMETER_VALUE. Both are 400.
- Predictions holding NaN or ±infinity are written as ``null`` (MLflow writes
  the tokens ``NaN``/``Infinity``, which strict JSON parsers refuse).
- A null in an optional (``required: false``) column reaches the model as a
  missing value: NaN, NaT, or None in boolean and binary columns (MLflow's
  parser turns it into False there, or refuses it). MLflow cannot pass a
  missing value into an integer column at all (it casts to int64); such a
  null is a 400 that says so. docs/serving.md has the table.
- Parquet bodies, the unwrapped LLM formats (``messages``/``prompt``/
  ``input``) and type-hint signatures are not supported.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import orjson
import pandas as pd

from modelreg.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    ModelNotReadyError,
    ModelregError,
    NotFoundError,
    PayloadError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
    nearest,
)
from modelreg.semver import InputColumn, input_columns

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"

#: The JSON keys that carry the input data; a request has exactly one of them.
INPUT_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS_KEY = "params"

#: How deeply a JSON body may nest arrays and objects. A table is 3 levels deep, a tensor
#: one more per dimension, and numpy stops at 64 dimensions; deeper input is refused as
#: malformed before pandas or the model sees it (and Python's json module raises
#: RecursionError somewhere near 1,000 levels).
MAX_JSON_DEPTH = 64

_SPLIT_KEYS = frozenset({"columns", "data", "index"})
_FLOAT_TYPES: Mapping[str, np.dtype[Any]] = {
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
}
_INT_TYPES: Mapping[str, np.dtype[Any]] = {
    "long": np.dtype(np.int64),
    "integer": np.dtype(np.int32),
}
_BOOL_WORDS = {"true": True, "false": False}
#: orjson reads an integer literal beyond 64 bits as a float where the json module keeps
#: the exact int; such a float's magnitude is at least 2**63. A parsed value holding a float
#: that large (or an infinity) is read again by the json module.
_BIG = float(2**63)


def _may_hold_big_integer(value: Any) -> bool:
    """Whether ``value`` (as orjson parsed it) holds a float of magnitude 2**63 or more.

    One pass over the parsed values (about 1 ms for 20,000 numbers): scanning
    the body's bytes for long digit runs instead took 5 to 15 ms, as long as
    json itself, since doubles printed with leading zeros make such runs.
    """
    pending = [value]
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is float:
            if not -_BIG < item < _BIG:
                return True
        elif kind is list:
            for inner in item:
                inner_kind = type(inner)
                if inner_kind is float:
                    if not -_BIG < inner < _BIG:
                        return True
                elif inner_kind is list or inner_kind is dict:
                    pending.append(inner)
        elif kind is dict:
            pending.extend(item.values())
    return False


#: MLflow ``error_code`` for each error class, looked up along the class hierarchy
#: (see :func:`error_code_for`). MLflow answers unparsable input with BAD_REQUEST;
#: it answers a wrong media type with a plain-text 415 that has no code at all.
ERROR_CODES: Mapping[type[ModelregError], str] = {
    PayloadTooLargeError: "REQUEST_LIMIT_EXCEEDED",
    PayloadError: "BAD_REQUEST",
    InvalidInputError: "INVALID_PARAMETER_VALUE",
    NotFoundError: "RESOURCE_DOES_NOT_EXIST",
    ConflictError: "RESOURCE_CONFLICT",  # /feedback: a different outcome for a request id
    AuthenticationError: "UNAUTHENTICATED",
    PermissionDeniedError: "PERMISSION_DENIED",
    ModelNotReadyError: "TEMPORARILY_UNAVAILABLE",
    ModelregError: "INTERNAL_ERROR",
}


@dataclass(frozen=True)
class InputSchema:
    """The named-column input schema of a model, in signature order."""

    columns: tuple[InputColumn, ...]

    @classmethod
    def from_mlflow(cls, schema: Any) -> InputSchema | None:
        """Build from ``pyfunc_model.metadata.get_input_schema()``.

        Returns None when the model has no schema or a tensor-based or unnamed
        one: such inputs are passed through and only MLflow's own enforcement
        in ``predict`` applies.
        """
        if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
            return None
        return cls(input_columns(schema.to_dict()))

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Column names in signature order."""
        return tuple(column.name for column in self.columns)

    @cached_property
    def index(self) -> pd.Index:
        """Column names as a pandas Index, built once and shared by every frame."""
        return pd.Index(self.names)

    @cached_property
    def uniform_float(self) -> np.dtype[Any] | None:
        """The dtype when every column is required and of one float type (the fast path)."""
        kinds = {column.type for column in self.columns}
        if len(kinds) != 1 or not all(column.required for column in self.columns):
            return None
        return _FLOAT_TYPES.get(kinds.pop())


@dataclass(frozen=True)
class ScoringInput:
    """One parsed scoring request: the model input, its params and row count.

    ``data`` is a DataFrame, or for an all-float schema a 2-D numpy array of
    shape (rows, columns) whose columns are ``columns`` (the schema's names,
    in signature order): building a DataFrame costs more than parsing a small
    request, so it is built once per batch instead (:attr:`frame`).
    """

    data: pd.DataFrame | np.ndarray
    params: dict[str, Any] | None
    rows: int
    columns: pd.Index | None = None

    @property
    def frame(self) -> pd.DataFrame:
        """The input as a DataFrame (an array is wrapped without copying its values)."""
        return as_frame(self.data, self.columns)


def as_frame(data: pd.DataFrame | np.ndarray, columns: pd.Index | None) -> pd.DataFrame:
    """``data`` as a DataFrame: a frame as it is, a 2-D array with ``columns`` as its names."""
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame(data, columns=columns, copy=False)


def parse_request(
    body: bytes, content_type: str | None, schema: InputSchema | None
) -> ScoringInput:
    """Parse an ``/invocations`` body into input that conforms to ``schema``.

    For an all-float ``schema`` the common formats become a schema-ordered
    2-D array (see :class:`ScoringInput`), anything else a DataFrame. Raises
    :class:`UnsupportedMediaTypeError` for anything but JSON or CSV in UTF-8,
    and :class:`PayloadError` naming the problem for malformed bodies, missing
    columns and values of the wrong type.
    """
    media_type = _media_type(content_type)
    if not body.strip():
        raise PayloadError(
            "the request body is empty; send a JSON object with one of the input fields "
            f"{_keys_text()} or a CSV table with a header row"
        )
    params: dict[str, Any] | None = None
    if media_type == CSV_MEDIA_TYPE:
        fast = _float_csv_values(body, schema) if schema is not None else None
        if fast is not None:
            return ScoringInput(fast, None, len(fast), schema.index if schema else None)
        frame = _parse_csv(body, schema)
    else:
        key, value, params = _parse_json(body)
        fast = _float_values(key, value, schema) if schema is not None else None
        if fast is not None:
            return ScoringInput(fast, params, len(fast), schema.index if schema else None)
        # Only here: the fast path accepts nothing deeper than a table of numbers.
        if _depth_exceeds(value, MAX_JSON_DEPTH - 1) or _depth_exceeds(params, MAX_JSON_DEPTH - 1):
            raise PayloadError(_too_deep())
        frame = _json_frame(key, value, schema)
    if schema is not None:
        frame = enforce(frame, schema)
    return ScoringInput(frame, params, len(frame))


def _keys_text() -> str:
    return ", ".join(repr(key) for key in INPUT_KEYS)


def _media_type(content_type: str | None) -> str:
    """Return the bare media type, accepting only JSON or CSV with an optional UTF-8 charset.

    MLflow 3.17 also answers 415 to its pre-2.0 ``format=pandas-split`` parameter
    (``scoring_server/__init__.py:294``), so we do too.
    """
    if content_type is None:
        raise UnsupportedMediaTypeError("(none)")
    media_type, *parameters = content_type.split(";")
    media_type = media_type.strip().lower()
    if media_type not in (JSON_MEDIA_TYPE, CSV_MEDIA_TYPE):
        raise UnsupportedMediaTypeError(content_type)
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() != "charset" or value.strip().strip('"').lower() != "utf-8":
            raise UnsupportedMediaTypeError(content_type)
    return media_type


def _parse_csv(body: bytes, schema: InputSchema | None) -> pd.DataFrame:
    # Like MLflow, read string columns as text so "007" stays "007"; numbers and
    # dates are converted afterwards by enforce(), which names the bad column.
    text_columns = (
        {c.name: object for c in schema.columns if c.type in ("string", "binary")}
        if schema is not None
        else {}
    )
    try:
        return pd.read_csv(io.BytesIO(body), dtype=text_columns or None)
    except ValueError as exc:  # also ParserError, EmptyDataError, UnicodeDecodeError
        raise PayloadError(
            f"malformed CSV: {exc}; send a table with a header row, as DataFrame.to_csv() writes"
        ) from exc


def _float_csv_values(body: bytes, schema: InputSchema) -> np.ndarray | None:
    """Fast path for all-float schemas: the csv module and one numpy call instead of read_csv.

    read_csv costs about half a millisecond even for one row; anything it would
    treat specially (empty cells, "NA", odd quoting) makes this return None.
    """
    dtype = schema.uniform_float
    if dtype is None:
        return None
    try:
        header, *rows = csv.reader(io.StringIO(body.decode()))
        return _float_rows(rows, header, schema, dtype) if rows else None
    except (ValueError, TypeError, OverflowError, csv.Error):
        return None


def _parse_json(body: bytes) -> tuple[str, Any, dict[str, Any] | None]:
    """Return the input key, its value and the params of a JSON body."""
    try:
        document = _load_json(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise PayloadError(f"malformed JSON: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError(_too_deep()) from exc
    if not isinstance(document, dict):
        raise PayloadError(
            "the input must be a JSON object with exactly one of the input fields "
            f"{_keys_text()}; got a JSON {_json_type(document)}"
        )
    # Other keys are ignored, as MLflow does (scoring_server/__init__.py:158).
    present = [key for key in INPUT_KEYS if key in document]
    if len(present) != 1:
        raise PayloadError(
            "the input must be a JSON object with exactly one of the input fields "
            f"{_keys_text()} (and optionally 'params'); got fields {list(document)}"
        )
    params = document.get(PARAMS_KEY)
    if params is not None and not isinstance(params, dict):
        raise PayloadError(
            "'params' must be a JSON object of parameter names to values; "
            f"got a JSON {_json_type(params)}"
        )
    key = present[0]
    value = document[key]
    if key == "dataframe_split" and (
        not isinstance(value, dict) or "data" not in value or not value.keys() <= _SPLIT_KEYS
    ):
        got = sorted(value) if isinstance(value, dict) else f"a JSON {_json_type(value)}"
        raise PayloadError(
            "'dataframe_split' must be an object with a 'data' field and optionally "
            f"'columns' and 'index' (as DataFrame.to_dict(orient='split') writes); got {got}"
        )
    if key == "dataframe_records" and not isinstance(value, list):
        raise PayloadError(
            "'dataframe_records' must be a list of records (JSON objects); "
            f"got a JSON {_json_type(value)}"
        )
    return key, value, params


def _load_json(body: bytes) -> Any:
    """``json.loads(body)``, exactly: the same values, errors and messages, mostly by orjson.

    orjson is several times faster, but refuses what the json module accepts
    (NaN and Infinity tokens, numbers too large for a double, lone surrogates,
    a UTF-8 BOM, UTF-16 and UTF-32 bodies, nesting past 1,024 levels) and reads
    integers past 64 bits as floats: those bodies, and malformed ones, are
    read again by the json module, whose answer or error is what counts.
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)
    if _may_hold_big_integer(value):
        return json.loads(body)
    return value


def _too_deep() -> str:
    return f"malformed JSON: arrays and objects nest deeper than {MAX_JSON_DEPTH} levels"


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and dicts more than ``limit`` levels deep.

    Iterative, so no input can exhaust the stack, and it stops at the first
    container past the limit.
    """
    level: list[Any] = [value]
    for _ in range(limit):
        level = [
            child
            for item in level
            if isinstance(item, list | dict)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
        if not level:
            return False
    return any(isinstance(item, list | dict) for item in level)


def _json_type(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


def _float_values(key: str, value: Any, schema: InputSchema) -> np.ndarray | None:
    """Fast path for all-float schemas: numbers converted in one numpy call, no pandas.

    Returns a (rows, columns) array in schema column order, or None whenever
    anything is unusual (missing, duplicate or unnamed columns, ragged rows,
    text, an explicit index); the general path then produces the precise error.
    """
    dtype = schema.uniform_float
    if dtype is None:
        return None
    try:
        if key == "dataframe_split":
            columns = value.get("columns")
            if "index" in value or not isinstance(columns, list):
                return None
            return _float_rows(value["data"], columns, schema, dtype)
        if isinstance(value, dict):  # inputs/instances as {column: values}
            values = np.asarray([value[name] for name in schema.names], dtype)
            if values.ndim not in (1, 2):
                return None
            return values.reshape(len(schema.names), -1).T
        if isinstance(value, list) and value and isinstance(value[0], dict):  # records
            rows = [[record[name] for name in schema.names] for record in value]
            return _float_rows(rows, list(schema.names), schema, dtype)
    except (KeyError, TypeError, ValueError, OverflowError):
        # OverflowError: an integer too large for a float (10**400); the general path names it.
        return None
    return None


def _float_rows(
    data: Any, columns: list[Any], schema: InputSchema, dtype: np.dtype[Any]
) -> np.ndarray | None:
    values = np.asarray(data, dtype=dtype)
    if values.ndim != 2 or values.shape[1] != len(columns):
        return None
    if columns != list(schema.names):
        positions = {name: i for i, name in enumerate(columns) if isinstance(name, str)}
        if len(positions) != len(columns) or not positions.keys() >= set(schema.names):
            return None
        values = values[:, [positions[name] for name in schema.names]]
    return values


def _json_frame(key: str, value: Any, schema: InputSchema | None) -> pd.DataFrame:
    """Build the frame for any JSON input format with pandas, as MLflow does."""
    try:
        if key == "dataframe_split":
            return pd.DataFrame(
                data=value["data"], columns=value.get("columns"), index=value.get("index")
            )
        if key == "dataframe_records" or (
            isinstance(value, list) and value and isinstance(value[0], dict)
        ):
            return pd.DataFrame(value)
        if isinstance(value, dict):
            # {column: values}; all-scalar values make one row, as in MLflow (models/utils.py:1167).
            if all(np.isscalar(item) or item is None for item in value.values()):
                return pd.DataFrame([value])
            return pd.DataFrame(value)
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"{key!r} does not describe a table: {exc}") from exc
    return _unnamed_frame(key, value, schema)


def _unnamed_frame(key: str, value: Any, schema: InputSchema | None) -> pd.DataFrame:
    """Build the frame for ``instances``/``inputs`` given as plain rows or one value."""
    if schema is not None and isinstance(value, list) and value:
        if len(schema.columns) == 1:
            # MLflow maps a plain list onto a single-column schema (proto_json_utils.py:520).
            return pd.DataFrame({schema.names[0]: value})
        # MLflow turns unnamed rows into columns 0..n-1 and then fails with a 500
        # ("Model is missing inputs"); it never maps positions onto names. Neither do we.
        raise PayloadError(
            f"{key!r} holds rows without column names, but the model expects the named "
            f"columns {list(schema.names)}; send a list of objects or use 'dataframe_split' "
            "with 'columns'"
        )
    try:
        return pd.DataFrame(value if isinstance(value, list) else [value])
    except (ValueError, TypeError) as exc:
        raise PayloadError(f"{key!r} does not describe a table: {exc}") from exc


def enforce(frame: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    """Return ``frame`` with the schema's columns, in schema order, converted to its types.

    Extra columns are dropped and a missing required column is an error, as in
    MLflow (``models/utils.py:1236``). Conversions follow MLflow's rules for the
    common types; every failure names the column and the expected type.
    """
    if not frame.columns.is_unique:
        duplicated = sorted({str(name) for name in frame.columns[frame.columns.duplicated()]})
        raise PayloadError(f"the input repeats the column(s) {duplicated}; send each column once")
    present = set(frame.columns)
    missing = [c.name for c in schema.columns if c.required and c.name not in present]
    if missing:
        extra = [name for name in frame.columns if name not in set(schema.names)]
        hint = f"; it has columns the model does not know: {extra}" if extra else ""
        raise PayloadError(
            f"the input is missing the required column(s) {missing}{hint}; "
            f"the model expects {list(schema.names)}"
        )
    dtype = schema.uniform_float
    if dtype is not None:
        fast = _uniform_values(frame, schema, dtype)
        if fast is not None:
            return pd.DataFrame(fast, columns=schema.index, index=frame.index, copy=False)
    converted = {c.name: _convert(frame[c.name], c) for c in schema.columns if c.name in present}
    if dtype is not None:
        values = np.column_stack([series.to_numpy() for series in converted.values()])
        return pd.DataFrame(values, columns=schema.index, index=frame.index, copy=False)
    return pd.DataFrame(converted, index=frame.index)


def _uniform_values(frame: pd.DataFrame, schema: InputSchema, dtype: np.dtype[Any]) -> Any:
    """Convert all-numeric columns in one call; None when a column needs a closer look."""
    if any(column_type.kind in "mM" for column_type in frame.dtypes):
        return None  # numpy would turn timestamps into numbers without complaint
    positions = frame.columns.get_indexer(schema.index)
    try:
        values = frame.to_numpy(dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        return None
    if positions.tolist() != list(range(frame.shape[1])):
        values = values[:, positions]
    return values


def _convert(values: pd.Series, column: InputColumn) -> pd.Series:
    """Convert one column to the schema type, or raise PayloadError naming column and type."""
    try:
        if not column.required:
            missing = values.isna()
            if missing.any():
                return _convert_with_missing(values, missing, column)
        if column.type in _FLOAT_TYPES:
            return _to_float(values, _FLOAT_TYPES[column.type])
        if column.type in _INT_TYPES:
            return _to_int(values, _INT_TYPES[column.type])
        if column.type == "boolean":
            return _to_bool(values)
        if column.type == "string":
            return values if _is_text(values) else values.astype(object)
        if column.type == "datetime":
            return _to_datetime(values)
        if column.type == "binary":
            # MLflow expects binary columns base64-encoded (proto_json_utils.py:302).
            return values.map(lambda text: base64.decodebytes(text.encode()))
    except (ValueError, TypeError, OverflowError, AttributeError) as exc:
        raise PayloadError(f"column {column.name!r} expects {column.type} values: {exc}") from exc
    # Arrays, objects, maps and 'any' are validated by MLflow's own enforcement in predict.
    return values


def _convert_with_missing(values: pd.Series, missing: pd.Series, column: InputColumn) -> pd.Series:
    """Convert an optional column holding nulls so each null reaches the model as missing.

    MLflow infers ``required: false`` for exactly the columns whose sample had
    missing values, so these nulls are what the model was trained on. Floats,
    strings and datetimes carry them natively (NaN, NaT); booleans and bytes
    keep None in an object column, the form MLflow's enforcement passes on.
    """
    if column.type in _INT_TYPES:
        raise ValueError(
            "got a missing value (null/NaN), but MLflow cannot pass one into an integer "
            "column, even an optional one; send a whole number, or register the model "
            "with this column declared double (modelreg's register does so for integer "
            "training columns with missing values)"
        )
    if column.type not in ("boolean", "binary"):
        return _convert(values, InputColumn(column.name, column.type))
    converted = pd.Series([None] * len(values), index=values.index, dtype=object)
    if not missing.all():
        present = _convert(values[~missing], InputColumn(column.name, column.type))
        converted[~missing] = present.astype(object)
    return converted


def _is_text(values: pd.Series) -> bool:
    return values.dtype == object or isinstance(values.dtype, pd.StringDtype)


def _to_float(values: pd.Series, dtype: np.dtype[Any]) -> pd.Series:
    if values.dtype == dtype:
        return values
    if values.dtype.kind == "M":
        raise TypeError("got timestamps")
    return values.astype(dtype)


def _to_int(values: pd.Series, dtype: np.dtype[Any]) -> pd.Series:
    if _is_text(values):
        values = pd.to_numeric(values)
    kind = values.dtype.kind
    if kind == "b":
        return values.astype(dtype)
    if kind == "f":
        if values.isna().any():
            raise ValueError(
                "got a missing value (null/NaN), but the model's signature makes this a "
                "required integer column; send a whole number in every row"
            )
        fractional = values[values != np.floor(values)]
        if len(fractional):
            raise ValueError(f"{fractional.iloc[0]} is not a whole number")
    elif kind not in "iu":
        raise TypeError(f"got values of type {values.dtype}")
    if len(values):
        limits = np.iinfo(dtype)
        low, high = values.min(), values.max()
        if low < limits.min or high > limits.max:
            bad = low if low < limits.min else high
            raise ValueError(f"{bad} is out of range [{limits.min}, {limits.max}]")
    return values.astype(dtype)


def _to_bool(values: pd.Series) -> pd.Series:
    kind = values.dtype.kind
    if kind == "b":
        return values
    if kind in "iu" and values.isin([0, 1]).all():
        return values.astype(bool)
    if _is_text(values):
        return values.map(_bool_value).astype(bool)
    raise TypeError(f"got values of type {values.dtype}; send true or false")


def _bool_value(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise ValueError(f"{value!r} is not true or false")


def _to_datetime(values: pd.Series) -> pd.Series:
    parsed = values if values.dtype.kind == "M" else pd.to_datetime(values)
    if isinstance(parsed.dtype, pd.DatetimeTZDtype):
        raise ValueError("timestamps with a time zone are not supported; send naive timestamps")
    # pandas 3 parses to microseconds; MLflow's datetime type is nanoseconds.
    return parsed.dt.as_unit("ns")


def predictions_json(predictions: Any) -> bytes:
    """Render ``{"predictions": ...}`` as MLflow's scoring server does, but as strict JSON.

    DataFrames become records and Series one-column records
    (``scoring_server/__init__.py:241``, ``proto_json_utils.py:440``), byte for
    byte as MLflow writes them, with one deliberate difference: NaN and
    ±infinity are written as ``null``. MLflow writes the bare tokens ``NaN`` and
    ``Infinity``, which no strict JSON parser (RFC 8259; JavaScript, Go, Java)
    accepts, so a client could not read a 200 answer.
    """
    if isinstance(predictions, np.ndarray):
        fast = _vector_json(predictions)
        if fast is not None:
            return fast
        jsonable: Any = predictions.tolist()
    elif isinstance(predictions, pd.DataFrame):
        jsonable = predictions.to_dict(orient="records")
    elif isinstance(predictions, pd.Series):
        jsonable = predictions.to_frame().to_dict(orient="records")
    else:
        jsonable = predictions
    try:
        return json.dumps(
            {"predictions": jsonable}, default=_json_default, allow_nan=False
        ).encode()
    except ValueError:
        # Only predictions holding NaN or infinity get here: the common case pays
        # nothing for the rewrite, which walks every value.
        return json.dumps({"predictions": _finite(jsonable)}, default=_json_default).encode()


def _vector_json(values: np.ndarray) -> bytes | None:
    """The answer for a 1-D array of integers or finite floats, written without json.dumps.

    Byte for byte what :func:`predictions_json` writes through the json module
    (``{"predictions": [1, 0]}``, items separated by ", "): orjson writes
    integers and booleans as the json module does, only without the space,
    and floats go through ``float.__repr__``, the json module's own float
    format (orjson's differs: ``0.00001`` for ``1e-05``). None for anything
    else, including NaN and infinity.
    """
    if values.ndim != 1:
        return None
    kind = values.dtype.kind
    if kind in "iub":
        items = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1].replace(b",", b", ")
    elif kind == "f" and values.dtype.itemsize in (4, 8) and np.isfinite(values).all():
        items = ", ".join(map(float.__repr__, values.tolist())).encode()
    else:
        return None
    return b'{"predictions": [' + items + b"]}"


def _finite(value: Any) -> Any:
    """``value`` with every NaN and ±infinity, at any depth, replaced by None."""
    if isinstance(value, float):  # also np.float64, a float subclass
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int):
        return value
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return _finite(_json_default(value))  # numpy arrays and scalars, pydantic models ...


def _json_default(value: Any) -> Any:
    """Encode what the json module cannot, like MLflow's NumpyEncoder."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes | bytearray):
        return base64.encodebytes(value).decode("ascii")
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump()
    raise TypeError(f"predictions of type {type(value).__name__} cannot be written as JSON")


def error_body(code: str, message: str) -> dict[str, str]:
    """The JSON error body MLflow's servers return: ``{"error_code": ..., "message": ...}``."""
    return {"error_code": code, "message": message}


def error_code_for(error: BaseException) -> str:
    """The MLflow ``error_code`` for ``error``: the nearest class in :data:`ERROR_CODES`."""
    return nearest(ERROR_CODES, error, "INTERNAL_ERROR")
