"""The dashboard's pure parts: paging, form fields, times, CSV cells, redirects, POST checks."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.datastructures import FormData
from starlette.requests import Request

from modelreg.dashboard.app import _safe_next
from modelreg.dashboard.pages import _csv_cell, abilities
from modelreg.dashboard.render import Pager, number, parse_time, text_field
from modelreg.dashboard.session import SECRET_FILE, Session, Sessions, session_secret
from modelreg.errors import AccessError, InvalidInputError
from modelreg.policy import Role
from modelreg.settings import Settings


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "dash:8000", **headers}.items()]
    return Request({"type": "http", "method": "POST", "path": "/ui/x", "headers": raw})


def test_pager_counts_pages_and_keeps_the_query() -> None:
    pager = Pager(2, 51, query=(("q", "fraud"), ("has", ""), ("page", "9")))
    assert (pager.offset, pager.pages) == (25, 3)
    assert pager.link(3) == "?q=fraud&page=3"
    assert Pager(1, 0).check().pages == 1
    with pytest.raises(InvalidInputError, match="page 4 does not exist"):
        Pager(4, 51).check()


def test_form_fields_times_and_numbers() -> None:
    form = FormData([("comment", "ok"), ("long", "x" * 11)])
    assert text_field(form, "comment") == "ok"
    assert text_field(form, "missing") == ""
    with pytest.raises(InvalidInputError, match="at most 10"):
        text_field(form, "long", 10)
    assert parse_time("") is None
    assert parse_time("2026-11-30") == datetime(2026, 11, 30, tzinfo=UTC)
    end = parse_time("2026-11-30", end_of_day=True)
    assert end is not None and (end.hour, end.minute) == (23, 59)
    assert parse_time("2026-11-30T20:31+01:00") == datetime(2026, 11, 30, 19, 31, tzinfo=UTC)
    with pytest.raises(InvalidInputError):
        parse_time("yesterday")
    assert (number(None), number(float("nan")), number(1234), number(0.123456)) == (
        "\N{EN DASH}",
        "\N{EN DASH}",
        "1,234",
        "0.1235",
    )


def test_csv_cells_never_start_a_formula() -> None:
    assert _csv_cell("=1+2") == "'=1+2"
    assert _csv_cell("@SUM(A1)") == "'@SUM(A1)"
    assert _csv_cell("-5") == "'-5"
    assert _csv_cell("fine") == "fine"
    assert _csv_cell(None) == ""
    assert _csv_cell({"b": 1, "a": 2}) == '{"a": 2, "b": 1}'


def test_only_dashboard_paths_are_redirect_targets() -> None:
    assert _safe_next("/ui/approvals?page=2") == "/ui/approvals?page=2"
    for target in ("https://evil.example/", "//evil.example/ui/", "/api/v1/models", "/ui\\x", ""):
        assert _safe_next(target) == ""


def test_buttons_follow_the_role() -> None:
    assert abilities(Role.VIEWER) == {
        "read": True,
        "contribute": False,
        "approve": False,
        "administer": False,
    }
    assert abilities(Role.APPROVER)["approve"] is True
    assert abilities(Role.APPROVER)["administer"] is False


def test_posts_need_the_session_token_and_the_same_origin() -> None:
    session = Session.fresh("carol")
    check = Sessions.check_post
    assert check(_request({}), session, session.csrf) is session
    assert check(_request({"origin": "http://dash:8000"}), session, session.csrf) is session
    assert check(_request({"sec-fetch-site": "same-origin"}), session, session.csrf) is session
    for headers, token, who in (
        ({}, "", session),
        ({}, "forged", session),
        ({}, session.csrf, None),
        ({"origin": "https://evil.example"}, session.csrf, session),
        ({"origin": "null"}, session.csrf, session),
        ({"sec-fetch-site": "cross-site"}, session.csrf, session),
        ({"sec-fetch-site": "same-site"}, session.csrf, session),
    ):
        with pytest.raises(AccessError):
            check(_request(headers), who, token)
    assert Session.fresh().csrf != Session.fresh().csrf


def test_the_session_key_is_made_once_private_and_configurable(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    first = session_secret(settings)
    assert session_secret(settings) == first
    kept = tmp_path / SECRET_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [kept]  # no temporary file left behind
    configured = "k" * 40
    assert session_secret(Settings(home=tmp_path, dashboard_secret=configured)) == configured
    kept.write_text("short")
    with pytest.raises(InvalidInputError, match="shorter than 32"):
        session_secret(settings)
