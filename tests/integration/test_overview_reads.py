"""The facade's reads across models for overviews: paged audit events, open requests, counts.

Their SQL (a join, counts, GROUP BYs, paging) is checked on both backends.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from modelreg.domain import Action, Stage
from modelreg.errors import InvalidInputError, InvalidNameError
from modelreg.experiments.definition import VariantCounts
from modelreg.registry import EventFilter, Registry

pytestmark = pytest.mark.integration


def test_audit_pages_and_filters_events_across_models(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    first = register_auc(0.9)
    second = register_auc(0.91, seed=1)
    governed.request(model_name, first, comment="ship it", actor="connie")
    governed.approve(model_name, first, comment="checked", actor="carol")

    mine = EventFilter(model=model_name)
    everything = governed.audit(mine, limit=500)
    assert everything.total == len(everything.events) == len(governed.history(model_name).events)
    ids = [e.id for e in everything.events]
    assert ids == sorted(ids, reverse=True)  # newest first

    first_page = governed.audit(mine, limit=2)
    second_page = governed.audit(mine, limit=2, offset=2)
    assert [e.id for e in first_page.events + second_page.events] == ids[:4]
    assert first_page.total == everything.total

    approvals = governed.audit(EventFilter(model=model_name, action=Action.APPROVE))
    assert [(e.version, e.actor, e.reason) for e in approvals.events] == [
        (first, "carol", "checked")
    ]
    by_connie = governed.audit(EventFilter(model=model_name, actor="connie"))
    assert {e.action for e in by_connie.events} == {Action.REQUEST}
    of_second = governed.audit(EventFilter(model=model_name, version=second))
    assert {e.version for e in of_second.events} == {second}
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert governed.audit(EventFilter(model=model_name, since=later)).total == 0
    assert governed.audit(EventFilter(model=model_name, until=later)).total == everything.total

    for limit, offset in ((0, 0), (501, 0), (10, -1)):
        with pytest.raises(InvalidInputError):
            governed.audit(mine, limit=limit, offset=offset)
    with pytest.raises(InvalidNameError):
        governed.audit(EventFilter(model=""))


def test_open_requests_and_counts(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    first = register_auc(0.9)
    second = register_auc(0.91, seed=1)
    third = register_auc(0.92, seed=2)
    governed.request(model_name, first, comment="first", actor="connie")
    governed.request(model_name, second, comment="second", actor="connie")
    governed.request(model_name, third, comment="third", actor="connie")
    governed.reject(model_name, third, comment="no", actor="carol")

    found = governed.open_requests(model_name)
    assert found.total == 2
    assert [(r.version, r.requester, r.comment) for r in found.requests] == [
        (first, "connie", "first"),
        (second, "connie", "second"),
    ]
    assert found.requests[0].semver is not None
    assert found.requests[0].requested_at is not None
    assert governed.open_requests(model_name, limit=1, offset=1).requests[0].version == second
    across = governed.open_requests(limit=500)
    assert {(r.name, r.version) for r in across.requests} >= {
        (model_name, first),
        (model_name, second),
    }

    governed.approve(model_name, first, actor="carol")  # promotes: the request closes
    counts = governed.model_counts()[model_name]
    assert counts.open_requests == 1
    assert counts.stages[Stage.PRODUCTION] == 1
    assert counts.stages[Stage.NONE] == 2
    pages = governed.versions_page(model_name, limit=2)
    assert pages.total == 3
    assert [v.version for v in pages.versions] == [third, second]
    assert "test_auc" in pages.versions[0].metrics


def test_replica_reports_name_each_replica_and_variant(
    governed: Registry, register_auc: Callable[..., int], model_name: str
) -> None:
    control = register_auc(0.9)
    treatment = register_auc(0.91, seed=1)
    governed.promote(model_name, control, Stage.PRODUCTION, actor="ann")
    started = governed.ab_start(model_name, [treatment], traffic=0.5, actor="connie")
    for replica, requests in (("replica-a", 10), ("replica-b", 20)):
        governed.record_variant_counts(
            replica,
            [VariantCounts(started.id, "control", control, requests, 1, 0, (requests,), 0, 0, 0)],
        )
    reports = governed.replica_reports([started.id])
    assert sorted((r.replica, r.variant, r.version, r.requests) for r in reports) == [
        ("replica-a", "control", control, 10),
        ("replica-b", "control", control, 20),
    ]
    assert governed.replica_reports([]) == []
    assert governed.replica_reports(["no-such-experiment"]) == []
