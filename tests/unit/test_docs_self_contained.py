"""The documentation names no path outside the repository: a user has only the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Relative paths as the docs write them: ../something, in a link or in backticks.
PARENT_PATH = re.compile(r"(?:\.\./)+[\w.-]+(?:/[\w.-]+)*")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _markdown_files() -> list[Path]:
    found = set(ROOT.glob("*.md"))
    for folder in ("docs", "infra", "layers", "tools", "functions", "tests", ".ci"):
        found |= set((ROOT / folder).rglob("*.md"))
    return sorted(found)


def test_relative_paths_in_the_docs_stay_inside_the_repository() -> None:
    outside = []
    for path in _markdown_files():
        text = path.read_text()
        for target in PARENT_PATH.findall(text) + LINK.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                outside.append(f"{path.relative_to(ROOT)}: {target}")
    assert outside == []
