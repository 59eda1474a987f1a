"""``guard``: a Llama-Guard-style generative classifier; S1-S14 categories parsed from its answer.

Built on :mod:`safefed.scoring.guard` (prompt building, parsing, model wrapper). ``reads: prompt`` asks
about the user turn; ``response``/``pair`` about the agent turn. An answer that cannot be parsed
scores the ``unparsed`` category (policies usually ``flag`` it); ``unsafe`` without a code scores
``unspecified``.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from ...scoring.guard import HAZARDS, GuardVerdict
from .base import Reads, ScoreRow, register_scorer


class GuardOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "meta-llama/Llama-Guard-3-8B"
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(12, ge=1)


class GuardScorer:
    """One score per hazard code (1.0 when the guard names it), plus ``unspecified`` and ``unparsed``."""

    def __init__(self, opts: GuardOptions, reads: Reads = "pair", policy=None, classifier=None) -> None:
        if classifier is None:
            from ...scoring.guard import GuardModel

            classifier = GuardModel(
                opts.model, batch_size=opts.batch_size, max_new_tokens=opts.max_new_tokens
            )
        self.classifier = classifier
        self.opts = opts
        self.reads = reads
        self.name = "guard"
        self.categories = [*HAZARDS, "unspecified", "unparsed"]

    @staticmethod
    def row(verdict: GuardVerdict) -> ScoreRow:
        """Scores of one parsed guard answer."""
        row = dict.fromkeys([*HAZARDS, "unspecified", "unparsed"], 0.0)
        if verdict.unsafe is None:
            row["unparsed"] = 1.0
        elif verdict.unsafe:
            for code in verdict.categories:
                row[code] = 1.0
            if not verdict.categories:
                row["unspecified"] = 1.0
        return row

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[ScoreRow]:
        if self.reads == "prompt":
            resp: list[str | None] = [None] * len(prompts)
            asked = list(prompts)
        else:  # judge the agent turn; a response without a prompt is judged after an empty user turn
            resp = [r if r else None for r in responses]
            asked = list(prompts)
        return [self.row(v) for v in self.classifier.classify(asked, resp)]

    def describe(self) -> dict:
        resolved = getattr(self.classifier, "resolved", None)
        return {
            "type": "guard",
            "reads": self.reads,
            "model": resolved.provenance() if resolved else self.opts.model,
            "hazards": HAZARDS,
        }


register_scorer("guard", GuardOptions)(GuardScorer)
