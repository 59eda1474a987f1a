"""``lexicon``: word and regex lists per category, matched Aho-Corasick style on normalised text.

Normalisation (applied to texts and to list entries alike): Unicode case folding; common leetspeak
(``k1ll`` -> ``kill``, ``h@te`` -> ``hate``); letters spaced or dotted apart joined (``k i l l``,
``k.i.l.l``); runs of three or more identical letters squeezed (``kiiiill``). Words match on word
boundaries. A whole batch is normalised and scanned as one string, so the per-row Python cost is
small (see ``bench/bench_filter.py``). A category scores 1.0 when any of its entries matches.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path

import ahocorasick
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...errors import UserError
from ...yamlio import load_model
from .base import Reads, ScoreRow, register_scorer, texts_for

_LEET = str.maketrans(
    {
        "0": "o",
        "1": "i",
        "3": "e",
        "4": "a",
        "5": "s",
        "7": "t",
        "8": "b",
        "@": "a",
        "$": "s",
        "!": "i",
        "\u00a0": " ",
    }
)
_SPACED = re.compile(r"(?<![^\W_])[^\W\d_](?P<sep>[ .\-*_])(?:[^\W\d_](?P=sep)){1,}[^\W\d_](?![^\W_])")
_SPACES = re.compile(r"[ \t\r\n\f\v]+")
_SQUEEZE = re.compile(r"([^\W\d_])\1{2,}")
_SEP = "\ue000"  # a private-use character between rows: normalise() leaves it alone


def normalise(text: str) -> str:
    """Case-folded, de-leeted, de-spaced, squeezed text (same length rules for lists and input)."""
    text = _SPACES.sub(" ", text.casefold().translate(_LEET))
    text = _SPACED.sub(lambda m: m.group(0).replace(m.group("sep"), ""), text)
    return _SQUEEZE.sub(r"\1", text)


class LexiconCategory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"bad regex {p!r}: {exc}") from None
        return v


class LexiconFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    categories: dict[str, LexiconCategory] = Field(min_length=1)


class LexiconOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str | None = Field(None, description="a lexicon YAML (relative to the policy's folder)")
    categories: dict[str, LexiconCategory] = Field(default_factory=dict)


class LexiconScorer:
    """Aho-Corasick word matching with word boundaries, plus per-category regexes."""

    def __init__(self, opts: LexiconOptions, reads: Reads = "pair", policy=None) -> None:
        cats = dict(opts.categories)
        self.file: Path | None = None
        if opts.file:
            self.file = _locate(opts.file, policy)
            cats = {**load_model(LexiconFile, self.file).categories, **cats}
        if not cats:
            raise UserError("lexicon scorer: give `file:` or `categories:` with at least one category")
        self.name = "lexicon"
        self.reads = reads
        self.categories = sorted(cats)
        self.automaton = ahocorasick.Automaton()
        entries: dict[str, set[str]] = {}
        for cat, spec in cats.items():
            for w in spec.words:
                key = normalise(w.strip())
                if key:
                    entries.setdefault(key, set()).add(cat)
        for key, owners in entries.items():
            self.automaton.add_word(key, (len(key), tuple(sorted(owners))))
        self.n_words = len(entries)
        if entries:
            self.automaton.make_automaton()
        self.patterns = {
            c: re.compile("|".join(f"(?:{p})" for p in s.patterns)) for c, s in cats.items() if s.patterns
        }

    def match(self, texts: Sequence[str]) -> list[dict[str, list[str]]]:
        """Per text, the matched entries by category (for explanations)."""
        raw = _SEP.join(texts)
        if raw.count(_SEP) != max(len(texts) - 1, 0):  # a text holds the separator itself
            raw = _SEP.join(t.replace(_SEP, " ") for t in texts)
        big = normalise(raw)  # the whole batch as one string: one C-level pass per step
        starts = [0]
        pos = big.find(_SEP)
        while pos >= 0:
            starts.append(pos + 1)
            pos = big.find(_SEP, pos + 1)
        hits: list[dict[str, list[str]]] = [{} for _ in texts]
        if self.n_words:
            for end, (length, owners) in self.automaton.iter(big):
                begin = end - length + 1
                if (begin > 0 and big[begin - 1].isalnum()) or (
                    end + 1 < len(big) and big[end + 1].isalnum()
                ):
                    continue
                row = bisect.bisect_right(starts, begin) - 1
                for cat in owners:
                    hits[row].setdefault(cat, []).append(big[begin : end + 1])
        for cat, rx in self.patterns.items():
            for m in rx.finditer(big):
                row = bisect.bisect_right(starts, m.start()) - 1
                hits[row].setdefault(cat, []).append(m.group(0))
        return hits

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        hits = self.match(texts_for(self.reads, prompts, responses))
        return [{c: (1.0 if c in h else 0.0) for c in self.categories} for h in hits]

    def describe(self) -> dict:
        return {
            "type": "lexicon",
            "reads": self.reads,
            "file": str(self.file) if self.file else None,
            "categories": self.categories,
            "words": self.n_words,
            "patterns": sum(len(p.pattern.split("|")) for p in self.patterns.values()),
        }


def _locate(value: str, policy) -> Path:
    if policy is not None:
        p = Path(value).expanduser()
        if not p.is_absolute() and policy.path is not None:
            p = policy.path.parent / p
        if p.is_file():
            return p
    p = Path(value).expanduser()
    if not p.is_file():
        raise UserError(f"{value}: lexicon file not found")
    return p


register_scorer("lexicon", LexiconOptions)(LexiconScorer)
