"""Compiled runtimes: every supported model type converts and answers like its MLflow pyfunc.

Models are saved with MLflow and loaded back with ``mlflow.pyfunc.load_model``, so
the real pyfunc path (flavor conf, predict_fn, skops loading) is what is compiled.
Agreement is checked on held-out rows, never the training rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import onnx
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from lightgbm import LGBMClassifier, LGBMRegressor
from mlflow.models import infer_signature
from sklearn import ensemble, linear_model, tree
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification, make_regression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from modelreg.errors import CompilationError
from modelreg.registration import trusted_types
from modelreg.serving.compiled import (
    CompiledModel,
    compile_pyfunc,
    onnx_digest,
    verification_rows,
    verify,
)

COLUMNS = [f"f{i:02d}" for i in range(20)]
TREES = 20


def _frame(values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, columns=COLUMNS)


def classification(classes: int, labels: str = "int") -> tuple[pd.DataFrame, Any, pd.DataFrame]:
    """500 training rows and 300 held-out rows of the course's 20-feature shape."""
    x, y = make_classification(
        n_samples=800, n_features=20, n_informative=8, n_classes=classes, random_state=classes
    )
    target: Any = y
    if labels == "str":
        target = np.array(["legit", "fraud", "review"])[y]
    return _frame(x[:500]), target[:500], _frame(x[500:])


def regression(scale: float = 1.0) -> tuple[pd.DataFrame, Any, pd.DataFrame]:
    """Targets standardised (times ``scale``): float32 tree outputs meet 1e-5 at unit scale."""
    x, y = make_regression(n_samples=800, n_features=20, n_informative=8, noise=5.0, random_state=0)
    y = (y - y.mean()) / y.std() * scale
    return _frame(x[:500]), y[:500], _frame(x[500:])


def save_and_load(
    model: Any,
    train: pd.DataFrame,
    path: Path,
    *,
    flavor: str = "sklearn",
    skops: bool = False,
    **kwargs: Any,
) -> Any:
    """Save ``model`` the way training code does and load it back as a pyfunc.

    cloudpickle by default: skops costs ~0.5 s a model and the parametrised tests
    save dozens; the fixtures that use skops show the course's format compiles too.
    """
    signature = infer_signature(train, model.predict(train))
    common: dict[str, Any] = {
        "signature": signature,
        "input_example": train.head(3),
        "pip_requirements": [],
    }
    if flavor == "sklearn":
        if skops:
            kwargs["skops_trusted_types"] = trusted_types(model)
        else:
            kwargs["serialization_format"] = "cloudpickle"
        mlflow.sklearn.save_model(model, str(path), **common, **kwargs)
    elif flavor == "xgboost":
        mlflow.xgboost.save_model(model, str(path), **common, **kwargs)
    else:
        mlflow.lightgbm.save_model(model, str(path), **common, **kwargs)
    return mlflow.pyfunc.load_model(str(path))


