"""The documentation's links and section references resolve (issue 14).

Every relative markdown link in README.md and docs/*.md names an existing file; every ``#anchor``
(same file or another markdown file) is the GitHub slug of one of that file's headings; every
``README.md "Section"`` / ``README section "Section"`` reference in examples/ and docs/ names a
README heading.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REFERRERS = [*sorted((ROOT / "examples").glob("*")), *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^ {0,3}(```|~~~).*?^ {0,3}\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_LINK = re.compile(r"(?<!\\)!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$", re.M)
_SECTION_REF = re.compile(r"README(?:\.md)?(?:'s)?(?:\s+section)?\s+[\"“]([^\"”\n]+)[\"”]")
_README_ANCHOR = re.compile(r"README\.md#([\w-]+)")


def prose(text: str) -> str:
    """The markdown without fenced code blocks and code spans (links there are not links)."""
    return _CODE_SPAN.sub("", _FENCE.sub("", text))


def heading_text(raw: str) -> str:
    """A heading's text as GitHub renders it: code spans keep their content, links their text, no emphasis marks."""
    text = re.sub(r"`+([^`]*)`+", r"\1", raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text).strip()


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (letters, digits, '-', '_' and spaces kept),
    spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def headings(path: Path) -> list[str]:
    return [heading_text(m.group(2)) for m in _HEADING.finditer(_FENCE.sub("", path.read_text(encoding="utf-8")))]


def anchors(path: Path) -> set[str]:
    """Every anchor GitHub gives ``path``'s headings (a repeated slug gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for text in headings(path):
        base = slug(text)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path) -> list[str]:
    """``target: why`` for every relative link of ``doc`` that does not resolve."""
    problems = []
    for target in _LINK.findall(prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.exists():
            problems.append(f"{target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest} does not exist")
            continue
        if anchor:
            if dest.suffix != ".md":
                problems.append(f"{target}: an anchor into a file that is not markdown")
            elif anchor not in anchors(dest):
                problems.append(
                    f"{target}: no heading of {dest.name} has the anchor #{anchor} "
                    f"(anchors: {', '.join(sorted(anchors(dest)))})"
                )
    return problems


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_every_relative_link_and_anchor_resolves(doc: Path):
    assert broken_links(doc) == []


@pytest.mark.parametrize("referrer", REFERRERS, ids=[str(r.relative_to(ROOT)) for r in REFERRERS])
def test_every_readme_section_reference_names_a_readme_heading(referrer: Path):
    text = referrer.read_text(encoding="utf-8")
    readme = ROOT / "README.md"
    missing = [name for name in _SECTION_REF.findall(text) if name not in headings(readme)]
    missing += [f"#{a}" for a in _README_ANCHOR.findall(text) if a not in anchors(readme)]
    assert missing == [], f"{referrer.relative_to(ROOT)} refers to README sections that do not exist: {missing}"


def test_the_example_spec_points_at_the_readme_section_on_specs():
    assert "Writing a spec" in _SECTION_REF.findall((ROOT / "examples" / "sandbox.yaml").read_text())


class TestTheChecker:
    """The checker itself, so that an empty result means something."""

    @pytest.mark.parametrize(
        ("heading", "expected"),
        [
            ("Link modes: `api` and `console`", "link-modes-api-and-console"),
            ("Failures, retries and reruns", "failures-retries-and-reruns"),
            ("Least-privilege AccessKey", "least-privilege-accesskey"),
            ("What the **stages** do", "what-the-stages-do"),
            ("snake_case and 3.9 (v2)", "snake_case-and-39-v2"),
        ],
    )
    def test_github_slugs(self, heading, expected):
        assert slug(heading_text(heading)) == expected

    def test_finds_missing_files_and_anchors_and_skips_code(self, tmp_path):
        (tmp_path / "other.md").write_text("# Other\n\n## Same\n\n## Same\n")
        doc = tmp_path / "doc.md"
        doc.write_text(
            "# Title\n\nSee [a](other.md), [b](other.md#same-1), [c](#title), [web](https://example.com/x#y),\n"
            "[broken\nacross lines](missing.md), [d](other.md#nope), [e](#nowhere).\n\n"
            "```\n[in a fence](fence.md)\n```\nand `[in code](span.md)`.\n"
        )
        problems = broken_links(doc)
        assert [p.split(":")[0] for p in problems] == ["missing.md", "other.md#nope", "#nowhere"]
