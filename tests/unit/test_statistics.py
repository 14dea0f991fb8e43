"""The A/B statistics against scipy, statsmodels, sklearn and published examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
    proportions_ztest,
)

from modelreg.errors import InvalidInputError
from modelreg.experiments import statistics as s
from modelreg.experiments.definition import LATENCY_BOUNDS_S

# --- two-proportion z-test ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x_c", "n_c", "x_t", "n_t"),
    [(100, 1000, 130, 1000), (50, 400, 41, 390), (3, 20, 9, 25), (970, 10_000, 1020, 9_800)],
)
def test_ztest_matches_statsmodels(x_c: int, n_c: int, x_t: int, n_t: int) -> None:
    result = s.two_proportion_ztest(x_c, n_c, x_t, n_t)
    _, p_value = proportions_ztest([x_t, x_c], [n_t, n_c])
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff")
    assert result.effect == pytest.approx(x_t / n_t - x_c / n_c)
    assert result.p_value == pytest.approx(p_value, rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_ztest_equal_degenerate_rates_give_no_evidence() -> None:
    result = s.two_proportion_ztest(0, 100, 0, 50)
    assert result.p_value == 1.0
    assert result.effect == 0.0


@pytest.mark.parametrize("args", [(-1, 10, 1, 10), (11, 10, 1, 10), (1, 0, 1, 10), (1, 10, 1, 0)])
def test_ztest_rejects_bad_counts(args: tuple[int, int, int, int]) -> None:
    with pytest.raises(InvalidInputError):
        s.two_proportion_ztest(*args)


# --- Welch ----------------------------------------------------------------------------------


def test_welch_matches_scipy_on_samples() -> None:
    rng = np.random.default_rng(3)
    control = rng.normal(10.0, 2.0, size=40)
    treatment = rng.normal(11.0, 4.0, size=25)
    result = s.welch_ttest(
        control.mean(), control.var(ddof=1), 40, treatment.mean(), treatment.var(ddof=1), 25
    )
    reference = stats.ttest_ind(treatment, control, equal_var=False)
    ci = reference.confidence_interval(0.95)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (result.ci_low, result.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    from_stats = stats.ttest_ind_from_stats(
        treatment.mean(), treatment.std(ddof=1), 25, control.mean(), control.std(ddof=1), 40,
        equal_var=False,
    )  # fmt: skip
    assert result.p_value == pytest.approx(from_stats.pvalue, rel=1e-12)


def test_welch_published_example() -> None:
    # Wikipedia's "Welch's t-test", example 1: A1 against A2 gives t = -2.46, df = 25.0,
    # p = 0.021 (here A2 is the treatment, so t is positive).
    a1 = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    a2 = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    result = s.welch_ttest(
        float(np.mean(a1)), float(np.var(a1, ddof=1)), 15,
        float(np.mean(a2)), float(np.var(a2, ddof=1)), 15,
    )  # fmt: skip
    assert result.effect / result.std_error == pytest.approx(2.46, abs=0.01)
    assert result.p_value == pytest.approx(0.021, abs=0.001)


def test_welch_needs_two_observations() -> None:
    with pytest.raises(InvalidInputError):
        s.welch_ttest(1.0, 1.0, 1, 2.0, 1.0, 10)
    with pytest.raises(InvalidInputError):
        s.welch_ttest(1.0, -1.0, 5, 2.0, 1.0, 10)


# --- AUC ------------------------------------------------------------------------------------


def _scored(rng: np.random.Generator, n: int, shift: float) -> tuple[list[float], list[int]]:
    labels = rng.integers(0, 2, size=n)
    scores = rng.normal(0, 1, size=n) + shift * labels
    return scores.round(1).tolist(), labels.tolist()  # rounding makes ties


def test_delong_auc_matches_sklearn_and_bootstrap_variance() -> None:
    rng = np.random.default_rng(7)
    scores, labels = _scored(rng, 300, 1.0)
    auc, variance = s.delong_auc(scores, labels)
    assert auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    positives = np.array([x for x, y in zip(scores, labels, strict=True) if y == 1])
    negatives = np.array([x for x, y in zip(scores, labels, strict=True) if y == 0])
    boot = [
        roc_auc_score(
            [1] * positives.size + [0] * negatives.size,
            np.concatenate(
                [rng.choice(positives, positives.size), rng.choice(negatives, negatives.size)]
            ),
        )
        for _ in range(1000)
    ]
    assert math.sqrt(variance) == pytest.approx(np.std(boot, ddof=1), rel=0.12)


def test_delong_on_hanley_mcneil_1982() -> None:
    # Hanley & McNeil (1982), Radiology 143:29-36, table 1: CT ratings 1-5 of 58 normal and
    # 51 abnormal patients; AUC 0.893 with standard error 0.032 (their exponential
    # approximation; DeLong's nonparametric one is a little smaller on these ties).
    normal = [1] * 33 + [2] * 6 + [3] * 6 + [4] * 11 + [5] * 2
    abnormal = [1] * 3 + [2] * 2 + [3] * 2 + [4] * 11 + [5] * 33
    auc, variance = s.delong_auc(normal + abnormal, [0] * 58 + [1] * 51)
    assert round(auc, 3) == 0.893
    assert math.sqrt(variance) == pytest.approx(0.032, abs=0.002)


def test_auc_difference_delong_and_bootstrap_agree() -> None:
    rng = np.random.default_rng(11)
    c_scores, c_labels = _scored(rng, 400, 0.8)
    t_scores, t_labels = _scored(rng, 400, 1.4)
    delong = s.auc_difference_delong(c_scores, c_labels, t_scores, t_labels)
    boot = s.auc_difference_bootstrap(c_scores, c_labels, t_scores, t_labels, resamples=1000)
    again = s.auc_difference_bootstrap(c_scores, c_labels, t_scores, t_labels, resamples=1000)
    assert boot == again  # seeded
    assert delong.effect == pytest.approx(
        roc_auc_score(t_labels, t_scores) - roc_auc_score(c_labels, c_scores)
    )
    assert boot.effect == delong.effect
    assert boot.std_error == pytest.approx(delong.std_error, rel=0.15)
    assert boot.ci_low == pytest.approx(delong.ci_low, abs=0.02)
    assert delong.ci_low > 0  # a shift of 1.4 against 0.8 is a real AUC gain
    assert delong.p_value < 0.05


def test_auc_needs_both_classes() -> None:
    with pytest.raises(InvalidInputError):
        s.delong_auc([0.1, 0.2, 0.3], [1, 1, 1])
    with pytest.raises(InvalidInputError):
        s.delong_auc([0.1, 0.2], [1, 0, 1])
    with pytest.raises(InvalidInputError):
        s.delong_auc([0.1, 0.2, 0.3, 0.4], [1, 0, 2, 0])


# --- mSPRT ----------------------------------------------------------------------------------


def test_msprt_matches_the_closed_form() -> None:
    # Johari et al. (2017) eq. for the normal mixture, written out: Lambda and its boundary.
    effect, v, tau2, alpha = 0.03, 0.0002, 0.0009, 0.05
    result = s.msprt(effect, v, tau2=tau2, alpha=alpha)
    likelihood_ratio = math.sqrt(v / (v + tau2)) * math.exp(tau2 * effect**2 / (2 * v * (v + tau2)))
    assert float(result.p_value) == pytest.approx(min(1.0, 1 / likelihood_ratio))
    # At the confidence sequence's edge the likelihood ratio is exactly 1 / alpha.
    edge = effect - float(result.ci_low)
    at_edge = math.sqrt(v / (v + tau2)) * math.exp(tau2 * edge**2 / (2 * v * (v + tau2)))
    assert at_edge == pytest.approx(1 / alpha)


def test_msprt_without_information_says_nothing() -> None:
    result = s.msprt(0.5, 0.0, tau2=0.01)
    assert float(result.p_value) == 1.0
    assert math.isinf(float(result.ci_low))


@settings(max_examples=200, deadline=None)
@given(
    effect=st.floats(-10, 10),
    variance=st.floats(1e-8, 10),
    tau2=st.floats(1e-6, 10),
    alpha=st.floats(0.001, 0.2),
)
def test_sequential_interval_contains_estimate_and_is_wider_than_fixed(
    effect: float, variance: float, tau2: float, alpha: float
) -> None:
    result = s.msprt(effect, variance, tau2=tau2, alpha=alpha)
    fixed_half = stats.norm.ppf(1 - alpha / 2) * math.sqrt(variance)
    assert float(result.ci_low) <= effect <= float(result.ci_high)
    assert float(result.ci_high) - effect > fixed_half
    # p < alpha exactly when 0 is outside the confidence sequence (same likelihood ratio).
    outside = not float(result.ci_low) <= 0 <= float(result.ci_high)
    if abs(float(result.p_value) - alpha) > 1e-9:
        assert (float(result.p_value) < alpha) == outside


@settings(max_examples=100, deadline=None)
@given(x_c=st.integers(0, 500), x_t=st.integers(0, 500), extra=st.integers(1, 500))
def test_fixed_ci_contains_the_estimate(x_c: int, x_t: int, extra: int) -> None:
    result = s.two_proportion_ztest(x_c, x_c + extra, x_t, x_t + extra)
    assert result.ci_low <= result.effect <= result.ci_high


# --- SRM ------------------------------------------------------------------------------------


def test_srm_matches_scipy_chisquare() -> None:
    result = s.sample_ratio_mismatch([9_100, 900], [0.9, 0.1])
    reference = stats.chisquare([9_100, 900], [9_000, 1_000])
    assert result.chi2 == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.flagged  # chi2 = 11.1, p = 0.0009


def test_srm_published_example() -> None:
    # Fabijan et al. (2019): 50/50 with 821,588 vs 815,482 users has p = 1.8e-6, an SRM.
    result = s.sample_ratio_mismatch([821_588, 815_482], [0.5, 0.5])
    assert result.p_value == pytest.approx(1.8e-6, rel=0.1)
    assert result.flagged
    assert not s.sample_ratio_mismatch([5_030, 4_970], [0.5, 0.5]).flagged


def test_srm_edge_cases() -> None:
    assert s.sample_ratio_mismatch([0, 0], [0.5, 0.5]) == s.SrmResult(0.0, 1.0, False)
    assert s.sample_ratio_mismatch([10, 3], [1.0, 0.0]).flagged  # traffic to a stopped arm
    with pytest.raises(InvalidInputError):
        s.sample_ratio_mismatch([1, 2, 3], [0.5, 0.5])
    with pytest.raises(InvalidInputError):
        s.sample_ratio_mismatch([1, -2], [0.5, 0.5])


# --- sample size ----------------------------------------------------------------------------


def test_sample_size_matches_statsmodels() -> None:
    n = s.sample_size_proportion(0.10, 0.02, alpha=0.05, power=0.8)
    h = proportion_effectsize(0.12, 0.10)
    assert n == math.ceil(NormalIndPower().solve_power(h, alpha=0.05, power=0.8))
    # The classic figure: about 3,840 per arm for 10% -> 12% at 80% power (Cohen's h).
    assert 3_800 <= n <= 3_900
    assert s.sample_size_mean(2.0, 0.5) == math.ceil(
        zt_ind_solve_power(effect_size=0.25, alpha=0.05, power=0.8)
    )
    assert s.still_needed(3_835, 1_000) == 2_835
    assert s.still_needed(3_835, 5_000) == 0


def test_sample_size_rejects_impossible_inputs() -> None:
    with pytest.raises(InvalidInputError):
        s.sample_size_proportion(0.95, 0.1)
    with pytest.raises(InvalidInputError):
        s.sample_size_mean(0.0, 0.1)
    with pytest.raises(InvalidInputError):
        s.sample_size_for_effect_size(0.1, power=1.0)


# --- quantiles from buckets -----------------------------------------------------------------


def test_quantile_interpolates_within_a_bucket() -> None:
    counts = [0] * len(LATENCY_BOUNDS_S)
    counts[6] = 100  # (0.05, 0.1] s
    assert s.quantile_from_buckets(counts, 0.99) == pytest.approx(0.05 + 0.05 * 0.99)
    assert s.quantile_from_buckets(counts, 0.5) == pytest.approx(0.075)
    counts[0] = 100  # [0, 0.001]: now the median is the top of the first bucket
    assert s.quantile_from_buckets(counts, 0.5) == pytest.approx(0.001)


def test_quantile_in_the_infinite_bucket_reports_the_last_bound() -> None:
    counts = [0] * len(LATENCY_BOUNDS_S)
    counts[0], counts[-1] = 90, 10
    assert s.quantile_from_buckets(counts, 0.99) == 10.0
    assert s.quantile_from_buckets([0] * len(LATENCY_BOUNDS_S), 0.99) is None
    with pytest.raises(InvalidInputError):
        s.quantile_from_buckets([1, 2], 0.5)
