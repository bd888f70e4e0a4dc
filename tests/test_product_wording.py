"""Product files speak of the product: no word of how or by whom it was built, nor of documents outside the
repository. The narrative of how figures were found belongs in dev/LOG.md, the only file exempt."""

from __future__ import annotations

import re
import subprocess

from .conftest import REPO

# What a reader of the product cannot resolve: the project's starting point, design documents that are not shipped,
# work sessions, tracker issues (the cases below show each).
FORBIDDEN = re.compile(
    r"\bthe seed's\b|\bthe seed\s+(?:pipeline|chart|repo|repository|example|version|code|project)\b"
    r"|\bDESIGN\.md\b"
    r"|\b(?:this|last|earlier|previous|next) session\b|\bsession \d+\b"
    r"|\bissue #?\d+\b",
    re.IGNORECASE,
)
EXEMPT = ("dev/", "tests/chart/crds/", "tests/test_product_wording.py")


def tracked_text_files() -> list[str]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if not p.startswith(EXEMPT) and (REPO / p).is_file()]


def test_the_pattern_finds_what_it_is_for() -> None:
    for text in ("# The seed's multi-model example", "see DESIGN.md", "measured in session 3", "fixes issue #17"):
        assert FORBIDDEN.search(text), text
    for text in ("run.seed: 42", "the seed of the data order", "scope='session'", "a session of its own"):
        assert not FORBIDDEN.search(text), text


def test_product_files_do_not_speak_of_how_they_were_built() -> None:
    files = tracked_text_files()
    assert len(files) > 100  # the repository's files, not an empty listing
    hits = []
    for path in files:
        try:
            text = (REPO / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary fixtures
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                hits.append(f"{path}:{number}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)
