"""The only package that talks to MLflow.

Everything else in modelreg sees plain values (:class:`VersionInfo`,
:class:`RunInfo`) and modelreg errors, never MLflow entities or exceptions.
:class:`MlflowGateway` is the one object a registry holds; it is made of one
part per concept:

- :mod:`.registry`: registered models, versions, aliases, tags (reads and hot
  writes over the REST API, :mod:`.rest`);
- :mod:`.runs`: runs, lineage and flavour logging, the active run;
- :mod:`.artifacts`: downloading a version's files;
- :mod:`.errors`: MLflow's errors as modelreg errors, for both paths;
- :mod:`.connection`: the REST connection, ``MlflowClient`` and its HTTP defaults.

Importing it changes nothing in the process (no environment, no mlflow import).
"""

from __future__ import annotations

from modelreg.mlflow_gateway.artifacts import ArtifactCalls, read_mlmodel, temporary_dir
from modelreg.mlflow_gateway.connection import (
    CLI_HTTP,
    SERVING_HTTP,
    HttpDefaults,
    apply_http_defaults,
    use_serving_http_defaults,
)
from modelreg.mlflow_gateway.registry import (
    PRODUCTION_ALIAS,
    STAGING_ALIAS,
    ModelInfo,
    RegistryCalls,
    VersionInfo,
    filter_literal,
)
from modelreg.mlflow_gateway.runs import RunCalls, RunInfo, infer_signature

__all__ = [
    "CLI_HTTP",
    "PRODUCTION_ALIAS",
    "SERVING_HTTP",
    "STAGING_ALIAS",
    "HttpDefaults",
    "MlflowGateway",
    "ModelInfo",
    "RunInfo",
    "VersionInfo",
    "apply_http_defaults",
    "filter_literal",
    "infer_signature",
    "read_mlmodel",
    "temporary_dir",
    "use_serving_http_defaults",
]


class MlflowGateway(RegistryCalls, RunCalls, ArtifactCalls):
    """Typed, error-translating access to one MLflow tracking/registry server.

    ``MlflowGateway(tracking_uri, http=None)``: ``http`` chooses how MLflow's own
    client retries (:data:`CLI_HTTP` unless given; see :mod:`.connection`).
    """
