"""docs/experiments.md's worked example runs as written, in order, on a fresh stack.

The blocks are read from the page itself, so the page cannot rot. A block
after ``<!-- doc-test: background URL -->`` is what a reader starts in a shell
of its own (``modelreg up``, ``modelreg serve``): the test starts it in a new
process with a fresh environment, waits until URL answers 200, and stops it at
the end. The other ``bash`` blocks run in order as one reader's shell: each
run of blocks between two background blocks is one bash process, and the
exported variables (the ``export`` and ``source .venv/bin/activate``) carry
over to the next, as they would in the reader's second shell. ``text`` blocks
(sample output) and the ``python`` block of the reference sections are not
run. Only the ports change: 5000, 8000 and 8080 become free ones.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reader_shell import ROOT, DocBlock, doc_blocks, run_page

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "experiments.md"


def example_blocks(text: str) -> list[DocBlock]:
    """The worked example's blocks in order: everything before ``## Starting an experiment``."""
    return doc_blocks(text.split("\n## Starting an experiment", 1)[0])


def test_blocks_are_found_with_their_marks() -> None:
    blocks = example_blocks(DOC.read_text(encoding="utf-8"))
    background = [b for b in blocks if b.mark == "background"]
    assert [b.url for b in background] == [
        "http://127.0.0.1:8000/health",
        "http://127.0.0.1:8080/ping",
    ]
    assert "modelreg up" in background[0].body
    assert "modelreg serve fraud-detection" in background[1].body
    assert len([b for b in blocks if b.lang == "bash" and not b.mark]) >= 5
    assert not [b for b in blocks if b.lang == "python"]  # the reference's python is not run
    assert not [b for b in blocks if "[...]" in b.body or "..." in b.body]


def _run_example(tmp_path: Path) -> tuple[str, str]:
    """Run the worked example as a reader would; its shell's stdout and stderr."""
    example = DOC.read_text(encoding="utf-8").split("\n## Starting an experiment", 1)[0]
    return run_page(example, tmp_path)


def test_the_worked_example_runs_as_written(tmp_path: Path) -> None:
    out, err = _run_example(tmp_path)
    shown = f"--- stdout\n{out[-8000:]}\n--- stderr\n{err[-4000:]}"

    # The API service adopts in the background too: `sync` gets what it left.
    assert re.search(r"adopted [123] version\(s\)|no versions to adopt", out), shown
    # The first loop: both variants answered, each with its own version.
    seen = {
        variant: int(count)
        for count, version, variant in re.findall(
            r"^\s*(\d+) x-model-version: (\d) x-variant: (\w+)$", out, re.M
        )
        if (variant, version) in {("control", "1"), ("treatment", "2")}
    }
    # --wait: the start, the ramp and the stop are routed by every worker, and the
    # conclusion let go by every one.
    assert len(re.findall(r"^  routed by [12] serving replica\(s\)$", out, re.M)) == 3, shown
    assert re.search(r"^  let go by [12] serving replica\(s\)$", out, re.M), shown
    assert set(seen) == {"control", "treatment"}, shown
    assert sum(seen.values()) == 200, shown
    assert 5 <= seen["treatment"] <= 45, shown  # 10% of 200 users, with room for chance
    # Feedback: the first recorded, the other 199 answered 200.
    assert '{"request_id":"req-1","result":"recorded"}' in out, shown
    assert re.search(r"^\s*199 200$", out, re.M), shown
    # Status shows the running experiment with both arms.
    assert re.search(r"fraud-detection: experiment [0-9a-f]{32} running", out), shown
    assert "control v1 (90%), treatment v2 (10%)" in out, shown
    assert re.search(r"decision: \w+", out), shown
    # After the ramp about half of the users are treated, the first loop's included;
    # after the stop, control.
    ramped = {
        variant: int(count)
        for count, variant in re.findall(r"^\s*(\d+) x-variant: (\w+)$", out, re.M)
    }
    assert ramped.get("treatment", 0) >= max(seen["treatment"], 70), shown
    assert re.search(r"^x-variant: control\s*$", out, re.M | re.I), shown
    assert re.search(r"experiment [0-9a-f]{32} concluded", out), shown
    # The history tells the story in order.
    history = out[out.rindex("Production: v1") :]
    actions = re.findall(r"\b(ab_start|ab_ramp|ab_stop|ab_conclude)\b", history)
    assert actions == ["ab_start", "ab_ramp", "ab_stop", "ab_conclude"], shown
    assert "Traceback" not in err, shown
