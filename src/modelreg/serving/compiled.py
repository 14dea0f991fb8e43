"""Compiled runtimes: convert a version's native model to ONNX and prove it answers the same.

:func:`compile_pyfunc` converts the estimator inside an MLflow pyfunc with skl2onnx
(XGBoost and LightGBM scikit-learn-API estimators through onnxmltools' converters),
:class:`CompiledModel` runs the result with ONNX Runtime, and :func:`verify`
compares it with the original on :func:`verification_rows`. Nothing here decides
whether to serve the compiled form; a disagreement is a result, not an exception.

Precision follows what the original computes in. scikit-learn trees compare
``float32(x)`` against their thresholds, so tree models (and pipelines holding one)
take a float32 input tensor and decide exactly like the original; linear models
compute in float64, so they take a float64 tensor. ONNX Runtime's tree ensembles
*output* float32 whatever the input (``ai.onnx.ml`` opset 3), so a tree regressor's
values carry float32 rounding: about 1e-7 relative, which exceeds an absolute 1e-5
once targets reach the hundreds. Verification reports that and the server falls
back to the pyfunc.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelreg.errors import CompilationError

DEFAULT_TOLERANCE = 1e-5
"""Absolute tolerance on probabilities (classifiers) or values (regressors)."""

# skl2onnx 1.20 converts tree ensembles to ai.onnx.ml opset 3; onnxmltools refuses
# opset 5 ("not supported yet by this library"), so both are pinned to what they emit.
_TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
_INPUT = "input"
# Read back by CompiledModel from the ONNX model's metadata_props, so the bytes alone
# (whose digest the ledger records) say how to present outputs like the original.
_META_LABEL_DTYPE = "modelreg.label_dtype"
_META_OUTPUT_DTYPE = "modelreg.output_dtype"
_META_CLASSES = "modelreg.classes"
# Averaging trees (forests, single trees) vote in fractions like 10/20, so exact ties are
# common; float32 sums turn one into 0.49999994 vs 0.50000006 and ONNX's label goes either
# way, while scikit-learn's argmax gives a tie to the first class. For these the compiled
# model picks the first class within _TIE of the top probability (float32 rounding is
# ~6e-8 per tree; distinct vote fractions are much further apart). Other models keep
# ONNX's label: their decision functions are continuous, and a saturated SGD model has
# genuinely different probabilities 1e-7 apart that a tie window would merge.
_META_FIRST_ON_TIES = "modelreg.first_on_ties"
_VOTING = ("sklearn.ensemble._forest.", "sklearn.tree.")
_TIE = 1e-6
_FLAVORS = {"mlflow.sklearn", "mlflow.xgboost", "mlflow.lightgbm"}
_PREDICT_FNS = {"predict", "predict_proba"}
_NUMERIC = {"double", "float", "long", "integer"}
# Steps that compute in float64 in scikit-learn and have float64 ONNX converters.
_DOUBLE_MODULES = ("sklearn.linear_model", "sklearn.preprocessing")
_LIBRARIES = ("sklearn.", "xgboost.", "lightgbm.")
_REFUSED = {
    # Neighbour search breaks distance ties by order, which ONNX does not reproduce.
    "sklearn.neighbors": "nearest-neighbour models break distance ties differently in ONNX",
}
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Converted:
    """A model version converted to ONNX, with what produced it."""

    onnx: bytes
    kind: str
    predict_fn: str
    converters: dict[str, str]
    model_type: str


@dataclass(frozen=True)
class Verification:
    """How a compiled model compared with the original on a set of rows."""

    rows: int
    max_abs_diff: float
    classes_identical: bool
    tolerance: float
    passed: bool
    reason: str


def onnx_digest(onnx: bytes) -> str:
    """The ``"sha256:<hex>"`` digest of serialised ONNX bytes (the integrity module's format)."""
    return "sha256:" + hashlib.sha256(onnx).hexdigest()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 3] + "..."