CLASSIFIERS: dict[str, Callable[[], Any]] = {
    "decision_tree": lambda: tree.DecisionTreeClassifier(max_depth=8, random_state=0),
    "random_forest": lambda: ensemble.RandomForestClassifier(TREES, max_depth=8, random_state=0),
    "extra_trees": lambda: ensemble.ExtraTreesClassifier(TREES, max_depth=8, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingClassifier(
        n_estimators=TREES, random_state=0
    ),
    "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingClassifier(
        max_iter=TREES, random_state=0
    ),
    "logistic_regression": lambda: linear_model.LogisticRegression(max_iter=1000),
    "sgd_log_loss": lambda: linear_model.SGDClassifier(loss="log_loss", random_state=0),
    "scaler_logistic": lambda: make_pipeline(StandardScaler(), linear_model.LogisticRegression()),
    "lightgbm": lambda: LGBMClassifier(n_estimators=TREES, verbose=-1, random_state=0),
    "xgboost": lambda: XGBClassifier(n_estimators=TREES, max_depth=4, random_state=0),
}
REGRESSORS: dict[str, Callable[[], Any]] = {
    "decision_tree": lambda: tree.DecisionTreeRegressor(max_depth=8, random_state=0),
    "random_forest": lambda: ensemble.RandomForestRegressor(TREES, max_depth=8, random_state=0),
    "extra_trees": lambda: ensemble.ExtraTreesRegressor(TREES, max_depth=8, random_state=0),
    "gradient_boosting": lambda: ensemble.GradientBoostingRegressor(
        n_estimators=TREES, random_state=0
    ),
    "hist_gradient_boosting": lambda: ensemble.HistGradientBoostingRegressor(
        max_iter=TREES, random_state=0
    ),
    "linear_regression": linear_model.LinearRegression,
    "ridge": linear_model.Ridge,
    "lasso": lambda: linear_model.Lasso(alpha=0.01),
    "elastic_net": lambda: linear_model.ElasticNet(alpha=0.01),
    "sgd": lambda: linear_model.SGDRegressor(random_state=0),
    "scaler_random_forest": lambda: make_pipeline(
        StandardScaler(), ensemble.RandomForestRegressor(TREES, max_depth=8, random_state=0)
    ),
    "lightgbm": lambda: LGBMRegressor(n_estimators=TREES, verbose=-1, random_state=0),
    "xgboost": lambda: XGBRegressor(n_estimators=TREES, random_state=0),
}
# Label encodings XGBoost accepts (it needs 0..k-1); the others also get string labels.
INT_ONLY = {"xgboost"}


def assert_agrees(pyfunc: Any, compiled: CompiledModel, held_out: pd.DataFrame) -> None:
    """Predictions equal pyfunc.predict row for row; scores within 1e-5; verify passes."""
    expected = np.asarray(pyfunc.predict(held_out))
    got = compiled.predict(held_out.to_numpy())
    assert got.shape == expected.shape
    assert got.dtype.kind == expected.dtype.kind
    if compiled.kind == "classifier" and compiled.predict_fn == "predict":
        assert np.array_equal(got, expected)
    else:
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    result = verify(pyfunc, compiled, held_out)
    assert result.passed, result.reason
    assert result.classes_identical
    assert result.max_abs_diff <= 1e-5
    assert result.rows == len(held_out)


def compile_and_check(pyfunc: Any, held_out: pd.DataFrame, kind: str) -> CompiledModel:
    converted = compile_pyfunc(pyfunc, COLUMNS)
    assert converted.kind == kind
    assert {"skl2onnx", "onnx", "onnxruntime"} <= converted.converters.keys()
    compiled = CompiledModel.from_converted(converted)
    assert_agrees(pyfunc, compiled, held_out)
    return compiled


@pytest.mark.parametrize("classes", [2, 3])
@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_classifier_agrees_on_held_out_rows(name: str, classes: int, tmp_path: Path) -> None:
    labels = "int" if name in INT_ONLY else ("str" if classes == 3 else "int")
    train, target, held_out = classification(classes, labels)
    model = CLASSIFIERS[name]().fit(train, target)
    pyfunc = save_and_load(model, train, tmp_path / "model")
    compiled = compile_and_check(pyfunc, held_out, "classifier")
    if labels == "str":
        assert compiled.predict(held_out.to_numpy()).dtype.kind in "UO"


@pytest.mark.parametrize("name", sorted(REGRESSORS))
def test_regressor_agrees_on_held_out_rows(name: str, tmp_path: Path) -> None:
    train, target, held_out = regression()
    model = REGRESSORS[name]().fit(train, target)
    pyfunc = save_and_load(model, train, tmp_path / "model")
    compile_and_check(pyfunc, held_out, "regressor")


def test_predict_proba_pyfunc_is_reproduced(tmp_path: Path) -> None:
    train, target, held_out = classification(3)
    model = CLASSIFIERS["random_forest"]().fit(train, target)
    pyfunc = save_and_load(model, train, tmp_path / "model", pyfunc_predict_fn="predict_proba")
    compiled = compile_and_check(pyfunc, held_out, "classifier")
    assert compiled.predict(held_out.to_numpy()).shape == (len(held_out), 3)


