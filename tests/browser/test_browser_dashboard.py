"""The dashboard in a real browser: Debian's Chromium (headless) over a real API server.

tests/dashboard/ checks the server side through TestClient; these drive the
same pages the way people do: typing into the log-in form with the keyboard,
clicking the approve and reject buttons, a page on another site posting a
form, a phone-width screen. Every page gets an axe-core scan and a
screenshot (test-artifacts/screenshots/, copied to docs/screenshots/).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient
from registry_helpers import production

from dashboard.dashboard_helpers import backfill_history, seed_requested_experiment
from modelreg.domain import Action
from modelreg.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

RegisterAuc = Callable[..., int]
PHONE = {"width": 375, "height": 740}
LAPTOP = {"width": 1280, "height": 800}
# axe-core's two worst impact levels: a page with either cannot ship.
BLOCKING = {"serious", "critical"}


def _actions(registry: Registry, name: str, action: Action) -> list[tuple[int, str, str]]:
    return [
        (e.version, e.actor, e.reason) for e in registry.history(name).events if e.action is action
    ]


def _tags(registry: Registry, name: str, version: int) -> dict[str, str]:
    found = MlflowClient(registry.gateway.tracking_uri).get_model_version(name, str(version))
    return dict(found.tags)


def _log_in(chromium: Any, server: str, name: str) -> Any:
    """A new browser context (its own cookies) logged in as ``name`` through the form."""
    context = chromium.new_context(viewport=LAPTOP, base_url=server)
    page = context.new_page()
    page.goto("/ui/login")
    page.fill("#username", name)
    page.click("button:has-text('Log in')")
    page.wait_for_url("**/ui/")
    return page


def _blocking_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    report = Axe().run(page).response
    assert report["passes"], "axe-core checked nothing on the page"
    found = report["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in found
        if v["impact"] in BLOCKING
    ]


def _overflow(page: Any) -> int:
    """How many CSS pixels the page is wider than the screen (0: no horizontal scrolling)."""
    width: int = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


def _widest(page: Any) -> list[str]:
    """The texts that stick out past the right edge of the screen, for the failure message."""
    found: list[str] = page.evaluate(
        """() => {
            const edge = document.documentElement.clientWidth, out = [];
            const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            for (let node = walk.nextNode(); node; node = walk.nextNode()) {
                if (node.parentElement.closest('.scroll, .skip')) continue;
                const range = document.createRange();
                range.selectNodeContents(node);
                if (range.getBoundingClientRect().right > edge)
                    out.push(node.parentElement.tagName + ': ' + node.textContent.slice(0, 80));
            }
            return out.slice(0, 5);
        }"""
    )
    return found


@on_sqlite
def test_every_page_by_keyboard_axe_and_phone_with_screenshots(
    governed: Registry,
    register_auc: RegisterAuc,
    server: str,
    chromium: Any,
    model_name: str,
    screenshots: Path,
) -> None:
    control, treatment, experiment = seed_requested_experiment(
        governed, register_auc, model_name, requests=1000
    )
    backfill_history(governed, experiment, control, treatment)

    context = chromium.new_context(viewport=LAPTOP, base_url=server)
    page = context.new_page()
    page.goto("/ui/approvals")
    assert page.url.endswith("/ui/login?next=%2Fui%2Fapprovals")
    assert _blocking_violations(page) == [], "login"
    page.screenshot(path=screenshots / "01-login.png", full_page=True)
    # Keyboard only: Tab from the top of the page reaches the name field, then the button.
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "username":
            break
    else:
        pytest.fail("Tab never reached the name field")
    page.keyboard.type("carol")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent.trim()") == "Log in"
    page.keyboard.press("Enter")
    page.wait_for_url("**/ui/approvals")

    pages = {
        # Filtered by name: other test files share this backend, and 35 models fill a page.
        "02-models": (f"/ui/?q={model_name}", [model_name, f"v{control}"]),
        "03-model": (f"/ui/models/{model_name}", ["Lifecycle timeline", "baseline"]),
        "04-version": (f"/ui/models/{model_name}/versions/{control}", ["test_auc", "Lineage"]),
        "05-approvals": ("/ui/approvals", [f"{model_name} v{treatment}", "beats v1 offline"]),
        "06-experiments": ("/ui/experiments", [experiment]),
        "07-experiment": (
            f"/ui/models/{model_name}/experiment",
            ["Verdict", "treatment", "Requests per minute"],
        ),
        "08-serving": ("/ui/serving", ["replica-a", "Serving since", "refused"]),
        "09-audit": (f"/ui/audit?model={model_name}", ["ab_start", "connie"]),
    }
    for shot, (path, expected) in pages.items():
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        text = page.inner_text("main")
        for wanted in expected:
            assert wanted in text, (path, wanted)
        assert _blocking_violations(page) == [], path
        page.screenshot(path=screenshots / f"{shot}.png", full_page=True)

    phone = chromium.new_context(viewport=PHONE, base_url=server, is_mobile=True)
    phone.add_cookies(context.cookies())
    small = phone.new_page()
    for path, _ in pages.values():
        small.goto(path)
        assert _overflow(small) <= 0, (path, _widest(small))
    small.goto(f"/ui/models/{model_name}/versions/{control}")
    small.screenshot(path=screenshots / "10-version-phone.png", full_page=True)
    phone.close()
    context.close()


@on_sqlite
def test_approve_and_reject_in_the_browser_agree_with_the_ledger_and_mlflow(
    governed: Registry, register_auc: RegisterAuc, server: str, chromium: Any, model_name: str
) -> None:
    approved = register_auc(0.9)
    rejected = register_auc(0.92, seed=1)
    for version in (approved, rejected):
        governed.request(model_name, version, comment="ready", actor="connie")
    page = _log_in(chromium, server, "carol")
    page.goto("/ui/approvals")

    # The ledger is shared with other tests' models: find this model's forms by their action.
    forms = f"/ui/models/{model_name}/versions"
    page.fill(f"form[action='{forms}/{approved}/approve'] textarea", "checked the eval report")
    with page.expect_navigation() as sent:
        page.click(f"form[action='{forms}/{approved}/approve'] button")
    assert sent.value.status == 200, page.inner_text("main")
    assert page.url.endswith("/ui/approvals?notice=approved")
    assert "Approval recorded." in page.inner_text("main")
    page.fill(f"form[action='{forms}/{rejected}/reject'] textarea", "data_version is stale")
    with page.expect_navigation() as sent:
        page.click(f"form[action='{forms}/{rejected}/reject'] button")
    assert sent.value.status == 200, page.inner_text("main")
    assert page.url.endswith("/ui/approvals?notice=rejected")
    queue = page.inner_text("main")
    assert "Rejection recorded." in queue
    assert f"{model_name} v" not in queue  # both requests are decided

    assert _actions(governed, model_name, Action.APPROVE) == [
        (approved, "carol", "checked the eval report")
    ]
    assert _actions(governed, model_name, Action.REJECT) == [
        (rejected, "carol", "data_version is stale")
    ]
    assert production(governed, model_name) == approved
    assert _tags(governed, model_name, approved)["approved_by"] == "carol"
    assert _tags(governed, model_name, rejected)["rejected_by"] == "carol"
    page.goto(f"/ui/models/{model_name}")
    timeline = page.inner_text("main")
    assert "checked the eval report" in timeline and "data_version is stale" in timeline
    page.goto(f"/ui/models/{model_name}/versions/{approved}")
    assert "Production" in page.inner_text("main")
    page.context.close()


@on_sqlite
def test_refusals_own_version_cross_site_post_and_viewer(
    governed: Registry, register_auc: RegisterAuc, server: str, chromium: Any, model_name: str
) -> None:
    version = register_auc(0.9)  # registered by alice, an approver
    governed.request(model_name, version, comment="ready", actor="connie")
    approve = f"/ui/models/{model_name}/versions/{version}/approve"

    # The registrant sees the button (she is an approver) but the facade refuses her.
    alice = _log_in(chromium, server, "alice")
    alice.goto("/ui/approvals")
    with alice.expect_navigation() as sent:
        alice.click(f"form[action='{approve}'] button")
    assert sent.value.status == 403
    assert "Not allowed" in alice.inner_text("main")
    alice.context.close()

    # A logged-in approver visits another site whose page posts the approval form for them.
    carol = _log_in(chromium, server, "carol")
    forged = (
        f'<form id="f" method="post" action="{server}{approve}">'
        '<input name="comment" value="forged"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    carol.route(
        "http://evil.example/**",
        lambda route: route.fulfill(status=200, content_type="text/html", body=forged),
    )
    with carol.expect_navigation(url=f"**{approve}") as sent:
        carol.goto("http://evil.example/prize")
    assert sent.value.status == 403
    assert "Traceback" not in carol.content()
    carol.context.close()

    # A viewer sees no action buttons, and a form they make themselves is refused.
    victor = _log_in(chromium, server, "victor")
    for path in ("/ui/approvals", f"/ui/models/{model_name}", approve.rsplit("/", 1)[0]):
        victor.goto(path)
        assert victor.locator("main form").count() == 0, path
        assert victor.locator("main button").count() == 0, path
    with victor.expect_navigation(url=f"**{approve}") as sent:
        victor.evaluate(
            """action => {
            const token = document.querySelector('input[name=csrf_token]').value;
            const form = document.createElement('form');
            form.method = 'post';
            form.action = action;
            form.innerHTML = `<input name="csrf_token" value="${token}">`;
            document.body.appendChild(form);
            form.submit();
        }""",
            approve,
        )
    assert sent.value.status == 403
    assert "viewer" in victor.inner_text("main")
    victor.context.close()

    assert _actions(governed, model_name, Action.APPROVE) == []
    assert production(governed, model_name) is None
