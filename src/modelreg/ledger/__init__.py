"""The governance ledger: append-only events, registration facts and per-model locks."""

from modelreg.domain import NewEvent
from modelreg.ledger.store import Ledger, LedgerTransaction, VersionRecord

__all__ = ["Ledger", "LedgerTransaction", "NewEvent", "VersionRecord"]
