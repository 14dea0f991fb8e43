"""What the doc-running tests share: a reader's clone, free ports, a second shell, waiting.

README.md and docs/experiments.md are run as a reader would run them (see
``test_readme.py`` and ``test_experiments_doc.py``); both need the same stand-in
clone, the same port substitution and the same "other shell" for servers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from modelreg.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
WRITTEN_PORTS = ("5000", "8000", "8080")


def with_free_ports(text: str) -> tuple[str, dict[str, str]]:
    """``text`` with the written ports (5000, 8000, 8080) replaced by free ones, and the map."""
    ports = {written: str(free_port()) for written in WRITTEN_PORTS}
    for written, free in ports.items():
        text = re.sub(rf"(?<![0-9]){written}(?![0-9])", free, text)
    return text, ports


def reader_clone(tmp_path: Path, readme: str, *, columns: int) -> tuple[Path, dict[str, str]]:
    """A fresh git repository standing in for a reader's clone, and the reader's environment.

    The project's ``.venv`` is linked in; ``MODELREG_*`` and ``MLFLOW_*`` variables of
    the test run are dropped so the reader starts from the defaults.
    """
    clone = tmp_path / "clone"
    clone.mkdir()
    (clone / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELREG_", "MLFLOW_"))}
    env |= {
        "GIT_AUTHOR_NAME": "reader",
        "GIT_AUTHOR_EMAIL": "reader@example.com",
        "GIT_COMMITTER_NAME": "reader",
        "GIT_COMMITTER_EMAIL": "reader@example.com",
        "XDG_DATA_HOME": str(tmp_path / "xdg"),
        "COLUMNS": str(columns),
    }
    (clone / "README.md").write_text(readme, encoding="utf-8")
    (clone / ".gitignore").write_text(".venv\n.modelreg/\nrequest.json\n", encoding="utf-8")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(argv, cwd=clone, env=env, check=True)
    return clone, env


def wait_ok(url: str, timeout: float) -> None:
    """Until ``url`` answers 200; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def background(command: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
    """Run ``command`` as a reader's other shell would, stopped with Ctrl-C (SIGINT) at the end."""
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
