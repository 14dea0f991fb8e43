"""What the deployment files are checked against: the code's settings, routes and servers.

Shared by test_compose.py and test_k8s_manifests.py: each builds the apps it
deploys (never starts them) and asks them what they answer, so a file naming
a variable, path or route the code does not have fails its test.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import httpx
from pydantic_settings import BaseSettings
from starlette.routing import BaseRoute, Mount, Route

from modelreg.api.app import create_app as create_api_app
from modelreg.registry import Registry
from modelreg.serving.app import create_app as create_serving_app
from modelreg.serving.config import ServerConfig
from modelreg.settings import Settings
from modelreg.workers import _OpsServer


def settings_env_names(model: type[BaseSettings] = Settings) -> set[str]:
    """Every environment variable the settings read: prefix + field name, groups recursively."""
    prefix = str(model.model_config.get("env_prefix") or "")
    names: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= settings_env_names(annotation)  # a group reads its own variables
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def route_methods(routes: list[BaseRoute], prefix: str = "") -> dict[str, set[str]]:
    """Path -> HTTP methods of every route, mounted sub-apps included."""
    found: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Mount):
            for path, methods in route_methods(route.routes, prefix + route.path).items():
                found.setdefault(path, set()).update(methods)
        elif isinstance(route, Route):
            found.setdefault(prefix + route.path, set()).update(route.methods or ())
    return found


def get_paths(routes: list[BaseRoute]) -> set[str]:
    """The paths answering GET."""
    return {path for path, methods in route_methods(routes).items() if "GET" in methods}


class NoSource:
    """Stands in for the registry: building the serving app reads nothing from it."""


def serving_routes(config: ServerConfig, home: Path) -> dict[str, set[str]]:
    """Path -> methods of the model server ``modelreg serve`` runs for ``config``."""
    app = create_serving_app(config, cast(Any, NoSource()), settings=Settings(home=home))
    return route_methods(app.routes)


def offline_settings(home: Path) -> Settings:
    """Settings whose MLflow is unreachable and whose ledger is a fresh SQLite file."""
    return Settings(
        home=home,
        api_runs_workers=False,
        tracking_uri="http://127.0.0.1:9",
        ledger_uri=f"sqlite:///{home / 'ledger.db'}",
    )


def api_routes(home: Path) -> dict[str, set[str]]:
    """Path -> methods of the API service and its dashboard (built, never started)."""
    settings = offline_settings(home)
    registry = Registry(settings)
    try:
        return route_methods(create_api_app(settings, registry).routes)
    finally:
        registry.close()


def worker_answers(paths: Iterable[str], home: Path) -> dict[str, int]:
    """The status ``modelreg worker``'s metrics server gives each path (it has no route table).

    Its /health asks the registry, whose MLflow is unreachable here: 503, not 404.
    """
    registry = Registry(offline_settings(home))
    server = _OpsServer(("127.0.0.1", 0), registry, [])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with httpx.Client(base_url=base, trust_env=False) as client:
            return {path: client.get(path).status_code for path in paths}
    finally:
        server.shutdown()
        server.server_close()
        registry.close()
