"""What the security suite's tests share: the seeded stack, and the corpus figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelreg.cli import INTERNAL_ERROR
from modelreg.registry import Registry
from services import Backend


@dataclass(frozen=True)
class Stack:
    """The seeded stack: MLflow + ledger on SQLite, a facade, and the seeded model's name."""

    backend: Backend
    registry: Registry
    model: str
    home: Path


TRACEBACK = ("Traceback (most recent call last)", 'File "/', "site-packages/")


@dataclass
class Surface:
    """What one surface answered: counts, and every answer that broke the rules."""

    tried: int = 0
    refused: int = 0
    server_errors: int = 0
    faults: list[str] = field(default_factory=list)

    def record(self, label: str, code: int, text: str, *, refuse: bool, http: bool) -> None:
        """Count one answer (an HTTP status or an exit code) and keep it if it is a fault."""
        self.tried += 1
        crashed = code >= 500 if http else code >= INTERNAL_ERROR
        refused = 400 <= code < 500 if http else 0 < code < INTERNAL_ERROR
        self.refused += refused
        self.server_errors += crashed
        if crashed or any(marker in text for marker in TRACEBACK):
            self.faults.append(f"{label}: {code} {text[:200]!r}")
        elif refuse and not refused:
            self.faults.append(f"{label}: accepted ({code}) {text[:200]!r}")


FIGURES: dict[str, Surface] = {}


def figures_rows() -> dict[str, list[int]]:
    """This process's corpus figures by surface: inputs tried, refused, server errors."""
    return {n: [s.tried, s.refused, s.server_errors] for n, s in FIGURES.items()}