@pytest.mark.parametrize(
    ("flavor", "model"),
    [
        ("xgboost", XGBClassifier(n_estimators=TREES, max_depth=4, random_state=0)),
        ("lightgbm", LGBMClassifier(n_estimators=TREES, verbose=-1, random_state=0)),
    ],
)
def test_native_flavors_with_sklearn_api_estimators(
    flavor: str, model: Any, tmp_path: Path
) -> None:
    train, target, held_out = classification(2)
    model.fit(train, target)
    pyfunc = save_and_load(model, train, tmp_path / "model", flavor=flavor)
    compile_and_check(pyfunc, held_out, "classifier")


def test_tree_regressor_on_large_targets_fails_verification(tmp_path: Path) -> None:
    """ONNX Runtime's tree ensembles output float32: ~1e-7 relative, over 1e-5 at hundreds."""
    train, target, held_out = regression(scale=1000.0)
    model = REGRESSORS["random_forest"]().fit(train, target)
    pyfunc = save_and_load(model, train, tmp_path / "model")
    compiled = CompiledModel.from_converted(compile_pyfunc(pyfunc, COLUMNS))
    result = verify(pyfunc, compiled, held_out)
    assert not result.passed
    assert result.reason.startswith("max difference ")
    assert "> tolerance 1e-05" in result.reason
    assert result.max_abs_diff < 1e-2  # float32 rounding, not a wrong model


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path, pd.DataFrame]:
    train, target, held_out = classification(2)
    model = ensemble.RandomForestClassifier(TREES, max_depth=8, random_state=0).fit(train, target)
    path = tmp_path_factory.mktemp("forest") / "model"
    return save_and_load(model, train, path, skops=True), path, held_out


def _tamper(onnx_bytes: bytes) -> bytes:
    """Shift every tree threshold a little: a plausible, wrong conversion."""
    proto = onnx.load_from_string(onnx_bytes)
    for node in proto.graph.node:
        if node.op_type == "TreeEnsembleClassifier":
            for attribute in node.attribute:
                if attribute.name == "nodes_values":
                    shifted = [value + 0.3 for value in attribute.floats]
                    del attribute.floats[:]
                    attribute.floats.extend(shifted)
    return proto.SerializeToString()


def test_mis_converted_forest_is_refused(forest: tuple[Any, Path, pd.DataFrame]) -> None:
    pyfunc, path, _ = forest
    converted = compile_pyfunc(pyfunc, COLUMNS)
    tampered = _tamper(converted.onnx)
    assert onnx_digest(tampered) != onnx_digest(converted.onnx)
    compiled = CompiledModel(tampered, kind="classifier", predict_fn="predict")
    result = verify(pyfunc, compiled, verification_rows(pyfunc, path))
    assert not result.passed
    assert not result.classes_identical
    assert result.reason.endswith("rows get a different class")
    assert result.max_abs_diff > 1e-5


def test_another_models_onnx_is_refused(
    forest: tuple[Any, Path, pd.DataFrame], tmp_path: Path
) -> None:
    pyfunc, _, held_out = forest
    train, target, _ = classification(2)
    other = linear_model.LogisticRegression(max_iter=1000).fit(train, target)
    swapped = compile_pyfunc(save_and_load(other, train, tmp_path / "other"), COLUMNS)
    compiled = CompiledModel(swapped.onnx, kind="classifier", predict_fn="predict")
    result = verify(pyfunc, compiled, held_out)
    assert not result.passed
    assert "rows get a different class" in result.reason or "max difference" in result.reason


def test_onnx_digest_format() -> None:
    assert onnx_digest(b"abc") == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_unloadable_bytes_raise_compilation_error() -> None:
    with pytest.raises(CompilationError, match="ONNX Runtime cannot load"):
        CompiledModel(b"not onnx", kind="classifier", predict_fn="predict")


class ThresholdClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A custom estimator: no converter exists for it."""

    def fit(self, x: Any, y: Any) -> ThresholdClassifier:
        self.classes_ = np.unique(y)
        self.feature_names_in_ = np.asarray(COLUMNS, dtype=object)
        return self

    def predict(self, x: Any) -> Any:
        return (np.asarray(x)[:, 0] > 0).astype(int)


class ConstantModel(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc python_model: nothing native to convert."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return np.zeros(len(model_input))


def test_custom_estimator_is_refused(tmp_path: Path) -> None:
    train, target, _ = classification(2)
    model = ThresholdClassifier().fit(train, target)
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(train, model.predict(train)),
        serialization_format="cloudpickle",
        pip_requirements=[],
    )
    with pytest.raises(CompilationError, match="custom estimator class") as caught:
        compile_pyfunc(mlflow.pyfunc.load_model(str(path)), COLUMNS)
    assert "ThresholdClassifier" in caught.value.reason


def test_python_model_is_refused(tmp_path: Path) -> None:
    train, _, _ = classification(2)
    path = tmp_path / "model"
    mlflow.pyfunc.save_model(
        str(path), python_model=ConstantModel(), input_example=train.head(2), pip_requirements=[]
    )
    with pytest.raises(CompilationError, match="flavor has no maintained ONNX converter"):
        compile_pyfunc(mlflow.pyfunc.load_model(str(path)), COLUMNS)


def test_string_column_is_refused(tmp_path: Path) -> None:
    train, target, _ = classification(2)
    model = ensemble.RandomForestClassifier(5, random_state=0).fit(train, target)
    path = tmp_path / "model"
    with_text = train.assign(note="x")
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(with_text, model.predict(train)),
        skops_trusted_types=trusted_types(model),
        pip_requirements=[],
    )
    with pytest.raises(CompilationError, match="column 'note' is string"):
        compile_pyfunc(mlflow.pyfunc.load_model(str(path)), [*COLUMNS, "note"])


def test_nearest_neighbours_are_refused(tmp_path: Path) -> None:
    train, target, _ = classification(2)
    pyfunc = save_and_load(KNeighborsClassifier().fit(train, target), train, tmp_path / "model")
    with pytest.raises(CompilationError, match="nearest-neighbour"):
        compile_pyfunc(pyfunc, COLUMNS)


def test_non_finite_input_is_refused(forest: tuple[Any, Path, pd.DataFrame]) -> None:
    pyfunc, _, held_out = forest
    compiled = CompiledModel.from_converted(compile_pyfunc(pyfunc, COLUMNS))
    values = held_out.to_numpy()[:2].copy()
    values[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compiled.predict(values)


def test_verification_rows(forest: tuple[Any, Path, pd.DataFrame]) -> None:
    pyfunc, path, _ = forest
    rows = verification_rows(pyfunc, path, synthesised=50, seed=7)
    example = pyfunc.metadata.load_input_example(str(path))
    assert list(rows.columns) == COLUMNS
    assert len(rows) == len(example) + 50
    pd.testing.assert_frame_equal(rows.head(len(example)), example.reset_index(drop=True))
    pd.testing.assert_frame_equal(rows, verification_rows(pyfunc, path, synthesised=50, seed=7))
    assert not rows.equals(verification_rows(pyfunc, path, synthesised=50, seed=8))


def test_verification_rows_without_example(tmp_path: Path) -> None:
    train, target, _ = classification(2)
    model = tree.DecisionTreeClassifier(max_depth=3, random_state=0).fit(train, target)
    path = tmp_path / "model"
    mlflow.sklearn.save_model(
        model,
        str(path),
        signature=infer_signature(train, model.predict(train)),
        skops_trusted_types=trusted_types(model),
        pip_requirements=[],
    )
    pyfunc = mlflow.pyfunc.load_model(str(path))
    rows = verification_rows(pyfunc, path, synthesised=20)
    assert rows.shape == (20, 20)
    assert list(rows.columns) == COLUMNS


@pytest.fixture(scope="module")
def compiled_forest(forest: tuple[Any, Path, pd.DataFrame]) -> CompiledModel:
    return CompiledModel.from_converted(compile_pyfunc(forest[0], COLUMNS))


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=arrays(np.float64, (8, 20), elements=st.floats(-1e3, 1e3, width=32)))
def test_compiled_forest_agrees_on_random_rows(
    forest: tuple[Any, Path, pd.DataFrame], compiled_forest: CompiledModel, values: np.ndarray
) -> None:
    assert verify(forest[0], compiled_forest, _frame(values)).passed
