"""How ``modelreg demo`` tells its story: numbered steps, checked claims, and the summary.

Every step states what it will show and checks that it did
(:meth:`Narrator.expect`): a step that does not behave as stated ends the
demo with a message naming the step and a non-zero exit code, never a
traceback. What each step demonstrated is collected as a
:class:`Finding` against one of the course's acceptance criteria (or one of
modelreg's own capabilities) and printed as the closing table.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from modelreg.cli.tables import CompactTable, key, text
from modelreg.errors import ModelregError

#: The course's acceptance criteria and modelreg's capabilities, in the order of the summary.
CRITERIA = (
    "Docker Compose deployment",
    "PostgreSQL + MinIO backend",
    "versioning and lineage",
    "gates",
    "approvals",
    "auto-promotion",
    "FastAPI service reloads within 60 s",
    "10/90 A/B test",
    "metrics dashboard per variant",
    "rollback",
    "audit",
)


@dataclass(frozen=True)
class Finding:
    """What one step showed for one criterion; ``step`` is '-' for what the demo does not run."""

    criterion: str
    step: str
    shown: str


def expect(ok: bool, step: str, stated: str, observed: str) -> None:
    """Raise :class:`~modelreg.errors.ModelregError` (exit code 1) naming ``step`` unless ``ok``.

    ``stated`` is what the demo claims the step does; ``observed`` what happened instead.
    """
    if not ok:
        raise ModelregError(
            f"demo step {step} did not behave as stated: {stated}; observed: {observed}"
        )


class Narrator:
    """Prints the numbered steps and the commands that do the same by hand; collects findings."""

    def __init__(self, console: Console) -> None:
        """Narrate on ``console``."""
        self.console = console
        self.number = 0
        self.title = ""
        self.findings: list[Finding] = []

    @property
    def live(self) -> bool:
        """Whether progress bars can redraw in place (a terminal), rather than add lines."""
        return self.console.is_terminal

    @property
    def step(self) -> str:
        """The current step as messages name it: ``4 (the gate refuses a weak model)``."""
        return f"{self.number} ({self.title})"

    def begin(self, title: str, *commands: str) -> None:
        """Start the next step: a rule with its number and title, then the commands."""
        self.number += 1
        self.title = title
        self.console.rule(f"[bold]{self.number}. {title}")
        for command in commands:
            self.command(command)

    def command(self, command: str) -> None:
        """Print the command a user would type for what happens next."""
        self.console.print(f"[dim]$ {command}[/dim]", highlight=False)

    def say(self, line: str) -> None:
        """Print one line of the story as it is (no markup)."""
        self.console.print(line, markup=False, highlight=False)

    def expect(self, ok: bool, stated: str, observed: str) -> None:
        """Check the current step's claim (see :func:`expect`)."""
        expect(ok, self.step, stated, observed)

    def found(self, criterion: str, shown: str, *, step: str | None = None) -> None:
        """Record that the current step (or ``step``) demonstrated ``criterion``."""
        if criterion not in CRITERIA:
            raise ValueError(f"unknown criterion {criterion!r}")  # a typo in the demo itself
        self.findings.append(Finding(criterion, str(self.number) if step is None else step, shown))


def summary_table(findings: list[Finding]) -> Table:
    """The closing table: each criterion with the steps that showed it and what they showed."""
    table = CompactTable(text("criterion"), key("step"), text("demonstrated"))
    for criterion in CRITERIA:
        for finding in (f for f in findings if f.criterion == criterion):
            table.add_row(criterion, finding.step, finding.shown)
    return table
