"""The A/B report: metric meanings, verdicts, guardrails, SRM, JSON safety, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from modelreg.errors import InvalidInputError
from modelreg.experiments import statistics
from modelreg.experiments.assignment import CONTROL, Split, assign
from modelreg.experiments.definition import LATENCY_BOUNDS_S
from modelreg.experiments.report import (
    DEFAULT_GUARDRAILS,
    MIN_GUARDRAIL_REQUESTS,
    Decision,
    Guardrail,
    GuardrailMetric,
    Metric,
    Outcome,
    Report,
    VariantData,
    build_report,
    parse_guardrail,
    parse_metric,
)

FAST = (0, 0, 0, 0, 0, 2000, 7000, 900, 100, 0, 0, 0, 0, 0)  # p99 = 250 ms
NO_LATENCY = (0,) * len(LATENCY_BOUNDS_S)


def _labels(positives: int, n: int) -> tuple[Outcome, ...]:
    return tuple(Outcome(None, 1 if i < positives else 0, None) for i in range(n))


def _variant(
    name: str,
    outcomes: tuple[Outcome, ...] = (),
    *,
    requests: int = 10_000,
    errors: int = 0,
    share: float = 0.5,
    latency: tuple[int, ...] = FAST,
    version: int = 1,
) -> VariantData:
    return VariantData(name, version, share, requests, errors, 0, latency, outcomes)


def _json_roundtrip(report: Report) -> dict[str, object]:
    text = json.dumps(report.to_json(), allow_nan=False)  # raises on NaN or inf
    loaded: dict[str, object] = json.loads(text)
    return loaded


# --- parsing --------------------------------------------------------------------------------


def test_parse_metric() -> None:
    assert parse_metric("AUC") is Metric.AUC
    assert parse_metric(" error_rate ") is Metric.ERROR_RATE
    with pytest.raises(InvalidInputError, match="accuracy, conversion, value, auc, error_rate"):
        parse_metric("f1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error_rate<0.05", Guardrail(GuardrailMetric.ERROR_RATE, 0.05)),
        ("error_rate<=0.05", Guardrail(GuardrailMetric.ERROR_RATE, 0.05)),
        ("error_rate=0.05", Guardrail(GuardrailMetric.ERROR_RATE, 0.05)),
        ("p99_latency_ms<250", Guardrail(GuardrailMetric.P99_LATENCY_MS, 250.0)),
        (" P99_LATENCY_MS < 1e3 ", Guardrail(GuardrailMetric.P99_LATENCY_MS, 1000.0)),
    ],
)
def test_parse_guardrail(text: str, expected: Guardrail) -> None:
    assert parse_guardrail(text) == expected
    assert parse_guardrail(str(expected)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "error_rate>0.05",
        "error_rate<2",
        "error_rate<0",
        "error_rate<-0.1",
        "error_rate<nan",
        "p99_latency_ms<inf",
        "p99_latency_ms<fast",
        "cpu<0.5",
        "",
        "error_rate",
    ],
)
def test_parse_guardrail_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_guardrail(text)


def test_guardrail_text_and_defaults() -> None:
    assert str(Guardrail(GuardrailMetric.ERROR_RATE, 0.05)) == "error_rate<0.05"
    assert [str(g) for g in DEFAULT_GUARDRAILS] == ["error_rate<0.05", "p99_latency_ms<1000"]


# --- verdicts -------------------------------------------------------------------------------


def test_truly_better_treatment_wins() -> None:
    rng = np.random.default_rng(5)
    control = tuple(Outcome(1, int(y), None) for y in rng.random(8_000) < 0.70)
    treatment = tuple(Outcome(1, int(y), None) for y in rng.random(8_000) < 0.75)
    report = build_report(
        [_variant("control", control), _variant("treatment", treatment, version=2)],
        metrics=[Metric.ACCURACY],
        guardrails=DEFAULT_GUARDRAILS,
    )
    assert report.decision is Decision.TREATMENT_WINS
    assert report.winner == "treatment"
    (comparison,) = report.comparisons
    assert comparison.better is True
    assert comparison.sequential_ci_low is not None and comparison.sequential_ci_low > 0
    assert comparison.p_value == comparison.sequential_p_value
    assert report.breaches == ()


def test_several_treatments_split_alpha_and_the_better_one_wins() -> None:
    report = build_report(
        [
            _variant("control", _labels(1_000, 10_000), share=0.5),
            _variant("treatment-1", _labels(1_010, 10_000), share=0.25),
            _variant("treatment-2", _labels(1_300, 10_000), share=0.25),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=DEFAULT_GUARDRAILS,
    )
    # 10,000 / 10,000 / 10,000 against 50/25/25 is itself a mismatch: shares must match.
    assert report.decision is Decision.INVALID
    fair = build_report(
        [
            _variant("control", _labels(1_000, 10_000), share=1 / 3),
            _variant("treatment-1", _labels(1_010, 10_000), share=1 / 3),
            _variant("treatment-2", _labels(1_300, 10_000), share=1 / 3),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=DEFAULT_GUARDRAILS,
    )
    assert fair.winner == "treatment-2"
    assert [c.alpha for c in fair.comparisons] == [0.025, 0.025]
    assert [c.significant for c in fair.comparisons] == [False, True]


def test_worse_treatment_means_control_wins() -> None:
    report = build_report(
        [
            _variant("control", _labels(3_000, 10_000)),
            _variant("treatment", _labels(2_500, 10_000)),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=(),
    )
    assert report.decision is Decision.CONTROL_WINS
    assert report.winner is None


def test_no_difference_is_inconclusive_with_sample_size_still_needed() -> None:
    report = build_report(
        [_variant("control", _labels(100, 1_000)), _variant("treatment", _labels(104, 1_000))],
        metrics=[Metric.CONVERSION],
        guardrails=DEFAULT_GUARDRAILS,
        mde=0.01,
    )
    assert report.decision is Decision.INCONCLUSIVE
    (comparison,) = report.comparisons
    assert comparison.min_sample_size == statistics.sample_size_proportion(0.10, 0.01)
    assert comparison.still_needed == comparison.min_sample_size - 1_000
    assert str(comparison.still_needed) in report.reason


def test_lower_error_rate_is_better() -> None:
    report = build_report(
        [
            _variant("control", requests=20_000, errors=600),
            _variant("treatment", requests=20_000, errors=300),
        ],
        metrics=[Metric.ERROR_RATE],
        guardrails=(),
    )
    assert report.comparisons[0].effect == pytest.approx(-0.015)
    assert report.decision is Decision.TREATMENT_WINS


def test_fixed_horizon_mode_uses_the_fixed_test() -> None:
    variants = [_variant("control", _labels(1_000, 10_000)), _variant("t", _labels(1_120, 10_000))]
    sequential = build_report(variants, metrics=[Metric.CONVERSION], guardrails=())
    fixed = build_report(variants, metrics=[Metric.CONVERSION], guardrails=(), sequential=False)
    # The docs' worked example: significant at a single planned look, not yet when peeking.
    assert sequential.decision is Decision.INCONCLUSIVE
    assert fixed.decision is Decision.TREATMENT_WINS
    assert fixed.comparisons[0].p_value == fixed.comparisons[0].fixed_p_value


def test_metric_values_and_tests() -> None:
    rng = np.random.default_rng(9)

    def outcomes(shift: float, n: int) -> tuple[Outcome, ...]:
        labels = rng.integers(0, 2, size=n)
        scores = rng.normal(0, 1, size=n) + shift * labels
        values = rng.exponential(10 + shift, size=n)
        return tuple(
            Outcome(float(s), int(y), float(v))
            for s, y, v in zip(scores, labels, values, strict=True)
        )

    c, t = outcomes(0.5, 600), outcomes(1.0, 500)
    report = build_report(
        [_variant("control", c), _variant("treatment", t)],
        metrics=[Metric.AUC, Metric.VALUE],
        guardrails=(),
        sequential=False,
    )
    auc, value = report.comparisons
    expected_auc = statistics.auc_difference_delong(
        [o.prediction for o in c],
        [o.label for o in c],
        [o.prediction for o in t],
        [o.label for o in t],
    )  # type: ignore[arg-type]
    assert auc.effect == pytest.approx(expected_auc.effect)
    assert auc.fixed_p_value == pytest.approx(expected_auc.p_value)
    cv = np.array([o.value for o in c])
    tv = np.array([o.value for o in t])
    expected_value = statistics.welch_ttest(
        cv.mean(), cv.var(ddof=1), cv.size, tv.mean(), tv.var(ddof=1), tv.size
    )
    assert value.effect == pytest.approx(expected_value.effect)
    assert value.p_value == pytest.approx(expected_value.p_value)
    assert report.variants[0].metrics[1].value == pytest.approx(cv.mean())


def test_accuracy_and_conversion_meanings() -> None:
    outcomes = (
        Outcome(1.0, "1", None),  # numbers compared as numbers: a match
        Outcome("cat", "cat", None),  # a match
        Outcome("cat", "dog", None),  # a miss
        Outcome(0.0, 1, None),  # a miss
        Outcome(None, 1, None),  # no prediction: not judged for accuracy
        Outcome(None, None, 3.5),  # a positive value converts
        Outcome(None, "no", 0.0),  # neither
    )
    report = build_report(
        [_variant("control", outcomes, requests=10), _variant("t", outcomes, requests=10)],
        metrics=[Metric.ACCURACY, Metric.CONVERSION],
        guardrails=(),
    )
    accuracy, conversion = report.variants[0].metrics
    assert (accuracy.value, accuracy.n) == (0.5, 4)
    # Converted: "1", 1 (twice: with and without prediction) and the 3.5 value; not "cat",
    # "dog" (not binary, not numbers), not "no".
    assert (conversion.value, conversion.n) == (pytest.approx(4 / 7), 7)
    assert report.variants[0].feedback == 7


# --- guardrails -----------------------------------------------------------------------------


def test_error_rate_breach_is_harmful() -> None:
    report = build_report(
        [
            _variant("control", _labels(100, 1_000), requests=2_000, errors=10),
            _variant("treatment", _labels(300, 1_000), requests=2_000, errors=300),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=DEFAULT_GUARDRAILS,
    )
    assert report.decision is Decision.HARMFUL
    assert report.winner is None  # even though its conversion is far better
    (breach,) = report.breaches
    assert breach.treatment == "treatment"
    assert breach.guardrail == Guardrail(GuardrailMetric.ERROR_RATE, 0.05)
    assert breach.observed == pytest.approx(0.15)
    assert breach.bound is not None and breach.bound > 0.05
    assert "error_rate<0.05" in report.reason


def test_error_rate_breach_needs_evidence_and_requests() -> None:
    guardrail = (Guardrail(GuardrailMetric.ERROR_RATE, 0.05),)
    control = _variant("control", requests=1_000)
    # Just over the limit: noise, not a breach.
    noisy = build_report(
        [control, _variant("t", requests=1_000, errors=55)],
        metrics=[Metric.VALUE],
        guardrails=guardrail,
    )
    assert noisy.breaches == ()
    assert noisy.guardrails[0].observed == pytest.approx(0.055)
    # Every request failing, but too few requests to judge.
    few = MIN_GUARDRAIL_REQUESTS - 1
    early = build_report(
        [_variant("control", requests=few), _variant("t", requests=few, errors=few)],
        metrics=[Metric.VALUE],
        guardrails=guardrail,
    )
    assert early.breaches == ()


def test_p99_latency_breach() -> None:
    slow = list(FAST)
    slow[9], slow[10] = 500, 500  # 10% of requests take 1 to 2.5 s
    report = build_report(
        [_variant("control"), _variant("treatment", latency=tuple(slow))],
        metrics=[Metric.CONVERSION],
        guardrails=[parse_guardrail("p99_latency_ms<1000")],
    )
    assert report.decision is Decision.HARMFUL
    assert report.variants[0].p99_latency_ms == pytest.approx(250.0)
    assert report.breaches[0].observed is not None and report.breaches[0].observed > 1000


# --- sample ratio mismatch ------------------------------------------------------------------


def _routed_counts(drop_treatment_key: bool) -> dict[str, int]:
    """Requests per variant of 20,000 users routed 50/50 by the real assignment.

    The biased router loses the treatment's users whose id ends in 7 (a crashing
    parser, a bot filter that only runs on one side): the classic cause of an SRM.
    """
    split = Split(("treatment",), 0.5)
    counts = {CONTROL: 0, "treatment": 0}
    for i in range(20_000):
        key = f"user-{i}"
        variant = assign("exp-srm", split, key)
        if drop_treatment_key and variant == "treatment" and key.endswith("7"):
            continue
        counts[variant] += 1
    return counts


@pytest.mark.parametrize("biased", [False, True])
def test_srm_catches_a_biased_router(biased: bool) -> None:
    counts = _routed_counts(biased)
    report = build_report(
        [
            _variant(CONTROL, _labels(100, 1_000), requests=counts[CONTROL]),
            _variant("treatment", _labels(200, 1_000), requests=counts["treatment"]),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=(),
    )
    assert report.srm.flagged is biased
    if biased:
        assert report.decision is Decision.INVALID
        assert report.winner is None
    else:
        assert report.decision is Decision.TREATMENT_WINS


# --- no data, JSON, bad input ---------------------------------------------------------------


def test_empty_variants_report_not_enough_data_and_are_json_safe() -> None:
    report = build_report(
        [
            _variant("control", requests=0, latency=NO_LATENCY),
            _variant("t", requests=0, latency=NO_LATENCY),
        ],
        metrics=list(Metric),
        guardrails=DEFAULT_GUARDRAILS,
    )
    assert report.decision is Decision.INCONCLUSIVE
    assert "not enough data" in report.reason
    assert all(c.note and c.note.startswith("not enough data") for c in report.comparisons)
    body = _json_roundtrip(report)
    assert body["decision"] == "inconclusive"
    assert set(body) >= {
        "primary_metric", "alpha", "sequential", "decision", "reason", "winner",
        "variants", "comparisons", "srm", "guardrails", "breaches",
    }  # fmt: skip


def test_degenerate_numbers_become_null_in_json() -> None:
    # Identical, constant outcomes: zero variances, an infinite confidence sequence.
    same = tuple(Outcome(0.5, 1 if i % 2 else 0, 1.0) for i in range(50))
    report = build_report(
        [_variant("control", same), _variant("t", same)],
        metrics=[Metric.AUC, Metric.VALUE, Metric.ACCURACY],
        guardrails=DEFAULT_GUARDRAILS,
    )
    body = _json_roundtrip(report)
    comparisons = body["comparisons"]
    assert isinstance(comparisons, list)
    assert comparisons[0]["sequential"]["ci_low"] is None
    assert all(c["significant"] is False for c in comparisons)
    assert math.isinf(report.comparisons[0].sequential_ci_low or 0.0)


@pytest.mark.parametrize(
    "variants",
    [
        [],
        [_variant("control", requests=-1)],
        [_variant("control", requests=5, errors=6)],
        [_variant("control", latency=(1, 2))],
        [_variant("control"), _variant("control")],
        [_variant("control", share=1.5)],
    ],
)
def test_bad_input_is_rejected(variants: list[VariantData]) -> None:
    with pytest.raises(InvalidInputError):
        build_report(variants, metrics=[Metric.CONVERSION], guardrails=())


@pytest.mark.parametrize(
    "options", [{"metrics": []}, {"alpha": 0.0}, {"power": 1.0}, {"mde": -0.1}, {"mde": math.nan}]
)
def test_bad_options_are_rejected(options: dict[str, object]) -> None:
    arguments: dict[str, object] = {"metrics": [Metric.CONVERSION], "guardrails": ()} | options
    with pytest.raises(InvalidInputError):
        build_report([_variant("control"), _variant("t")], **arguments)  # type: ignore[arg-type]


# --- docs/experiments.md -------------------------------------------------------------------


def _docs_week(weeks: int) -> Report:
    control_latency = (0, 0, 0, 0, 0, 2000, 7000, 900, 100, 0, 0, 0, 0, 0)
    treatment_latency = (0, 0, 0, 0, 0, 1500, 7200, 1100, 200, 0, 0, 0, 0, 0)
    return build_report(
        [
            VariantData(
                "control", 3, 0.5, 10_000 * weeks, 20 * weeks, 0,
                tuple(c * weeks for c in control_latency), _labels(1_000 * weeks, 10_000 * weeks),
            ),
            VariantData(
                "treatment", 4, 0.5, 10_000 * weeks, 25 * weeks, 0,
                tuple(c * weeks for c in treatment_latency), _labels(1_120 * weeks, 10_000 * weeks),
            ),
        ],
        metrics=[Metric.CONVERSION],
        guardrails=DEFAULT_GUARDRAILS,
        mde=0.01,
    )  # fmt: skip


def test_docs_worked_example() -> None:
    week = _docs_week(1)
    assert [v.p99_latency_ms for v in week.variants] == [pytest.approx(250), pytest.approx(375)]
    assert (week.srm.chi2, week.srm.p_value, week.srm.flagged) == (0.0, 1.0, False)
    assert [g.bound for g in week.guardrails] == [0.0, None]
    assert week.breaches == ()
    c = week.comparisons[0]
    assert c.effect == pytest.approx(0.012)
    assert round(c.fixed_p_value or 1, 4) == 0.0058
    assert (round(100 * (c.fixed_ci_low or 0), 2), round(100 * (c.fixed_ci_high or 0), 2)) == (
        0.35,
        2.05,
    )
    tau2 = statistics.mixture_variance((0.1 * 0.9 + 0.112 * 0.888) / 2)
    assert round(float(tau2), 6) == 0.000947
    assert round(c.sequential_p_value or 0, 2) == 0.17
    assert (
        round(100 * (c.sequential_ci_low or 0), 2),
        round(100 * (c.sequential_ci_high or 0), 2),
    ) == (
        -0.18,
        2.58,
    )
    assert (c.min_sample_size, c.still_needed) == (14_745, 4_745)
    assert week.decision is Decision.INCONCLUSIVE
    assert week.to_json()["reason"] == (
        "no significant difference on conversion yet; about 4745 more observations per arm needed"
    )

    two = _docs_week(2)
    c = two.comparisons[0]
    assert round(c.sequential_p_value or 1, 4) == 0.0054
    assert (
        round(100 * (c.sequential_ci_low or 0), 2),
        round(100 * (c.sequential_ci_high or 0), 2),
    ) == (
        0.19,
        2.21,
    )
    assert f"{c.fixed_p_value:.1e}" == "9.7e-05"
    assert (round(100 * (c.fixed_ci_low or 0), 2), round(100 * (c.fixed_ci_high or 0), 2)) == (
        0.60,
        1.80,
    )
    assert c.still_needed == 0
    assert (two.decision, two.winner) == (Decision.TREATMENT_WINS, "treatment")
