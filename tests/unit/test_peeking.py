"""Daily peeking: the naive z-test's false positives pile up, the mSPRT default's do not.

An A/A simulation (both arms convert at 10%), 1,000 experiments, 30 daily looks
at 200 new users per arm per day. Stopping at the first look with a fixed
z-test p < 0.05 declares a "winner" in roughly a quarter of them; the
always-valid mSPRT (the report's default, with the report's mixture variance)
stays under alpha. Under a real lift (10% -> 12.5%) the mSPRT still finds it in
most runs (the price of peeking safely: a fixed test at the last look alone has a
little more power).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from modelreg.experiments import statistics

RUNS = 1_000
LOOKS = 30
PER_DAY = 200
ALPHA = 0.05


def _cumulative(rng: np.random.Generator, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative conversions and users per arm at each look: arrays of shape (RUNS, LOOKS)."""
    conversions = rng.binomial(PER_DAY, rate, size=(RUNS, LOOKS)).cumsum(axis=1)
    users = np.broadcast_to(PER_DAY * np.arange(1, LOOKS + 1), (RUNS, LOOKS))
    return conversions.astype(np.float64), users.astype(np.float64)


def _looks(control_rate: float, treatment_rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per run and look: the naive pooled z-test p-value and the mSPRT p-value."""
    rng = np.random.default_rng(seed)
    x_c, n_c = _cumulative(rng, control_rate)
    x_t, n_t = _cumulative(rng, treatment_rate)
    p_c, p_t = x_c / n_c, x_t / n_t
    effect = p_t - p_c
    pooled = (x_c + x_t) / (n_c + n_t)
    se_pooled = np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    naive = 2 * stats.norm.sf(np.abs(effect) / se_pooled)
    # The same estimate, variance and mixture the report feeds the mSPRT for a rate.
    variance = p_c * (1 - p_c) / n_c + p_t * (1 - p_t) / n_t
    tau2 = statistics.mixture_variance((p_c * (1 - p_c) + p_t * (1 - p_t)) / 2)
    sequential = statistics.msprt(effect, variance, tau2=tau2, alpha=ALPHA).p_value
    return naive, sequential


def _ever_significant(p_values: np.ndarray) -> float:
    """The share of runs stopped at some look for p < alpha."""
    return float((p_values < ALPHA).any(axis=1).mean())


def test_naive_peeking_inflates_false_positives_but_msprt_does_not() -> None:
    naive, sequential = _looks(0.10, 0.10, seed=20261130)
    naive_rate = _ever_significant(naive)
    sequential_rate = _ever_significant(sequential)
    # A single look at the end is fine for the naive test: about alpha.
    assert abs(float((naive[:, -1] < ALPHA).mean()) - ALPHA) < 0.02
    assert naive_rate >= 0.15, naive_rate
    assert sequential_rate <= ALPHA + 0.01, sequential_rate


def test_msprt_detects_a_real_lift() -> None:
    naive, sequential = _looks(0.10, 0.125, seed=7)
    power = _ever_significant(sequential)
    assert power >= 0.85, power
    assert float((naive[:, -1] < ALPHA).mean()) >= power  # the fixed horizon's extra power
    # ...and it usually does so before the last look.
    first = np.argmax(sequential < ALPHA, axis=1)[(sequential < ALPHA).any(axis=1)]
    assert np.median(first) < LOOKS - 1
