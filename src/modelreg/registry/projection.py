"""What MLflow shows of the ledger: modelreg's version tags and who holds the managed aliases.

MLflow aliases and tags are projections of the ledger (the system of record
for governance); these names and :func:`alias_holders` are shared by the write
path, the reads that check MLflow against the ledger, and drift repair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from modelreg import lifecycle
from modelreg.domain import Event, Stage
from modelreg.mlflow_gateway import PRODUCTION_ALIAS, STAGING_ALIAS

STAGE_TAG = "modelreg.stage"
SEMVER_TAG = "modelreg.semver"
DIGEST_TAG = "modelreg.digest"
LEDGER_TAG = "modelreg.ledger"  # which ledger adopted a version (no credentials)
MODEL_CLASS_TAG = "modelreg.model_class"


def alias_holders(
    events: Sequence[Event], state: Mapping[int, Stage] | None = None
) -> dict[str, int | None]:
    """Which version each managed alias (``production``, ``staging``) should point at.

    ``state`` is ``lifecycle.fold(events)`` when the caller has it already.
    """
    folded = lifecycle.fold(events) if state is None else state
    return {
        PRODUCTION_ALIAS: lifecycle.holder(folded, Stage.PRODUCTION),
        STAGING_ALIAS: lifecycle.staging_holder(events),
    }
