"""Tamper detection: change an artifact behind MLflow's back and `verify` must notice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from registry_helpers import overwrite_artifact

from modelreg.registry import Registry
from services import Backend

pytestmark = pytest.mark.integration


def test_verify_detects_a_modified_artifact(
    registry: Registry, register_tree: Any, backend: Backend, model_name: str, tmp_path: Path
) -> None:
    view = register_tree()
    assert [r.ok for r in registry.verify(model_name)] == [True]

    # Overwrite one file of the stored model through the artifact store itself.
    forged = tmp_path / "MLmodel"
    forged.write_text("artifact_path: model\nflavors: {}\n")
    overwrite_artifact(backend, model_name, 1, forged)

    [result] = registry.verify(model_name, "1")
    assert not result.ok
    assert result.problems == ["modified: MLmodel"]
    assert result.expected_digest == view.digest
    assert result.actual_digest != view.digest
