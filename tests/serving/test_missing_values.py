"""Missing values on a real port: nulls in, as the model was trained; NaN out, as strict JSON."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature
from serving_helpers import Server, serving, to_production, tracking, unique_name
from sklearn.ensemble import HistGradientBoostingClassifier

from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

# A pyfunc model from code (no pickled test class for the server to import):
# a / b in the output shape the "shape" param asks for.
RATIO_MODEL = """
import mlflow
import numpy as np
import pandas as pd


class Ratio(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        ratio = (model_input["a"] / model_input["b"]).to_numpy()
        shape = (params or {}).get("shape", "array")
        if shape == "frame":
            return pd.DataFrame({"ratio": ratio, "label": "r"})
        if shape == "series":
            return pd.Series(ratio, name="ratio")
        if shape == "dict":
            return {"ratios": ratio, "largest": np.float32(ratio.max())}
        if shape == "list":
            return [float(value) for value in ratio]
        return ratio


mlflow.models.set_model(Ratio())
"""


@dataclass(frozen=True)
class Setup:
    """One server for both models of this module."""

    server: Server
    nullable: str  # trained on nullable integers/booleans, registered by modelreg
    ratio: str  # returns NaN and infinity, registered by plain MLflow
    model: HistGradientBoostingClassifier


def _nullable_frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "visits": pd.array(rng.integers(0, 20, rows), dtype="Int64"),
            "member": pd.array(rng.integers(0, 2, rows).astype(bool), dtype="boolean"),
            "spend": rng.normal(100, 20, rows),
        }
    )
    frame.loc[::7, "visits"] = pd.NA
    frame.loc[3::11, "member"] = pd.NA
    frame.loc[5::13, "spend"] = np.nan
    return frame


@pytest.fixture(scope="module")
def setup(
    backend: Backend, module_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("missing-values")
    nullable, ratio = unique_name("nullable"), unique_name("ratio")
    frame = _nullable_frame()
    model = HistGradientBoostingClassifier(max_iter=20).fit(frame, (frame.spend > 100).astype(int))
    code = home / "ratio_model.py"
    code.write_text(RATIO_MODEL)
    inputs = pd.DataFrame({"a": [1.0, 2.0], "b": [1.0, 4.0]})
    with tracking(backend), warnings.catch_warnings():
        # MLflow suggests type hints whenever it loads this model; it is untyped on purpose.
        warnings.filterwarnings("ignore", ".*Add type hints", UserWarning)
        with mlflow.start_run():
            version = module_registry.register(model, name=nullable, training_data=frame)
        with mlflow.start_run():
            mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                input_example=inputs,
                signature=infer_signature(inputs, np.array([1.0]), params={"shape": "array"}),
                registered_model_name=ratio,
            )
        module_registry.sync(ratio)
        to_production(module_registry, nullable, version.version)
        to_production(module_registry, ratio, 1)
    config = home / "serving.toml"
    config.write_text(
        f"[[models]]\nname = {json.dumps(nullable)}\n[[models]]\nname = {json.dumps(ratio)}\n"
    )
    with serving(backend, Path(home), "--config", str(config)) as server:
        yield Setup(server, nullable, ratio, model)


@pytest.mark.parametrize(
    "record",
    [
        {"visits": None, "member": True, "spend": 80.0},
        {"visits": 3, "member": None, "spend": 80.0},
        {"visits": 3, "member": False, "spend": None},
        {"visits": None, "member": None, "spend": None},
    ],
)
def test_nulls_in_optional_columns_are_scored_like_training_rows(
    setup: Setup, record: dict[str, Any]
) -> None:
    response = setup.server.score(
        {"dataframe_records": [record]}, path=f"/models/{setup.nullable}/invocations"
    )
    assert response.status_code == 200, response.text
    # What scikit-learn makes of such a training row: a missing value, not a refusal.
    local = pd.DataFrame([record]).astype({"visits": "float64", "spend": "float64"})
    assert response.json() == {"predictions": setup.model.predict(local).tolist()}


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("array", [None, None, 0.5]),
        ("list", [None, None, 0.5]),
        ("series", [{"ratio": None}, {"ratio": None}, {"ratio": 0.5}]),
        (
            "frame",
            [
                {"ratio": None, "label": "r"},
                {"ratio": None, "label": "r"},
                {"ratio": 0.5, "label": "r"},
            ],
        ),
        ("dict", {"ratios": [None, None, 0.5], "largest": None}),
    ],
)
def test_nan_and_infinity_are_answered_as_strict_json(
    setup: Setup, shape: str, expected: Any
) -> None:
    body = {
        "dataframe_split": {"columns": ["a", "b"], "data": [[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]},
        "params": {"shape": shape},
    }
    response = setup.server.score(body, path=f"/models/{setup.ratio}/invocations")
    assert response.status_code == 200, response.text

    def strict(token: str) -> Any:
        raise AssertionError(f"{token} is not JSON (RFC 8259)")

    assert json.loads(response.text, parse_constant=strict) == {"predictions": expected}
