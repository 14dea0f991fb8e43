"""Property tests of the strict parsers at the edge: any text or body is parsed or refused cleanly.

Each parser either returns a value that fits where modelreg keeps it (the
ledger's 32-bit version and semver columns, MLflow's naming rule) or raises its
one InvalidInputError subclass; no input raises anything else (which the
adapters would answer with 500 / exit 70).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_model_name

from modelreg import search, semver
from modelreg.api.app import create_app
from modelreg.domain import (
    MAX_VERSION_NUMBER,
    SemVer,
    Stage,
    check_model_name,
    parse_version_number,
)
from modelreg.errors import (
    InvalidFilterError,
    InvalidInputError,
    InvalidNameError,
    InvalidSemVerError,
    PayloadError,
)
from modelreg.registry import Registry
from modelreg.semver import InputColumn
from modelreg.serving.app import read_body
from modelreg.serving.config import build_config
from modelreg.serving.protocol import InputSchema, parse_request
from modelreg.settings import Settings
from modelreg.stack import free_port

# Text that reaches the interesting branches: digits of every script, signs, dots, spaces.
NON_ASCII_DIGITS = [
    chr(c)
    for c in range(sys.maxunicode + 1)
    if chr(c).isdigit() and not chr(c).isascii() and unicodedata.category(chr(c)) != "Cs"
]
version_like = st.text(
    alphabet=st.sampled_from([*"0123456789+-.vx* \t\n", *NON_ASCII_DIGITS[:200]]), max_size=40
)
texts = st.one_of(st.text(max_size=300), version_like)


# -- version references ---------------------------------------------------------------------


@given(texts)
def test_a_version_number_is_ascii_digits_in_range_or_refused(text: str) -> None:
    try:
        number = parse_version_number(text)
    except InvalidInputError:
        return
    assert 1 <= number <= MAX_VERSION_NUMBER
    assert text.strip().isascii() and text.strip().isdigit()


@given(st.integers(min_value=1, max_value=MAX_VERSION_NUMBER))
def test_every_version_number_in_range_parses(number: int) -> None:
    assert parse_version_number(f" {number} ") == number


@given(st.integers(min_value=MAX_VERSION_NUMBER + 1) | st.integers(max_value=0))
def test_version_numbers_out_of_range_are_refused(number: int) -> None:
    with pytest.raises(InvalidInputError, match="invalid version"):
        parse_version_number(str(number))


@pytest.mark.parametrize("digit", NON_ASCII_DIGITS[:: max(1, len(NON_ASCII_DIGITS) // 60)])
def test_digits_of_other_scripts_are_refused(digit: str) -> None:
    # '²' passed str.isdigit() and then crashed int(): a 500 / exit 70.
    with pytest.raises(InvalidInputError, match="invalid version"):
        parse_version_number(digit)
    with pytest.raises(InvalidSemVerError):
        semver.parse(f"1.{digit}.0")


@given(texts)
def test_a_semver_fits_the_ledger_or_is_refused(text: str) -> None:
    try:
        version = semver.parse(text)
    except InvalidSemVerError:
        return
    assert max(version.core) <= semver.MAX_COMPONENT
    assert len(str(version)) <= semver.MAX_VERSION_LENGTH


@given(st.tuples(*[st.integers(min_value=0, max_value=10**30)] * 3))
def test_semver_components_past_32_bits_are_refused(core: tuple[int, int, int]) -> None:
    text = ".".join(map(str, core))
    if max(core) > semver.MAX_COMPONENT:
        with pytest.raises(InvalidSemVerError, match="larger than"):
            semver.parse(text)
    else:
        assert semver.parse(text).core == core


@given(texts)
def test_a_range_parses_or_is_refused(text: str) -> None:
    with contextlib.suppress(InvalidSemVerError):
        semver.parse_range(text)


# -- search filters ---------------------------------------------------------------------------

filter_values = st.one_of(
    st.sampled_from(["1", "Production", "1.x", "complete", "a%", "\u00b2", "\u0661", "9" * 40]),
    version_like,
)
filters = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda key, op, value: f"{key} {op} '{value}'",
        st.sampled_from(["version", "stage", "semver", "lineage", "name", "run_id", "metrics.auc"]),
        st.sampled_from(["=", "!=", ">", "<=", "like", "ilike"]),
        filter_values,
    ),
)
CANDIDATE = search.Candidate("m", 1, Stage.PRODUCTION, SemVer(1, 0, 0), "run", True)


@given(filters)
def test_a_filter_parses_and_matches_or_is_refused(text: str) -> None:
    # 'version = "²"' parsed, then int() crashed while matching: a 500 / exit 70.
    try:
        query = search.parse(text)
    except InvalidFilterError:
        return
    for clause in query.by_namespace(""):
        search.matches(clause, CANDIDATE)


# -- names ------------------------------------------------------------------------------------


@given(st.one_of(st.text(max_size=300), st.text(alphabet="./\\: ab%2e\x00\u2215", max_size=12)))
def test_a_name_modelreg_accepts_is_one_mlflow_accepts(text: str) -> None:
    # One naming rule: modelreg never manages a name MLflow would refuse (".", "a/b", ...).
    try:
        check_model_name(text)
    except InvalidNameError:
        return
    try:
        _validate_model_name(text)
    except MlflowException as exc:  # pragma: no cover - the property's failure
        pytest.fail(f"modelreg accepts {text!r}, MLflow refuses it: {exc.message}")


# -- serving config ---------------------------------------------------------------------------


@given(
    st.integers(),
    st.one_of(st.integers(), st.floats()),
    st.one_of(st.integers(), st.floats()),
)
def test_a_serving_config_fits_or_is_refused(version: int, batch: Any, wait: Any) -> None:
    # `serve --version <20 digits>` started a server that could never resolve it.
    model = {"name": "m", "version": version, "max_batch_size": batch, "max_wait_ms": wait}
    try:
        config = build_config({"models": [model]})
    except InvalidInputError:
        return
    pinned = config.models[0].version
    assert pinned is not None and 1 <= pinned <= MAX_VERSION_NUMBER


# -- scoring bodies ---------------------------------------------------------------------------

SCHEMAS = [
    InputSchema(tuple(InputColumn(name, "double") for name in ("a", "b"))),
    InputSchema(
        (
            InputColumn("a", "long"),
            InputColumn("b", "integer"),
            InputColumn("c", "boolean"),
            InputColumn("d", "string"),
            InputColumn("e", "datetime", required=False),
        )
    ),
    None,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(),  # NaN and infinities included
    st.text(max_size=10),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from("abcde"), inner),
    max_leaves=30,
)


def _encode(document: Any) -> bytes:
    return json.dumps(document).encode()  # writes NaN/Infinity as Python's json reads them


def _deep(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"1.0" + b"]" * depth + b"}"


bodies = st.one_of(
    st.builds(
        lambda key, value: _encode({key: value}),
        st.sampled_from(["dataframe_split", "dataframe_records", "instances", "inputs"]),
        json_values,
    ),
    st.builds(
        lambda data: _encode({"dataframe_split": {"columns": ["a", "b"], "data": data}}),
        json_values,
    ),
    st.builds(_deep, st.integers(min_value=0, max_value=20_000)),
    json_values.map(_encode),
)


# Ragged rows are padded with NaN, as in MLflow; pandas 3 deprecates the padding (a warning,
# an error in this suite's settings), and pandas 4's ValueError will be a PayloadError.
@pytest.mark.filterwarnings("ignore:Constructing a DataFrame from a list of sequences")
@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None, max_examples=300)
@given(bodies, st.sampled_from(range(len(SCHEMAS))))
def test_a_scoring_body_parses_or_is_a_payload_error(body: bytes, schema_index: int) -> None:
    with contextlib.suppress(PayloadError):
        parse_request(body, "application/json", SCHEMAS[schema_index])


# -- Content-Length ---------------------------------------------------------------------------


def _read(content_length: str, limit: int = 1000) -> bytes:
    # Header values arrive as bytes that Starlette decodes as latin-1 ('²' is one byte there).
    latin1 = all(ord(ch) < 256 for ch in content_length)
    raw = content_length.encode("latin-1" if latin1 else "utf-8")

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/invocations",
        "headers": [(b"content-length", raw)],
    }
    return asyncio.run(read_body(Request(scope, receive), limit))


@given(st.one_of(st.text(alphabet=st.characters(max_codepoint=255), max_size=30), version_like))
def test_a_content_length_is_ascii_digits_or_refused(declared: str) -> None:
    # '²' passed str.isdigit() and then crashed int() in the model server: a 500.
    try:
        body = _read(declared)
    except PayloadError:
        return
    assert declared.isascii() and declared.isdigit() and body == b"{}"


@pytest.mark.parametrize("declared", ["\u00b2", "9" * 5000, "-1", "1e3", " "])
def test_odd_content_lengths_are_payload_errors(declared: str) -> None:
    with pytest.raises(PayloadError):
        _read(declared)


# -- API bodies -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    """The API with nothing behind it: bodies are refused before MLflow or the ledger is asked."""
    home: Path = tmp_path_factory.mktemp("parsers-home")
    closed = f"http://127.0.0.1:{free_port()}"
    settings_ = Settings(home=home, tracking_uri=closed, ledger_uri=f"sqlite:///{home}/ledger.db")
    return TestClient(create_app(settings_, Registry(settings_)), raise_server_exceptions=False)


def _strict(text: str) -> Any:
    def refuse(token: str) -> Any:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


@settings(suppress_health_check=list(HealthCheck), deadline=None, max_examples=150)
@given(json_values.filter(lambda v: not (isinstance(v, dict) and isinstance(v.get("stage"), str))))
def test_an_api_body_that_does_not_fit_is_a_strict_json_422(api: TestClient, value: Any) -> None:
    # FastAPI's default 422 echoed the input; a NaN in it could not be rendered: a 500.
    answer = api.post(
        "/api/v1/models/m/versions/1/promote",
        content=json.dumps(value).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    body = _strict(answer.text)
    assert body["error_code"] == "RequestValidationError"
