"""README.md runs as written: every command and snippet, in order, on a fresh stack.

The tour's code blocks are read from README.md itself, so the README cannot rot.
A block after ``<!-- readme-test: skip ... -->`` is not run (the two set-up
commands: the demo has its own test and the second one is this test suite);
one after ``<!-- readme-test: background -->`` is started and left running
(``modelreg up``, which a reader runs in another shell). The rest run in one
bash session from a fresh git repository standing in for a clone, with the
project's ``.venv`` linked in. Only the ports change: 5000, 8000 and 8080
become free ones, so the test never fights a running stack.
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
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelreg.stack import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(
    r"(?:<!-- readme-test: (?P<mark>\w+)[^>]*-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.S
)


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README and how the test treats it."""

    lang: str
    body: str
    mark: str  # "", "skip" or "background"


def readme_blocks(text: str) -> list[Block]:
    """The README's fenced code blocks in order, with their test marks."""
    return [
        Block(m.group("lang"), m.group("body"), m.group("mark") or "")
        for m in _BLOCK.finditer(text)
    ]


def _wait_ok(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            if response.status == 200:
                return
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


@contextmanager
def _background(command: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[None]:
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


def _script(blocks: list[Block]) -> str:
    lines = ["set -euo pipefail"]
    for block in blocks:
        if block.lang == "bash":
            lines.append(block.body)
        elif block.lang == "python":
            lines.append(f"python - <<'README_PY'\n{block.body}README_PY")
    return "\n".join(lines) + "\n"


def test_blocks_are_found_with_their_marks() -> None:
    blocks = readme_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    marks = [b.mark for b in blocks if b.mark]
    assert marks[:2] == ["skip", "background"]
    assert any(b.lang == "python" for b in blocks)
    assert not [b for b in blocks if b.lang in {"bash", "python"} and "[...]" in b.body]


def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    ports = {"5000": str(free_port()), "8000": str(free_port()), "8080": str(free_port())}
    for written, free in ports.items():
        text = re.sub(rf"(?<![0-9]){written}(?![0-9])", free, text)
    blocks = readme_blocks(text)
    background = [b for b in blocks if b.mark == "background"]
    tour = [b for b in blocks if not b.mark and b.lang in {"bash", "python"}]

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
        "COLUMNS": "100",
    }
    (clone / "README.md").write_text(text, encoding="utf-8")
    (clone / ".gitignore").write_text(".venv\n.modelreg/\nrequest.json\n", encoding="utf-8")
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(argv, cwd=clone, env=env, check=True)

    (up,) = background
    command = up.body.replace(
        "modelreg up", f"modelreg up --port {ports['5000']} --api-port {ports['8000']}"
    )
    with _background(command, clone, env, tmp_path / "up.log"):
        try:
            _wait_ok(f"http://127.0.0.1:{ports['8000']}/health", 180)
        except AssertionError:
            pytest.fail((tmp_path / "up.log").read_text()[-3000:])
        (tmp_path / "tour.sh").write_text(_script(tour), encoding="utf-8")
        done = subprocess.run(
            ["bash", str(tmp_path / "tour.sh")],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    shown = f"--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"
    assert done.returncode == 0, shown
    assert "registered fraud-detection" in done.stdout, shown
    assert re.search(r"v4 1\.\d+\.\d+ sha256:", done.stdout), shown
    assert "promoted" in done.stdout, shown
    assert "declined: exit 4" in done.stdout, shown
    assert '"outcome": "declined"' in done.stdout, shown  # declined by its gates
    assert '"predictions"' in done.stdout, shown
    assert "Traceback" not in done.stderr, shown
