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

import click
import httpx
import typer
import typer.main
from pydantic_settings import BaseSettings
from starlette.routing import BaseRoute, Mount, Route
from uvicorn.main import main as uvicorn_command

from modelreg.api.app import create_app as create_api_app
from modelreg.cli.app import app as cli_app
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


def command_problems(argv: list[str]) -> list[str]:
    """Why ``argv`` is not a command line modelreg, uvicorn or ``mlflow server`` accepts.

    Parses and converts every option as a real run would, without running it.
    """
    try:
        if argv[0] == "modelreg":
            group: Any = typer.main.get_command(cli_app)  # Typer's own click Group
            parent = group.make_context("modelreg", [], resilient_parsing=True)
            command = group.get_command(parent, argv[1])
            if command is None:
                return [f"modelreg has no command {argv[1]!r}"]
            command.make_context(argv[1], argv[2:], parent=parent)
        elif argv[:3] == ["python", "-m", "uvicorn"]:
            uvicorn_command.make_context("uvicorn", argv[3:])
        elif argv[:4] == ["python", "-m", "mlflow", "server"]:
            import mlflow.cli  # heavy, only here

            mlflow_group: Any = mlflow.cli.cli
            mlflow_group.commands["server"].make_context("server", argv[4:])
        else:
            return [f"unknown program {argv[:4]}"]
    except (click.ClickException, typer.TyperException) as exc:  # uvicorn's click, Typer's
        return [f"{' '.join(argv)}: {exc}"]
    return []
