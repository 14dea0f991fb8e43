"""Schema-driven fuzzing of the API and the model server from their OpenAPI (schemathesis).

schemathesis' engine runs its examples, coverage (boundary values, wrong types,
missing and extra fields, unexpected methods) and fuzzing phases over every
operation and applies ``not_a_server_error`` to every answer: no 5xx. The API
runs in-process (ASGI); the model server is a real ``modelreg serve``. CI
generates a bounded number of examples per operation (``MODELREG_FUZZ_EXAMPLES``,
default 25: under a minute for both); set it higher for a full run,
e.g. ``MODELREG_FUZZ_EXAMPLES=200``. The seed is fixed, so a failure reproduces.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import events, from_schema
from security_helpers import FIGURES, Stack, Surface

from modelreg.api.app import create_app
from modelreg.registry import Registry
from modelreg.serving.app import create_app as create_server
from modelreg.serving.config import ModelConfig, ServerConfig
from serving.serving_helpers import Server

pytestmark = [
    pytest.mark.integration,
    # Hypothesis warns when it prints a large generated value; a full run makes some.
    pytest.mark.filterwarnings("ignore:Generating overly large repr"),
]

EXAMPLES = int(os.environ.get("MODELREG_FUZZ_EXAMPLES", "25"))


def _config(**extra: Any) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 4242,
            "generation": {"max-examples": EXAMPLES, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, "not_a_server_error": {"enabled": True}},
            **extra,
        }
    )


def _fuzz(schema: Any, surface: Surface) -> None:
    """Run the engine over ``schema``; count every answer and keep every failed check."""
    for event in from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            # In-process, an exception the app does not handle (a 500 over HTTP) arrives here.
            surface.server_errors += 1
            surface.faults.append(f"{event.label}: raised {event.value!r}")
        if isinstance(event, events.FatalError):
            surface.faults.append(f"schemathesis could not run: {event.exception!r}")
        if not isinstance(event, events.ScenarioFinished):
            continue
        for interaction in event.recorder.interactions.values():
            if interaction.response is not None:
                label = f"{interaction.request.method} {interaction.request.uri}"
                status = interaction.response.status_code
                surface.record(label, status, "", refuse=False, http=True)
        for checks in event.recorder.checks.values():
            surface.faults += [
                f"{event.label}: {check.name}: {check.failure_info.code_sample[:300]}"
                for check in checks
                if check.failure_info is not None
            ]


def test_api_answers_no_server_error_to_generated_requests(stack: Stack) -> None:
    surface = FIGURES.setdefault("API, schemathesis", Surface())
    # Its own facade: the ASGI client runs the app's lifespan, which closes the facade at the end.
    registry = Registry.connect(
        stack.backend.tracking_uri, stack.backend.ledger_uri, actor="alice", home=stack.home
    )
    app = create_app(registry.settings, registry)
    _fuzz(schemathesis.openapi.from_asgi("/openapi.json", app, config=_config()), surface)
    assert surface.tried
    assert not surface.faults, "\n".join(surface.faults[:30])


def test_model_server_answers_no_server_error_to_generated_requests(
    stack: Stack, model_server: Server
) -> None:
    surface = FIGURES.setdefault("model server, schemathesis", Surface())
    # The server publishes no schema (as MLflow's); the same app's openapi() describes it.
    document = create_server(ServerConfig(models=[ModelConfig(name=stack.model)]), stack.registry)
    config = _config(**{"base-url": model_server.url})
    _fuzz(schemathesis.openapi.from_dict(document.openapi(), config=config), surface)
    assert surface.tried
    assert not surface.faults, "\n".join(surface.faults[:30])
