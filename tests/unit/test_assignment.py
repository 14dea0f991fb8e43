"""Sticky, salted assignment of routing keys to experiment variants (pure)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelreg.errors import InvalidInputError
from modelreg.experiments.assignment import BUCKETS, CONTROL, Split, assign, bucket

KEYS = [f"user-{n}" for n in range(20_000)]
shares = st.integers(min_value=0, max_value=BUCKETS).map(lambda n: n / BUCKETS)


def test_buckets_are_pinned_sha256_values() -> None:
    # Changing the hash would move every running experiment's users: pin it.
    assert bucket("exp-1", "user-42") == 9770
    assert bucket("exp-2", "user-42") == 8078
    assert all(0 <= bucket("exp-1", key) < BUCKETS for key in KEYS[:1000])


def test_ten_percent_of_20000_keys_within_0_6_points() -> None:
    split = Split(("v7",), 0.10)
    counts = Counter(assign("exp-1", split, key) for key in KEYS)
    assert abs(counts["v7"] / len(KEYS) - 0.10) <= 0.006
    assert set(counts) == {"v7", CONTROL}


def test_the_same_key_gets_the_same_variant_in_another_process() -> None:
    here = [assign("exp-1", Split(("v7",), 0.5), key) for key in KEYS[:500]]
    code = (
        "from modelreg.experiments.assignment import Split, assign\n"
        "keys = [f'user-{n}' for n in range(500)]\n"
        "print(','.join(assign('exp-1', Split(('v7',), 0.5), k) for k in keys))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},  # Python's own hash() would differ: ours must not
        timeout=60,
    ).stdout.strip()
    assert there.split(",") == here


@given(st.text(max_size=40), shares, shares)
def test_ramping_up_never_moves_a_treatment_key_back_to_control(
    key: str, first: float, second: float
) -> None:
    low, high = sorted((first, second))
    before = assign("exp-1", Split(("v7",), low), key)
    after = assign("exp-1", Split(("v7",), low).ramped(high), key)
    if before != CONTROL:
        assert after == before


def test_a_stop_sends_everyone_to_control() -> None:
    stopped = Split(("v7", "v8"), 0.25).ramped(0)
    assert {assign("exp-1", stopped, key) for key in KEYS[:2000]} == {CONTROL}


def test_treatments_get_equal_disjoint_shares() -> None:
    split = Split(("v7", "v8", "v9"), 0.2)
    counts = Counter(assign("exp-2", split, key) for key in KEYS)
    for name in ("v7", "v8", "v9"):
        assert abs(counts[name] / len(KEYS) - 0.2) <= 0.012
    # Ramping one experiment's treatments keeps each key in its own lane.
    wider = split.ramped(1 / 3)
    for key in KEYS[:3000]:
        if (got := assign("exp-2", split, key)) != CONTROL:
            assert assign("exp-2", wider, key) == got


def test_experiments_split_users_independently() -> None:
    split = Split(("v7",), 0.5)
    both = sum(
        assign("exp-a", split, key) != CONTROL and assign("exp-b", split, key) != CONTROL
        for key in KEYS
    )
    assert abs(both / len(KEYS) - 0.25) <= 0.015  # independent halves overlap on a quarter


@pytest.mark.parametrize(
    ("treatments", "traffic", "why"),
    [
        ((), 0.1, "at least one treatment"),
        (("v7", "v7"), 0.1, "distinct"),
        ((CONTROL,), 0.1, "distinct"),
        (("v7",), 1.5, "between 0 and 1"),
        (("v7",), -0.1, "between 0 and 1"),
        (("v7", "v8"), 0.6, "between 0 and 0.5"),
    ],
)
def test_bad_splits_are_refused(treatments: tuple[str, ...], traffic: float, why: str) -> None:
    with pytest.raises(InvalidInputError, match=why):
        Split(treatments, traffic)
