"""scripts/_venv.sh, the set-up shared by scripts/demo and scripts/test, on machines that fight it.

Each test sources the script in bash and calls its functions on a venv under
``tmp_path``; a fake ``python3.11``, ``apt-get`` and ``id`` placed first on
PATH stand in for a stock Debian/Ubuntu without python3.11-venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _bash(
    call: str, *args: str, path_prefix: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``call`` (a function of _venv.sh, with "$@" = args) under the scripts' shell options."""
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    script = f'set -euo pipefail; source "{ROOT}/scripts/_venv.sh"; {call} "$@"'
    return subprocess.run(
        ["bash", "-c", script, "bash", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _fake_debian(tmp_path: Path, *, uid: int) -> tuple[Path, Path]:
    """A bin directory whose python3.11 lacks ensurepip, whose apt-get only logs, and whose id
    says ``uid``. Returns the directory and apt-get's log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt_log = tmp_path / "apt-get.log"
    scripts = {
        "python3.11": (
            f'case "$*" in *ensurepip*) echo "No module named ensurepip" >&2; exit 1;; esac\n'
            f'exec "{sys.executable}" "$@"\n'
        ),
        "apt-get": f'echo "$*" >> "{apt_log}"\n',
        "id": f"echo {uid}\n",
    }
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}")
        path.chmod(0o755)
    return bin_dir, apt_log


def test_a_half_made_venv_is_created_again(tmp_path: Path) -> None:
    python = shutil.which("python3.11") or shutil.which("python3")
    assert python is not None
    venv = tmp_path / ".venv"
    # What `python3 -m venv` leaves behind when ensurepip is missing: bin/python, no pip.
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    broken = subprocess.run(
        [venv / "bin" / "python", "-m", "pip", "--version"], capture_output=True, check=False
    )
    assert broken.returncode != 0

    done = _bash("ensure_venv", str(venv))

    assert done.returncode == 0, done.stdout + done.stderr
    assert "creating it again" in done.stdout
    subprocess.run([venv / "bin" / "python", "-m", "pip", "--version"], check=True)
    again = _bash("ensure_venv", str(venv))  # a working venv is left as it is
    assert again.returncode == 0
    assert again.stdout == ""


def test_without_ensurepip_root_installs_the_versioned_venv_package(tmp_path: Path) -> None:
    bin_dir, apt_log = _fake_debian(tmp_path, uid=0)

    done = _bash("ensure_venv", str(tmp_path / ".venv"), path_prefix=bin_dir)

    minor = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    calls = apt_log.read_text().splitlines()
    assert calls[0] == "update -qq"
    assert calls[1] == f"install -y -qq {minor}"
    # The fake apt-get installs nothing, so the check after it must fail, and say so.
    assert done.returncode == 1
    assert f"installed {minor}, but" in done.stderr
    assert not (tmp_path / ".venv").exists()


def test_without_ensurepip_a_user_is_told_what_to_install(tmp_path: Path) -> None:
    bin_dir, apt_log = _fake_debian(tmp_path, uid=1000)

    done = _bash("ensure_venv", str(tmp_path / ".venv"), path_prefix=bin_dir)

    minor = f"python{sys.version_info.major}.{sys.version_info.minor}-venv"
    assert done.returncode == 1
    assert f"sudo apt-get install {minor}" in done.stderr
    assert not apt_log.exists()
    assert not (tmp_path / ".venv").exists()


def test_a_directory_that_is_not_a_venv_is_left_alone(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "notes.txt").write_text("mine")

    done = _bash("ensure_venv", str(venv))

    assert done.returncode == 1
    assert "is not a virtual environment" in done.stderr
    assert (venv / "notes.txt").read_text() == "mine"
