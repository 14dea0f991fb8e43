"""App factory of the modelreg API service (placeholder until the registry lands)."""

from __future__ import annotations

from fastapi import FastAPI

from modelreg.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API application for ``settings`` (read from the environment by default)."""
    settings = settings or Settings()
    app = FastAPI(title="modelreg")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
