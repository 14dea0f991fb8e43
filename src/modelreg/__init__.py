"""modelreg: a production model registry and serving platform built on MLflow.

The names below are imported on first use: importing the facade imports MLflow
(over a second of start-up), which ``modelreg --help``, the serving data plane
and ``import modelreg.domain`` must not pay for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelreg.domain import Action, Event, LineageRecord, SemVer, Stage
    from modelreg.errors import ModelregError
    from modelreg.registry import Registry
    from modelreg.settings import Settings

_EXPORTS = {
    "Action": "modelreg.domain",
    "Event": "modelreg.domain",
    "LineageRecord": "modelreg.domain",
    "ModelregError": "modelreg.errors",
    "Registry": "modelreg.registry",
    "SemVer": "modelreg.domain",
    "Settings": "modelreg.settings",
    "Stage": "modelreg.domain",
}


def __getattr__(name: str) -> Any:
    """Import an exported name from its module on first access (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


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
