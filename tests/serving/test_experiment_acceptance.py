"""Issue 10's acceptance on real `modelreg serve` processes: 20,000 keyed requests, ramp, stop.

A 10% experiment on a served model: the treatment share lands within 10% ± 0.6
points; every key always gets the same variant; a second server process
assigns every key identically; ramping to 50% moves no treated key back to
control; stopping sends everyone to control; /metrics shows both variants with
their versions; replicas' counts reach the ledger and add up.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_helpers import register_trees, serving, to_production, unique_name

from integration.registry_helpers import training_frame
from modelreg.ledger.experiments import ExperimentStore
from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration

KEYS = 20_000
BODY = {"dataframe_records": training_frame(3, rows=1).to_dict(orient="records")}
PICKUP_TIMEOUT = 30.0


async def _route(url: str, keys: list[str], *, connections: int = 16) -> dict[str, tuple[str, int]]:
    """Score once per key with ``X-User-ID: key``; each key's (X-Variant, X-Model-Version)."""
    answers: dict[str, tuple[str, int]] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for key in keys:
        queue.put_nowait(key)
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=30, limits=limits) as http:

        async def client() -> None:
            while not queue.empty():
                key = queue.get_nowait()
                response = await http.post("/invocations", json=BODY, headers={"X-User-ID": key})
                assert response.status_code == 200, response.text
                answers[key] = (
                    response.headers["X-Variant"],
                    int(response.headers["X-Model-Version"]),
                )

        await asyncio.gather(*(client() for _ in range(connections)))
    return answers


def route(url: str, keys: list[str]) -> dict[str, tuple[str, int]]:
    """:func:`_route` from synchronous test code."""
    return asyncio.run(_route(url, keys))


def wait_for(url: str, key: str, variant: str) -> None:
    """Until ``key`` is answered by ``variant`` (a served change picked up)."""
    deadline = time.monotonic() + PICKUP_TIMEOUT
    while time.monotonic() < deadline:
        if route(url, [key])[key][0] == variant:
            return
        time.sleep(0.2)
    raise AssertionError(f"{key} never reached {variant} at {url}")


@pytest.fixture
def experiment_model(postgres_backend: Backend, tmp_path: Path) -> Iterator[tuple[Registry, str]]:
    """Two versions of a fresh model, v1 in Production, on PostgreSQL + S3."""
    registry = Registry.connect(
        postgres_backend.tracking_uri, postgres_backend.ledger_uri, actor="alice", home=tmp_path
    )
    name = unique_name("ab")
    register_trees(registry, postgres_backend, name, [1, 3])
    to_production(registry, name, 1)
    yield registry, name
    registry.close()


def test_twenty_thousand_keys_split_sticky_identical_across_servers_and_ramps(
    postgres_backend: Backend, experiment_model: tuple[Registry, str], tmp_path: Path
) -> None:
    registry, name = experiment_model
    args = (name, "--poll-interval", "0.5")
    with (
        serving(postgres_backend, tmp_path / "a", *args) as first,
        serving(postgres_backend, tmp_path / "b", *args) as second,
    ):
        view = registry.ab_start(name, ["2"], traffic=0.10)
        keys = [f"user-{i}" for i in range(KEYS)]
        treated_probe = next(k for k in keys if view.id and _treated(registry, name, k))
        wait_for(first.url, treated_probe, "treatment")
        wait_for(second.url, treated_probe, "treatment")

        answers = route(first.url, keys)
        shares = Counter(variant for variant, _ in answers.values())
        assert set(shares) == {"control", "treatment"}
        assert abs(shares["treatment"] / KEYS - 0.10) <= 0.006, shares
        assert {v for variant, v in answers.values() if variant == "treatment"} == {2}
        assert {v for variant, v in answers.values() if variant == "control"} == {1}

        sample = keys[:2000]
        assert route(first.url, sample) == {k: answers[k] for k in sample}  # sticky
        assert route(second.url, sample) == {k: answers[k] for k in sample}  # same on replica B

        metrics = first.http.get("/metrics").text
        for variant, version in (("control", 1), ("treatment", 2)):
            assert any(
                line.startswith("modelreg_serving_requests_total{")
                and f'variant="{variant}"' in line
                and f'version="{version}"' in line
                for line in metrics.splitlines()
            ), metrics

        treated = [k for k, (variant, _) in answers.items() if variant == "treatment"]
        registry.ab_ramp(name, 0.5)
        probe = next(k for k in keys if answers[k][0] == "control" and _treated(registry, name, k))
        wait_for(first.url, probe, "treatment")
        after = route(first.url, treated)
        assert all(variant == "treatment" for variant, _ in after.values())  # none back to control
        ramped = route(first.url, keys[:4000])
        share = sum(v == "treatment" for v, _ in ramped.values()) / 4000
        assert abs(share - 0.5) < 0.03

        # The replicas' counts reach the ledger and add up to what was sent to them.
        store = ExperimentStore(registry.ledger)
        sent = KEYS + 2 * len(sample) + len(treated) + 4000
        deadline = time.monotonic() + PICKUP_TIMEOUT
        while time.monotonic() < deadline:
            totals = store.totals(view.id)
            if sum(t.requests for t in totals) >= sent:
                break
            time.sleep(0.5)
        totals = store.totals(view.id)
        assert sum(t.requests for t in totals) >= sent, totals
        assert max(t.replicas for t in totals) == 2

        registry.ab_stop(name)
        wait_for(first.url, treated[0], "control")
        stopped = route(first.url, treated[:500])
        assert {variant for variant, _ in stopped.values()} == {"control"}
        registry.ab_conclude(name)


def _treated(registry: Registry, name: str, key: str) -> bool:
    route_ = registry.experiment(name)
    assert route_ is not None
    return route_.variant_for(key) == "treatment"
