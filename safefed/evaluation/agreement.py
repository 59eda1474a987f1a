"""How often a judge's ``unsafe`` agrees with labelled responses (``safefed judge agree``).

Labelled sets, none of which any judge trained on:

- ``gptfuzz-evaluate``: GPTFuzz's ``evaluate`` split (questions 80-99, labelled by its authors;
  rows whose question is also in hh-rlhf's test file dropped), unsafe = harmful compliance;
- ``jbb-artifacts-held-out``: JailbreakBench artifacts of the goals the learned judge holds out
  (records with AdvBench goals dropped), unsafe = ``jailbroken``; these labels come from
  JailbreakBench's own LLM judge, not from people, and say so in the report;
- ``diasafety-test``: DiaSafety's test split (human labels), unsafe = the response is unsafe in its
  context (agreeing with a toxic user, ignoring risk, ...): harm that no refusal marker can see.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import data as datasets
from ..stats import rate
from .judge_training import _held_out
from .judges import Judge


@dataclass
class LabelledSet:
    name: str
    labels: str  # who labelled it
    pairs: list[tuple[str, str, bool]]  # (prompt, response, unsafe)


def labelled_sets(data_dir: str | Path | None = None, limit: int | None = None, seed: int = 0) -> list[LabelledSet]:
    """The three sets, each a seeded sample of at most ``limit`` pairs."""
    fuzz = [(r["prompt"], r["response"], r["label"] == "harmful") for r in datasets.load("gptfuzz-labeled", data_dir)
            if r["split"] == "evaluate" and not r["in_hh_rlhf_test"]]
    advbench_goals = {r["prompt"].strip().lower() for r in datasets.load("advbench", data_dir)}
    artifacts = datasets.load("jailbreakbench-artifacts", data_dir)
    jbb = [(r["goal"], r["response"], bool(r["jailbroken"])) for r in artifacts
           if isinstance(r["response"], str) and r["response"].strip()
           and r["goal"].strip().lower() not in advbench_goals and _held_out(r["goal"], 0, 0.2)]
    dia = [(r["prompt"], r["response"], r["label"] == "harmful") for r in datasets.load("diasafety", data_dir)
           if r["split"] == "test"]
    sets = [LabelledSet("gptfuzz-evaluate", "GPTFuzz authors (people)", fuzz),
            LabelledSet("jbb-artifacts-held-out", "JailbreakBench's LLM judge (not people)", jbb),
            LabelledSet("diasafety-test", "DiaSafety annotators (people)", dia)]
    if limit is not None:
        for s in sets:
            if len(s.pairs) > limit:
                s.pairs = random.Random(seed).sample(s.pairs, limit)
    return sets


def agreement(judge: Judge, sets: Sequence[LabelledSet],
              progress: Callable[[str, int], Callable[[int], None]] | None = None, batch: int = 16) -> dict:
    """Per set: agreement, precision and recall of ``unsafe`` (Wilson 95 % intervals) and the counts."""
    out = {}
    for s in sets:
        advance = progress(f"{judge.name}: {s.name}", len(s.pairs)) if progress else None
        said: list[bool] = []
        for i in range(0, len(s.pairs), batch):
            chunk = s.pairs[i:i + batch]
            said += [v.unsafe for v in judge.judge([p for p, _, _ in chunk], [r for _, r, _ in chunk])]
            if advance:
                advance(len(chunk))
        truth = [u for _, _, u in s.pairs]
        tp = sum(a and b for a, b in zip(said, truth, strict=True))
        fp = sum(a and not b for a, b in zip(said, truth, strict=True))
        fn = sum(b and not a for a, b in zip(said, truth, strict=True))
        out[s.name] = {"n": len(truth), "unsafe": sum(truth), "labels": s.labels,
                       "agreement": rate(sum(a == b for a, b in zip(said, truth, strict=True)), len(truth)),
                       "precision": rate(tp, tp + fp) if tp + fp else None,
                       "recall": rate(tp, tp + fn) if tp + fn else None}
    return out
