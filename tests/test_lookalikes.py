"""The project's benign look-alike generator: deterministic, varied, and not copied from XSTest."""

from __future__ import annotations

import re

from safefed import data
from safefed.lookalikes import CATEGORIES, all_prompts, lookalike_pairs


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def test_pairs_are_seeded_and_shaped():
    a, b = lookalike_pairs(50, seed=3), lookalike_pairs(50, seed=3)
    assert a == b and a != lookalike_pairs(50, seed=4)
    assert all(set(p) == {"prompt", "response", "category"} and p["prompt"] and p["response"] for p in a)
    assert len({p["prompt"] for p in a}) == 50
    assert {p["category"] for p in lookalike_pairs(None)} == set(CATEGORIES)
    assert len(lookalike_pairs(2000)) == 2000  # beyond the pool it repeats rather than failing


def test_no_xstest_prompt_is_copied(data_dir):
    xstest = [r["prompt"] for r in data.load("xstest", data_dir)]
    exact = {" ".join(p.lower().split()) for p in xstest}
    x_tokens = [_tokens(p) for p in xstest]
    for prompt, _, _ in all_prompts():
        assert " ".join(prompt.lower().split()) not in exact, prompt
        t = _tokens(prompt)
        nearest = max(len(t & x) / len(t | x) for x in x_tokens)
        assert nearest < 0.75, (prompt, nearest)
