"""The report ``ab status`` shows: per-variant numbers, comparisons, SRM, guardrails, a verdict.

:func:`build_report` turns each variant's counts and feedback
(:class:`VariantData`, control first) into a :class:`Report`. It is pure:
the registry gathers the data, the CLI, API and dashboard format the
report (:meth:`Report.to_json` is JSON-safe). The statistics live in
:mod:`modelreg.experiments.statistics`; this module decides which test fits
each metric and what the numbers mean together:

- **invalid** when the traffic split does not match the configured shares
  (sample ratio mismatch): nothing else can be trusted;
- **harmful** when a treatment breaches a guardrail: the experiment should
  stop (``breaches`` lists why);
- **treatment_wins** when a treatment is significantly better than control
  on the primary (first) metric, by the always-valid sequential test unless
  ``sequential=False``;
- **control_wins** when every treatment is significantly worse;
- **inconclusive** otherwise, with the sample size still needed.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from modelreg.errors import InvalidInputError, shorten
from modelreg.experiments import statistics
from modelreg.experiments.definition import LATENCY_BOUNDS_S

MIN_GUARDRAIL_REQUESTS = 200
"""A treatment's guardrail is judged only once it has served this many requests: the
p99 of fewer is one or two requests' latency."""

DEFAULT_MDE_EFFECT_SIZE = 0.1
"""Without ``mde``, the minimum sample size targets a standardised effect of 0.1
(Cohen's d or h: a small effect)."""

P99 = 0.99


class Metric(enum.StrEnum):
    """What a variant is judged on: see :func:`build_report` for each one's meaning."""

    ACCURACY = "accuracy"
    CONVERSION = "conversion"
    VALUE = "value"
    AUC = "auc"
    ERROR_RATE = "error_rate"


class GuardrailMetric(enum.StrEnum):
    """What a guardrail limits: a treatment's error rate (0 to 1) or p99 latency (ms)."""

    ERROR_RATE = "error_rate"
    P99_LATENCY_MS = "p99_latency_ms"


@dataclass(frozen=True)
class Guardrail:
    """A limit a treatment must stay under, e.g. ``error_rate<0.05``."""

    metric: GuardrailMetric
    limit: float

    def __str__(self) -> str:
        """The form :func:`parse_guardrail` reads: ``error_rate<0.05``."""
        return f"{self.metric}<{self.limit:g}"


DEFAULT_GUARDRAILS: tuple[Guardrail, ...] = (
    Guardrail(GuardrailMetric.ERROR_RATE, 0.05),
    Guardrail(GuardrailMetric.P99_LATENCY_MS, 1000.0),
)
"""Unless an experiment names its own: at most 5% errors and a p99 latency under 1 s."""


def parse_metric(text: str) -> Metric:
    """The :class:`Metric` named ``text`` (any case); InvalidInputError listing the choices."""
    try:
        return Metric(text.strip().lower())
    except ValueError:
        choices = ", ".join(m.value for m in Metric)
        raise InvalidInputError(
            f"unknown metric {shorten(text, 40)!r}; use one of: {choices}"
        ) from None


_GUARDRAIL = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|<|=)\s*(\S+)\s*$", re.IGNORECASE)


def parse_guardrail(text: str) -> Guardrail:
    """A :class:`Guardrail` from ``error_rate<0.05``, ``error_rate<=0.05``, ``p99_latency_ms=250``.

    ``<``, ``<=`` and ``=`` all mean "must stay under the limit". The limit
    must be finite and positive; an error rate's at most 1. Raises
    InvalidInputError naming the accepted form otherwise.
    """
    example = "METRIC<LIMIT, e.g. error_rate<0.05 or p99_latency_ms<250"
    shown = shorten(text, 60)
    match = _GUARDRAIL.match(text)
    if match is None:
        raise InvalidInputError(f"invalid guardrail {shown!r}; use {example}")
    name, _, raw_limit = match.groups()
    try:
        metric = GuardrailMetric(name.lower())
    except ValueError:
        choices = ", ".join(m.value for m in GuardrailMetric)
        raise InvalidInputError(
            f"unknown guardrail metric {name!r} in {shown!r}; use one of: {choices}"
        ) from None
    try:
        limit = float(raw_limit)
    except ValueError:
        raise InvalidInputError(f"invalid guardrail limit in {shown!r}; use {example}") from None
    if not (math.isfinite(limit) and limit > 0):
        raise InvalidInputError(f"guardrail limit in {shown!r} must be a finite number above 0")
    if metric is GuardrailMetric.ERROR_RATE and limit > 1:
        raise InvalidInputError(f"an error rate limit is a share between 0 and 1, got {shown!r}")
    return Guardrail(metric, limit)


