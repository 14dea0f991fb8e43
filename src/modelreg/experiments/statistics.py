"""The statistics behind A/B verdicts: fixed-horizon tests, an always-valid test, SRM, power.

Every function is pure. Differences are always *treatment - control*.
scipy and statsmodels supply the distributions and the classical tests;
this module adds only what they lack: DeLong's AUC variance, the mSPRT
(mixture sequential probability ratio test) with its confidence sequence,
sample-size wrappers and quantiles from latency buckets.

Estimates from each test are returned as :class:`Estimate` (effect, its
standard error, a confidence interval, a p-value). The sequential test takes
an effect and its variance, so any of them can be watched sequentially.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import numpy.typing as npt
from scipy import stats

from modelreg.errors import InvalidInputError
from modelreg.experiments.definition import LATENCY_BOUNDS_S

SRM_THRESHOLD = 0.001
"""A sample ratio mismatch is flagged when the chi-square p-value is below this."""

DEFAULT_MIXTURE_SD = 0.1
"""The mSPRT mixing distribution's standard deviation, in units of one observation's
standard deviation: tau = 0.1 sigma tunes the test to effects of about a tenth of a
standard deviation (typical of A/B tests on models), see :func:`mixture_variance`."""

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Estimate:
    """An effect (treatment - control) with its standard error, CI and two-sided p-value.

    ``method`` names the test; ``control`` and ``treatment`` are the two
    arms' estimates (rates, means or AUCs) the effect is the difference of.
    """

    method: str
    control: float
    treatment: float
    effect: float
    std_error: float
    ci_low: float
    ci_high: float
    p_value: float


def _check_count(name: str, value: int) -> None:
    if value < 0:
        raise InvalidInputError(f"{name} must be a non-negative count, got {value}")


def _degenerate_p_value(effect: float) -> float:
    """The p-value when the standard error is 0: no evidence unless the arms truly differ.

    Rounding leaves differences like 1e-16 between equal estimates; they are no effect.
    """
    return 1.0 if abs(effect) < 1e-12 else 0.0


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    return float(stats.norm.ppf(1 - alpha / 2))


def two_proportion_ztest(
    x_control: int, n_control: int, x_treatment: int, n_treatment: int, *, alpha: float = 0.05
) -> Estimate:
    """Two-proportion z-test of treatment - control rates.

    The p-value uses the pooled-variance z statistic (as
    ``statsmodels.stats.proportion.proportions_ztest``); the confidence
    interval is the unpooled Wald interval (as
    ``statsmodels.stats.proportion.confint_proportions_2indep(method="wald")``).
    Both need ``n_control, n_treatment >= 1``; ``x <= n``. When both rates are
    0 or 1 the standard error is 0 and the p-value is 1 (no evidence).
    Raises InvalidInputError for negative counts, ``x > n`` or an empty arm.
    """
    for name, value in (
        ("x_control", x_control),
        ("n_control", n_control),
        ("x_treatment", x_treatment),
        ("n_treatment", n_treatment),
    ):
        _check_count(name, value)
    if n_control == 0 or n_treatment == 0:
        raise InvalidInputError("both arms need at least one observation")
    if x_control > n_control or x_treatment > n_treatment:
        raise InvalidInputError("successes cannot exceed observations")
    z_crit = _z(alpha)
    p_c, p_t = x_control / n_control, x_treatment / n_treatment
    effect = p_t - p_c
    pooled = (x_control + x_treatment) / (n_control + n_treatment)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_control + 1 / n_treatment))
    p_value = 1.0 if se_pooled == 0 else float(2 * stats.norm.sf(abs(effect) / se_pooled))
    se = math.sqrt(p_c * (1 - p_c) / n_control + p_t * (1 - p_t) / n_treatment)
    return Estimate(
        "two-proportion z-test (pooled p, Wald CI)",
        p_c,
        p_t,
        effect,
        se,
        effect - z_crit * se,
        effect + z_crit * se,
        p_value,
    )


def welch_ttest(
    mean_control: float,
    var_control: float,
    n_control: int,
    mean_treatment: float,
    var_treatment: float,
    n_treatment: int,
    *,
    alpha: float = 0.05,
) -> Estimate:
    """Welch's t-test of treatment - control means from summary statistics.

    ``var_*`` are sample variances (ddof=1). Degrees of freedom by
    Welch-Satterthwaite; the p-value is
    ``scipy.stats.ttest_ind_from_stats(equal_var=False)``, the CI is
    ``effect ± t(1 - alpha/2, df) · SE``. Needs ``n >= 2`` per arm; raises
    InvalidInputError otherwise or for a negative variance. With both
    variances 0 the p-value is 1 unless the means differ (then 0).
    """
    _z(alpha)
    if n_control < 2 or n_treatment < 2:
        raise InvalidInputError("Welch's t-test needs at least two observations per arm")
    if var_control < 0 or var_treatment < 0:
        raise InvalidInputError("variances cannot be negative")
    effect = mean_treatment - mean_control
    a, b = var_control / n_control, var_treatment / n_treatment
    se = math.sqrt(a + b)
    if se == 0:
        p_value = _degenerate_p_value(effect)
        return Estimate(
            "Welch's t-test", mean_control, mean_treatment, effect, 0.0, effect, effect, p_value
        )
    df = (a + b) ** 2 / (a**2 / (n_control - 1) + b**2 / (n_treatment - 1))
    result = stats.ttest_ind_from_stats(
        mean_treatment,
        math.sqrt(var_treatment),
        n_treatment,
        mean_control,
        math.sqrt(var_control),
        n_control,
        equal_var=False,
    )
    t_crit = float(stats.t.ppf(1 - alpha / 2, df))
    return Estimate(
        "Welch's t-test",
        mean_control,
        mean_treatment,
        effect,
        se,
        effect - t_crit * se,
        effect + t_crit * se,
        float(result.pvalue),
    )


def _split_by_label(
    scores: Sequence[float], labels: Sequence[int]
) -> tuple[FloatArray, FloatArray]:
    score_array = np.asarray(scores, dtype=np.float64)
    label_array = np.asarray(labels)
    if score_array.shape != label_array.shape or score_array.ndim != 1:
        raise InvalidInputError("scores and labels must be two sequences of the same length")
    if not np.all(np.isin(label_array, (0, 1))):
        raise InvalidInputError("AUC labels must be 0 or 1")
    if not np.all(np.isfinite(score_array)):
        raise InvalidInputError("AUC scores must be finite numbers")
    positives = score_array[label_array == 1]
    negatives = score_array[label_array == 0]
    if positives.size < 2 or negatives.size < 2:
        raise InvalidInputError("AUC needs at least two positive and two negative labels")
    return positives, negatives


def delong_auc(scores: Sequence[float], labels: Sequence[int]) -> tuple[float, float]:
    """The AUC of ``scores`` for binary ``labels`` (0/1) and its DeLong variance.

    DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or
    more correlated ROC curves", Biometrics 44(3); computed with midranks as in
    Sun & Xu (2014), "Fast implementation of DeLong's algorithm", IEEE Signal
    Processing Letters 21(11). Ties count one half (the Mann-Whitney AUC).
    Returns ``(auc, variance)``. Needs at least two labels of each class;
    raises InvalidInputError otherwise, or for mismatched lengths.
    """
    positives, negatives = _split_by_label(scores, labels)
    m, n = positives.size, negatives.size
    tx = stats.rankdata(positives)
    ty = stats.rankdata(negatives)
    tz = stats.rankdata(np.concatenate([positives, negatives]))
    auc = float(tz[:m].sum() / (m * n) - (m + 1) / (2 * n))
    v01 = (tz[:m] - tx) / n  # each positive's share of negatives it outranks
    v10 = 1 - (tz[m:] - ty) / m  # each negative's share of positives outranking it
    variance = float(np.var(v01, ddof=1) / m + np.var(v10, ddof=1) / n)
    return auc, variance


def auc_difference_delong(
    control_scores: Sequence[float],
    control_labels: Sequence[int],
    treatment_scores: Sequence[float],
    treatment_labels: Sequence[int],
    *,
    alpha: float = 0.05,
) -> Estimate:
    """Treatment - control AUC on two independent samples, z-test with DeLong variances.

    The samples are independent (different users), so the variance of the
    difference is the sum of each AUC's DeLong variance (:func:`delong_auc`).
    """
    z_crit = _z(alpha)
    auc_c, var_c = delong_auc(control_scores, control_labels)
    auc_t, var_t = delong_auc(treatment_scores, treatment_labels)
    effect = auc_t - auc_c
    se = math.sqrt(var_c + var_t)
    p_value = _degenerate_p_value(effect) if se == 0 else float(2 * stats.norm.sf(abs(effect) / se))
    return Estimate(
        "DeLong AUC z-test",
        auc_c,
        auc_t,
        effect,
        se,
        effect - z_crit * se,
        effect + z_crit * se,
        p_value,
    )


def _bootstrap_aucs(
    positives: FloatArray, negatives: FloatArray, resamples: int, rng: np.random.Generator
) -> FloatArray:
    m, n = positives.size, negatives.size
    pos = positives[rng.integers(0, m, size=(resamples, m))]
    neg = negatives[rng.integers(0, n, size=(resamples, n))]
    ranks = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs: FloatArray = (ranks[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    return aucs


def auc_difference_bootstrap(
    control_scores: Sequence[float],
    control_labels: Sequence[int],
    treatment_scores: Sequence[float],
    treatment_labels: Sequence[int],
    *,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
) -> Estimate:
    """Treatment - control AUC by a stratified bootstrap (seeded, so reproducible).

    Each arm's positives and negatives are resampled separately (Efron &
    Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13; stratifying
    keeps both classes in every resample). The CI is the percentile interval
    of the resampled differences; the standard error is their standard
    deviation and the p-value the normal-approximation two-sided one.
    """
    _z(alpha)  # validates alpha; the percentile interval needs no critical value
    if resamples < 100:
        raise InvalidInputError(f"use at least 100 bootstrap resamples, got {resamples}")
    rng = np.random.default_rng(seed)
    pos_c, neg_c = _split_by_label(control_scores, control_labels)
    pos_t, neg_t = _split_by_label(treatment_scores, treatment_labels)
    auc_c, _ = delong_auc(control_scores, control_labels)
    auc_t, _ = delong_auc(treatment_scores, treatment_labels)
    differences = _bootstrap_aucs(pos_t, neg_t, resamples, rng) - _bootstrap_aucs(
        pos_c, neg_c, resamples, rng
    )
    effect = auc_t - auc_c
    se = float(np.std(differences, ddof=1))
    low, high = np.quantile(differences, [alpha / 2, 1 - alpha / 2])
    p_value = _degenerate_p_value(effect) if se == 0 else float(2 * stats.norm.sf(abs(effect) / se))
    return Estimate("bootstrap AUC", auc_c, auc_t, effect, se, float(low), float(high), p_value)


@dataclass(frozen=True)
class SequentialResult:
    """An always-valid p-value and confidence sequence (arrays when given arrays)."""

    p_value: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray


def mixture_variance(
    observation_variance: float | FloatArray, mixture_sd: float = DEFAULT_MIXTURE_SD
) -> FloatArray:
    """tau² of the mSPRT's normal mixture: ``(mixture_sd · sigma)²``.

    ``observation_variance`` is sigma², one observation's variance (e.g.
    p(1 - p) for a rate); :data:`DEFAULT_MIXTURE_SD` documents the default.
    """
    return np.asarray(observation_variance, dtype=np.float64) * mixture_sd**2


@overload
def msprt(
    effect: float, variance: float, *, tau2: float, alpha: float = ...
) -> SequentialResult: ...
@overload
def msprt(
    effect: FloatArray, variance: FloatArray, *, tau2: float | FloatArray, alpha: float = ...
) -> SequentialResult: ...
def msprt(
    effect: float | FloatArray,
    variance: float | FloatArray,
    *,
    tau2: float | FloatArray,
    alpha: float = 0.05,
) -> SequentialResult:
    """Always-valid p-value and confidence sequence of an effect by the normal-mixture mSPRT.

    Johari, Pekelis & Walsh (2017), "Always valid inference: Bringing
    sequential analysis to A/B testing", arXiv:1512.04922, section 4 (the
    normal mixture), with the estimate treated as normal: ``effect ~ N(theta,
    variance)`` where ``variance`` is the estimate's squared standard error
    (estimated, e.g. p(1 - p)/n summed over arms). With ``tau2`` the mixing
    variance (effect units²; see :func:`mixture_variance`) the likelihood ratio
    against ``theta = theta0`` is::

        Lambda = sqrt(V / (V + tau2)) · exp(tau2 · (effect - theta0)² / (2 V (V + tau2)))

    The p-value is ``min(1, 1 / Lambda(0))`` and the confidence sequence is
    every theta0 with ``Lambda(theta0) < 1 / alpha``::

        effect ± sqrt(V (V + tau2) / tau2 · (2 log(1 / alpha) + log((V + tau2) / V)))

    Both hold at every look, however often one looks: under no effect the
    chance that the p-value ever falls below alpha is at most alpha. (The
    paper's running minimum over looks would be a little smaller; this
    stateless version is the current look's value, which is conservative.)
    Works elementwise on arrays. A zero variance gives p = 1 and an infinite
    interval (no information yet).
    """
    if not 0 < alpha < 1:
        raise InvalidInputError(f"alpha must be between 0 and 1 (exclusive), got {alpha}")
    theta = np.asarray(effect, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    t2 = np.asarray(tau2, dtype=np.float64)
    informative = (v > 0) & (t2 > 0)
    safe_v = np.where(informative, v, 1.0)
    safe_t2 = np.where(informative, t2, 1.0)
    log_lambda = 0.5 * np.log(safe_v / (safe_v + safe_t2)) + safe_t2 * theta**2 / (
        2 * safe_v * (safe_v + safe_t2)
    )
    p_value = np.where(informative, np.minimum(1.0, np.exp(-log_lambda)), 1.0)
    half = np.sqrt(
        safe_v
        * (safe_v + safe_t2)
        / safe_t2
        * (2 * math.log(1 / alpha) + np.log((safe_v + safe_t2) / safe_v))
    )
    half = np.where(informative, half, np.inf)
    return SequentialResult(p_value, theta - half, theta + half)


@dataclass(frozen=True)
class SrmResult:
    """A sample-ratio-mismatch check: chi-square statistic, p-value, flagged below the threshold."""

    chi2: float
    p_value: float
    flagged: bool


def sample_ratio_mismatch(
    observed: Sequence[int], expected_shares: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square goodness of fit of observed counts per variant against expected shares.

    ``scipy.stats.chisquare`` (Fabijan et al. 2019, "Diagnosing sample ratio
    mismatch in online controlled experiments", KDD); flagged at p <
    ``threshold`` (0.001: the check runs on every look, so it must rarely
    fire by chance). Shares are normalised to sum to 1. No traffic yet gives
    p = 1. Traffic in a variant whose expected share is 0 is flagged (chi2 and
    p as inf and 0). Raises InvalidInputError for mismatched lengths, negative
    counts or shares, or shares summing to 0.
    """
    counts = np.asarray(observed, dtype=np.float64)
    shares = np.asarray(expected_shares, dtype=np.float64)
    if counts.shape != shares.shape or counts.ndim != 1 or counts.size == 0:
        raise InvalidInputError("observed counts and expected shares must have the same length")
    if np.any(counts < 0) or np.any(shares < 0) or not np.all(np.isfinite(shares)):
        raise InvalidInputError("counts and shares must be non-negative")
    if shares.sum() <= 0:
        raise InvalidInputError("expected shares must not all be 0")
    total = counts.sum()
    if total == 0:
        return SrmResult(0.0, 1.0, False)
    if np.any(counts[shares == 0] > 0):
        return SrmResult(math.inf, 0.0, True)
    kept = shares > 0
    if kept.sum() < 2:
        return SrmResult(0.0, 1.0, False)
    expected = shares[kept] / shares[kept].sum() * total
    result = stats.chisquare(counts[kept], expected)
    p_value = float(result.pvalue)
    return SrmResult(float(result.statistic), p_value, p_value < threshold)


def _check_power(alpha: float, power: float) -> None:
    _z(alpha)
    if not 0 < power < 1:
        raise InvalidInputError(f"power must be between 0 and 1 (exclusive), got {power}")


def sample_size_for_effect_size(
    effect_size: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Observations per arm for a two-sided z-test to detect a standardised effect (Cohen's d or h).

    ``statsmodels.stats.power.NormalIndPower().solve_power`` with equal arms,
    rounded up. Raises InvalidInputError for a non-positive effect size.
    """
    _check_power(alpha, power)
    if not (math.isfinite(effect_size) and effect_size != 0):
        raise InvalidInputError(f"the effect size must be finite and non-zero, got {effect_size}")
    # Imported here: statsmodels costs ~0.4 s at import and only sample sizes need it.
    from statsmodels.stats.power import NormalIndPower

    n = NormalIndPower().solve_power(
        effect_size=abs(effect_size), alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return math.ceil(float(np.asarray(n)))


def sample_size_proportion(
    baseline: float, mde: float, *, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Observations per arm to detect a rate moving from ``baseline`` to ``baseline + mde``.

    Cohen's h (``statsmodels.stats.proportion.proportion_effectsize``) fed to
    :func:`sample_size_for_effect_size`. ``baseline`` and ``baseline + mde``
    must lie in [0, 1] and differ; InvalidInputError otherwise.
    """
    from statsmodels.stats.proportion import proportion_effectsize

    target = baseline + mde
    if not (0 <= baseline <= 1 and 0 <= target <= 1) or mde == 0:
        raise InvalidInputError(
            f"baseline {baseline} and baseline + mde {target} must be distinct rates in [0, 1]"
        )
    return sample_size_for_effect_size(
        float(proportion_effectsize(target, baseline)), alpha=alpha, power=power
    )


def sample_size_mean(std: float, mde: float, *, alpha: float = 0.05, power: float = 0.8) -> int:
    """Observations per arm to detect a shift ``mde`` in a mean with standard deviation ``std``.

    Cohen's d = mde / std fed to :func:`sample_size_for_effect_size` (the
    normal approximation of ``statsmodels.stats.power.zt_ind_solve_power``).
    """
    if not (std > 0 and math.isfinite(std)):
        raise InvalidInputError(f"the standard deviation must be positive, got {std}")
    return sample_size_for_effect_size(mde / std, alpha=alpha, power=power)


def still_needed(needed: int, have: int) -> int:
    """How many more observations per arm: ``max(0, needed - have)``."""
    return max(0, needed - have)


def quantile_from_buckets(
    counts: Sequence[int], q: float, bounds: Sequence[float] = LATENCY_BOUNDS_S
) -> float | None:
    """The ``q`` quantile (0 to 1) of values counted in buckets with inclusive upper ``bounds``.

    As Prometheus' ``histogram_quantile``: the rank ``q · total`` is found by
    linear interpolation inside its bucket (the first bucket starts at 0);
    a rank in the last, +inf bucket reports the last finite bound. Units are
    the bounds' (seconds for :data:`LATENCY_BOUNDS_S`). None when nothing was
    counted. Raises InvalidInputError for a length mismatch, a negative
    count or q outside [0, 1].
    """
    if len(counts) != len(bounds):
        raise InvalidInputError(
            f"expected {len(bounds)} bucket counts (one per bound), got {len(counts)}"
        )
    if not 0 <= q <= 1:
        raise InvalidInputError(f"the quantile must be between 0 and 1, got {q}")
    if any(c < 0 for c in counts):
        raise InvalidInputError("bucket counts must be non-negative")
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    below = 0
    lower = 0.0
    for count, upper in zip(counts, bounds, strict=True):
        if count > 0 and below + count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - below) / count
        below += count
        if not math.isinf(upper):
            lower = upper
    return lower
