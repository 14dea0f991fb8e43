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
