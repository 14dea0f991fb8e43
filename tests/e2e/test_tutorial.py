"""docs/tutorial.md runs as written, in order, on a fresh stack, and shows what it says.

The blocks are read from the page itself (``reader_shell.run_page``), so the
tutorial cannot rot: every ``bash`` and ``python`` block runs in the reader's
shell, ``modelreg up`` and ``modelreg serve`` in shells of their own, and the
one skipped block is the README's first command, which
``test_course_and_demo.py`` runs. The assertions check the output each
section shows in its ``text`` blocks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from reader_shell import ROOT, doc_blocks, run_page

pytestmark = pytest.mark.e2e

DOC = ROOT / "docs" / "tutorial.md"
SECTIONS = (
    "## 1. Set-up",
    "## 2. Register and version",
    "## 3. Lifecycle",
    "## 4. Serving",
    "## 5. Approvals",
    "## 6. A/B testing",
    "## Concepts",
    "## Operations",
    "## Security",
)


def test_the_page_has_the_course_sections_and_runs_everything_but_the_demo() -> None:
    text = DOC.read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert [h for h in headings if h.startswith(SECTIONS)] == headings
    assert len(headings) == len(SECTIONS)
    blocks = doc_blocks(text)
    skipped = [b for b in blocks if b.mark == "skip"]
    assert [b.body.strip() for b in skipped] == ["scripts/demo --no-keep-running"]
    assert [b.url for b in blocks if b.mark == "background"] == [
        "http://127.0.0.1:8000/health",
        "http://127.0.0.1:8080/ping",
    ]
    assert {b.lang for b in blocks} <= {"bash", "python", "text"}


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    out, err = run_page(DOC.read_text(encoding="utf-8"), tmp_path, timeout=600)
    shown = f"--- stdout\n{out[-10000:]}\n--- stderr\n{err[-5000:]}"
    assert "Traceback" not in out + err, shown
    # 1. Set-up: MLflow answers.
    assert out.startswith("OK\n"), shown
    # 2. Register and version: three course versions adopted with semvers, the challenger
    # registered with complete lineage, every version verified.
    # The API service adopts in the background too: `sync` gets what it left.
    assert re.search(r"adopted [123] version\(s\)|no versions to adopt", out), shown
    for number, semver in ((1, "1.0.0"), (2, "1.1.0"), (3, "1.2.0")):
        assert re.search(rf"fraud-detection\s+{number}\s+{semver}\s+None", out), shown
    assert "fraud-2026-11" in out and '"source": "mlflow"' in out, shown
    assert "registered version 4 as 1.3.0" in out, shown
    assert re.search(r"│ 4\s+│ 1\.3\.0\s+│ ok", out), shown
    # 3. Lifecycle: what was in Production at $AT, and no drift.
    assert re.search(r"Production at \S+: v3 \(1\.2\.0\)", out), shown
    assert "rollback  Archived → Production" in out, shown
    assert out.count("no drift") == 2, shown  # section 3, then after doctor --fix
    # 4. Serving: v2 answers, then v1 within seconds of its promotion.
    assert "x-model-version: 2\nx-model-semver: 1.1.0" in out, shown
    seconds = float(re.findall(r"version 1 answered ([0-9.]+) s after the promotion", out)[0])
    assert seconds < 10, shown  # the course asks for 60 s; the server checks every second
    assert "serving v1 (1.0.0)" in out, shown
    assert "\nonnxruntime verified on 259 rows: passed\n" in out, shown  # 3 examples + 256
    # 5. Approvals: the gate refuses with the observed value, separation of duties, carol.
    assert re.search(r"fraud-detection v3 \(1\.2\.0\): invalid", out), shown
    assert re.search(r"metric test_auc\s+│ FAIL\s+│ test_auc >= 0.85\s+│ 0\.8\d+", out), shown
    assert "exit 4\nfraud-detection v4 (1.3.0): requested" in out, shown
    assert "separation of duties" in err and "exit 7" in out, shown
    assert "fraud-detection v4 (1.3.0): promoted\n" in out, shown
    assert "approvals: 1/1 (carol)" in out, shown
    assert "fraud-detection v5 (1.4.0): declined" in out, shown
    assert "required more than 0.02 above Production v4" in out, shown
    # 6. A/B: about 10% of 200 users treated, feedback accepted, the experiment concluded.
    split = {
        variant: int(count)
        for count, variant in re.findall(r"^\s*(\d+) x-variant: (\w+)$", out, re.M)
    }
    assert re.search(r"^  routed by [12] serving replica\(s\)$", out, re.M), shown
    # Every worker routes the experiment before the first user: no `default` answers.
    assert set(split) == {"control", "treatment"}, shown
    assert sum(split.values()) == 200 and 5 <= split.get("treatment", 0) <= 45, shown
    assert re.search(r"^\s*200 200$", out, re.M), shown
    assert re.search(r"experiment [0-9a-f]{32} running", out), shown
    assert "control v4 (90%), treatment v5 (10%)" in out, shown
    assert re.search(r"experiment [0-9a-f]{32} concluded", out), shown
    assert re.search(r"^2$", out, re.M), shown  # ab_start and ab_conclude in the history
    # Operations: the backup, the load time, two Production versions found and repaired.
    assert "backed up: ledger.db, mlflow.db, artifacts" in out, shown
    assert re.search(r"^v4 loaded in [0-9.]+ s$", out, re.M), shown
    assert re.search(r"native stage │ Archived\s+│ Production\s+│ no", out), shown
    assert "exit 1" in out, shown
    assert re.search(r"native stage │ Archived\s+│ Production\s+│ yes", out), shown
    # Security: an anonymous API caller cannot roll back.
    assert re.search(r"^403$", out, re.M), shown
    assert 'anonymous_role = "viewer"' in out, shown
