"""Fixtures of the browser tests: Debian's Chromium driven by Playwright, a real API server.

The registry fixtures (a facade on the real MLflow and ledger, the starter
policy, registering versions) are the integration tests' own; their conftest
imports its helpers as top-level modules, so its folder goes on the path.

Playwright never downloads a browser here: it drives ``/usr/bin/chromium``
(``apt-get install chromium``, which ``scripts/test`` does as root). Without
it the tests skip and say why.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

sys.path.insert(0, str(Path(__file__).parents[1] / "integration"))

from integration.conftest import governed, register_auc, registry
from modelreg.api.app import create_app
from modelreg.registry import Registry

__all__ = ["governed", "register_auc", "registry"]

CHROMIUM = Path("/usr/bin/chromium")
# Kept by CI with the rest of the working tree; docs/screenshots/ holds a copy.
SCREENSHOTS = Path(__file__).parents[2] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One headless Chromium per module (Playwright's sync API).

    Not per session: the sync API runs an asyncio loop in the main thread until
    its context exits, and every later test calling ``asyncio.run`` would fail
    with "cannot be called from a running event loop".
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (scripts/test does as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"]
        )
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """The folder the page screenshots go to (made on first use)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def server(governed: Registry) -> Iterator[str]:
    """The API app (dashboard at /ui) on the governed registry, served by uvicorn; its base URL."""
    app = create_app(governed.settings, governed)
    # No lifespan: the test drives the registry itself, no background workers run.
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning")
    config.lifespan = "off"
    web = uvicorn.Server(config)
    thread = threading.Thread(target=web.run, name="dashboard-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not web.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start the dashboard")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        web.should_exit = True
        thread.join(30)
