"""The course's registration code: three RandomForest settings, registered with plain MLflow.

This is user code, kept as the course wrote it; the only change is
``skops_trusted_types`` (MLflow 3.17 saves sklearn models with skops and
refuses tree models without it). Run it against ``modelreg up``::

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 python -m modelreg.examples.course_register

modelreg then adopts the three versions (semver, digest, lineage record) on
its next sync, or at once with ``modelreg sync``.
"""

from __future__ import annotations

import subprocess

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

MODEL_NAME = "fraud-detection"
DATA_VERSION = "fraud-2026-11"
SETTINGS = (
    {"n_estimators": 50, "max_depth": 5},
    {"n_estimators": 100, "max_depth": 10},
    {"n_estimators": 200, "max_depth": 10},
)


def fraud_data(seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """A synthetic, imbalanced fraud data set with 20 features."""
    features, labels = make_classification(
        n_samples=4000, n_features=20, n_informative=8, weights=[0.95], random_state=seed
    )
    frame = pd.DataFrame(features, columns=[f"f{i:02d}" for i in range(20)])
    x_train, x_test, y_train, y_test = train_test_split(
        frame, pd.Series(labels, name="is_fraud"), test_size=0.25, random_state=seed
    )
    return x_train, x_test, y_train, y_test


def git(*args: str) -> str:
    """What the course records about the code: ``git rev-parse`` in the working directory."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def main() -> None:
    """Train three settings and register each as a version of ``fraud-detection``."""
    mlflow.set_experiment("fraud-detection")
    x_train, x_test, y_train, y_test = fraud_data()
    for params in SETTINGS:
        with mlflow.start_run():
            model = RandomForestClassifier(**params, random_state=42, n_jobs=1)
            model.fit(x_train, y_train)
            auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
            mlflow.log_params(params)
            # The course's lineage: data version and code version as run params.
            mlflow.log_params(
                {
                    "data_version": DATA_VERSION,
                    "git_commit": git("rev-parse", "HEAD"),
                    "git_branch": git("rev-parse", "--abbrev-ref", "HEAD"),
                }
            )
            mlflow.log_metric("test_auc", auc)
            signature = infer_signature(x_train, model.predict(x_train))
            mlflow.sklearn.log_model(
                model,
                name="model",
                signature=signature,
                input_example=x_train.head(3),
                registered_model_name=MODEL_NAME,
                skops_trusted_types=["sklearn.tree._tree.Tree"],  # the one change for MLflow 3.17
            )
            print(f"registered {MODEL_NAME} with {params}: test_auc={auc:.4f}")  # noqa: T201


if __name__ == "__main__":
    main()
