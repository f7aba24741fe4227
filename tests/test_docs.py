"""Every measured figure has one home: docs/hasac.md and the tables that benchmark/quick.sh writes under docs/results/.
README.md may repeat a figure (its status box does), but only word for word, so the two can never disagree: each number
in README's prose must also appear in docs/. Commands and code (fenced blocks, `inline code`) are not figures.

The check reads the files, so it runs everywhere.
"""

import re

import pytest
from conftest import ROOT

# A figure: a decimal or a version (-45.37, 0.73, 3.11, 2.10.2), a percentage (90%), a ratio (2.3x), or a count of time
# (14 minutes, 9 s, 2 h). Integers on their own (20 envs, seed 3) are settings, and names hold digits (Ant-4x2, v3).
NUMBER_START = r"(?<![\w.\-/])"
FIGURE = re.compile(
    NUMBER_START + r"[-+]?\d+(?:\.\d+)+(?:\s?%|x\b)?"
    "|" + NUMBER_START + r"\d+(?:\s?%|x\b| ?(?:s|ms|min|minutes|hours?|h|days?)\b)"
)


def prose(markdown: str) -> str:
    """The text without its fenced code blocks and inline code."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def figures(text: str) -> set[str]:
    return {match.group(0) for match in FIGURE.finditer(text)}


def docs_text() -> str:
    return "\n".join(path.read_text() for path in sorted((ROOT / "docs").rglob("*.md")))


def test_the_figure_pattern_finds_figures_but_not_names_or_code():
    text = "Ant-4x2 reached -45.37 at 150k (2.3x, 90%), 14 minutes, Python 3.11, gfootball 2.10.2; `--alpha 0.1`\n"
    assert figures(prose(text)) == {"-45.37", "2.3x", "90%", "14 minutes", "3.11", "2.10.2"}


def test_every_figure_in_readme_is_in_docs_word_for_word():
    docs = docs_text()
    missing = [figure for figure in sorted(figures(prose((ROOT / "README.md").read_text()))) if figure not in figures(docs)]
    if missing:
        pytest.fail(f"README.md shows figures that docs/ does not: {missing}; measured figures live in docs/hasac.md")
