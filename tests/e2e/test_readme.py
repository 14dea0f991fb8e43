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

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from reader_shell import (
    KILL_JOBS_ON_EXIT,
    ROOT,
    background,
    reader_clone,
    wait_ok,
    with_free_ports,
)

pytestmark = pytest.mark.e2e

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


def _script(blocks: list[Block]) -> str:
    # A step that fails must not leave a background job (`modelreg serve &`) holding the
    # output pipes: the test would wait for them until its timeout instead of failing.
    lines = ["set -euo pipefail", KILL_JOBS_ON_EXIT]
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
    text, ports = with_free_ports((ROOT / "README.md").read_text(encoding="utf-8"))
    blocks = readme_blocks(text)
    started = [b for b in blocks if b.mark == "background"]
    tour = [b for b in blocks if not b.mark and b.lang in {"bash", "python"}]
    clone, env = reader_clone(tmp_path, text, columns=100)

    (up,) = started
    command = up.body.replace(
        "modelreg up", f"modelreg up --port {ports['5000']} --api-port {ports['8000']}"
    )
    with background(command, clone, env, tmp_path / "up.log"):
        try:
            wait_ok(f"http://127.0.0.1:{ports['8000']}/health", 180)
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