class Outcome(NamedTuple):
    """One prediction joined with its feedback: ``label`` (ground truth) and/or ``value``."""

    prediction: float | str | None
    label: float | str | None
    value: float | None


@dataclass(frozen=True)
class VariantData:
    """One variant's cumulative data: counts from serving and outcomes from feedback.

    ``expected_share`` is the share of the counted requests it should have
    (0 to 1): the split's share, or after a ramp the request-weighted mix of
    the shares in force, else the SRM check flags the ramp itself;
    ``latency`` has one count per :data:`LATENCY_BOUNDS_S` bucket;
    ``outcomes`` holds only the predictions that received feedback.
    """

    variant: str
    version: int
    expected_share: float
    requests: int
    errors: int
    missing_key: int
    latency: tuple[int, ...]
    outcomes: tuple[Outcome, ...]

    def validate(self) -> None:
        """Raise InvalidInputError for negative counts, more errors than requests, bad lengths."""
        name = shorten(self.variant, 40)
        for field_name in ("requests", "errors", "missing_key"):
            if getattr(self, field_name) < 0:
                raise InvalidInputError(f"variant {name!r}: {field_name} cannot be negative")
        if self.errors > self.requests or self.missing_key > self.requests:
            raise InvalidInputError(
                f"variant {name!r}: errors and missing_key cannot exceed requests"
            )
        if len(self.latency) != len(LATENCY_BOUNDS_S) or any(c < 0 for c in self.latency):
            raise InvalidInputError(
                f"variant {name!r}: latency needs {len(LATENCY_BOUNDS_S)} non-negative bucket "
                f"counts, got {len(self.latency)}"
            )
        if not (math.isfinite(self.expected_share) and 0 <= self.expected_share <= 1):
            raise InvalidInputError(f"variant {name!r}: expected_share must be between 0 and 1")


class Decision(enum.StrEnum):
    """The verdict of a report (see the module docstring for when each applies)."""

    TREATMENT_WINS = "treatment_wins"
    CONTROL_WINS = "control_wins"
    INCONCLUSIVE = "inconclusive"
    HARMFUL = "harmful"
    INVALID = "invalid"


@dataclass(frozen=True)
class MetricValue:
    """One variant's value of one metric over ``n`` observations (None without data)."""

    metric: Metric
    value: float | None
    n: int


@dataclass(frozen=True)
class VariantSummary:
    """One variant's row: its counts, error rate, p99 latency (ms) and metric values."""

    variant: str
    version: int
    expected_share: float
    requests: int
    errors: int
    error_rate: float | None
    p99_latency_ms: float | None
    missing_key: int
    feedback: int
    metrics: tuple[MetricValue, ...]


@dataclass(frozen=True)
class Comparison:
    """One treatment against control on one metric.

    ``effect`` is treatment - control; ``ci_low``/``ci_high`` and ``p_value``
    are the sequential (always-valid) ones when the report is sequential,
    else the fixed-horizon ones; both are also given separately. ``better``
    is True/False when significant (False: significantly worse), else None.
    ``min_sample_size`` is per arm; ``still_needed`` the observations per
    arm still missing. ``note`` says why numbers are missing. ``alpha`` is
    this comparison's level (the report's, split over the treatments).
    """

    treatment: str
    metric: Metric
    method: str | None
    alpha: float
    n_control: int
    n_treatment: int
    effect: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    significant: bool = False
    better: bool | None = None
    fixed_p_value: float | None = None
    fixed_ci_low: float | None = None
    fixed_ci_high: float | None = None
    sequential_p_value: float | None = None
    sequential_ci_low: float | None = None
    sequential_ci_high: float | None = None
    min_sample_size: int | None = None
    still_needed: int | None = None
    note: str | None = None


