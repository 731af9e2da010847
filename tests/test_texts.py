"""User-facing text stands on its own: no references to internal notes or source labels.

Docstrings, comments, docs, the README, report text and CLI help must cite papers by their
authors (and sections, equations, figures or tables), not by internal labels such as
"seed 000" (a paper) or "spec §1.2" (internal notes users do not have). The word "seed" as the
random seed (``seed=0``, "the seed of the design") is fine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUFFIXES = {".py", ".md", ".txt", ".rst", ".js", ".html", ".css", ".toml", ".cfg"}

#: (name, pattern) of internal wording; each pattern is case-insensitive and may span lines.
FORBIDDEN: list[tuple[str, re.Pattern[str]]] = [
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in [
        ("numbered source paper", r"\bseeds?\s+0\d\d\b"),
        ("source paper's", r"\bseed(?:'s|s')"),
        ("internal spec section", r"\bspec(?:'s)?\s*§|\bseed\s*§"),
        (
            "the spec",
            r"\bspec's|\bseed\s+spec\b|\b(?:the|our)\s+spec\s+(?:says|suspect\w*|recommend\w*)",
        ),
        ("source paper's code", r"\bseed\s+(?:code|pipeline|paper|text|authors?)\b"),
        ("source paper's equation", r"\bseed\s+(?:eqs?|figs?|figures?|tables?|ch)\b\.?"),
        ("(seed)", r"(?<![\w.])\(seed\)"),
        (
            "the seed as a paper",
            r"\bthe\s+seed\b(?!\s*(?:argument|=|of\b|value|is\s+passed|keyword|parameter|"
            r"sequence|for\b|given|used\s+for|\)|,|\.|`))",
        ),
        ("seed as the subject", r"\bseed\s+(?:does|did|says|uses|used|reports|finds|shows)\b"),
    ]
]


def _files() -> list[Path]:
    paths = [ROOT / "README.md"]
    for top in ("src", "docs"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or path.suffix not in SUFFIXES:
                continue
            if any(part.endswith(".egg-info") or part == "__pycache__" for part in path.parts):
                continue
            paths.append(path)
    return paths


def _hits(text: str) -> list[tuple[int, str, str]]:
    found = []
    for name, pattern in FORBIDDEN:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            found.append((line, name, " ".join(m.group(0).split())))
    return sorted(found)


@pytest.mark.parametrize(
    "text",
    [
        "see seed 000 for details",
        "the seed's Table 1",
        "as the seed code does",
        "(spec §1.2)",
        "(seed §3.3)",
        "seed Eq. 13",
        "the seed\ndoes not clip",
        "Activation sensitivity (seed)",
        "the spec's recommendation",
        "as the spec suspected",
        "the seed reports 22%",
    ],
)
def test_patterns_catch_internal_wording(text: str) -> None:
    assert _hits(text), text


@pytest.mark.parametrize(
    "text",
    [
        "seed=0",
        "seed : int, default 0",
        "Seed of the design and of the bootstrap.",
        "the seed of the generator",
        "the seed argument",
        "That is why the seed is passed to scipy",
        "torch_generator(seed)",
        "Measured with `convscope demo` (seed 0)",
        "fresh images (seed 31337)",
        "The same seed gives the same maps.",
        "Format spec of the scores.",
        "validate the spec early",
    ],
)
def test_patterns_allow_random_seed_wording(text: str) -> None:
    assert not _hits(text), _hits(text)


def test_no_internal_references_in_user_facing_text() -> None:
    problems = []
    for path in _files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for line, name, snippet in _hits(text):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {name}: {snippet!r}")
    assert not problems, "internal wording in user-facing text:\n" + "\n".join(problems)
