"""A model server's import graph: no registry facade, no database layer, no governance policy."""

from __future__ import annotations

import json
import subprocess
import sys

# What a replica must not load: the registry package pulls in SQLAlchemy, Alembic,
# the governance policy and webhooks, although serving needs only a ModelSource.
FORBIDDEN = ("sqlalchemy", "alembic", "modelreg.policy", "modelreg.registry")


def _loaded_after(statement: str) -> list[str]:
    probe = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


def test_the_serving_app_imports_no_registry_database_or_policy() -> None:
    modules = _loaded_after("import modelreg.serving.app")
    assert "modelreg.serving.dataplane" in modules
    assert _forbidden(modules) == []


def test_the_probe_sees_what_the_registry_brings() -> None:
    # The check above can fail: importing the facade loads what serving must not.
    assert {"sqlalchemy", "modelreg.policy"} <= set(
        _forbidden(_loaded_after("import modelreg.registry"))
    )