@dataclass(frozen=True)
class GuardrailCheck:
    """One treatment against one guardrail.

    ``observed`` is the treatment's error rate or p99 latency (ms);
    ``bound`` is the always-valid lower bound of the error rate (None for
    latency). ``breached`` needs :data:`MIN_GUARDRAIL_REQUESTS` requests.
    """

    treatment: str
    guardrail: Guardrail
    observed: float | None
    bound: float | None
    requests: int
    breached: bool


@dataclass(frozen=True)
class Report:
    """Everything ``ab status`` shows; :meth:`to_json` gives the JSON form."""

    primary_metric: Metric
    alpha: float
    sequential: bool
    variants: tuple[VariantSummary, ...]
    comparisons: tuple[Comparison, ...]
    srm: statistics.SrmResult
    guardrails: tuple[GuardrailCheck, ...]
    winner: str | None
    decision: Decision
    reason: str
    breaches: tuple[GuardrailCheck, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-safe values: NaN and infinities become None."""
        return {
            "primary_metric": str(self.primary_metric),
            "alpha": self.alpha,
            "sequential": self.sequential,
            "decision": str(self.decision),
            "reason": self.reason,
            "winner": self.winner,
            "variants": [
                {
                    "variant": v.variant,
                    "version": v.version,
                    "expected_share": _finite(v.expected_share),
                    "requests": v.requests,
                    "errors": v.errors,
                    "error_rate": _finite(v.error_rate),
                    "p99_latency_ms": _finite(v.p99_latency_ms),
                    "missing_key": v.missing_key,
                    "feedback": v.feedback,
                    "metrics": {
                        str(m.metric): {"value": _finite(m.value), "n": m.n} for m in v.metrics
                    },
                }
                for v in self.variants
            ],
            "comparisons": [
                {
                    "treatment": c.treatment,
                    "metric": str(c.metric),
                    "method": c.method,
                    "alpha": c.alpha,
                    "n_control": c.n_control,
                    "n_treatment": c.n_treatment,
                    "effect": _finite(c.effect),
                    "ci_low": _finite(c.ci_low),
                    "ci_high": _finite(c.ci_high),
                    "p_value": _finite(c.p_value),
                    "significant": c.significant,
                    "better": c.better,
                    "fixed": {
                        "p_value": _finite(c.fixed_p_value),
                        "ci_low": _finite(c.fixed_ci_low),
                        "ci_high": _finite(c.fixed_ci_high),
                    },
                    "sequential": {
                        "p_value": _finite(c.sequential_p_value),
                        "ci_low": _finite(c.sequential_ci_low),
                        "ci_high": _finite(c.sequential_ci_high),
                    },
                    "min_sample_size": c.min_sample_size,
                    "still_needed": c.still_needed,
                    "note": c.note,
                }
                for c in self.comparisons
            ],
            "srm": {
                "chi2": _finite(self.srm.chi2),
                "p_value": _finite(self.srm.p_value),
                "flagged": self.srm.flagged,
            },
            "guardrails": [_guardrail_json(g) for g in self.guardrails],
            "breaches": [_guardrail_json(g) for g in self.breaches],
        }


def _guardrail_json(check: GuardrailCheck) -> dict[str, Any]:
    return {
        "treatment": check.treatment,
        "guardrail": str(check.guardrail),
        "metric": str(check.guardrail.metric),
        "limit": check.guardrail.limit,
        "observed": _finite(check.observed),
        "bound": _finite(check.bound),
        "requests": check.requests,
        "breached": check.breached,
    }


def _finite(number: float | None) -> float | None:
    if number is None or not math.isfinite(number):
        return None
    return float(number)


# --- per-variant metric values -------------------------------------------------------------

_TRUE_LABELS = frozenset({"1", "1.0", "true", "yes", "positive"})
_FALSE_LABELS = frozenset({"0", "0.0", "false", "no", "negative"})


def _as_float(value: float | str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _binary(label: float | str | None) -> int | None:
    """1, 0, or None for a label that is not binary."""
    if isinstance(label, str):
        text = label.strip().lower()
        return 1 if text in _TRUE_LABELS else 0 if text in _FALSE_LABELS else None
    number = _as_float(label)
    return None if number is None or number not in (0.0, 1.0) else int(number)


def _matches(prediction: float | str, label: float | str) -> bool:
    a, b = _as_float(prediction), _as_float(label)
    if a is not None and b is not None:
        return a == b
    return str(prediction) == str(label)


def _converted(outcome: Outcome) -> bool | None:
    """Whether an outcome counts as a conversion; None when it says nothing."""
    if outcome.label is None and outcome.value is None:
        return None
    positive_label = outcome.label is not None and (
        _binary(outcome.label) == 1 or (_as_float(outcome.label) or 0.0) > 0
    )
    return positive_label or (outcome.value is not None and outcome.value > 0)


@dataclass(frozen=True)
class _Sample:
    """What a metric's test needs from one arm."""

    successes: int = 0  # rates
    n: int = 0
    values: tuple[float, ...] = ()  # means
    scores: tuple[float, ...] = ()  # AUC
    labels: tuple[int, ...] = ()

    def value(self, metric: Metric) -> float | None:
        if metric is Metric.VALUE:
            return sum(self.values) / len(self.values) if self.values else None
        if metric is Metric.AUC:
            try:
                return statistics.delong_auc(self.scores, self.labels)[0]
            except InvalidInputError:
                return None
        return self.successes / self.n if self.n else None


def _sample(data: VariantData, metric: Metric) -> _Sample:
    if metric is Metric.ERROR_RATE:
        return _Sample(successes=data.errors, n=data.requests)
    return _outcome_sample(metric, data.outcomes)


def _outcome_sample(metric: Metric, outcomes: Sequence[Outcome]) -> _Sample:
    """What ``metric`` needs from ``outcomes`` (every metric but ``error_rate``)."""
    if metric is Metric.ACCURACY:
        judged = [
            _matches(o.prediction, o.label)
            for o in outcomes
            if o.prediction is not None and o.label is not None
        ]
        return _Sample(successes=sum(judged), n=len(judged))
    if metric is Metric.CONVERSION:
        flags = [c for c in map(_converted, outcomes) if c is not None]
        return _Sample(successes=sum(flags), n=len(flags))
    if metric is Metric.VALUE:
        values = tuple(
            float(o.value) for o in outcomes if o.value is not None and math.isfinite(o.value)
        )
        return _Sample(n=len(values), values=values)
    pairs = [(_as_float(o.prediction), _binary(o.label)) for o in outcomes]
    kept = [(s, y) for s, y in pairs if s is not None and math.isfinite(s) and y is not None]
    return _Sample(n=len(kept), scores=tuple(s for s, _ in kept), labels=tuple(y for _, y in kept))


def running_values(
    metric: Metric, outcomes: Sequence[Outcome], cuts: Sequence[int]
) -> list[float | None]:
    """``metric`` over ``outcomes[:cut]`` for each of the ascending ``cuts``.

    ``outcomes`` are in time order, so this is the metric as it stood at
    each cut (a cumulative curve). Rates and means add up slice by slice
    (one pass over the outcomes); AUC is recomputed at each cut. None where
    there is nothing to measure yet. ``error_rate`` is not an outcome metric
    (InvalidInputError): it comes from the counts.
    """
    if metric is Metric.ERROR_RATE:
        raise InvalidInputError("error_rate comes from the request counts, not from feedback")
    if metric is Metric.AUC:
        return [_outcome_sample(metric, outcomes[:cut]).value(metric) for cut in cuts]
    found: list[float | None] = []
    successes, n, total, start = 0, 0, 0.0, 0
    for cut in cuts:
        part = _outcome_sample(metric, outcomes[start:cut])
        successes += part.successes
        # Added one by one as the report's sum() adds them, so the last point is its value to
        # the bit; adding each slice's own sum would round differently.
        total = sum(part.values, total)
        n += part.n
        start = max(start, cut)
        numerator = total if metric is Metric.VALUE else successes
        found.append(numerator / n if n else None)
    return found


# --- comparisons ----------------------------------------------------------------------------


def _variance(values: tuple[float, ...]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


def _fixed_test(
    metric: Metric, control: _Sample, treatment: _Sample, alpha: float
) -> tuple[statistics.Estimate, float, float]:
    """The fixed-horizon estimate, one observation's variance (both arms' mean), control's.

    The first variance scales the mSPRT's mixture, the second the sample size.
    Raises InvalidInputError when an arm has too little data for the test.
    """
    if metric is Metric.VALUE:
        if len(control.values) < 2 or len(treatment.values) < 2:
            raise InvalidInputError("needs at least two values per arm")
        var_c, var_t = _variance(control.values), _variance(treatment.values)
        estimate = statistics.welch_ttest(
            control.value(metric) or 0.0,
            var_c,
            control.n,
            treatment.value(metric) or 0.0,
            var_t,
            treatment.n,
            alpha=alpha,
        )
        return estimate, (var_c + var_t) / 2, var_c
    if metric is Metric.AUC:
        estimate = statistics.auc_difference_delong(
            control.scores, control.labels, treatment.scores, treatment.labels, alpha=alpha
        )
        # One observation's variance implied by each arm's DeLong variance (V · n).
        _, var_c = statistics.delong_auc(control.scores, control.labels)
        _, var_t = statistics.delong_auc(treatment.scores, treatment.labels)
        return estimate, (var_c * control.n + var_t * treatment.n) / 2, var_c * control.n
    if control.n == 0 or treatment.n == 0:
        raise InvalidInputError("needs at least one observation per arm")
    estimate = statistics.two_proportion_ztest(
        control.successes, control.n, treatment.successes, treatment.n, alpha=alpha
    )
    p_c, p_t = estimate.control, estimate.treatment
    return estimate, (p_c * (1 - p_c) + p_t * (1 - p_t)) / 2, p_c * (1 - p_c)


def _min_sample_size(
    metric: Metric,
    estimate: statistics.Estimate,
    control_var: float,
    mde: float | None,
    power: float,
    alpha: float,
) -> int | None:
    try:
        if mde is None:
            return statistics.sample_size_for_effect_size(
                DEFAULT_MDE_EFFECT_SIZE, alpha=alpha, power=power
            )
        if metric in (Metric.VALUE, Metric.AUC):
            return statistics.sample_size_mean(
                math.sqrt(control_var), mde, alpha=alpha, power=power
            )
        baseline = estimate.control
        # The improvement worth detecting: a drop for error rates, a rise otherwise (or the
        # other way when the baseline leaves no room).
        shift = -mde if metric is Metric.ERROR_RATE else mde
        if not 0 <= baseline + shift <= 1:
            shift = -shift
        return statistics.sample_size_proportion(baseline, shift, alpha=alpha, power=power)
    except InvalidInputError:
        return None


def _compare(
    metric: Metric,
    name: str,
    control: _Sample,
    treatment: _Sample,
    *,
    alpha: float,
    sequential: bool,
    mde: float | None,
    power: float,
) -> Comparison:
    try:
        estimate, observation_var, control_var = _fixed_test(metric, control, treatment, alpha)
    except InvalidInputError as error:
        return Comparison(
            name,
            metric,
            None,
            alpha,
            control.n,
            treatment.n,
            note=f"not enough data: {error.message}",
        )
    tau2 = float(statistics.mixture_variance(observation_var))
    seq = statistics.msprt(estimate.effect, estimate.std_error**2, tau2=tau2, alpha=alpha)
    seq_p, seq_low, seq_high = float(seq.p_value), float(seq.ci_low), float(seq.ci_high)
    if sequential:
        p_value, low, high = seq_p, seq_low, seq_high
        method = f"mSPRT (always valid) on {estimate.method}"
    else:
        p_value, low, high = estimate.p_value, estimate.ci_low, estimate.ci_high
        method = estimate.method
    significant = p_value < alpha and estimate.effect != 0
    higher_is_better = metric is not Metric.ERROR_RATE
    better = ((estimate.effect > 0) == higher_is_better) if significant else None
    needed = _min_sample_size(metric, estimate, control_var, mde, power, alpha)
    return Comparison(
        name,
        metric,
        method,
        alpha,
        control.n,
        treatment.n,
        effect=estimate.effect,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        significant=significant,
        better=better,
        fixed_p_value=estimate.p_value,
        fixed_ci_low=estimate.ci_low,
        fixed_ci_high=estimate.ci_high,
        sequential_p_value=seq_p,
        sequential_ci_low=seq_low,
        sequential_ci_high=seq_high,
        min_sample_size=needed,
        still_needed=None
        if needed is None
        else statistics.still_needed(needed, min(control.n, treatment.n)),
    )


# --- guardrails -----------------------------------------------------------------------------


def _p99_ms(data: VariantData) -> float | None:
    seconds = statistics.quantile_from_buckets(data.latency, P99)
    return None if seconds is None else seconds * 1000


def _check_guardrail(data: VariantData, guardrail: Guardrail, alpha: float) -> GuardrailCheck:
    enough = data.requests >= MIN_GUARDRAIL_REQUESTS
    if guardrail.metric is GuardrailMetric.P99_LATENCY_MS:
        observed = _p99_ms(data)
        breached = enough and observed is not None and observed > guardrail.limit
        return GuardrailCheck(data.variant, guardrail, observed, None, data.requests, breached)
    if data.requests == 0:
        return GuardrailCheck(data.variant, guardrail, None, None, 0, False)
    rate = data.errors / data.requests
    limit = min(guardrail.limit, 1.0)
    # The variance at the limit (the null "rate <= limit"), never 0: the lower bound of the
    # confidence sequence is above the limit exactly when the mSPRT rejects rate <= limit.
    variance = limit * (1 - limit) / data.requests
    bound: float | None = None
    if variance > 0:
        tau2 = float(statistics.mixture_variance(limit * (1 - limit)))
        bound = max(0.0, float(statistics.msprt(rate, variance, tau2=tau2, alpha=alpha).ci_low))
    breached = enough and bound is not None and bound > limit
    return GuardrailCheck(data.variant, guardrail, rate, bound, data.requests, breached)


# --- the report -----------------------------------------------------------------------------


def _validate(
    variants: Sequence[VariantData],
    metrics: Sequence[Metric],
    alpha: float,
    mde: float | None,
    power: float,
) -> None:
    if not variants:
        raise InvalidInputError("a report needs at least the control variant")
    if not metrics:
        raise InvalidInputError("name at least one metric; the first is the primary one")
    names = [v.variant for v in variants]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"variant names must be distinct: {names}")
    for variant in variants:
        variant.validate()
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    if not 0 < power < 1:
        raise InvalidInputError(f"power must be between 0 and 1 (exclusive), got {power}")
    if mde is not None and not (math.isfinite(mde) and mde > 0):
        raise InvalidInputError(f"the minimum detectable effect must be above 0, got {mde}")


def _decide(
    srm: statistics.SrmResult,
    breaches: tuple[GuardrailCheck, ...],
    primary: list[Comparison],
) -> tuple[Decision, str | None, str]:
    if srm.flagged:
        return (
            Decision.INVALID,
            None,
            f"sample ratio mismatch (chi-square p = {srm.p_value:.2g} < "
            f"{statistics.SRM_THRESHOLD:g}): the split is broken; fix routing first",
        )
    if breaches:
        listed = ", ".join(f"{b.treatment} {b.guardrail}" for b in breaches)
        return Decision.HARMFUL, None, f"guardrail breached: {listed}"
    if not primary:
        return Decision.INCONCLUSIVE, None, "no treatment to compare with control"
    winners = [c for c in primary if c.better is True]
    if winners:
        best = max(winners, key=lambda c: abs(c.effect or 0.0))
        return (
            Decision.TREATMENT_WINS,
            best.treatment,
            f"{best.treatment} is better than control on {best.metric} "
            f"(effect {best.effect:+.4g}, p = {best.p_value:.2g})",
        )
    if all(c.better is False for c in primary):
        return (
            Decision.CONTROL_WINS,
            None,
            f"every treatment is worse than control on {primary[0].metric}",
        )
    missing = [c for c in primary if c.method is None]
    if missing:
        return (
            Decision.INCONCLUSIVE,
            None,
            f"not enough data on {primary[0].metric} for "
            + ", ".join(c.treatment for c in missing),
        )
    needed = max((c.still_needed or 0) for c in primary)
    more = f"; about {needed} more observations per arm needed" if needed else ""
    return (
        Decision.INCONCLUSIVE,
        None,
        f"no significant difference on {primary[0].metric} yet{more}",
    )


def build_report(
    variants: Sequence[VariantData],
    *,
    metrics: Sequence[Metric],
    guardrails: Sequence[Guardrail],
    alpha: float = 0.05,
    sequential: bool = True,
    mde: float | None = None,
    power: float = 0.8,
) -> Report:
    """The report of an experiment; ``variants[0]`` is control, the first metric the primary one.

    Metrics per variant: ``accuracy`` is the share of outcomes whose label
    equals the prediction (compared as numbers when both are, else as
    text); ``conversion`` the share of outcomes with a positive label (1,
    true, yes, any number > 0) or a value > 0; ``value`` the mean value;
    ``auc`` the AUC of the (numeric) prediction against a binary label;
    ``error_rate`` errors / requests (lower is better). Rates use the
    two-proportion z-test, ``value`` Welch's t-test, ``auc`` DeLong. With
    ``sequential`` (the default) significance is judged by the always-valid
    mSPRT, safe to look at every day; else by the fixed-horizon test. With
    several treatments each comparison is made at ``alpha / treatments``
    (Bonferroni), so the chance of any false winner stays under ``alpha``.
    ``mde`` is the minimum detectable effect in the primary metric's units
    (absolute), for the sample size; without it a standardised effect of
    :data:`DEFAULT_MDE_EFFECT_SIZE`. Guardrails are judged per treatment
    (:class:`GuardrailCheck`). Variants with no data give "not enough
    data" notes, never an error. Raises InvalidInputError for negative
    counts, latency of the wrong length, duplicate variants, no metric, or
    alpha, power or mde out of range.
    """
    _validate(variants, metrics, alpha, mde, power)
    ordered = list(dict.fromkeys(metrics))
    samples: Mapping[str, Mapping[Metric, _Sample]] = {
        v.variant: {m: _sample(v, m) for m in ordered} for v in variants
    }
    summaries = tuple(
        VariantSummary(
            variant=v.variant,
            version=v.version,
            expected_share=v.expected_share,
            requests=v.requests,
            errors=v.errors,
            error_rate=v.errors / v.requests if v.requests else None,
            p99_latency_ms=_p99_ms(v),
            missing_key=v.missing_key,
            feedback=len(v.outcomes),
            metrics=tuple(
                MetricValue(m, samples[v.variant][m].value(m), samples[v.variant][m].n)
                for m in ordered
            ),
        )
        for v in variants
    )
    control, treatments = variants[0], variants[1:]
    comparisons = tuple(
        _compare(
            m,
            t.variant,
            samples[control.variant][m],
            samples[t.variant][m],
            alpha=alpha / max(1, len(treatments)),  # Bonferroni over the treatments
            sequential=sequential,
            mde=mde if m is ordered[0] else None,  # mde is in the primary metric's units
            power=power,
        )
        for t in treatments
        for m in ordered
    )
    srm = statistics.sample_ratio_mismatch(
        [v.requests for v in variants], [v.expected_share for v in variants]
    )
    checks = tuple(_check_guardrail(t, g, alpha) for t in treatments for g in guardrails)
    breaches = tuple(c for c in checks if c.breached)
    primary = [c for c in comparisons if c.metric is ordered[0]]
    decision, winner, reason = _decide(srm, breaches, primary)
    return Report(
        primary_metric=ordered[0],
        alpha=alpha,
        sequential=sequential,
        variants=summaries,
        comparisons=comparisons,
        srm=srm,
        guardrails=checks,
        winner=winner,
        decision=decision,
        reason=reason,
        breaches=breaches,
    )
