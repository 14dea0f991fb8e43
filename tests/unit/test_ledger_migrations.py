"""The ledger's cheap schema check: a database at the newest migration never loads Alembic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from modelreg.ledger import Ledger, store


def test_the_fast_path_knows_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    assert ScriptDirectory.from_config(config).get_current_head() == store.HEAD_REVISION


def test_a_migrated_ledger_opens_without_importing_alembic(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    Ledger(uri).migrate()  # a new database takes Alembic's path
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from modelreg.ledger import Ledger\n"
            f"assert Ledger({uri!r}).events() == []\n"
            "assert 'alembic' not in sys.modules, 'Alembic was imported'\n",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr


def test_upgrading_an_existing_ledger_builds_the_state_projection(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from alembic import command
    from sqlalchemy import create_engine, text

    from modelreg.lifecycle import ModelState

    uri = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = Config()
    config.set_main_option("script_location", str(Path(store.__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", uri)
    engine = create_engine(uri)
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")  # a ledger from before the projection, with history
        for version, action, to_stage in [
            (1, "register", "None"),
            (2, "adopt", "None"),
            (1, "transition", "Staging"),
            (1, "transition", "Production"),
            (2, "transition", "Staging"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO events (model, version, action, actor, at, to_stage, reason, "
                    "semver, digest, details) VALUES ('m', :v, :a, 'x', :at, :s, '', '', '', '{}')"
                ),
                {"v": version, "a": action, "s": to_stage, "at": datetime.now(UTC)},
            )
    engine.dispose()
    ledger = Ledger(uri)
    ledger.migrate()
    state = ledger.model_state("m")
    assert state == ModelState.fold(ledger.events("m"))
    assert (state.production, state.staging) == (1, 2)
    ledger.dispose()
