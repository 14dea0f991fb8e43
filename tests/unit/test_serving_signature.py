"""Signatures inferred from training data agree with what the model server accepts: pure logic.

MLflow marks a column with missing values optional, and its own enforcement
then refuses every missing integer (it casts to int64): a model trained on a
nullable integer column could not score rows like its training rows. These
tests drive the registration's inference and the server's protocol, with
MLflow's own enforcement (what ``pyfunc.predict`` runs) between them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.models.utils import _enforce_schema
from sklearn.ensemble import HistGradientBoostingClassifier

from modelreg.errors import InvalidInputError
from modelreg.registration import infer_serving_signature, served_example
from modelreg.serving.protocol import InputSchema, parse_request

GAPPY = ("visits", "small", "unsigned", "ratio", "member", "spend")


def training_frame(rows: int = 120) -> pd.DataFrame:
    """Every pandas nullable dtype with gaps, a numpy float with NaN, and a gapless column."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "visits": pd.array(rng.integers(0, 20, rows), dtype="Int64"),
            "small": pd.array(rng.integers(0, 5, rows), dtype="Int32"),
            "unsigned": pd.array(rng.integers(0, 5, rows), dtype="UInt8"),
            "ratio": pd.array(rng.normal(size=rows), dtype="Float64"),
            "member": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
            "spend": rng.normal(100, 20, rows),
            "complete": pd.array(rng.integers(0, 20, rows), dtype="Int64"),
        }
    )
    for offset, name in enumerate(GAPPY):
        frame.loc[offset::7, name] = pd.NA
    frame.loc[:, "small"] = frame["small"].fillna(1)
    frame.loc[[80], "small"] = pd.NA  # its only gap lies past the first rows
    return frame


@pytest.fixture(scope="module")
def trained() -> tuple[HistGradientBoostingClassifier, pd.DataFrame]:
    frame = training_frame()
    model = HistGradientBoostingClassifier(max_iter=5).fit(frame, frame.index % 2)
    return model, frame


def test_columns_with_gaps_are_optional_and_integers_with_gaps_are_double(
    trained: tuple[Any, pd.DataFrame],
) -> None:
    signature, _ = infer_serving_signature(*trained)
    declared = {spec.name: (spec.type.name, spec.required) for spec in signature.inputs.inputs}
    assert declared == {
        "visits": ("double", False),
        "small": ("double", False),
        "unsigned": ("double", False),
        "ratio": ("double", False),
        "member": ("boolean", False),
        "spend": ("double", False),
        "complete": ("long", True),
    }


@pytest.mark.parametrize("column", GAPPY)
def test_a_null_in_every_optional_column_reaches_the_model(
    trained: tuple[Any, pd.DataFrame], column: str
) -> None:
    model, frame = trained
    signature, _ = infer_serving_signature(model, frame)
    record = {**json.loads(frame.iloc[[1]].to_json(orient="records"))[0], column: None}
    for others_null in (False, True):
        if others_null:  # every optional column null at once
            record = {name: None if name in GAPPY else value for name, value in record.items()}
        body = json.dumps({"dataframe_records": [record]}).encode()
        parsed = parse_request(
            body, "application/json", InputSchema.from_mlflow(signature.inputs)
        ).frame
        enforced = _enforce_schema(parsed, signature.inputs)  # as pyfunc.predict does
        assert enforced[column].isna().all()
        assert len(model.predict(enforced)) == 1


def test_the_logged_example_matches_the_signature(trained: tuple[Any, pd.DataFrame]) -> None:
    model, frame = trained
    signature, served = infer_serving_signature(model, frame)
    # The first rows hold no gap in "small": it must be converted all the same.
    example = served_example(frame.head(5), served)
    assert example["small"].dtype == np.float64
    assert len(model.predict(_enforce_schema(example, signature.inputs))) == 5


class _NoMissingFloats:
    """A model that takes nullable integers as they are but no float NaN."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        if any(frame[c].dtype.kind == "f" and frame[c].isna().any() for c in frame.columns):
            raise ValueError("Input X contains NaN.")
        return np.zeros(len(frame))


def test_a_model_that_cannot_take_served_gaps_is_refused_with_the_reason() -> None:
    frame = pd.DataFrame({"visits": pd.array([1, None, 3], dtype="Int64"), "x": [1, 2, 3]})
    with pytest.raises(InvalidInputError, match=r"'visits' as floats with NaN.*contains NaN"):
        infer_serving_signature(_NoMissingFloats(), frame)


def test_other_model_failures_are_not_disguised() -> None:
    frame = pd.DataFrame({"visits": [1.0, None, 3.0]})
    with pytest.raises(ValueError, match="contains NaN"):
        infer_serving_signature(_NoMissingFloats(), frame)
