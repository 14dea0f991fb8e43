"""The demo's home: emptied on every run, only if the demo made it, never under a running demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelreg.cli.demo import MARKER, demo_home
from modelreg.errors import ConflictError


def test_a_new_home_is_created_and_marked(tmp_path: Path) -> None:
    with demo_home(tmp_path / "demo", keep=False) as home:
        assert home == (tmp_path / "demo").resolve()
        assert (home / MARKER).read_text().startswith("Created by `modelreg demo`")


def test_a_marked_home_is_emptied_but_stays_marked(tmp_path: Path) -> None:
    with demo_home(tmp_path / "demo", keep=False) as home:
        (home / "ledger.db").write_text("old run")
        (home / "artifacts" / "1").mkdir(parents=True)
    with demo_home(tmp_path / "demo", keep=False) as home:
        assert sorted(p.name for p in home.iterdir()) == [MARKER]
        assert (home / MARKER).read_text()


def test_keep_home_keeps_what_an_earlier_demo_left(tmp_path: Path) -> None:
    with demo_home(tmp_path / "demo", keep=False) as home:
        (home / "ledger.db").write_text("old run")
    with demo_home(tmp_path / "demo", keep=True) as home:
        assert (home / "ledger.db").read_text() == "old run"


def test_a_directory_the_demo_did_not_create_is_refused_and_untouched(tmp_path: Path) -> None:
    real = tmp_path / "real-home"
    real.mkdir()
    (real / "ledger.db").write_text("years of audit history")

    with (
        pytest.raises(ConflictError, match="not created by `modelreg demo`"),
        demo_home(real, keep=False),
    ):
        pass

    assert (real / "ledger.db").read_text() == "years of audit history"
    with demo_home(real, keep=True) as home:  # asked for explicitly: used as it is, not marked
        assert (home / "ledger.db").exists()
    assert not (real / MARKER).exists()


def test_a_home_in_use_by_a_running_demo_is_not_cleared(tmp_path: Path) -> None:
    with demo_home(tmp_path / "demo", keep=False) as running:
        (running / "mlflow.db").write_text("in use")
        with (
            pytest.raises(ConflictError, match="another `modelreg demo` is running"),
            demo_home(tmp_path / "demo", keep=False),
        ):
            pass
        assert (running / "mlflow.db").read_text() == "in use"


def test_a_taken_port_is_reported_before_the_last_run_is_emptied(tmp_path: Path) -> None:
    import socket

    from modelreg.cli.demo import run_demo
    from modelreg.settings import Settings

    with demo_home(tmp_path / "demo", keep=False) as home:
        (home / "ledger.db").write_text("last run")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConflictError, match="--port"):
            run_demo(Settings(home=tmp_path), port=port, home=tmp_path / "demo")
    assert (home / "ledger.db").read_text() == "last run"
