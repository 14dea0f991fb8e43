"""What an A/B experiment is, as every layer sees it: its route, its counts, its outcomes.

An experiment runs on one registered model: a *control* (normally the version
``@production`` points at) and one or more *treatments* (other versions),
each treatment taking ``traffic`` of all requests. The ledger stores its
decisions as events; serving reads its :class:`ExperimentRoute`, routes
requests with :mod:`modelreg.experiments.assignment`, and hands back
:class:`VariantCounts` (cumulative per replica) and
:class:`PredictionRecord` rows, to which :class:`Feedback` later joins an
outcome. Everything here is a frozen value with no I/O.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError, model_validator

from modelreg.domain import validation_problem
from modelreg.errors import InvalidInputError
from modelreg.experiments.assignment import CONTROL, Split, assign

DEFAULT_KEY_HEADER = "X-User-ID"
"""The request header whose value is the routing key unless an experiment names another."""

FALLBACK_KEY_HEADER = "X-Request-ID"
"""The routing key when the configured header is missing (counted as ``missing_key``)."""

REQUEST_ID_CHARACTERS = r"[A-Za-z0-9._:/+=\-]"
"""What a request id may be made of (1 to 128 of them); servers replace any other id."""

FEEDBACK_MAX_BYTES = 16 * 1024
"""Largest feedback body the HTTP endpoints take; larger ones get 413."""

LATENCY_BOUNDS_S: tuple[float, ...] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf,
)  # fmt: skip
"""Upper bounds (seconds, inclusive) of the latency buckets counts are kept in."""


class ExperimentState(enum.StrEnum):
    """Where an experiment is in its life: running, stopped (all to control), concluded."""

    RUNNING = "running"  # treatments get their share
    STOPPED = "stopped"  # by a person or a guardrail: everyone gets control, no new counts
    CONCLUDED = "concluded"  # decided (possibly with a promotion); serving forgets it


@dataclass(frozen=True)
class Arm:
    """One variant of an experiment: its name (``control``, ``treatment`` ...) and version."""

    variant: str
    version: int


def treatment_names(count: int) -> tuple[str, ...]:
    """The variant names of ``count`` treatments: ``treatment``, or ``treatment-1`` ...."""
    if count == 1:
        return ("treatment",)
    return tuple(f"treatment-{i}" for i in range(1, count + 1))


@dataclass(frozen=True)
class ExperimentRoute:
    """What a model server needs to route one model's requests in an experiment.

    ``id`` salts the assignment hash; ``control_alias`` is the alias the
    control follows (``production``), or None when control is a pinned
    version. ``traffic`` is each treatment's share (0 once stopped).
    ``shadow`` scores treatments on mirrored requests and always answers
    with control. ``revision`` grows with every change (start, ramp, stop), so
    a watcher can tell a ramp from nothing.
    """

    id: str
    model: str
    state: ExperimentState
    control: Arm
    control_alias: str | None
    treatments: tuple[Arm, ...]
    traffic: float
    key_header: str
    shadow: bool
    revision: int

    @property
    def split(self) -> Split:
        """The traffic split: the treatments' names and share (0 unless running)."""
        share = self.traffic if self.state is ExperimentState.RUNNING else 0.0
        return Split(tuple(arm.variant for arm in self.treatments), share)

    @property
    def arms(self) -> tuple[Arm, ...]:
        """Control first, then the treatments."""
        return (self.control, *self.treatments)

    def variant_for(self, routing_key: str) -> str:
        """The variant answering ``routing_key``: control in shadow mode or once stopped."""
        if self.shadow:
            return CONTROL
        return assign(self.id, self.split, routing_key)


@dataclass(frozen=True)
class VariantCounts:
    """One replica's cumulative counts for one variant of a running experiment.

    ``latency`` has one count per :data:`LATENCY_BOUNDS_S` bucket (not
    cumulative). ``missing_key`` counts requests without the routing header
    (routed on the request id instead). ``predictions`` numeric predictions
    were summed into ``prediction_sum`` and ``prediction_sumsq`` (the
    prediction distribution's first two moments). A treatment scored in
    shadow mode counts the mirrored requests it scored.
    """

    experiment_id: str
    variant: str
    version: int
    requests: int
    errors: int
    missing_key: int
    latency: tuple[int, ...]
    predictions: int
    prediction_sum: float
    prediction_sumsq: float


@dataclass(frozen=True)
class PredictionRecord:
    """One logged prediction, kept so a later :class:`Feedback` can join it.

    ``prediction`` is the first output of the request's first row: a number,
    a class label, or None when it was neither.
    """

    request_id: str
    model: str
    experiment_id: str
    variant: str
    version: int
    prediction: float | str | None
    at: datetime


@dataclass(frozen=True)
class Feedback:
    """A ground-truth ``label`` and/or business ``value`` for the prediction of ``request_id``."""

    request_id: str
    label: float | str | None = None
    value: float | None = None


class FeedbackResult(enum.StrEnum):
    """What recording feedback did: recorded, or an identical duplicate that changed nothing."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"


class FeedbackBody(BaseModel):
    """The JSON body of ``POST /feedback`` (model server and API): a request id and its outcome."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request_id: str = Field(min_length=1, max_length=128, pattern=rf"^{REQUEST_ID_CHARACTERS}+$")
    label: FiniteFloat | Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    value: FiniteFloat | None = None

    @model_validator(mode="after")
    def _an_outcome(self) -> Self:
        if self.label is None and self.value is None:
            raise ValueError("give a label, a value or both for the request id")
        return self


def parse_feedback(body: bytes) -> Feedback:
    """The :class:`Feedback` of a ``POST /feedback`` body; InvalidInputError says what is wrong."""
    try:
        given = FeedbackBody.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(validation_problem(error) for error in exc.errors())
        raise InvalidInputError(
            f"invalid feedback: {problems} "
            '(send {"request_id": "...", "label": 1} and/or "value": 12.5)'
        ) from None
    return Feedback(given.request_id, given.label, given.value)


@dataclass(frozen=True)
class CountsSample:
    """One replica's cumulative counts of one variant at the end of ``minute`` (epoch minutes)."""

    replica: str
    variant: str
    minute: int
    requests: int
    errors: int
    latency: tuple[int, ...]


def epoch_minute(at: datetime) -> int:
    """Whole minutes from the Unix epoch to ``at`` (aware)."""
    return int(at.timestamp() // 60)
