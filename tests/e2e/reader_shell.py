"""What the doc-running tests share: a reader's clone, free ports, a second shell, waiting.

README.md, docs/experiments.md and docs/tutorial.md are run as a reader would
run them (see ``test_readme.py``, ``test_experiments_doc.py`` and
``test_tutorial.py``); all need the same stand-in clone, the same port
substitution and the same "other shell" for servers. :func:`run_page` runs a
page's marked blocks (``<!-- doc-test: background URL -->``,
``<!-- doc-test: skip (why) -->``) in order.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from modelreg.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
WRITTEN_PORTS = ("5000", "8000", "8080")
KILL_JOBS_ON_EXIT = "trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT"
"""A reader's script line: its background jobs end with it, even when a command fails."""


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


# -- pages run as a reader runs them -----------------------------------------------

_DOC_BLOCK = re.compile(
    r"(?:<!-- doc-test: (?P<mark>\w+)(?P<rest>[^>]*)-->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```",
    re.S,
)


@dataclass(frozen=True)
class DocBlock:
    """One fenced code block of a page and how the doc tests treat it.

    ``mark`` is "" (run in the reader's shell), ``background`` (started in a
    shell of its own; ``url`` answers 200 once it is up) or ``skip`` (not run,
    the comment says why: another test runs it).
    """

    lang: str
    body: str
    mark: str
    url: str


def doc_blocks(text: str) -> list[DocBlock]:
    """The page's fenced code blocks in order, with their ``<!-- doc-test: ... -->`` marks."""
    blocks = []
    for m in _DOC_BLOCK.finditer(text):
        mark = m.group("mark") or ""
        url = m.group("rest").strip() if mark == "background" else ""
        blocks.append(DocBlock(m.group("lang"), m.group("body"), mark, url))
    return blocks


def runnable(block: DocBlock) -> bool:
    """Whether the reader's shell runs ``block`` (bash, and python through a heredoc)."""
    return block.mark == "" and block.lang in ("bash", "python")


def _segments(blocks: list[DocBlock]) -> list[DocBlock | list[DocBlock]]:
    """Background blocks alone, and the runs of runnable blocks between them."""
    steps: list[DocBlock | list[DocBlock]] = []
    for block in blocks:
        if block.mark == "background":
            steps.append(block)
        elif runnable(block):
            if steps and isinstance(steps[-1], list):
                steps[-1].append(block)
            else:
                steps.append([block])
    return steps


def _shell_text(block: DocBlock) -> str:
    if block.lang == "python":
        return f"python - <<'DOC_PY'\n{block.body}DOC_PY"
    return block.body


def run_page(
    text: str, tmp_path: Path, *, columns: int = 120, timeout: float = 300
) -> tuple[str, str]:
    """Run a page's blocks as one reader would; the reader's shells' stdout and stderr.

    The written ports become free ones first. A background block runs in a new
    shell of its own (``modelreg up`` gets the free ports), the test waits until
    its URL answers 200, and it is stopped at the end. The other runnable
    blocks run in order: each run of them between two background blocks is one
    bash process, and the exported variables carry over to the next, as they
    would in the reader's second shell. A failing command fails the test with
    the shell's output.
    """
    text, ports = with_free_ports(text)
    clone, env = reader_clone(tmp_path, "a clone\n", columns=columns)
    state = tmp_path / "exports.sh"
    state.write_text("", encoding="utf-8")
    stdout, stderr = [], []
    with ExitStack() as running:
        for number, step in enumerate(_segments(doc_blocks(text))):
            if isinstance(step, DocBlock):
                command = step.body.replace(
                    "modelreg up", f"modelreg up --port {ports['5000']} --api-port {ports['8000']}"
                )
                log = tmp_path / f"background-{number}.log"
                running.enter_context(background(command, clone, env, log))
                try:
                    wait_ok(step.url, 180)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None
                continue
            bodies = "\n".join(_shell_text(b) for b in step)
            script = (
                f"set -euo pipefail\n{KILL_JOBS_ON_EXIT}\nsource {state}\n"
                f"{bodies}\nexport -p > {state}\n"
            )
            (tmp_path / f"step-{number}.sh").write_text(script, encoding="utf-8")
            done = subprocess.run(
                ["bash", str(tmp_path / f"step-{number}.sh")],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            stdout.append(done.stdout)
            stderr.append(done.stderr)
            (tmp_path / f"step-{number}.out").write_text(done.stdout + done.stderr)
            shown = f"--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"
            assert done.returncode == 0, shown
    return "".join(stdout), "".join(stderr)
