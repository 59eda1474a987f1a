"""``lexicon``: word and regex lists per category, matched Aho-Corasick style on normalised text.

Normalisation (applied to texts and to list entries alike): Unicode case folding, common leetspeak
(``k1ll`` -> ``kill``, ``h@te`` -> ``hate``), whitespace collapsed; optionally (``squeeze_repeats``)
runs of three or more identical letters squeezed (``kiiill``). Letters spaced or dotted apart
(``k i l l``, ``k.i.l.l``, ``k-i-l-l``) are matched by adding those spellings to the automaton, so they
cost no extra pass. Words match on word boundaries. A whole batch is normalised and scanned as one
string, so the per-row Python cost is small (see ``bench/bench_filter.py``). Regex ``patterns`` see
the normalised (lower-case) text. A category scores 1.0 when any of its entries matches.
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

_LEET = (("0", "o"), ("1", "i"), ("3", "e"), ("4", "a"), ("5", "s"), ("7", "t"), ("8", "b"), ("@", "a"),
         ("$", "s"))
_WHITESPACE = ("\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2009", "\u200b")
_SPACERS = (" ", ".", "-", "*", "_")  # "k i l l", "k.i.l.l", ... are added to the automaton as variants
_SQUEEZE = re.compile(r"([a-z])\1\1+")
_SEP = "\ue000"  # a private-use character between rows: normalise() leaves it alone


def normalise(text: str, squeeze: bool = False) -> str:
    """Case-folded, de-leeted text with whitespace collapsed to single spaces (lists and input alike).

    Each step is a C-level pass over the text (a whole batch at once). ``squeeze`` also turns runs of
    three or more identical letters into one (``kiiill``), at the cost of one regex pass.
    """
    text = text.casefold()
    for a, b in _LEET:
        if a in text:
            text = text.replace(a, b)
    for w in _WHITESPACE:
        if w in text:
            text = text.replace(w, " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return _SQUEEZE.sub(r"\1", text) if squeeze else text


def spaced_variants(entry: str) -> list[tuple[str, str]]:
    """(variant, spacer) pairs: each word of an entry (up to 3 words) written letter by letter."""
    words = entry.split(" ")
    masks = [(1 << len(words)) - 1] if len(words) > 3 else list(range(1, 1 << len(words)))
    out = []
    for spacer in _SPACERS:
        for mask in masks:
            parts = [spacer.join(w) if mask >> i & 1 and len(w) > 1 else w for i, w in enumerate(words)]
            variant = " ".join(parts)
            if variant != entry:
                out.append((variant, spacer))
    return out


_BRACES = re.compile(r"\{([^{}]*)\}")
MAX_EXPANSIONS = 10_000


def expand(template: str) -> list[str]:
    """Brace alternatives to plain phrases: ``"{kill|gas} all {the |}x"`` -> 4 phrases."""
    parts = _BRACES.split(template)  # literal, options, literal, options, ...
    out = [""]
    for i, part in enumerate(parts):
        options = part.split("|") if i % 2 else [part]
        out = [o + x for o in out for x in options]
        if len(out) > MAX_EXPANSIONS:
            raise ValueError(f"{template!r} expands to more than {MAX_EXPANSIONS} phrases")
    return out


class LexiconCategory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    words: list[str] = Field(default_factory=list, description="words and phrases")
    phrases: list[str] = Field(default_factory=list, description="brace templates: '{make|build} a bomb'")
    patterns: list[str] = Field(default_factory=list, description="regexes (one extra pass over the text)")

    @field_validator("phrases")
    @classmethod
    def _expand(cls, v: list[str]) -> list[str]:
        for p in v:
            expand(p)
        return v

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
    squeeze_repeats: bool = Field(False, description="also match 'kiiill' for 'kill' (one more regex pass)")


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
        self.squeeze = opts.squeeze_repeats
        entries: dict[str, set[str]] = {}
        for cat, spec in cats.items():
            for w in [*spec.words, *(x for p in spec.phrases for x in expand(p))]:
                key = normalise(w.strip(), self.squeeze)
                if key:
                    entries.setdefault(key, set()).add(cat)
        variants: dict[str, tuple[int, tuple[str, ...], str]] = {}
        for key, owners in entries.items():
            for variant, spacer in [(key, ""), *spaced_variants(key)]:
                old = variants.get(variant)
                merged = tuple(sorted(set(owners) | set(old[1] if old else ())))
                variants[variant] = (len(variant), merged, old[2] if old else spacer)
        for variant, value in variants.items():
            self.automaton.add_word(variant, value)
        self.entries = sorted(entries)
        self.n_words = len(entries)
        if variants:
            self.automaton.make_automaton()
        self.patterns = {c: "|".join(f"(?:{p})" for p in spec.patterns) for c, spec in cats.items() if spec.patterns}
        self._pattern_owner = {f"c{i}": c for i, c in enumerate(self.patterns)}
        # one scan for all categories, unless a pattern uses groups of its own (backreferences)
        combinable = all("(?P" not in p and not re.search(r"\\\d", p) for p in self.patterns.values())
        self._combined = (
            re.compile("|".join(f"(?P<c{i}>{p})" for i, p in enumerate(self.patterns.values())))
            if combinable and self.patterns
            else None
        )
        self._separate = {c: re.compile(p) for c, p in self.patterns.items()}

    def match(self, texts: Sequence[str]) -> list[dict[str, list[str]]]:
        """Per text, the matched entries by category (for explanations)."""
        raw = _SEP.join(texts)
        if raw.count(_SEP) != max(len(texts) - 1, 0):  # a text holds the separator itself
            raw = _SEP.join(t.replace(_SEP, " ") for t in texts)
        big = normalise(raw, self.squeeze)  # the whole batch as one string: one C-level pass per step
        starts = [0]
        pos = big.find(_SEP)
        while pos >= 0:
            starts.append(pos + 1)
            pos = big.find(_SEP, pos + 1)
        hits: list[dict[str, list[str]]] = [{} for _ in texts]
        if self.n_words:
            n = len(big)
            for end, (length, owners, spacer) in self.automaton.iter(big):
                begin = end - length + 1
                if (begin > 0 and big[begin - 1].isalnum()) or (end + 1 < n and big[end + 1].isalnum()):
                    continue
                # a spaced-out variant must not be part of a longer spaced-out word ("k i l l e r")
                if spacer and (
                    (end + 2 < n and big[end + 1] == spacer and big[end + 2].isalpha())
                    or (begin > 1 and big[begin - 1] == spacer and big[begin - 2].isalpha())
                ):
                    continue
                row = bisect.bisect_right(starts, begin) - 1
                for cat in owners:
                    hits[row].setdefault(cat, []).append(big[begin : end + 1])
        if self._combined is not None:
            for m in self._combined.finditer(big):
                row = bisect.bisect_right(starts, m.start()) - 1
                hits[row].setdefault(self._pattern_owner[m.lastgroup], []).append(m.group(0))
        else:
            for cat, rx in self._separate.items():
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
            "patterns": len(self.patterns),
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