def _qualified(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _public_type(obj: Any) -> str:
    """``sklearn.ensemble.RandomForestClassifier`` rather than its private defining module."""
    kind = type(obj)
    module = kind.__module__.split(".")
    for depth in range(1, len(module) + 1):
        prefix = ".".join(module[:depth])
        try:
            if getattr(__import__(prefix, fromlist=["_"]), kind.__name__, None) is kind:
                return f"{prefix}.{kind.__name__}"
        except ImportError:
            break
    return _qualified(obj)


def _check_schema(pyfunc: Any, columns: Sequence[str]) -> None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        raise CompilationError("the model has no named-column signature to build a tensor from")
    names = []
    for spec in schema.inputs:
        kind = getattr(spec.type, "name", None)
        if kind not in _NUMERIC:
            raise CompilationError(
                f"column {spec.name!r} is {kind or spec.type}; only numeric columns compile"
            )
        if not spec.required:
            raise CompilationError(
                f"column {spec.name!r} is optional; only required columns compile"
            )
        names.append(spec.name)
    if names != list(columns):
        raise CompilationError(f"columns {list(columns)} differ from the signature's {names}")


def _steps(model: Any) -> list[Any]:
    steps = getattr(model, "steps", None)
    if isinstance(steps, list):
        return [step for _, step in steps if step not in (None, "passthrough")]
    return [model]


def _check_types(model: Any) -> None:
    for step in _steps(model):
        name = _qualified(step)
        if not name.startswith(_LIBRARIES):
            raise CompilationError(f"{name} is a custom estimator class with no ONNX converter")
        for prefix, why in _REFUSED.items():
            if name.startswith(prefix + "."):
                raise CompilationError(f"{_public_type(step)} is not compiled: {why}")
        if name in ("xgboost.core.Booster", "lightgbm.basic.Booster"):
            raise CompilationError(
                f"a native {name} is not compiled; log the scikit-learn API estimator instead"
            )


@functools.cache
def _register_converters() -> None:
    """Teach skl2onnx the XGBoost/LightGBM estimators, as skl2onnx documents (once per process).

    See skl2onnx's "Convert a pipeline with a XGBoost model" / "... LightGBM classifier"
    examples: ``update_registered_converter`` with onnxmltools' converters.
    """
    from skl2onnx import update_registered_converter  # type: ignore[import-untyped]
    from skl2onnx.common.shape_calculator import (  # type: ignore[import-untyped]
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost  # type: ignore[import-untyped]
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        pass
    else:
        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor,
            "XGBoostXGBRegressor",
            calculate_linear_regressor_output_shapes,
            convert_xgboost,
        )
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        update_registered_converter(
            LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            LGBMRegressor,
            "LightGbmLGBMRegressor",
            calculate_linear_regressor_output_shapes,
            convert_lightgbm,
            options={"split": None},
        )
    _allow_boolean_missing_flags()  # once: _register_converters is cached


def _allow_boolean_missing_flags() -> None:
    """Work around skl2onnx 1.20 passing ``False`` in an integer attribute for HistGradientBoosting.

    ``add_tree_to_attribute_pairs_hist_gradient_boosting`` (skl2onnx/common/tree_ensemble.py)
    gives leaves ``nodes_missing_value_tracks_true=False``; onnx 1.23 refuses a bool in an
    ``ints`` attribute ("Expected an int, got a boolean"), so every HistGradientBoosting
    conversion fails. Coercing that one argument to int is exactly what the converter meant.
    """
    from skl2onnx.common import tree_ensemble  # type: ignore[import-untyped]

    original = tree_ensemble.add_node

    @functools.wraps(original)
    def add_node(*args: Any, **kwargs: Any) -> Any:
        flag = kwargs.get("nodes_missing_value_tracks_true")
        if flag is not None:
            kwargs["nodes_missing_value_tracks_true"] = int(flag)
        return original(*args, **kwargs)

    tree_ensemble.add_node = add_node


def _kind(model: Any) -> str:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classifier"
    if is_regressor(model):
        return "regressor"
    raise CompilationError(f"{_public_type(model)} is neither a classifier nor a regressor")


def _native_input(model: Any, frame: pd.DataFrame) -> Any:
    """The frame for a model fitted on named columns, else its values (no feature-name warning)."""
    return frame if hasattr(model, "feature_names_in_") else frame.to_numpy()


def _output_meta(model: Any, kind: str, columns: Sequence[str]) -> dict[str, str]:
    """The original's classes and output dtypes, so the compiled model can return the same."""
    frame = pd.DataFrame(np.zeros((1, len(columns))), columns=list(columns))
    native = _native_input(model, frame)
    if kind == "regressor":
        return {_META_OUTPUT_DTYPE: np.asarray(model.predict(native)).dtype.str}
    labels = np.asarray(model.predict(native))
    return {
        _META_CLASSES: json.dumps(np.asarray(model.classes_).tolist()),
        _META_FIRST_ON_TIES: str(_qualified(_steps(model)[-1]).startswith(_VOTING)).lower(),
        _META_LABEL_DTYPE: labels.dtype.str,
        _META_OUTPUT_DTYPE: np.asarray(model.predict_proba(native)).dtype.str,
    }


def _convert(model: Any, kind: str, n_columns: int, double: bool) -> Any:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType  # type: ignore[import-untyped]

    tensor = DoubleTensorType if double else FloatTensorType
    options = {id(_steps(model)[-1]): {"zipmap": False}} if kind == "classifier" else None
    return to_onnx(
        model,
        initial_types=[(_INPUT, tensor([None, n_columns]))],
        options=options,
        target_opset=_TARGET_OPSET,
    )


def compile_pyfunc(pyfunc: Any, columns: Sequence[str]) -> Converted:
    """Convert the native model inside an MLflow pyfunc to ONNX.

    ``columns`` are the signature's input columns in order; the ONNX model takes
    one tensor ``[N, len(columns)]`` (float32 for tree models, float64 for linear
    ones). Raises CompilationError when the flavor or model type has no maintained
    converter, the pyfunc's predict function is not ``predict``/``predict_proba``,
    the signature is not all required numeric columns, or the converter fails.
    """
    _check_schema(pyfunc, columns)
    # mlflow/pyfunc/__init__.py:1193 reads the pyfunc flavor's predict_fn (default "predict")
    # and PyFuncModel calls getattr(model_impl, predict_fn) (:785); mlflow.sklearn writes it
    # from save_model(pyfunc_predict_fn=...) (mlflow/sklearn/__init__.py:326-334).
    conf = pyfunc.metadata.flavors.get("python_function", {})
    loader = conf.get("loader_module")
    if loader not in _FLAVORS:
        raise CompilationError(f"the {loader} flavor has no maintained ONNX converter")
    predict_fn = str(conf.get("predict_fn", "predict"))
    if predict_fn not in _PREDICT_FNS:
        raise CompilationError(f"pyfunc_predict_fn {predict_fn!r} is not reproduced when compiled")
    # PyFuncModel.get_raw_model (mlflow/pyfunc/__init__.py:1057) returns the wrapper's model:
    # the estimator for sklearn (:639), the Booster or XGBModel for xgboost
    # (mlflow/xgboost/__init__.py:382), the Booster or LGBMModel for lightgbm (:601).
    model = pyfunc.get_raw_model()
    _check_types(model)
    kind = _kind(model)
    if predict_fn == "predict_proba" and kind != "classifier":
        raise CompilationError("predict_proba is served, but the model is not a classifier")
    model_type = _public_type(_steps(model)[-1])
    _register_converters()
    double = all(_qualified(step).startswith(_DOUBLE_MODULES) for step in _steps(model))
    dtypes = _output_meta(model, kind, columns)
    # A linear model falls back to float32 if some step has no float64 converter.
    attempts = (True, False) if double else (False,)
    failure = ""
    for as_double in attempts:
        try:
            proto = _convert(model, kind, len(columns), as_double)
        except Exception as exc:  # noqa: BLE001 - converters raise anything; the reason matters
            failure = f"skl2onnx could not convert {model_type}: {_short(exc)}"
            continue
        for key, value in dtypes.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx = proto.SerializeToString()
        try:
            CompiledModel(onnx, kind=kind, predict_fn=predict_fn)
        except CompilationError as exc:
            failure = exc.reason
            continue
        return Converted(onnx, kind, predict_fn, _converter_versions(model), model_type)
    raise CompilationError(failure)


def _converter_versions(model: Any) -> dict[str, str]:
    packages = ["skl2onnx", "onnx", "onnxruntime"]
    if any(_qualified(step).startswith(("xgboost.", "lightgbm.")) for step in _steps(model)):
        packages.append("onnxmltools")
    return {package: importlib.metadata.version(package) for package in packages}


class CompiledModel:
    """An ONNX model in an ONNX Runtime session, answering like the pyfunc it came from."""

    def __init__(self, onnx: bytes, *, kind: str, predict_fn: str, threads: int = 1) -> None:
        """Build the session; raise CompilationError when ONNX Runtime cannot load ``onnx``.

        ``threads`` sets both intra- and inter-op threads with sequential execution:
        the server parallelises across requests and workers, so one request uses one core.
        """
        import onnxruntime  # type: ignore[import-untyped]

        if kind not in ("classifier", "regressor") or predict_fn not in _PREDICT_FNS:
            raise CompilationError(f"cannot serve kind={kind!r} with predict_fn={predict_fn!r}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = onnxruntime.InferenceSession(
                onnx, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own untyped errors
            raise CompilationError(f"ONNX Runtime cannot load the model: {_short(exc)}") from exc
        inputs = self._session.get_inputs()
        outputs = self._session.get_outputs()
        expected = 2 if kind == "classifier" else 1
        if len(inputs) != 1 or len(outputs) != expected:
            raise CompilationError(
                f"the ONNX model has {len(inputs)} inputs and {len(outputs)} outputs;"
                f" a {kind} needs 1 and {expected}"
            )
        self.kind = kind
        self.predict_fn = predict_fn
        self._input = inputs[0].name
        self._input_dtype = np.float64 if inputs[0].type == "tensor(double)" else np.float32
        self._outputs = [output.name for output in outputs]
        meta = self._session.get_modelmeta().custom_metadata_map
        self._label_dtype = np.dtype(meta[_META_LABEL_DTYPE]) if _META_LABEL_DTYPE in meta else None
        self._classes: np.ndarray | None = None
        if meta.get(_META_FIRST_ON_TIES) == "true" and _META_CLASSES in meta:
            self._classes = np.asarray(json.loads(meta[_META_CLASSES]), dtype=self._label_dtype)
        self._output_dtype = np.dtype(meta.get(_META_OUTPUT_DTYPE, "<f8"))

    @classmethod
    def from_converted(cls, converted: Converted, *, threads: int = 1) -> CompiledModel:
        """Load a :class:`Converted` result."""
        return cls(
            converted.onnx, kind=converted.kind, predict_fn=converted.predict_fn, threads=threads
        )

    def _run(self, values: np.ndarray, outputs: list[str]) -> list[Any]:
        array = np.asarray(values)
        if array.ndim != 2:
            raise ValueError(f"expected a 2-D array [rows, columns], got shape {array.shape}")
        with np.errstate(over="ignore"):  # past float32's range: infinite, refused below
            array = np.ascontiguousarray(array, dtype=self._input_dtype)
        # NaN routing learned by scikit-learn trees is not converted (skl2onnx issue 1253),
        # so such rows could get another answer: refuse them rather than guess.
        if not np.isfinite(array).all():
            raise ValueError("input contains NaN or infinity; the compiled model does not score it")
        result: list[Any] = self._session.run(outputs, {self._input: array})
        return result

    def predict(self, values: np.ndarray) -> np.ndarray:
        """What ``pyfunc.predict`` returns for ``values`` ``[N, n_columns]`` in signature order.

        Class labels ``[N]`` (the original's label dtype, e.g. int64 or str) for
        ``predict`` on classifiers, probabilities ``[N, n_classes]`` for
        ``predict_proba``, values ``[N]`` for regressors. Raises ValueError for input
        that is not 2-D or not finite.
        """
        if self.kind == "classifier" and self.predict_fn == "predict":
            return self.labels(values)
        return self.scores(values).astype(self._output_dtype, copy=False)

    def labels(self, values: np.ndarray) -> np.ndarray:
        """Class labels ``[N]`` in the original's label dtype (classifiers only).

        For averaging trees the first class within ``_TIE`` of the highest
        probability wins, as in the original; otherwise ONNX's label output.
        """
        if self.kind != "classifier":
            raise ValueError("a regressor has no class labels")
        if self._classes is None:
            (labels,) = self._run(values, self._outputs[:1])
            array = np.asarray(labels).reshape(-1)
            return array if self._label_dtype is None else array.astype(self._label_dtype)
        probabilities = self.scores(values)
        top = probabilities.max(axis=1, keepdims=True)
        first = np.argmax(probabilities >= top - _TIE, axis=1)
        result: np.ndarray = self._classes[first]
        return result

    def scores(self, values: np.ndarray) -> np.ndarray:
        """Class probabilities ``[N, n_classes]`` for classifiers, values ``[N]`` for regressors."""
        if self.kind == "classifier":
            (probabilities,) = self._run(values, self._outputs[1:2])
            return np.asarray(probabilities, dtype=np.float64)
        (predicted,) = self._run(values, self._outputs[:1])
        return np.asarray(predicted, dtype=np.float64).reshape(-1)


def verification_rows(
    pyfunc: Any, model_path: Path, *, synthesised: int = 256, seed: int = 0
) -> pd.DataFrame:
    """The version's input example plus ``synthesised`` rows drawn from its signature.

    Synthesised values are uniform over the example's per-column range widened by
    its width (at least 1) on each side, or standard normal without an example;
    integer columns are rounded. Seeded, so a version always gets the same rows.
    Columns are in signature order with the signature's dtypes.
    """
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise CompilationError("the model has no named-column signature to draw rows from")
    columns = [spec.name for spec in schema.inputs]
    dtypes = {spec.name: spec.type.to_pandas() for spec in schema.inputs}
    example = _example_frame(pyfunc, model_path, columns)
    rng = np.random.default_rng(seed)
    if example is not None and len(example):
        numbers = example.to_numpy(dtype=np.float64)
        low, high = numbers.min(axis=0), numbers.max(axis=0)
        width = np.maximum(high - low, 1.0)
        drawn = rng.uniform(low - width, high + width, size=(synthesised, len(columns)))
    else:
        drawn = rng.standard_normal(size=(synthesised, len(columns)))
    frame = pd.DataFrame(drawn, columns=columns)
    for name, dtype in dtypes.items():
        if np.dtype(dtype).kind in "iu":
            frame[name] = frame[name].round()
    parts = [part for part in (example, frame) if part is not None and len(part)]
    return pd.concat(parts, ignore_index=True).astype(dtypes)


def _example_frame(pyfunc: Any, model_path: Path, columns: list[str]) -> pd.DataFrame | None:
    from mlflow.exceptions import MlflowException

    try:
        example = pyfunc.metadata.load_input_example(str(model_path))
    except (MlflowException, OSError, ValueError):
        return None
    if example is None:
        return None
    if isinstance(example, pd.DataFrame):
        if not set(columns) <= set(example.columns):
            return None
        return example[columns].reset_index(drop=True)
    if isinstance(example, dict):
        return pd.DataFrame(example)[columns]
    array = np.asarray(example)
    return pd.DataFrame(array.reshape(-1, len(columns)), columns=columns)


def verify(
    pyfunc: Any,
    compiled: CompiledModel,
    rows: pd.DataFrame,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> Verification:
    """Compare the original with the compiled model on ``rows`` (signature-ordered columns).

    Predictions come from ``pyfunc.predict``; scores from the native model's
    ``predict_proba`` (classifiers) or ``predict`` (regressors). Classes must be
    identical row for row and scores within ``tolerance`` (absolute). A
    disagreement, or either side failing, is returned as ``passed=False`` with
    the reason; nothing is raised for it.
    """
    count = len(rows)

    def failed(reason: str, diff: float = float("nan"), same: bool = False) -> Verification:
        return Verification(count, diff, same, tolerance, False, reason)

    if count == 0:
        return failed("no rows to verify on")
    model = pyfunc.get_raw_model()
    native = _native_input(model, rows)
    values = rows.to_numpy(dtype=np.float64)
    try:
        expected = np.asarray(pyfunc.predict(rows))
        if compiled.kind == "classifier":
            want_scores = np.asarray(model.predict_proba(native), dtype=np.float64)
            want_labels = np.asarray(model.predict(native))
        else:
            want_scores = np.asarray(model.predict(native), dtype=np.float64).reshape(-1)
    except Exception as exc:  # noqa: BLE001 - any failure of the original is a failed check
        return failed(f"the original model failed on the verification rows: {_short(exc)}")
    try:
        got = compiled.predict(values)
        got_scores = compiled.scores(values)
        got_labels = compiled.labels(values) if compiled.kind == "classifier" else None
    except Exception as exc:  # noqa: BLE001 - any failure of the compiled model is a failed check
        return failed(f"the compiled model failed: {_short(exc)}")
    if got_scores.shape != want_scores.shape:
        return failed(f"scores have shape {got_scores.shape}, the original's {want_scores.shape}")
    diff = float(np.max(np.abs(got_scores - want_scores)))
    same = True
    if got_labels is not None:
        same = got_labels.shape == want_labels.shape and bool(np.all(got_labels == want_labels))
        if not same:
            differ = (
                int(np.sum(got_labels != want_labels))
                if got_labels.shape == want_labels.shape
                else count
            )
            return failed(f"{differ} of {count} rows get a different class", diff, same)
    if got.shape != expected.shape or got.dtype.kind != expected.dtype.kind:
        return failed(
            f"predictions are {got.dtype}{list(got.shape)}, the pyfunc's"
            f" {expected.dtype}{list(expected.shape)}",
            diff,
            same,
        )
    if not diff <= tolerance:  # also catches NaN
        return failed(f"max difference {diff:.1e} > tolerance {tolerance:.0e}", diff, same)
    return Verification(count, diff, same, tolerance, True, "")
