"""What MLflow shows of the ledger: modelreg's version tags and who holds the managed aliases.

MLflow aliases and tags are projections of the ledger (the system of record
for governance); these names and :func:`alias_holders` are shared by the write
path, the reads that check MLflow against the ledger, and drift repair.
"""

from __future__ import annotations

from modelreg.lifecycle import ModelState
from modelreg.mlflow_gateway import PRODUCTION_ALIAS, STAGING_ALIAS

STAGE_TAG = "modelreg.stage"
SEMVER_TAG = "modelreg.semver"
DIGEST_TAG = "modelreg.digest"
LEDGER_TAG = "modelreg.ledger"  # which ledger adopted a version (no credentials)
MODEL_CLASS_TAG = "modelreg.model_class"


def alias_holders(state: ModelState) -> dict[str, int | None]:
    """Which version each managed alias (``production``, ``staging``) should point at."""
    return {PRODUCTION_ALIAS: state.production, STAGING_ALIAS: state.staging}
