"""The dashboard's server side through TestClient over a real registry (MLflow, ledger: SQLite).

The pages only call the facade, whose rules are covered on both backends by
the integration tests; these check log-in, every page, the forms (with the
same roles and separation of duties as the CLI), CSRF and origin refusals,
exports and error pages. Browser tests drive the same pages in Chromium.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from collections.abc import Callable

import pytest
from dashboard_helpers import Browser, csrf_of, seed_requested_experiment
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from registry_helpers import production

from modelreg.api.app import create_app
from modelreg.dashboard.session import COOKIE, SECRET_FILE
from modelreg.domain import Action, Stage
from modelreg.registry import EventFilter, Registry

pytestmark = pytest.mark.integration
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

Login = Callable[[str], Browser]
RegisterAuc = Callable[..., int]


def _actions(registry: Registry, name: str, action: Action) -> list[tuple[int, str, str]]:
    return [
        (e.version, e.actor, e.reason) for e in registry.history(name).events if e.action is action
    ]


def _tags(registry: Registry, name: str, version: int) -> dict[str, str]:
    found = MlflowClient(registry.gateway.tracking_uri).get_model_version(name, str(version))
    return dict(found.tags)


@on_sqlite
def test_every_page_opens_for_a_logged_in_user(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    control, treatment, experiment = seed_requested_experiment(
        governed, register_auc, model_name, requests=100
    )

    anonymous = TestClient(create_app(governed.settings, governed))
    sent = anonymous.get("/ui/approvals", follow_redirects=False)
    assert sent.status_code == 303
    assert sent.headers["location"] == "/ui/login?next=%2Fui%2Fapprovals"
    assert anonymous.get("/", follow_redirects=False).headers["location"] == "/ui/"

    carol = browser("carol")
    pages = {
        "/ui/": [model_name, f"v{control}"],
        f"/ui/?q={model_name[:6]}&has=experiment": [model_name],
        f"/ui/models/{model_name}": ["Lifecycle timeline", "baseline", "Roll back"],
        f"/ui/models/{model_name}/versions/{control}": ["metric test_auc", "pass", "Lineage"],
        "/ui/approvals": [f"{model_name} v{treatment}", "beats v1", "Approve"],
        "/ui/experiments": [experiment, "running"],
        f"/ui/models/{model_name}/experiment": [
            *("Verdict", "treatment", "Ramp", "Over time", "Requests per minute", "p99 latency"),
        ],
        "/ui/serving": ["replica-a", "Serving since", "refused", "artifact digest mismatch"],
        f"/ui/serving?model={model_name}": ["replica-a", f"v{treatment}"],
        f"/ui/audit?model={model_name}&action=ab_start": ["ab_start", "connie"],
    }
    for path, expected in pages.items():
        page = carol.client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["content-type"].startswith("text/html")
        for text in expected:
            assert text in page.text, (path, text)
        assert '<main id="main"' in page.text and "<h1>" in page.text
    assert (
        carol.client.get("/ui/static/dashboard.css").headers["content-type"].startswith("text/css")
    )


@on_sqlite
def test_approve_and_reject_agree_with_the_ledger_and_mlflow(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    approved = register_auc(0.9)
    rejected = register_auc(0.92, seed=1)
    for version in (approved, rejected):
        governed.request(model_name, version, comment="ready", actor="connie")
    carol = browser("carol")
    base = f"/ui/models/{model_name}/versions"

    done = carol.post(f"{base}/{approved}/approve", comment="checked the eval report")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/ui/approvals?notice=approved"
    done = carol.post(f"{base}/{rejected}/reject", comment="data_version is stale")
    assert done.status_code == 303, done.text

    assert (approved, "carol", "checked the eval report") in _actions(
        governed, model_name, Action.APPROVE
    )
    assert _actions(governed, model_name, Action.REJECT) == [
        (rejected, "carol", "data_version is stale")
    ]
    assert production(governed, model_name) == approved
    assert _tags(governed, model_name, approved)["approved_by"] == "carol"
    assert _tags(governed, model_name, rejected)["rejected_by"] == "carol"
    queue = carol.client.get("/ui/approvals?notice=approved")
    assert "Approval recorded." in queue.text
    assert f"{model_name} v" not in queue.text  # the ledger is shared with other tests' models
    model = carol.client.get(f"/ui/models/{model_name}").text
    assert "data_version is stale" in model and "checked the eval report" in model

    refused = carol.post(f"{base}/{rejected}/approve", comment="again")
    assert refused.status_code == 409
    assert "Traceback" not in refused.text


@on_sqlite
def test_the_registrant_cannot_approve_their_own_version(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    version = register_auc(0.9)  # registered by alice, an approver
    governed.request(model_name, version, actor="connie")
    alice = browser("alice")
    refused = alice.post(f"/ui/models/{model_name}/versions/{version}/approve", comment="mine")
    assert refused.status_code == 403
    assert "alice" in refused.text and "Not allowed" in refused.text
    connie = browser("connie")  # the requester, and a contributor
    assert connie.post(f"/ui/models/{model_name}/versions/{version}/approve").status_code == 403
    assert _actions(governed, model_name, Action.APPROVE) == []
    assert production(governed, model_name) is None


@on_sqlite
def test_forged_posts_are_refused(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    version = register_auc(0.9)
    governed.request(model_name, version, actor="connie")
    carol = browser("carol")
    path = f"/ui/models/{model_name}/versions/{version}/approve"
    client = carol.client
    assert client.post(path, data={"comment": "x"}, follow_redirects=False).status_code == 403
    wrong = {"csrf_token": "not-the-token", "comment": "x"}
    assert client.post(path, data=wrong, follow_redirects=False).status_code == 403
    right = {"csrf_token": carol.token}
    elsewhere = client.post(
        path, data=right, headers={"Origin": "https://evil.example"}, follow_redirects=False
    )
    assert elsewhere.status_code == 403
    cross = client.post(
        path, data=right, headers={"Sec-Fetch-Site": "cross-site"}, follow_redirects=False
    )
    assert cross.status_code == 403
    # A request with no session at all (another site's form, the cookie withheld).
    stranger = TestClient(create_app(governed.settings, governed))
    assert stranger.post(path, data=right, follow_redirects=False).status_code == 403
    assert client.get(path).status_code == 405  # no state change by GET
    assert _actions(governed, model_name, Action.APPROVE) == []

    same_site = client.post(
        path,
        data={**right, "comment": "fine"},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert same_site.status_code == 303
    assert production(governed, model_name) == version


@on_sqlite
def test_a_viewer_sees_no_forms_and_is_refused(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    version = register_auc(0.9)
    governed.request(model_name, version, actor="connie")
    victor = browser("victor")
    for path in (
        "/ui/approvals",
        f"/ui/models/{model_name}",
        f"/ui/models/{model_name}/versions/{version}",
    ):
        page = victor.client.get(path)
        assert page.status_code == 200
        # The only form that posts is the log-out button.
        assert page.text.count('method="post"') == 1, path
        assert "/logout" in page.text
    refused = victor.post(f"/ui/models/{model_name}/versions/{version}/approve")
    assert refused.status_code == 403
    assert "viewer" in refused.text
    assert victor.post(f"/ui/models/{model_name}/rollback").status_code == 403
    assert _actions(governed, model_name, Action.APPROVE) == []


@on_sqlite
def test_audit_exports_csv_and_json(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    version = register_auc(0.9)
    governed.request(model_name, version, comment="=HYPERLINK(1)", actor="connie")
    carol = browser("carol")
    query = f"/ui/audit?model={model_name}"
    exported = carol.client.get(f"{query}&format=csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["action"] for r in rows] == ["request", "register"]  # newest first
    assert rows[0]["actor"] == "connie"
    assert rows[0]["reason"] == "'=HYPERLINK(1)"  # never a formula in a spreadsheet

    as_json = carol.client.get(f"{query}&format=json&action=register")
    assert as_json.status_code == 200
    events = json.loads(as_json.text)
    assert [(e["action"], e["version"], e["model"]) for e in events] == [
        ("register", version, model_name)
    ]
    page = carol.client.get(query).text
    assert "format=csv" in page and "format=json" in page


@on_sqlite
def test_bad_input_gets_a_friendly_4xx_page(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    register_auc(0.9)
    carol = browser("carol")
    for path, status in {
        "/ui/models/no-such-model": 404,
        f"/ui/models/{model_name}/versions/99": 404,
        f"/ui/models/{model_name}/versions/not-a-version": 400,
        "/ui/?page=0": 400,
        "/ui/?page=abc": 400,
        "/ui/?page=99": 400,
        "/ui/?has=everything": 400,
        "/ui/audit?action=explode": 400,
        "/ui/audit?since=yesterday": 400,
        f"/ui/models/{model_name}/experiment": 404,
        "/ui/no-such-page": 404,
    }.items():
        page = carol.client.get(path)
        assert page.status_code == status, (path, page.text)
        assert page.headers["content-type"].startswith("text/html"), path
        assert "Traceback" not in page.text
        assert 'role="alert"' in page.text
    too_long = carol.post(f"/ui/models/{model_name}/rollback", reason="x" * 3000)
    assert too_long.status_code == 400
    bad_share = carol.post(f"/ui/models/{model_name}/experiment/ramp", traffic="lots")
    assert bad_share.status_code == 400


@on_sqlite
def test_log_in_sessions_and_cookie(governed: Registry, browser: Login) -> None:
    client = TestClient(create_app(governed.settings, governed))
    form = client.get("/ui/login")
    cookie = form.headers["set-cookie"]
    assert f"{COOKIE}=" in cookie
    for flag in ("HttpOnly", "Path=/ui", "SameSite=lax"):
        assert flag.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # MODELREG_DASHBOARD_SECURE_COOKIE is off here
    empty = client.post("/ui/login", data={"csrf_token": csrf_of(form.text), "username": " "})
    assert empty.status_code == 401
    assert "type the name" in empty.text
    offsite = client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_of(form.text),
            "username": "carol",
            "next": "https://evil.example",
        },
        follow_redirects=False,
    )
    assert offsite.headers["location"] == "/ui/"  # no open redirect

    secret = governed.settings.home / SECRET_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert len(secret.read_text()) >= 32

    carol = browser("carol")
    assert carol.client.get("/ui/").status_code == 200
    carol.client.cookies.set(COOKIE, carol.client.cookies[COOKIE] + "x", path="/ui")
    assert carol.client.get("/ui/", follow_redirects=False).status_code == 303  # forged
    again = browser("carol")
    logged_out = again.post("/ui/logout")
    assert logged_out.status_code == 303
    assert again.client.get("/ui/", follow_redirects=False).status_code == 303


@on_sqlite
def test_experiment_forms_ramp_stop_and_conclude(
    governed: Registry, register_auc: RegisterAuc, browser: Login, model_name: str
) -> None:
    control = register_auc(0.9)
    treatment = register_auc(0.91, seed=1)
    governed.promote(model_name, control, Stage.PRODUCTION, actor="ann")
    governed.ab_start(model_name, [treatment], traffic=0.1, actor="connie")
    connie = browser("connie")
    base = f"/ui/models/{model_name}/experiment"
    assert connie.post(f"{base}/ramp", traffic="1.5").status_code == 400  # the facade's range
    ramped = connie.post(f"{base}/ramp", traffic="0.5", reason="no errors at 10%")
    assert ramped.status_code == 303, ramped.text
    assert governed.ab_status(model_name).traffic == pytest.approx(0.5)
    assert "Traffic changed." in connie.client.get(ramped.headers["location"]).text
    assert connie.post(f"{base}/stop", reason="enough").status_code == 303
    assert governed.ab_status(model_name).state == "stopped"
    page = connie.client.get(base).text
    assert "/experiment/ramp" not in page and "/experiment/conclude" in page
    # Promoting the winner needs the approver role; connie is a contributor.
    assert connie.post(f"{base}/conclude", promote="yes").status_code == 403
    assert connie.post(f"{base}/conclude", reason="inconclusive").status_code == 303
    assert governed.ab_status(model_name).state == "concluded"
    decisions = [e.action for e in governed.audit(EventFilter(model=model_name)).events]
    assert {Action.AB_RAMP, Action.AB_STOP, Action.AB_CONCLUDE} <= set(decisions)
    listed = connie.client.get(f"/ui/experiments?model={model_name}&state=concluded")
    assert "inconclusive" in listed.text
