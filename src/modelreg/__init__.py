"""modelreg: a production model registry and serving platform built on MLflow."""

from modelreg.domain import Action, Event, LineageRecord, SemVer, Stage
from modelreg.errors import ModelregError
from modelreg.registry import Registry
from modelreg.settings import Settings

__all__ = [
    "Action",
    "Event",
    "LineageRecord",
    "ModelregError",
    "Registry",
    "SemVer",
    "Settings",
    "Stage",
]
