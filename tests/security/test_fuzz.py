"""Schema-driven fuzzing of the API and the model server from their OpenAPI (schemathesis).

Each operation gets valid and invalid requests generated from its schema
(positive and negative generation) and every answer passes schemathesis'
``not_a_server_error`` check: no 5xx. CI runs a bounded number of examples per
operation (``MODELREG_FUZZ_EXAMPLES``, default 8, a minute or two for both
services); set it higher for a full run, e.g. ``MODELREG_FUZZ_EXAMPLES=200``.
Generation is derandomized, so a failure reproduces with the same setting.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from security_helpers import FIGURES, Stack, Surface

from modelreg.api.app import create_app
from modelreg.serving.app import create_app as create_server
from modelreg.serving.config import ModelConfig, ServerConfig
from serving.serving_helpers import Server

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("MODELREG_FUZZ_EXAMPLES", "8"))


def _fuzz(schema: Any, surface: Surface, call: Callable[[Any], Any]) -> None:
    """Send ``EXAMPLES`` generated requests per operation; record every 5xx as a fault."""
    for result in schema.get_all_operations():
        operation = result.ok()
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def check(case: Any) -> None:
            response = call(case)
            label = f"{case.method} {case.formatted_path}"
            surface.record(label, response.status_code, response.text, refuse=False, http=True)
            try:
                case.validate_response(response, checks=[not_a_server_error])
            except Exception as failure:  # noqa: BLE001 - schemathesis raises its failure group
                surface.faults.append(f"{label}: {str(failure)[:300]}")

        check()


def test_api_answers_no_server_error_to_generated_requests(stack: Stack) -> None:
    surface = FIGURES.setdefault("API, schemathesis", Surface())
    app = create_app(stack.registry.settings, stack.registry)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    _fuzz(schema, surface, lambda case: case.call())
    assert surface.tried
    assert not surface.faults, "\n".join(surface.faults[:30])


def test_model_server_answers_no_server_error_to_generated_requests(
    stack: Stack, model_server: Server
) -> None:
    surface = FIGURES.setdefault("model server, schemathesis", Surface())
    # The server publishes no schema (as MLflow's); the same app's openapi() describes it.
    config = ServerConfig(models=[ModelConfig(name=stack.model)])
    document = create_server(config, stack.registry).openapi()
    schema = schemathesis.openapi.from_dict(document)
    _fuzz(schema, surface, lambda case: case.call(base_url=model_server.url))
    assert surface.tried
    assert not surface.faults, "\n".join(surface.faults[:30])
