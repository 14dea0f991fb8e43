"""Every relative link in the docs points at a file that exists, and at a heading it has.

Readers follow README.md, docs/*.md and deploy/README.md from one page to the
next; a renamed heading or file must fail here, not in a newcomer's browser.
Anchors follow GitHub's rule for heading ids (lower case, punctuation dropped,
spaces to hyphens) plus explicit ``<a id="...">`` anchors.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", ROOT / "deploy" / "README.md", *(ROOT / "docs").glob("*.md")])
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def heading_ids(text: str) -> set[str]:
    """The anchors a page offers: GitHub's ids of its headings and explicit ``<a id>``s."""
    text = _FENCE.sub("", text)
    ids = set(re.findall(r'<a id="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def test_heading_ids_follow_githubs_rule() -> None:
    ids = heading_ids("# A/B testing\n## 1. Set-up\n## Set-up\n## `up --s3` (S3)\n")
    assert ids == {"ab-testing", "1-set-up", "set-up", "up---s3-s3"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor
            and linked.suffix == ".md"
            and anchor not in heading_ids(linked.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target}: no heading #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
