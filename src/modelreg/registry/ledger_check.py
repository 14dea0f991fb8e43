"""Refuse a ledger that is not the one that adopted MLflow's versions."""

from __future__ import annotations

from pathlib import Path

from modelreg.errors import LedgerMismatchError
from modelreg.ledger import Ledger
from modelreg.mlflow_gateway import MlflowGateway
from modelreg.registry.projection import DIGEST_TAG, LEDGER_TAG
from modelreg.settings import Settings


class LedgerCheck:
    """Checks once per registry that its ledger belongs to its MLflow server."""

    def __init__(self, settings: Settings, gateway: MlflowGateway, ledger: Ledger) -> None:
        self.settings = settings
        self.gateway = gateway
        self.ledger = ledger
        self._checked = False

    def ensure(self) -> None:
        """Refuse a ledger that is not the one that adopted MLflow's versions.

        Running from another directory used to open another (often empty)
        ledger silently: versions looked unadopted, stages wrong, and a sync or
        ``doctor --fix`` forked the audit history or rewrote MLflow. One MLflow
        call per registry: a version modelreg adopted is looked up in this ledger;
        if it is unknown here, and the ledger its ``modelreg.ledger`` tag names is
        another one that exists (a moved or restored home is not held against
        anyone), this ledger is refused with LedgerMismatchError, naming the right one.
        """
        if self._checked or self.settings.allow_new_ledger:
            return
        adopted = self.gateway.any_version_tagged(DIGEST_TAG)
        if adopted is not None:
            # An absent SQLite ledger is empty without being created by the question.
            empty = self.ledger.is_empty()
            record = None if empty else self.ledger.version_record(adopted.name, adopted.version)
            known = record is not None and record.digest == adopted.tags.get(DIGEST_TAG)
            other = adopted.tags.get(LEDGER_TAG, "")
            ours = self.ledger.location()
            elsewhere = bool(other) and other != ours and _ledger_exists(other)
            if not known and (empty or elsewhere):
                raise LedgerMismatchError(
                    ours, self.gateway.tracking_uri, other or "another modelreg home"
                )
        self._checked = True


def _ledger_exists(location: str) -> bool:
    """Whether the ledger a tag names exists: a SQLite file that is there, or any server."""
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///")).is_file()
    return True
